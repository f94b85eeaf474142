// End to end: the write path and export to blob through a real kernel FUSE mount on a real Azurite. POSIX writes
// (new files, modified imported files after hydration and while released, rename, mkdir, symlink, hard link,
// chmod/chown/utimens, truncate, O_TRUNC, O_APPEND), the DIRTY rules of SPEC §2, and what `blobhsm export` writes
// (SPEC §1 "Export writes": contents, every metadata key, directory stubs, symlinks, one copy per hard link);
// the editor pattern, unlinked open files, conflicts, job prefixes/concurrency/cancel, ENOSPC, big_writes.
import t, { type Test } from 'tap';
import { join } from 'node:path';
import { startAzurite } from './helpers/azurite.js';
import { mountContainer, type MountFixture } from './helpers/mount.js';
import {
  S,
  blobNames,
  expectedMetadata,
  exportJson,
  readBlob,
  states,
  withoutStamp,
} from './helpers/write-checks.js';

const azurite = await startAzurite();
t.teardown(() => azurite.stop());

/** Checks a blob's content and that its metadata is exactly what export writes for the local path. */
async function checkExported(t: Test, m: MountFixture, rel: string, content: Buffer | string, localPath = rel): Promise<void> {
  const b = await readBlob(m.store, rel);
  if (!b) return void t.fail(`blob ${rel} is missing`);
  t.equal(b.data.toString('latin1'), Buffer.from(content).toString('latin1'), `${rel}: content`);
  t.same(withoutStamp(b.info.metadata), await expectedMetadata(join(m.mountpoint, localPath)), `${rel}: metadata`);
  t.match(b.info.metadata.blobhsm_version ?? '', /^[0-9a-f-]{36}:\d+:\d+$/, `${rel}: version stamp`);
}

async function checkStub(t: Test, m: MountFixture, rel: string): Promise<void> {
  const b = await readBlob(m.store, rel);
  if (!b) return void t.fail(`directory stub ${rel} is missing`);
  t.equal(b.data.length, 0, `${rel}: stub is empty`);
  t.same(b.info.metadata, await expectedMetadata(join(m.mountpoint, rel)), `${rel}: stub metadata`);
}

t.test('writes, DIRTY rules and what export writes to blob', async (t) => {
  const m = await mountContainer(t, azurite, [
    { name: 'dir', metadata: { hdi_isfolder: 'true', owner: '1000', group: '1000', permissions: '0750', modtime: '2024-01-02 03:04:05 +0000' } },
    { name: 'dir/hydrated.txt', data: 'alpha\n', metadata: { owner: '1001', group: '1002', permissions: '0640' } },
    { name: 'dir/released.txt', data: 'beta\n', metadata: { owner: '1003', group: '1004', permissions: '0604' } },
    { name: 'meta-only.txt', data: 'm\n', metadata: { owner: '5', group: '6', permissions: '0600', modtime: '2020-01-01 00:00:00 +0000' } },
    { name: 'plain-open.txt', data: 'p\n' },
    { name: 'trunc.txt', data: '0123456789' },
    { name: 'otrunc.txt', data: 'to be replaced\n' },
    { name: 'append.txt', data: 'line1\n' },
    { name: 'renamed-src.txt', data: 'r\n' },
    { name: 'olddir/inner.txt', data: 'i\n' },
    { name: 'gone.txt', data: 'g\n' },
  ]);
  const seeded = new Map<string, string>();
  for (const name of await blobNames(m.store)) seeded.set(name, (await m.store.head(name)).etag);
  const sh = async (cmd: string) => {
    const r = await m.sh(`cd "$MNT" && ${cmd}`);
    t.equal(r.code, 0, `${cmd}: ${r.stderr}`);
    return r.stdout;
  };

  // Modify imported files: after hydration, and directly while released (the append restores first).
  t.equal(await sh('cat dir/hydrated.txt'), 'alpha\n');
  t.same(await states(m, ['dir/hydrated.txt']), { 'dir/hydrated.txt': S.CLEAN }, 'a read hydrates without dirtying');
  await sh('echo more >> dir/hydrated.txt');
  await sh('echo x >> dir/released.txt');
  t.equal(await sh('cat dir/released.txt'), 'beta\nx\n', 'the released file was restored before the append');
  // Metadata-only changes and plain opens never dirty.
  await sh('chmod 0644 meta-only.txt && chown 7:8 meta-only.txt && TZ=UTC touch -d "2001-02-03 04:05:06" meta-only.txt');
  await sh('cat plain-open.txt >/dev/null && python3 -c "open(\'plain-open.txt\', \'r+\').close()" && chmod 0600 plain-open.txt');
  // truncate(2) of a released file, O_TRUNC, O_APPEND.
  await sh('truncate -s 4 trunc.txt');
  await sh('printf new > otrunc.txt');
  await sh('echo line2 >> append.txt');
  // New files and directories, their attributes, a symlink and a hard link.
  await sh('mkdir -p new/deep/er && echo hello > new/deep/er/file.txt');
  await sh('chmod 1755 new/deep && chmod 6755 new/deep/er/file.txt && chown 1234:5678 new/deep/er/file.txt');
  await sh('TZ=UTC touch -d "2022-03-04 05:06:07" new/deep/er/file.txt');
  await sh('ln -s deep/er/file.txt new/link && ln new/deep/er/file.txt new/hard.txt');
  await sh('echo v > new/tmpname && mv new/tmpname new/final');
  // Renames of archived files and directories are metadata only; an unlink leaves the blob.
  await sh('mv renamed-src.txt renamed-dst.txt && mv olddir newdir && echo n > newdir/added.txt');
  await sh('rm gone.txt');

  t.same(
    await states(m, [
      'dir/hydrated.txt', 'dir/released.txt', 'meta-only.txt', 'plain-open.txt', 'trunc.txt', 'otrunc.txt', 'append.txt',
      'new/deep/er/file.txt', 'new/hard.txt', 'new/final', 'renamed-dst.txt', 'newdir/inner.txt', 'newdir/added.txt',
    ]),
    {
      'dir/hydrated.txt': S.DIRTY,
      'dir/released.txt': S.DIRTY,
      'meta-only.txt': S.RELEASED,
      'plain-open.txt': S.CLEAN,
      'trunc.txt': S.DIRTY,
      'otrunc.txt': S.DIRTY,
      'append.txt': S.DIRTY,
      'new/deep/er/file.txt': S.NEW,
      'new/hard.txt': S.NEW,
      'new/final': S.NEW,
      'renamed-dst.txt': S.RELEASED,
      'newdir/inner.txt': S.RELEASED,
      'newdir/added.txt': S.NEW,
    },
    'DIRTY after write+close, truncate and O_TRUNC; not after chmod/chown/utimens/open; new files 0x0',
  );
  t.same(
    await expectedMetadata(join(m.mountpoint, 'meta-only.txt')),
    { owner: '7', group: '8', permissions: '0644', modtime: '2001-02-03 04:05:06 +0000' },
    'chown, chmod and touch -d applied locally',
  );

  const first = await exportJson(m);
  t.equal(first.code, 0, JSON.stringify(first.job));
  t.equal(first.job.state, 'Succeeded');
  t.same(first.job.conflictPaths, []);
  t.same(first.job.failures, []);
  // Inodes: hydrated, released, trunc, otrunc, append, file.txt (= hard.txt), link, final, added.
  t.equal(first.job.stats.filesDiscovered, 9, 'new and content-modified files only');
  t.equal(first.job.stats.filesExported, 9);

  await checkExported(t, m, 'dir/hydrated.txt', 'alpha\nmore\n');
  await checkExported(t, m, 'dir/released.txt', 'beta\nx\n');
  await checkExported(t, m, 'trunc.txt', '0123');
  await checkExported(t, m, 'otrunc.txt', 'new');
  await checkExported(t, m, 'append.txt', 'line1\nline2\n');
  await checkExported(t, m, 'new/deep/er/file.txt', 'hello\n');
  await checkExported(t, m, 'new/hard.txt', 'hello\n');
  await checkExported(t, m, 'new/link', 'deep/er/file.txt');
  await checkExported(t, m, 'new/final', 'v\n');
  await checkExported(t, m, 'newdir/added.txt', 'n\n');
  const file = (await readBlob(m.store, 'new/deep/er/file.txt'))!.info.metadata;
  t.same(
    withoutStamp(file),
    { owner: '1234', group: '5678', permissions: '0755', modtime: '2022-03-04 05:06:07 +0000' },
    'chown in decimal, setuid/setgid dropped, lemur modtime',
  );
  t.same(withoutStamp((await readBlob(m.store, 'dir/hydrated.txt'))!.info.metadata).owner, '1001', 'imported owner kept');
  const link = (await readBlob(m.store, 'new/link'))!.info.metadata;
  t.equal(link.ftype, 'LNK');
  t.equal(link.permissions, '0777');
  for (const stub of ['new', 'new/deep', 'new/deep/er', 'newdir']) await checkStub(t, m, stub);
  t.equal((await readBlob(m.store, 'new/deep'))!.info.metadata.permissions, '1755', 'sticky bit kept on a stub');

  // Untouched: the existing stub, metadata-only changes, renamed and unlinked files (AMLFS exports no deletions).
  for (const name of ['dir', 'meta-only.txt', 'plain-open.txt', 'renamed-src.txt', 'olddir/inner.txt', 'gone.txt']) {
    t.equal((await m.store.head(name)).etag, seeded.get(name), `${name} untouched`);
  }
  t.same(
    await blobNames(m.store),
    [
      'append.txt', 'dir', 'dir/hydrated.txt', 'dir/released.txt', 'gone.txt', 'meta-only.txt', 'new', 'new/deep',
      'new/deep/er', 'new/deep/er/file.txt', 'new/final', 'new/hard.txt', 'new/link', 'newdir', 'newdir/added.txt',
      'olddir/inner.txt', 'otrunc.txt', 'plain-open.txt', 'renamed-src.txt', 'trunc.txt',
    ],
    'exactly these blobs',
  );
  t.same(
    await states(m, ['dir/hydrated.txt', 'dir/released.txt', 'trunc.txt', 'otrunc.txt', 'append.txt', 'new/deep/er/file.txt', 'new/hard.txt', 'new/final', 'newdir/added.txt']),
    Object.fromEntries(['dir/hydrated.txt', 'dir/released.txt', 'trunc.txt', 'otrunc.txt', 'append.txt', 'new/deep/er/file.txt', 'new/hard.txt', 'new/final', 'newdir/added.txt'].map((p) => [p, S.CLEAN])),
    'exists archived afterwards',
  );

  const again = await exportJson(m);
  t.equal(again.job.stats.filesDiscovered, 0, 'a second export has nothing to do');

  // A hard-linked file modified through one name: both copies are updated (If-Match on each name's etag).
  await sh('echo world >> new/hard.txt');
  t.same(await states(m, ['new/deep/er/file.txt']), { 'new/deep/er/file.txt': '(0x0000000b) exists dirty archived, archive_id:1' });
  const third = await exportJson(m);
  t.equal(third.code, 0, JSON.stringify(third.job));
  t.equal((await readBlob(m.store, 'new/deep/er/file.txt'))!.data.toString(), 'hello\nworld\n');
  t.equal((await readBlob(m.store, 'new/hard.txt'))!.data.toString(), 'hello\nworld\n');

  // A chmod after archiving is not exported (AMLFS), and does not dirty.
  await sh('chmod 0600 dir/hydrated.txt');
  t.same(await states(m, ['dir/hydrated.txt']), { 'dir/hydrated.txt': S.CLEAN });
  t.equal((await exportJson(m)).job.stats.filesDiscovered, 0);
  t.equal((await readBlob(m.store, 'dir/hydrated.txt'))!.info.metadata.permissions, '0640', 'the blob keeps the archived mode');
});
