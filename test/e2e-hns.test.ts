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
  const r = await m.cli(['status', '--json', m.mountpoint]);
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
  t.equal(await statOf(m, 'd'), '0 0 755 directory', 'implicit directory defaults (--dir-mode 0755)');
  const facl = await m.sh('getfattr -n system.posix_acl_access "$MNT/d/f.txt"');
  t.not(facl.code, 0, 'no ACL xattr on a flat mount');
});

t.test('bad --namespace and --id-map are refused with a clear error', async (t) => {
  const bad = join(work, 'bad.map');
  writeFileSync(bad, 'user someone notanumber\n');
  await t.rejects(mountContainer(t, fake, [], ['--id-map', bad]), /bad\.map line 1: 'notanumber' is not a uid/);
  await t.rejects(mountContainer(t, fake, [], ['--namespace', 'tree']), /invalid --namespace 'tree': hns .* or flat/);
});

t.test('export on HNS: real directories and access control; a re-import shows the same tree; a renamed directory is one rename', async (t) => {
  const m = await mountContainer(t, fake, [], ['--id-map', idMapFile]);
  const c = m.container;
  const made = await m.sh(
    'set -e; mkdir "$MNT/new"; mkdir "$MNT/new/sub"; chmod 1770 "$MNT/new/sub"; chmod 750 "$MNT/new"; ' +
      'echo hello > "$MNT/new/a.txt"; chmod 640 "$MNT/new/a.txt"; chown 1234:4321 "$MNT/new/a.txt" "$MNT/new"; ' +
      'echo deep > "$MNT/new/sub/b.txt"; chown 1500 "$MNT/new/sub/b.txt"; ln -s a.txt "$MNT/new/link"',
  );
  t.equal(made.code, 0, `local tree made (${made.stderr.trim()})`);
  const tree = ['new', 'new/sub', 'new/a.txt', 'new/sub/b.txt'];
  const local: Record<string, string> = {};
  for (const p of tree) local[p] = await statOf(m, p);
  t.same(local, { new: '1234 4321 750 directory', 'new/sub': '0 0 1770 directory', 'new/a.txt': '1234 4321 640 regular file', 'new/sub/b.txt': '1500 0 644 regular file' });

  const before = fake.requests();
  const exp = await m.cli(['export', m.mountpoint, '--json']);
  t.equal(exp.code, 0, `export ran (${exp.stderr.trim()})`);
  const delta = (op: string, since: Record<string, number>) => (fake.requests()[op] ?? 0) - (since[op] ?? 0);
  t.equal(delta('createDirectory', before), 2, 'new and new/sub created as real directories');
  t.equal(delta('setAccessControl', before), 3, 'one access-control call per uploaded file and symlink');
  t.same(fake.getPath(c, 'new'), { owner: ALICE, group: TEAM, permissions: 'rwxr-x---', resourceType: 'directory' });
  t.same(fake.getPath(c, 'new/sub'), { owner: '$superuser', group: '$superuser', permissions: 'rwxrwx--T', resourceType: 'directory' });
  t.match(fake.getPath(c, 'new/a.txt'), { owner: ALICE, group: TEAM, permissions: 'rw-r-----' });
  t.match(fake.getPath(c, 'new/sub/b.txt'), { owner: BOB_UPN, group: '$superuser', permissions: 'rw-r--r--' });
  const meta = (await m.store.head('new/a.txt')).metadata;
  t.notOk('owner' in meta || 'permissions' in meta, 'no owner/permissions metadata on HNS (the service keeps them)');
  t.ok('modtime' in meta, 'modtime still in metadata');

  // A fresh import of the same container (an empty cache) shows the same tree.
  t.equal((await m.unmount()).code, 0, 'unmounted');
  rmSync(m.cacheDir, { recursive: true, force: true });
  const again = await m.remount();
  t.equal(again.code, 0, `remounted from an empty cache (${again.stderr.trim()})`);
  for (const p of tree) t.equal(await statOf(m, p), local[p], `re-imported ${p}`);
  t.equal((await m.sh('readlink "$MNT/new/link"')).stdout.trim(), 'a.txt');

  // Renamed locally while every file is clean and archived: one rename call, no upload. A FIFO in it (local only,
  // no blob) moves with it locally and does not stop the rename.
  const mv = await m.sh('mkfifo "$MNT/new/sub/pipe" && mv "$MNT/new" "$MNT/renamed"');
  t.equal(mv.code, 0, 'renamed locally');
  const fakeBefore = fake.requests();
  const daemonBefore = await m.requests();
  const exp2 = await m.cli(['export', m.mountpoint, '--json']);
  t.equal(exp2.code, 0, `export ran (${exp2.stderr.trim()})`);
  t.match(JSON.parse(exp2.stdout), { stats: { directoriesRenamed: 1, skippedLocalOnly: 1 } });
  const daemonAfter = await m.requests();
  t.equal(delta('rename', fakeBefore), 1, 'one rename call on the service');
  t.equal((daemonAfter.rename ?? 0) - (daemonBefore.rename ?? 0), 1, 'the daemon counts one rename');
  t.equal((daemonAfter.commitBlockList ?? 0) - (daemonBefore.commitBlockList ?? 0), 0, 'no file uploaded again');
  t.equal((daemonAfter.stageBlock ?? 0) - (daemonBefore.stageBlock ?? 0), 0, 'no block staged');
  const names: string[] = [];
  for await (const page of m.store.listPages()) names.push(...page.map((b) => b.name));
  t.same(names.sort(), ['renamed', 'renamed/a.txt', 'renamed/link', 'renamed/sub', 'renamed/sub/b.txt']);
  t.match(fake.getPath(c, 'renamed/a.txt'), { owner: ALICE, permissions: 'rw-r-----' }, 'attributes moved with it');
  t.equal((await m.sh('cat "$MNT/renamed/a.txt"')).stdout, 'hello\n', 'the file reads from its new blob');
  t.equal((await m.sh('cat "$MNT/renamed/sub/b.txt"')).stdout, 'deep\n');
  const exp3 = await m.cli(['export', m.mountpoint, '--json']);
  t.equal((JSON.parse(exp3.stdout) as { stats: { directoriesRenamed: number; filesExported: number } }).stats.directoriesRenamed, 0, 'nothing left to rename');
});

t.test('export on HNS: a renamed directory whose blobs changed on the service is a conflict, not a rename', async (t) => {
  const m = await mountContainer(t, fake, [{ name: 'd/x.txt', data: 'x' }], [], async (store) => {
    store.useNamespace('hns');
    await store.hierarchicalPaths()!.createDirectory('d', { permissions: 'rwxr-x---' });
  });
  await m.store.upload('d/x.txt', { data: Buffer.from('changed elsewhere') }, { metadata: {} });
  t.equal((await m.sh('mv "$MNT/d" "$MNT/e"')).code, 0);
  const before = fake.requests();
  const exp = await m.cli(['export', m.mountpoint, '--json']);
  const job = JSON.parse(exp.stdout) as { stats: { directoriesRenamed: number; conflicts: number }; conflictPaths: string[] };
  t.equal(job.stats.directoriesRenamed, 0);
  t.equal(job.stats.conflicts, 1, 'reported as a conflict');
  t.same(job.conflictPaths, ['/e']);
  t.equal((fake.requests().rename ?? 0) - (before.rename ?? 0), 0, 'no rename sent');
  t.match(daemonLog(m), /export conflict: \/e \(renamed from d\) was not renamed on the service: d\/x\.txt changed/);
});
