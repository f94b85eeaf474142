// The Azure store on a hierarchical-namespace account, through the loopback HNS fake in front of a real Azurite:
// detection from getAccountInfo (and a refusal), listings and HEADs carrying Owner/Group/Permissions/Acl/
// ResourceType, the DFS path calls (create directory, set access control, rename) and their request counters.
// Also pins what the listing relies on inside @azure/storage-blob 12.32: the Serialize-phase policy reaches the
// wire, and `page._response.bodyAsText` holds the raw page.
import t from 'tap';
import { createAzureStore } from '../src/blob/azure-store.js';
import type { BlobInfo, BlobStore } from '../src/blob/blob-store.js';
import { parseListingPermissions, withPermissionsInclude } from '../src/blob/hns-listing.js';
import { dfsContainerUrl } from '../src/blob/hns-paths.js';
import { BlobError } from '../src/errors.js';
import { startAzurite, uniqueContainerName, withContainer } from './helpers/azurite.js';
import { startHnsFake } from './helpers/hns-fake.js';

const azurite = await startAzurite({ inMemory: true });
t.teardown(() => azurite.stop());
const fake = await startHnsFake(azurite);
t.teardown(() => fake.stop());

async function listAll(store: BlobStore, prefix?: string): Promise<BlobInfo[]> {
  const out: BlobInfo[] = [];
  for await (const page of store.listPages({ prefix })) out.push(...page);
  return out;
}

t.test('pure parts: the include rewrite and the raw-page parser', async (t) => {
  t.equal(
    withPermissionsInclude('http://h/acct/c?restype=container&comp=list&include=metadata'),
    'http://h/acct/c?restype=container&comp=list&include=metadata%2Cpermissions',
  );
  t.equal(withPermissionsInclude('http://h/acct/c/blob?comp=metadata'), 'http://h/acct/c/blob?comp=metadata', 'other calls unchanged');
  const xml =
    '<?xml version="1.0" encoding="utf-8"?><EnumerationResults><Blobs>' +
    '<Blob><Name Encoded="true">a%20b</Name><Properties><Owner>$superuser</Owner><Group>$superuser</Group>' +
    '<Permissions>rwxr-x---+</Permissions><Acl>user::rwx,user:1a2b:r-x,group::r-x,mask::r-x,other::---</Acl>' +
    '<ResourceType>directory</ResourceType></Properties></Blob>' +
    '<Blob><Name>x&amp;y</Name><Properties><Owner>1000</Owner><Permissions>rw-r--r-T</Permissions></Properties></Blob>' +
    '<Blob><Name>flat</Name><Properties><Etag>0x1</Etag></Properties></Blob>' +
    '</Blobs><NextMarker/></EnumerationResults>';
  const parsed = await parseListingPermissions(xml);
  t.same(Object.fromEntries(parsed), {
    'a b': {
      owner: '$superuser',
      group: '$superuser',
      permissions: 'rwxr-x---+',
      acl: 'user::rwx,user:1a2b:r-x,group::r-x,mask::r-x,other::---',
      resourceType: 'directory',
    },
    'x&y': { owner: '1000', permissions: 'rw-r--r-T' },
  });
  t.equal(dfsContainerUrl('https://acct.blob.core.windows.net/c?sv=1'), 'https://acct.dfs.core.windows.net/c?sv=1');
  t.equal(dfsContainerUrl('http://127.0.0.1:1234/devstoreaccount1/c'), 'http://127.0.0.1:1234/devstoreaccount1/c');
});

t.test('detection: HNS through the fake, flat on Azurite, refused → Unauthorized', async (t) => {
  const onFake = await withContainer(t, fake);
  const before = fake.requests().getAccountInfo ?? 0;
  t.equal(await onFake.detectNamespace(), 'hns');
  t.equal((fake.requests().getAccountInfo ?? 0) - before, 1, 'one getAccountInfo call');
  t.equal(onFake.requestCounts()['account:properties'], 1, 'counted by the store');
  const onAzurite = await withContainer(t, azurite);
  t.equal(await onAzurite.detectNamespace(), 'flat', 'Azurite has no hierarchical namespace');
  fake.refuseAccountInfo = true;
  t.teardown(() => void (fake.refuseAccountInfo = false));
  try {
    await onFake.detectNamespace();
    t.fail('a refused getAccountInfo must throw');
  } catch (err) {
    t.ok(err instanceof BlobError && err.kind === 'Unauthorized', `Unauthorized (${String(err)})`);
  }
});

t.test('listing and HEAD carry the POSIX attributes only on HNS rules', async (t) => {
  const store = await withContainer(t, fake);
  await store.upload('d/f.txt', { data: Buffer.from('hello') }, { metadata: { owner: '7' } });
  fake.setPath(store.container, 'd/f.txt', {
    owner: 'c0ffee00-0000-4000-8000-000000000001',
    group: '$superuser',
    permissions: 'rwxr-x--T+',
    acl: 'user::rwx,user:c0ffee00-0000-4000-8000-000000000002:r--,group::r-x,mask::r-x,other::---',
  });
  const flat = await listAll(store);
  t.equal(flat[0]!.hns, undefined, 'flat rules: no permissions asked for');
  store.useNamespace('hns');
  const [entry] = await listAll(store);
  t.same(entry!.metadata, { owner: '7' }, 'metadata still comes in the same listing');
  t.same(entry!.hns, {
    owner: 'c0ffee00-0000-4000-8000-000000000001',
    group: '$superuser',
    permissions: 'rwxr-x--T+',
    acl: 'user::rwx,user:c0ffee00-0000-4000-8000-000000000002:r--,group::r-x,mask::r-x,other::---',
    resourceType: 'file',
  });
  const head = await store.head('d/f.txt');
  t.same(head.hns, entry!.hns, 'HEAD reports the same attributes from the x-ms-* headers');
  t.same(store.requestCounts().list, 2, 'one list call per listing');
});

t.test('DFS path calls: create directory, set access control, rename (counted)', async (t) => {
  const store = await withContainer(t, fake);
  t.equal(store.hierarchicalPaths(), undefined, 'no path calls on flat rules');
  store.useNamespace('hns');
  const paths = store.hierarchicalPaths()!;
  const made = await paths.createDirectory('top/sub', { owner: '$superuser', group: '$superuser', permissions: 'rwxr-x--t' }, { ifNoneMatch: '*' });
  t.match(made.etag, /^".+"$/);
  t.same(fake.getPath(store.container, 'top/sub'), { owner: '$superuser', group: '$superuser', permissions: 'rwxr-x--t', resourceType: 'directory' });
  try {
    await paths.createDirectory('top/sub', { permissions: 'rwxr-x---' }, { ifNoneMatch: '*' });
    t.fail('an existing directory with ifNoneMatch must fail');
  } catch (err) {
    t.ok(err instanceof BlobError && (err.kind === 'AlreadyExists' || err.kind === 'PreconditionFailed'), String(err));
  }
  await store.upload('top/sub/a.txt', { data: Buffer.from('a') }, { metadata: {} });
  await paths.setAccessControl('top/sub/a.txt', { owner: 'c0ffee00-0000-4000-8000-000000000001', group: '$superuser', permissions: '0640' });
  t.same(fake.getPath(store.container, 'top/sub/a.txt')?.permissions, 'rw-r-----');
  t.equal(fake.getPath(store.container, 'top/sub/a.txt')?.owner, 'c0ffee00-0000-4000-8000-000000000001');
  const before = fake.requests().rename ?? 0;
  await paths.rename('top', 'moved');
  t.equal((fake.requests().rename ?? 0) - before, 1, 'one rename call for the whole tree');
  t.same((await listAll(store)).map((b) => b.name).sort(), ['moved/sub', 'moved/sub/a.txt']);
  t.equal(fake.getPath(store.container, 'moved/sub/a.txt')?.owner, 'c0ffee00-0000-4000-8000-000000000001', 'attributes move along');
  const c = store.requestCounts();
  t.same([c.createDirectory, c.setAccessControl, c.rename], [2, 1, 1], 'the store counts each DFS call');
  try {
    await paths.rename('nothing-here', 'x');
    t.fail('renaming a missing path must fail');
  } catch (err) {
    t.ok(err instanceof BlobError && err.kind === 'NotFound', String(err));
  }
});

t.test('a store made from a connection string to the fake uses the path-style DFS URL', async (t) => {
  const store = createAzureStore({ container: uniqueContainerName(), connectionString: fake.connectionString, env: {} });
  await store.createContainer();
  t.teardown(() => store.deleteContainer().catch(() => undefined));
  store.useNamespace('hns');
  await store.hierarchicalPaths()!.createDirectory('x', { permissions: 'rwx------' });
  t.equal(fake.getPath(store.container, 'x')?.permissions, 'rwx------');
});
