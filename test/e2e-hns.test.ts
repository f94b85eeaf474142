// End to end on a hierarchical-namespace account: a real kernel FUSE mount (daemon in its own process) of a
// container behind the loopback HNS fake (test/helpers/hns-fake.ts) in front of a real Azurite. stat shows the
// uid/gid/mode the service reports (`$superuser`, a mapped object ID, an unmapped one, sticky, an ACL getfacl
// shows, headers winning over metadata); a refused detection falls back to the flat rules with a log line; a flat
// Azurite mount keeps the metadata rules.
import { readdirSync, readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { startAzurite } from './helpers/azurite.js';
import { startHnsFake } from './helpers/hns-fake.js';
import { mountContainer, type MountFixture, type SeedBlob } from './helpers/mount.js';

const azurite = await startAzurite({ inMemory: true });
t.teardown(() => azurite.stop());
const fake = await startHnsFake(azurite);
t.teardown(() => fake.stop());

const ALICE = 'a11ce000-0000-4000-8000-000000000001';
const TEAM = '7ea70000-0000-4000-8000-000000000002';
const BOB_UPN = 'bob@contoso.example';
const STRANGER = '5face000-0000-4000-8000-000000000003';

const work = mkdtempSync(join(tmpdir(), 'blobhsm-hns-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));
const idMapFile = join(work, 'ids.map');
writeFileSync(idMapFile, `# test map\nuser ${ALICE} 1234\nuser ${BOB_UPN} 1500\ngroup ${TEAM} 4321\nuser * 65534\ngroup * 65533\n`);

async function statOf(m: MountFixture, rel: string): Promise<string> {
  const r = await m.sh(`stat -c '%u %g %a %F' "$MNT/${rel}"`);
  return r.code === 0 ? r.stdout.trim() : `stat failed: ${r.stderr.trim()}`;
}

function daemonLog(m: MountFixture): string {
  const dir = join(m.env.BLOBHSM_STATE_DIR!, 'logs');
  return readdirSync(dir)
    .map((f) => readFileSync(join(dir, f), 'utf8'))
    .join('\n');
}

async function status(m: MountFixture): Promise<{ namespace: { kind: string; how: string } }> {
  const r = await m.cli(['status', m.mountpoint]);
  return JSON.parse(r.stdout) as { namespace: { kind: string; how: string } };
}

const blobs: SeedBlob[] = [
  { name: 'proj/root.txt', data: 'root' },
  { name: 'proj/mapped.txt', data: 'mapped', metadata: { owner: '77', group: '88', permissions: '0600' } },
  { name: 'proj/upn.txt', data: 'upn' },
  { name: 'proj/stranger.txt', data: 'unmapped' },
  { name: 'proj/acl.txt', data: 'acl' },
  { name: 'proj/link', data: 'root.txt', metadata: { ftype: 'LNK' } },
];

t.test('HNS mount: attributes from the service, ids through the map, ACL as system.posix_acl_access', async (t) => {
  const m = await mountContainer(t, fake, blobs, ['--id-map', idMapFile], async (store) => {
    store.useNamespace('hns');
    const paths = store.hierarchicalPaths()!;
    await paths.createDirectory('proj', { owner: ALICE, group: TEAM, permissions: 'rwxr-x---' });
    await paths.createDirectory('proj/shared', { owner: '$superuser', group: '$superuser', permissions: 'rwxrwxrwt' });
    const c = store.container;
    fake.setPath(c, 'proj/root.txt', { owner: '$superuser', group: '$superuser', permissions: 'rw-r-----' });
    fake.setPath(c, 'proj/mapped.txt', { owner: ALICE, group: TEAM, permissions: 'rw-rw-r--' });
    fake.setPath(c, 'proj/upn.txt', { owner: BOB_UPN, group: TEAM, permissions: 'rw-------' });
    fake.setPath(c, 'proj/stranger.txt', { owner: STRANGER, group: STRANGER, permissions: 'rw-r--r--' });
    fake.setPath(c, 'proj/acl.txt', {
      owner: ALICE,
      group: TEAM,
      permissions: 'rw-rw----+',
      acl: `user::rw-,user:${BOB_UPN}:rw-,user:${STRANGER}:r--,group::r--,mask::rw-,other::---`,
    });
  });
  t.same((await status(m)).namespace, { kind: 'hns', how: 'detected' }, 'status says HNS (detected)');
  t.equal(await statOf(m, 'proj'), '1234 4321 750 directory', 'a real directory with its own attributes, no stub');
  t.equal(await statOf(m, 'proj/shared'), '0 0 1777 directory', 'sticky from rwxrwxrwt');
  t.equal(await statOf(m, 'proj/root.txt'), '0 0 640 regular file', '$superuser is 0');
  t.equal(await statOf(m, 'proj/mapped.txt'), '1234 4321 664 regular file', 'mapped object IDs; the headers win over metadata');
  t.equal(await statOf(m, 'proj/upn.txt'), '1500 4321 600 regular file', 'a mapped UPN');
  t.equal(await statOf(m, 'proj/stranger.txt'), '65534 65533 644 regular file', 'unmapped: the map\'s defaults');
  t.equal(await statOf(m, 'proj/acl.txt'), '1234 4321 660 regular file', 'group bits are the mask');
  t.match(await statOf(m, 'proj/link'), /symbolic link$/, 'symlinks as on flat accounts');
  t.equal((await m.sh('readlink "$MNT/proj/link"')).stdout.trim(), 'root.txt');

  const facl = await m.sh('getfacl -n "$MNT/proj/acl.txt"');
  t.equal(facl.code, 0, `getfacl runs (${facl.stderr.trim()})`);
  const lines = facl.stdout.split('\n').filter((l) => l && !l.startsWith('#'));
  t.same(lines, ['user::rw-', 'user:1500:rw-', 'group::r--', 'mask::rw-', 'other::---'], 'the access ACL (the unmapped named entry dropped)');
  const plain = await m.sh('getfacl -n "$MNT/proj/root.txt"');
  t.same(plain.stdout.split('\n').filter((l) => l && !l.startsWith('#')), ['user::rw-', 'group::r--', 'other::---'], 'no extended ACL: from the mode');

  const log = daemonLog(m);
  const strangerWarnings = log.split('\n').filter((l) => l.includes(STRANGER) && l.includes('not in the id map'));
  t.equal(strangerWarnings.length, 2, 'one warning per unknown identity (as user and as group), not one per entry');
});

t.test('refused detection: flat rules, a log line; --namespace hns forces HNS', async (t) => {
  fake.refuseAccountInfo = true;
  t.teardown(() => void (fake.refuseAccountInfo = false));
  const flat = await mountContainer(t, fake, [{ name: 'd/f.txt', data: 'x', metadata: { owner: '77', permissions: '0600' } }], [], (store) =>
    fake.setPath(store.container, 'd/f.txt', { owner: ALICE, permissions: 'rw-r--r--' }),
  );
  t.same((await status(flat)).namespace, { kind: 'flat', how: 'fallback' });
  t.match(daemonLog(flat), /namespace: getAccountInfo was refused .*using the flat rules.*--namespace hns/);
  t.equal(await statOf(flat, 'd/f.txt'), '77 0 600 regular file', 'metadata rules');

  const forced = await mountContainer(t, fake, [{ name: 'd/f.txt', data: 'x', metadata: { owner: '77', permissions: '0600' } }], ['--namespace', 'hns', '--id-map', idMapFile], (store) =>
    fake.setPath(store.container, 'd/f.txt', { owner: ALICE, group: '$superuser', permissions: 'rw-r--r--' }),
  );
  t.same((await status(forced)).namespace, { kind: 'hns', how: 'forced' });
  t.equal(await statOf(forced, 'd/f.txt'), '1234 0 644 regular file', 'HNS rules when forced');
});

t.test('a flat Azurite mount is unchanged', async (t) => {
  const m = await mountContainer(t, azurite, [{ name: 'd/f.txt', data: 'x', metadata: { owner: '77', group: '5', permissions: '0600' } }]);
  t.same((await status(m)).namespace, { kind: 'flat', how: 'detected' });
  t.equal(await statOf(m, 'd/f.txt'), '77 5 600 regular file');
  t.equal(await statOf(m, 'd'), '0 0 777 directory', 'implicit directory defaults');
  const facl = await m.sh('getfattr -n system.posix_acl_access "$MNT/d/f.txt"');
  t.not(facl.code, 0, 'no ACL xattr on a flat mount');
});

t.test('bad --namespace and --id-map are refused with a clear error', async (t) => {
  const bad = join(work, 'bad.map');
  writeFileSync(bad, 'user someone notanumber\n');
  await t.rejects(mountContainer(t, fake, [], ['--id-map', bad]), /bad\.map line 1: 'notanumber' is not a uid/);
  await t.rejects(mountContainer(t, fake, [], ['--namespace', 'tree']), /invalid --namespace 'tree': hns .* or flat/);
});
