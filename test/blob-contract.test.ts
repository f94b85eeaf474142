// One contract for every BlobStore: the same test bodies run against MemoryBlobStore and against
// AzureBlobStore on a real Azurite. Then Azure-only tests: timeouts, retries, error mapping, secrets.
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { inspect } from 'node:util';
import t, { type Test } from 'tap';
import { createAzureStore, type AzureStoreOptions } from '../src/blob/azure-store.js';
import type { BlobInfo, BlobStore } from '../src/blob/blob-store.js';
import { md5Of } from '../src/blob/content-md5.js';
import { MemoryBlobStore } from '../src/blob/memory-store.js';
import { findFreePort, listenerIsOurs, startEmulator } from '../src/emulator/emulator.js';
import { BlobError, describeError, SourceChangedError } from '../src/errors.js';
import { EMULATOR_ACCOUNT, EMULATOR_KEY, startAzurite, uniqueContainerName, withContainer } from './helpers/azurite.js';
import { startFaultProxy } from './helpers/fault-proxy.js';
import { startHnsFake } from './helpers/hns-fake.js';

type ContractStore = BlobStore & { setTier(name: string, tier: 'Hot' | 'Archive'): Promise<void> };

interface Harness {
  name: string;
  /** A store on a fresh, existing, empty container. */
  make(t: Test): Promise<ContractStore>;
  /** A store on a container that does not exist yet. */
  makeUncreated(t: Test): Promise<ContractStore>;
}

const azurite = await startAzurite({ inMemory: true });
t.teardown(() => azurite.stop());
// The same contract through the loopback HNS fake (a proxy in front of the same Azurite), with the store on HNS
// rules: listings ask for permissions and parse the raw page, HEADs read the x-ms-* headers.
const hnsFake = await startHnsFake(azurite);
t.teardown(() => hnsFake.stop());
const onHns = <S extends BlobStore>(store: S): S => {
  store.useNamespace('hns');
  return store;
};

const harnesses: Harness[] = [
  {
    name: 'memory',
    make: async () => new MemoryBlobStore(),
    makeUncreated: async () => new MemoryBlobStore({ containerExists: false }),
  },
  {
    name: 'azurite',
    make: (t) => withContainer(t, azurite),
    makeUncreated: async (t) => {
      const store = createAzureStore({ container: uniqueContainerName(), connectionString: azurite.connectionString, env: {} });
      t.teardown(() => store.deleteContainer().catch(() => undefined));
      return store;
    },
  },
  {
    name: 'hns fake',
    make: async (t) => onHns(await withContainer(t, hnsFake)),
    makeUncreated: async (t) => {
      const store = createAzureStore({ container: uniqueContainerName(), connectionString: hnsFake.connectionString, env: {} });
      t.teardown(() => store.deleteContainer().catch(() => undefined));
      return onHns(store);
    },
  },
];

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.from(c as Buffer));
  return Buffer.concat(chunks);
}

async function listAll(store: BlobStore, options: Parameters<BlobStore['listPages']>[0] = {}): Promise<BlobInfo[][]> {
  const pages: BlobInfo[][] = [];
  for await (const page of store.listPages(options)) pages.push(page);
  return pages;
}

/** The difference of request counters between two snapshots (only the operations that changed). */
function delta(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(after)) if (v !== (before[k] ?? 0)) out[k] = v - (before[k] ?? 0);
  return out;
}

async function rejectsKind(t: Test, p: Promise<unknown>, kind: BlobError['kind'], msg: string): Promise<BlobError> {
  try {
    await p;
  } catch (err) {
    t.ok(err instanceof BlobError, `${msg}: a BlobError`);
    t.equal((err as BlobError).kind, kind, msg);
    return err as BlobError;
  }
  t.fail(`${msg}: expected ${kind}, resolved`);
  throw new Error('unreachable');
}

const put = (store: BlobStore, name: string, body: string | Buffer, metadata: Record<string, string> = {}) =>
  store.upload(name, { data: Buffer.from(body) }, { metadata });

for (const h of harnesses) {
  t.test(`contract: ${h.name}`, async (t) => {
    t.test('paging honours pageSize: every name exactly once, in order', async (t) => {
      const store = await h.make(t);
      const names = ['p/e', 'p/a', 'p/c', 'p/b', 'p/d'];
      for (const n of names) await put(store, n, n);
      await put(store, 'q', 'outside the prefix');
      const before = store.requestCounts();
      const pages = await listAll(store, { prefix: 'p/', pageSize: 2 });
      t.same(
        pages.map((p) => p.map((b) => b.name)),
        [['p/a', 'p/b'], ['p/c', 'p/d'], ['p/e']],
      );
      t.same(delta(before, store.requestCounts()), { list: 3 }, 'one request per page');
      const all = (await listAll(store, { pageSize: 4 })).flat().map((b) => b.name);
      t.same(all, ['p/a', 'p/b', 'p/c', 'p/d', 'p/e', 'q']);
      t.same(await listAll(store, { prefix: 'nothing/' }), [], 'an empty listing yields no page');
      const one = pages[0]![0]!;
      t.equal(one.size, 3);
      t.match(one.etag, /^".+"$/, 'etags are quoted, in listings too');
      t.equal(one.etag, (await store.head('p/a')).etag, 'the listing etag equals the HEAD etag');
    });

    t.test('metadata: keys are case-insensitive and come back lower-cased', async (t) => {
      const store = await h.make(t);
      // Keys that differ only in case collapse to one lower-case key; the later one wins.
      await put(store, 'm', 'x', { Hdi_IsFolder: 'true', MixedCase: 'first', mixedcase: 'second', owner: '1000' });
      const expected = { hdi_isfolder: 'true', mixedcase: 'second', owner: '1000' };
      t.same((await store.head('m')).metadata, expected, 'head');
      t.same((await listAll(store)).flat()[0]!.metadata, expected, 'listing');
      await store.setMetadata('m', { Permissions: '0644' });
      t.same((await store.head('m')).metadata, { permissions: '0644' }, 'setMetadata replaces all metadata');
    });

    t.test('head', async (t) => {
      const store = await h.make(t);
      const t0 = Date.now();
      const w = await put(store, 'dir/file.txt', 'hello world');
      const info = await store.head('dir/file.txt');
      t.equal(info.name, 'dir/file.txt');
      t.equal(info.size, 11);
      t.equal(info.etag, w.etag);
      t.equal(info.lastModified.getTime(), w.lastModified.getTime());
      t.ok(Math.abs(info.lastModified.getTime() - t0) < 5000, 'Last-Modified is about now (1 s resolution)');
      t.equal(info.tier, 'Hot');
    });

    t.test('ranged reads', async (t) => {
      const store = await h.make(t);
      const body = Buffer.from('0123456789abcdefghij'); // 20 bytes
      await store.upload('r', { data: body }, { metadata: {} });
      const read = async (off: number, len: number | undefined) => (await readAll(await store.readRange('r', off, len))).toString();
      t.equal(await read(5, 4), '5678', 'middle');
      t.equal(await read(0, undefined), body.toString(), 'whole blob');
      t.equal(await read(15, undefined), 'fghij', 'to EOF with length undefined');
      t.equal(await read(15, 100), 'fghij', 'a length past EOF is clipped');
      t.equal(await read(20, 5), '', 'offset at EOF: empty');
      t.equal(await read(20, undefined), '', 'offset at EOF, no length: empty');
      t.equal(await read(50, 5), '', 'offset past EOF: empty');
      t.equal(await read(3, 0), '', 'zero length: empty');
      await store.upload('empty', { data: Buffer.alloc(0) }, { metadata: {} });
      t.equal((await readAll(await store.readRange('empty', 0, 10))).length, 0, 'range of an empty blob');
      const { etag } = await store.head('r');
      t.equal((await readAll(await store.readRange('r', 0, 2, { ifMatch: etag }))).toString(), '01', 'ifMatch current');
      await rejectsKind(t, store.readRange('r', 0, 2, { ifMatch: '"0x8D0000000000000"' }), 'PreconditionFailed', 'ifMatch stale');
    });

    t.test('multi-block uploads from data, path and stream', async (t) => {
      const store = await h.make(t);
      const body = randomBytes(20 * 1024 + 100); // 5 full 4 KiB blocks and a partial one
      const dir = t.testdir({});
      const path = join(dir, 'src.bin');
      writeFileSync(path, body);
      const chunks: Buffer[] = [];
      for (let off = 0; off < body.length; off += 1000) chunks.push(body.subarray(off, off + 1000));
      const handle = await open(path, 'r');
      t.teardown(() => handle.close());
      const sources = {
        data: { data: body },
        path: { path },
        stream: { stream: Readable.from(chunks) },
        handle: { handle, size: body.length },
      };
      for (const [kind, source] of Object.entries(sources)) {
        const name = `up/${kind}`;
        const before = store.requestCounts();
        const progress: number[] = [];
        const w = await store.upload(name, source, {
          metadata: { Kind: kind },
          blockSize: 4096,
          concurrency: 3,
          onProgress: (n) => progress.push(n),
        });
        t.same(delta(before, store.requestCounts()), { stageBlock: 6, commitBlockList: 1 }, `${kind}: 6 blocks, 1 commit`);
        t.equal(progress.at(-1), body.length, `${kind}: progress reaches the size`);
        const info = await store.head(name);
        t.equal(info.size, body.length, `${kind}: size`);
        t.equal(info.etag, w.etag, `${kind}: etag`);
        t.same(info.metadata, { kind }, `${kind}: metadata`);
        t.ok((await readAll(await store.readRange(name, 0, undefined))).equals(body), `${kind}: content`);
      }
      const before = store.requestCounts();
      await store.upload('up/empty', { data: Buffer.alloc(0) }, { metadata: { hdi_isfolder: 'true' } });
      t.same(delta(before, store.requestCounts()), { commitBlockList: 1 }, 'an empty blob is one commit');
      const empty = await store.head('up/empty');
      t.equal(empty.size, 0);
      t.same(empty.metadata, { hdi_isfolder: 'true' });
    });

    t.test('conditional uploads', async (t) => {
      const store = await h.make(t);
      const first = await store.upload('c', { data: Buffer.from('v1') }, { metadata: { v: '1' }, ifNoneMatch: '*' });
      // Azurite answers commitBlockList with If-None-Match: * on an existing blob 409 BlobAlreadyExists.
      await rejectsKind(
        t,
        store.upload('c', { data: Buffer.from('v2') }, { metadata: {}, ifNoneMatch: '*' }),
        'AlreadyExists',
        'ifNoneMatch * on an existing blob',
      );
      const second = await store.upload('c', { data: Buffer.from('v2') }, { metadata: { v: '2' }, ifMatch: first.etag });
      t.not(second.etag, first.etag, 'the etag changes on every write');
      await rejectsKind(
        t,
        store.upload('c', { data: Buffer.from('v3') }, { metadata: {}, ifMatch: first.etag }),
        'PreconditionFailed',
        'ifMatch with a stale etag',
      );
      // Azurite answers If-Match on a missing blob with 412 (not 404).
      await rejectsKind(
        t,
        store.upload('missing', { data: Buffer.from('x') }, { metadata: {}, ifMatch: first.etag }),
        'PreconditionFailed',
        'ifMatch on a missing blob',
      );
      t.equal((await readAll(await store.readRange('c', 0, undefined))).toString(), 'v2', 'nothing overwritten');
      t.same((await store.head('c')).metadata, { v: '2' });
    });

    t.test('single-request uploads: one request, the same conditions, Content-MD5 kept', async (t) => {
      const store = await h.make(t);
      const before = store.requestCounts();
      const data = Buffer.from('small');
      const first = await store.upload('s', { data }, { metadata: { v: '1' }, ifNoneMatch: '*', singleRequest: true });
      t.same(delta(before, store.requestCounts()), { upload: 1 });
      const md5 = createHash('md5').update(data).digest('base64');
      t.equal(first.contentMd5, md5);
      t.equal((await store.head('s')).contentMd5, md5, 'the blob keeps its Content-MD5');
      await rejectsKind(
        t,
        store.upload('s', { data: Buffer.from('other') }, { metadata: {}, ifNoneMatch: '*', singleRequest: true }),
        'AlreadyExists',
        'ifNoneMatch * on an existing blob',
      );
      await rejectsKind(
        t,
        store.upload('s', { data: Buffer.from('other') }, { metadata: {}, ifMatch: '"0x1"', singleRequest: true }),
        'PreconditionFailed',
        'ifMatch with a stale etag',
      );
      const second = await store.upload('s', { data: Buffer.from('v2') }, { metadata: { v: '2' }, ifMatch: first.etag, singleRequest: true });
      t.not(second.etag, first.etag);
      t.equal((await readAll(await store.readRange('s', 0, undefined))).toString(), 'v2');
      t.same((await store.head('s')).metadata, { v: '2' });
    });

    t.test('NotFound', async (t) => {
      const store = await h.make(t);
      await rejectsKind(t, store.head('nope'), 'NotFound', 'head');
      await rejectsKind(t, store.readRange('nope', 0, undefined), 'NotFound', 'read');
      await rejectsKind(t, store.readRange('nope', 0, 0), 'NotFound', 'zero-length read');
      await rejectsKind(t, store.delete('nope'), 'NotFound', 'delete');
      await rejectsKind(t, store.setMetadata('nope', { a: '1' }), 'NotFound', 'setMetadata');
    });

    t.test('setMetadata and delete with ifMatch', async (t) => {
      const store = await h.make(t);
      const w = await put(store, 's', 'content', { a: '1' });
      const m = await store.setMetadata('s', { b: '2' }, { ifMatch: w.etag });
      t.not(m.etag, w.etag, 'setMetadata changes the etag');
      t.equal((await store.head('s')).etag, m.etag);
      await rejectsKind(t, store.setMetadata('s', { c: '3' }, { ifMatch: w.etag }), 'PreconditionFailed', 'stale setMetadata');
      await rejectsKind(t, store.setMetadata('gone', { c: '3' }, { ifMatch: w.etag }), 'PreconditionFailed', 'ifMatch on missing');
      t.same((await store.head('s')).metadata, { b: '2' });
      t.equal((await readAll(await store.readRange('s', 0, undefined))).toString(), 'content', 'data untouched');
      await rejectsKind(t, store.delete('s', { ifMatch: w.etag }), 'PreconditionFailed', 'stale delete');
      await store.delete('s', { ifMatch: m.etag });
      await rejectsKind(t, store.head('s'), 'NotFound', 'deleted');
    });

    t.test('Archive tier: reads fail with Archived', async (t) => {
      const store = await h.make(t);
      await put(store, 'cold', 'frozen bytes', { a: '1' });
      await store.setTier('cold', 'Archive');
      const info = await store.head('cold');
      t.equal(info.tier, 'Archive', 'head reports the tier');
      t.equal(info.size, 12, 'head still works');
      t.equal((await listAll(store)).flat()[0]!.tier, 'Archive', 'the listing reports the tier');
      await rejectsKind(t, store.readRange('cold', 0, undefined), 'Archived', 'read');
      await rejectsKind(t, store.readRange('cold', 100, 5), 'Archived', 'read past EOF');
      await store.upload('cold', { data: Buffer.from('warm') }, { metadata: {} });
      t.equal((await store.head('cold')).tier, 'Hot', 'an overwrite resets the tier');
      t.equal((await readAll(await store.readRange('cold', 0, undefined))).toString(), 'warm');
    });

    t.test('Content-MD5: every upload commits the MD5 of exactly the bytes it staged', async (t) => {
      const store = await h.make(t);
      const data = randomBytes(3 * 1024 + 17);
      const dir = t.testdir({});
      const path = join(dir, 'src.bin');
      writeFileSync(path, data);
      const expected = md5Of(data);
      const handle = await open(path, 'r');
      t.teardown(() => handle.close());
      let verified = 0;
      const sources = {
        data: { data },
        path: { path },
        stream: { stream: Readable.from([data.subarray(0, 100), data.subarray(100)]) },
        handle: { handle, size: data.length, verify: async () => void verified++ },
      };
      for (const [kind, source] of Object.entries(sources)) {
        const r = await store.upload(`md5-${kind}`, source, { metadata: {}, blockSize: 1024, expectedSize: data.length });
        t.equal(r.contentMd5, expected, `${kind}: the upload reports the digest`);
        t.equal(r.size, data.length);
        t.equal((await store.head(`md5-${kind}`)).contentMd5, expected, `${kind}: HEAD shows it`);
      }
      t.equal(verified, 1, 'a handle source is verified once, after its bytes were read');
      const listed = (await listAll(store)).flat().filter((b) => b.name.startsWith('md5-'));
      t.same(listed.map((b) => b.contentMd5), [expected, expected, expected, expected], 'the listing shows it');
      // A handle source whose verify() fails (the file changed while it was read) is never committed.
      await t.rejects(
        store.upload('md5-changed', { handle, size: data.length, verify: async () => Promise.reject(new SourceChangedError('src.bin changed while it was read')) }, { metadata: {}, blockSize: 1024 }),
        { code: 'EBUSY', message: /changed while it was read/ },
      );
      await rejectsKind(t, store.head('md5-changed'), 'NotFound', 'a source that failed verify() was not committed');
      const empty = await store.upload('md5-empty', { data: Buffer.alloc(0) }, { metadata: {} });
      t.equal(empty.contentMd5, md5Of(Buffer.alloc(0)), 'an empty blob has the empty digest');
      // A source that does not hold the expected bytes is never committed.
      await t.rejects(
        store.upload('md5-short', { path }, { metadata: {}, blockSize: 1024, expectedSize: data.length + 1 }),
        { code: 'EBUSY', message: /held 3089 bytes, not the 3090 expected/ },
      );
      await rejectsKind(t, store.head('md5-short'), 'NotFound', 'nothing was committed');
      await store.setMetadata('md5-data', { a: '1' });
      t.equal((await store.head('md5-data')).contentMd5, expected, 'setMetadata keeps the digest');
    });

    t.test('container exists and create', async (t) => {
      const store = await h.makeUncreated(t);
      t.equal(await store.containerExists(), false);
      await rejectsKind(t, listAll(store), 'NotFound', 'listing a missing container');
      t.equal(await store.createContainer(), true, 'created');
      t.equal(await store.createContainer(), false, 'already there');
      t.equal(await store.containerExists(), true);
      t.same(await listAll(store), []);
    });
  });
}

t.test('memory store fault hooks', async (t) => {
  const store = new MemoryBlobStore();
  await put(store, 'a', 'x');
  store.failNext('head', 'Throttled', 2);
  await rejectsKind(t, store.head('a'), 'Throttled', 'first injected');
  await rejectsKind(t, store.head('a'), 'Throttled', 'second injected');
  t.equal((await store.head('a')).size, 1, 'then it works');
  store.failNext('read', new BlobError('Transient', 'boom'));
  await rejectsKind(t, store.readRange('a', 0, undefined), 'Transient', 'an error object');
  store.delay('head', Infinity);
  const ac = new AbortController();
  const hanging = store.head('a', { signal: ac.signal });
  setImmediate(() => ac.abort());
  await t.rejects(hanging, { name: 'AbortError' }, 'a hang ends with the signal');
  store.delay('head', 0);
  const seen: string[] = [];
  store.beforeOp = (op, target) => {
    seen.push(`${op} ${target}`);
    if (op === 'commitBlockList') throw new BlobError('Transient', 'commit lost');
  };
  await rejectsKind(t, put(store, 'b', 'y'), 'Transient', 'beforeOp can fail a commit');
  t.same(seen, ['stageBlock b', 'commitBlockList b']);
  t.equal(store.getData('b'), undefined, 'no partial blob');
  t.equal(store.requestCounts().head, 4, 'failed and aborted requests are counted too');
});

// ---- Azure-only ---------------------------------------------------------------------------------------------

/** Options for a store pointed at a local fake server with the emulator account. */
function fakeStoreOptions(port: number, extra: Partial<AzureStoreOptions> = {}): AzureStoreOptions {
  return {
    container: 'c',
    account: EMULATOR_ACCOUNT,
    accountKey: EMULATOR_KEY,
    blobEndpoint: `http://127.0.0.1:${port}/${EMULATOR_ACCOUNT}`,
    env: {},
    ...extra,
  };
}

async function listenLoopback(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const addr = server.address();
  return typeof addr === 'object' && addr ? addr.port : 0;
}

function closeServer(server: Server, sockets: Set<Socket>): Promise<void> {
  for (const s of sockets) s.destroy();
  return new Promise((resolve) => server.close(() => resolve()));
}

t.test('azure: a server that never answers → Timeout within the bound', async (t) => {
  const sockets = new Set<Socket>();
  /** Called when a request reaches the server (which never answers it). */
  let onRequest: (() => void) | undefined;
  const server = createNetServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('data', () => onRequest?.()); // read the request, never answer
  });
  const port = await listenLoopback(server);
  t.teardown(() => closeServer(server, sockets));

  const retries: number[] = [];
  const store = createAzureStore(
    fakeStoreOptions(port, { timeoutMs: 400, retries: 1, retryBaseMs: 20, onRetry: (i) => retries.push(i.attempt) }),
  );
  const t0 = Date.now();
  const err = await rejectsKind(t, store.head('x'), 'Timeout', 'head times out');
  const elapsed = Date.now() - t0;
  t.ok(elapsed >= 800, `two attempts of 400 ms (${elapsed} ms)`);
  t.same(retries, [1], 'retried once: bounded by the retry count, not timed');
  t.equal(store.requestCounts().head, 2);
  t.match(err.message, /no answer within 400 ms/);

  // The caller's signal ends a call at once, as an abort (not a Timeout), without retrying: aborted as soon as
  // the request reaches the server.
  const ac = new AbortController();
  onRequest = () => ac.abort();
  const heads = store.requestCounts().head;
  await t.rejects(store.head('y', { signal: ac.signal }), { name: 'AbortError' }, 'an abort, not a Timeout');
  onRequest = undefined;
  t.equal(store.requestCounts().head, heads + 1, 'not retried');

  // A non-idempotent commit is not retried after a timeout (it may have happened).
  await rejectsKind(t, store.setMetadata('z', { a: '1' }, { ifMatch: '"0x1"' }), 'Timeout', 'conditional setMetadata');
  t.equal(store.requestCounts().setMetadata, 1, 'not retried');
});

t.test('azure: a body that stalls → the stream fails with Timeout', async (t) => {
  const sockets = new Set<Socket>();
  const server = createNetServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.once('data', () => {
      s.write(
        'HTTP/1.1 200 OK\r\nContent-Length: 100\r\nContent-Type: application/octet-stream\r\n' +
          'ETag: "0x8D1"\r\nLast-Modified: Mon, 01 Jan 2024 00:00:00 GMT\r\nx-ms-blob-type: BlockBlob\r\n\r\n' +
          'first bytes',
      );
    });
  });
  const port = await listenLoopback(server);
  t.teardown(() => closeServer(server, sockets));
  const store = createAzureStore(fakeStoreOptions(port, { timeoutMs: 300, retries: 0 }));
  const stream = await store.readRange('x', 0, undefined);
  const t0 = Date.now();
  const chunks: Buffer[] = [];
  const err = await rejectsKind(
    t,
    (async () => {
      for await (const c of stream) chunks.push(c as Buffer);
    })(),
    'Timeout',
    'the stalled body fails',
  );
  t.equal(Buffer.concat(chunks).toString(), 'first bytes', 'the bytes before the stall arrive');
  t.comment(`failed ${Date.now() - t0} ms after the stall began`);
  t.match(err.message, /stalled/, 'by the stall timeout');
});

t.test('azure: connection refused → Transient after the retries', async (t) => {
  const port = await findFreePort();
  const retried: string[] = [];
  const store = createAzureStore(
    fakeStoreOptions(port, {
      timeoutMs: 2000,
      retries: 2,
      retryBaseMs: 10,
      onRetry: (i) => retried.push(`${i.op}#${i.attempt}`),
    }),
  );
  const err = await rejectsKind(t, store.head('x'), 'Transient', 'head');
  t.same(retried, ['head#1', 'head#2']);
  t.equal(store.requestCounts().head, 3, 'three attempts');
  t.match(err.message, /ECONNREFUSED/);
  t.match(err.message, /after 3 attempts/);
  // A refused connection never reached the service: even a conditional commit is retried.
  retried.length = 0;
  await rejectsKind(t, store.upload('y', { data: Buffer.alloc(0) }, { metadata: {}, ifNoneMatch: '*' }), 'Transient', 'commit');
  t.same(retried, ['commitBlockList#1', 'commitBlockList#2']);
});

t.test('azure: status mapping and which calls are retried (fake server)', async (t) => {
  const seen: string[] = [];
  const server = createHttpServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const comp = url.searchParams.get('comp');
    seen.push(`${req.method} ${url.pathname} ${comp ?? ''}`.trim());
    req.resume();
    req.on('end', () => {
      const send = (status: number, code: string, message = code) => {
        const body = `<?xml version="1.0" encoding="utf-8"?><Error><Code>${code}</Code><Message>${message}</Message></Error>`;
        res.writeHead(status, { 'x-ms-error-code': code, 'content-type': 'application/xml', 'x-ms-request-id': 'rid-1' });
        res.end(req.method === 'HEAD' ? undefined : body);
      };
      if (comp === 'block') return void res.writeHead(201).end();
      if (comp === 'blocklist') return send(500, 'InternalError');
      if (url.pathname.endsWith('/busy')) return send(503, 'ServerBusy');
      if (url.pathname.endsWith('/denied'))
        return send(403, 'AuthenticationFailed', `Signature did not match: ${req.url} sig=ABCDEFSECRET`);
      if (url.pathname.endsWith('/gone')) return send(404, 'BlobNotFound');
      if (url.pathname.endsWith('/bad')) return send(400, 'InvalidMetadata');
      return send(500, 'InternalError');
    });
  });
  const port = await listenLoopback(server as unknown as Server);
  t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  const store = createAzureStore(fakeStoreOptions(port, { timeoutMs: 2000, retries: 2, retryBaseMs: 5 }));

  await rejectsKind(t, store.head('busy'), 'Throttled', '503 ServerBusy');
  t.equal(store.requestCounts().head, 3, 'throttling is retried');
  const denied = await rejectsKind(t, store.readRange('denied', 0, 10), 'Unauthorized', '403');
  t.equal(store.requestCounts().read, 1, '403 is not retried');
  t.notMatch(denied.message, /ABCDEFSECRET/, 'a signature echoed by the service is scrubbed');
  await rejectsKind(t, store.readRange('gone', 0, 10), 'NotFound', '404');
  await rejectsKind(t, store.setMetadata('bad', { a: '1' }), 'Invalid', '400');
  const before = store.requestCounts();
  const err = await rejectsKind(t, store.upload('u', { data: Buffer.from('abc') }, { metadata: {} }), 'Transient', '500 on commit');
  t.same(delta(before, store.requestCounts()), { stageBlock: 1, commitBlockList: 1 }, 'a commit that may have happened is not retried');
  t.match(err.message, /rid-1/, 'the request id is in the message');
  const r0 = store.requestCounts().read ?? 0;
  await rejectsKind(t, store.readRange('other', 0, 10), 'Transient', '500 on read');
  t.equal((store.requestCounts().read ?? 0) - r0, 3, 'an idempotent read is retried');
  const c0 = store.requestCounts();
  await rejectsKind(t, store.upload('c', { data: Buffer.from('abc') }, { metadata: {}, ifMatch: '"0x1"' }), 'Transient', '500 on a conditional commit');
  t.same(delta(c0, store.requestCounts()), { stageBlock: 1, commitBlockList: 3 }, 'a conditional commit is retried: a repeat fails its condition, never overwrites');
});

t.test('azure: secrets never appear in errors', async (t) => {
  const port = await findFreePort();
  const key = Buffer.from('this is a very secret account key!').toString('base64');
  const cs = `DefaultEndpointsProtocol=http;AccountName=acct;AccountKey=${key};BlobEndpoint=http://127.0.0.1:${port}/acct;`;
  const keyStore = createAzureStore({ container: 'c', connectionString: cs, retries: 0, env: {} });
  const sig = 'SUPERSECRETSIGNATURE0123456789abcdef%3D';
  const sasStore = createAzureStore({
    container: 'c',
    account: 'acct',
    sasToken: `?sv=2022-11-02&ss=b&srt=sco&sp=rl&se=2099-01-01T00:00:00Z&sig=${sig}`,
    blobEndpoint: `http://127.0.0.1:${port}/acct`,
    retries: 0,
    env: {},
  });
  for (const [label, store, secret] of [
    ['key', keyStore, key],
    ['sas', sasStore, sig],
  ] as const) {
    t.notMatch(store.description, secret, `${label}: description`);
    for (const call of [() => store.head('a/b'), () => store.readRange('a', 0, 5), () => listAll(store)]) {
      const err = await rejectsKind(t, call(), 'Transient', `${label}: refused`);
      const texts = [err.message, describeError(err), inspect(err, { depth: 10 }), String(err.stack), JSON.stringify(err)];
      for (const text of texts) t.notOk(text.includes(secret) || text.includes('SUPERSECRET'), `${label}: no secret in ${text.slice(0, 60)}…`);
    }
  }
  // A wrong key against the real Azurite: Unauthorized, and the key is not in the message.
  const wrong = Buffer.from('wrong key wrong key wrong key wrong key').toString('base64');
  const bad = createAzureStore({
    container: 'container',
    account: EMULATOR_ACCOUNT,
    accountKey: wrong,
    blobEndpoint: azurite.blobEndpoint,
    retries: 0,
    env: {},
  });
  const err = await rejectsKind(t, bad.head('x'), 'Unauthorized', 'wrong key');
  t.notOk(describeError(err).includes(wrong));
});

t.test('azure: a block corrupted on its way to the service is refused (Md5Mismatch) and sent again', async (t) => {
  const proxy = await startFaultProxy(azurite.port, azurite.connectionString);
  t.teardown(() => proxy.close());
  const store = await withContainer(t, { connectionString: proxy.connectionString }, { retryBaseMs: 10 });
  const data = randomBytes(3000);
  const flipped = proxy.inject({ op: 'stageBlock', fault: { kind: 'flipRequest', at: 100 }, times: 1 });
  const r = await store.upload('flip.bin', { data }, { metadata: {}, blockSize: 1024 });
  t.equal(flipped.applied, 1, 'one block was corrupted in flight');
  t.equal(r.contentMd5, md5Of(data));
  t.ok((await readAll(await store.readRange('flip.bin', 0, undefined))).equals(data), 'the blob holds the bytes sent, not the flipped ones');
  t.equal(store.requestCounts().stageBlock, 4, 'the refused block was staged again');
});

t.test('azure: a persistent emulator keeps blobs across restarts', async (t) => {
  const dataDir = t.testdir({});
  let emu = await startAzurite({ dataDir });
  try {
    const store = createAzureStore({ container: 'keep', connectionString: emu.connectionString, env: {} });
    await store.createContainer();
    await put(store, 'k', 'kept', { a: '1' });
  } finally {
    await emu.stop();
  }
  emu = await startAzurite({ dataDir });
  try {
    const store = createAzureStore({ container: 'keep', connectionString: emu.connectionString, env: {} });
    t.equal((await readAll(await store.readRange('k', 0, undefined))).toString(), 'kept');
    t.same((await store.head('k')).metadata, { a: '1' });
  } finally {
    await emu.stop();
  }
});

t.test('azure: an emulator whose port another process holds is not mistaken for ours', async (t) => {
  // A second copy of the suite may bind the port between the free-port probe and Azurite's bind: the port then
  // answers, but not from our Azurite (which exits with EADDRINUSE). Here this process is that other copy.
  const sockets = new Set<Socket>();
  const other = createNetServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  const port = await listenLoopback(other);
  t.teardown(() => closeServer(other, sockets));
  t.ok(listenerIsOurs(process.pid, port), 'this process owns its listener');
  t.notOk(listenerIsOurs(process.ppid, port), 'its parent does not');
  await t.rejects(startEmulator({ dataDir: t.testdir({}), port, inMemory: true }), /exited early .*EADDRINUSE/s, 'the other listener is not taken for Azurite');
  // Without a fixed port, startEmulator tries another one and comes up.
  const emu = await startEmulator({ dataDir: t.testdir({}), inMemory: true });
  t.teardown(() => emu.stop());
  t.ok(listenerIsOurs(emu.pid, emu.port), 'the emulator owns its port');
  t.not(emu.port, port);
});
