// End to end: the write path and export to blob through a real kernel FUSE mount on a real Azurite. POSIX writes
// (new files, modified imported files after hydration and while released, rename, mkdir, symlink, hard link,
// chmod/chown/utimens, truncate, O_TRUNC, O_APPEND), the DIRTY rules of docs/SEMANTICS.md §2, and what `blobhsm export` writes
// (docs/SEMANTICS.md §1 "Export writes": contents, every metadata key, directory stubs, symlinks, one copy per hard link);
// the editor pattern, unlinked open files, conflicts, ENOSPC, big_writes, utimens. Export jobs (prefixes, one at a
// time, cancel): e2e-export-jobs.test.ts.
import t, { type Test } from 'tap';
import { readFile, readdir } from 'node:fs/promises';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startAzurite } from './helpers/azurite.js';
import { mountContainer, smallTmpfs, type MountFixture } from './helpers/mount.js';
import {
  S,
  blobNames,
  expectedMetadata,
  exportJson,
  readBlob,
  states,
  status,
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
  await sh('mkdir -p empty/sub && rmdir empty/sub && mkdir gone-dir && rmdir gone-dir');
  const notEmpty = await m.sh('rmdir "$MNT/new"');
  t.match(notEmpty.stderr, /Directory not empty/, 'rmdir of a non-empty directory: ENOTEMPTY');

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
  for (const stub of ['new', 'new/deep', 'new/deep/er', 'newdir', 'empty']) await checkStub(t, m, stub);
  t.equal((await readBlob(m.store, 'new/deep'))!.info.metadata.permissions, '1755', 'sticky bit kept on a stub');

  // Untouched: the existing stub, metadata-only changes, renamed and unlinked files (AMLFS exports no deletions).
  for (const name of ['dir', 'meta-only.txt', 'plain-open.txt', 'renamed-src.txt', 'olddir/inner.txt', 'gone.txt']) {
    t.equal((await m.store.head(name)).etag, seeded.get(name), `${name} untouched`);
  }
  t.same(
    await blobNames(m.store),
    [
      // `empty` (a directory emptied by rmdir of its only child) is exported as its stub: empty directories are kept.
      'append.txt', 'dir', 'dir/hydrated.txt', 'dir/released.txt', 'empty', 'gone.txt', 'meta-only.txt', 'new', 'new/deep',
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

t.test('the editor pattern, unlinked open files, rename over an open file, unlink and hsm_remove', async (t) => {
  const m = await mountContainer(t, azurite, [
    { name: 'doc.txt', data: 'v1\n', metadata: { owner: '1000', group: '1000', permissions: '0640' } },
    { name: 'opened.txt', data: 'old\n' },
    { name: 'keep.txt', data: 'k\n' },
    { name: 'again.txt', data: 'a1\n' },
    { name: 'del.txt', data: 'd\n' },
  ]);
  const sh = async (cmd: string) => {
    const r = await m.sh(`cd "$MNT" && ${cmd}`);
    t.equal(r.code, 0, `${cmd}: ${r.stderr}`);
    return r.stdout;
  };
  // Editor pattern: write a temporary file, rename it over the target. The new file is exported with If-Match
  // on the etag of the blob the replaced file was imported from, not reported as a conflict.
  await sh('echo v2 > .doc.txt.swp && mv .doc.txt.swp doc.txt');
  t.same(await states(m, ['doc.txt']), { 'doc.txt': S.NEW }, 'the replacement is a new file');
  // Unlink and re-create under the same name: same thing.
  await sh('rm again.txt && echo a2 > again.txt');

  // create → write → unlink → (export runs) → write → close, from a process holding the descriptor; and a rename
  // over a file another process has open (both live on without a name until closed; fuse-native's libfuse 2 hides
  // them as .fuse_hidden* instead: test/e2e-fuse2.test.ts).
  const py = [
    'import os, subprocess, sys',
    'fd = os.open("tmpfile", os.O_CREAT | os.O_WRONLY, 0o644)',
    'os.write(fd, b"scratch")',
    'os.unlink("tmpfile")',
    'rd = os.open("opened.txt", os.O_RDONLY)',
    'os.pread(rd, 100, 0)',
    'open("opened.new", "w").write("new\\n")',
    'os.rename("opened.new", "opened.txt")',
    'print(sorted(n for n in os.listdir(".") if n.startswith(".fuse_hidden")).__len__())',
    'r = subprocess.run(os.environ["BLOBHSM"].split() + ["export", os.environ["MNT"], "--json"], capture_output=True, text=True)',
    'print(r.returncode)',
    'print(r.stdout.strip())',
    'os.write(fd, b" more")',
    'print(os.pread(rd, 100, 0).decode().strip())',
    'os.close(fd)',
    'os.close(rd)',
  ].join('\n');
  const out = (await sh(`python3 -c '${py}'`)).split('\n');
  t.equal(out[0], '0', 'no .fuse_hidden names while the descriptors are open');
  t.equal(out[1], '0', 'export while they exist succeeds');
  const job = JSON.parse(out[2]!) as { stats: { filesDiscovered: number }; conflictPaths: string[] };
  t.equal(job.stats.filesDiscovered, 3, 'doc.txt, again.txt, opened.txt: never the hidden files');
  t.same(job.conflictPaths, []);
  t.equal(out[3], 'old', 'the replaced file stays readable through its open descriptor');
  t.same((await readdir(m.mountpoint)).filter((n) => n.startsWith('.fuse_hidden')), [], 'hidden files gone after close');
  t.notOk((await blobNames(m.store)).some((n) => n.includes('.fuse_hidden')), 'no .fuse_hidden blob');
  t.equal((await readBlob(m.store, 'doc.txt'))!.data.toString(), 'v2\n');
  t.equal((await readBlob(m.store, 'again.txt'))!.data.toString(), 'a2\n');
  t.equal((await readBlob(m.store, 'opened.txt'))!.data.toString(), 'new\n');
  await checkExported(t, m, 'doc.txt', 'v2\n');
  t.same(await states(m, ['doc.txt', 'again.txt', 'opened.txt']), { 'doc.txt': S.CLEAN, 'again.txt': S.CLEAN, 'opened.txt': S.CLEAN });
  t.equal(await readFile(join(m.mountpoint, 'opened.txt'), 'utf8'), 'new\n');

  // Unlink removes the local file only; hsm_remove before the unlink deletes the blob.
  await sh('rm keep.txt');
  t.ok(await readBlob(m.store, 'keep.txt'), 'unlink of an archived file leaves its blob');
  await sh('cat del.txt > /dev/null');
  const removed = await m.cli(['hsm_remove', join(m.mountpoint, 'del.txt')]);
  t.equal(removed.code, 0, removed.stderr);
  t.match((await states(m, ['del.txt']))['del.txt'], /^\(0x00000000\)/, 'hsm_remove clears the HSM flags');
  t.equal(await readBlob(m.store, 'del.txt'), undefined, 'hsm_remove deleted the blob');
  await sh('rm del.txt');
  // A file created later under the removed name is new again (If-None-Match), not a conflict.
  await sh('echo d2 > del.txt');
  const after = await exportJson(m);
  t.equal(after.code, 0, JSON.stringify(after.job));
  t.equal((await readBlob(m.store, 'del.txt'))!.data.toString(), 'd2\n');
  t.equal((await exportJson(m)).job.stats.filesDiscovered, 0, 'deletions are not exported');
  t.ok(await readBlob(m.store, 'keep.txt'), 'the unlinked file\'s blob is still there');
});

t.test('conflicts: a blob changed behind the mount\'s back is reported and left untouched', async (t) => {
  const m = await mountContainer(t, azurite, [{ name: 'c1.txt', data: 'orig\n' }, { name: 'ok.txt', data: 'fine\n' }]);
  await m.sh('cd "$MNT" && echo local >> c1.txt && echo local > c2.txt && echo more >> ok.txt');
  // Someone else writes c1.txt and creates c2.txt after the import.
  await m.store.upload('c1.txt', { data: Buffer.from('remote\n') }, { metadata: { owner: '42' } });
  await m.store.upload('c2.txt', { data: Buffer.from('remote2\n') }, { metadata: {} });
  const before = { c1: await readBlob(m.store, 'c1.txt'), c2: await readBlob(m.store, 'c2.txt') };

  const r = await m.cli(['export', m.mountpoint]);
  t.not(r.code, 0, 'export exits non-zero on a conflict');
  t.match(r.stdout, /conflicts 2/);
  t.match(r.stdout, /^conflict: \/c1\.txt /m, 'the conflict is reported by name');
  t.match(r.stdout, /^conflict: \/c2\.txt /m, 'a new file over a blob created meanwhile (If-None-Match)');
  const c1 = await readBlob(m.store, 'c1.txt');
  t.equal(c1!.data.toString(), 'remote\n', 'their content is untouched');
  t.equal(c1!.info.etag, before.c1!.info.etag, 'their etag is untouched');
  t.same(c1!.info.metadata, { owner: '42' });
  t.equal((await readBlob(m.store, 'c2.txt'))!.info.etag, before.c2!.info.etag);
  t.equal((await readBlob(m.store, 'ok.txt'))!.data.toString(), 'fine\nmore\n', 'the other files are exported');
  t.same(
    await states(m, ['c1.txt', 'c2.txt', 'ok.txt']),
    { 'c1.txt': S.DIRTY, 'c2.txt': S.EXISTS, 'ok.txt': S.CLEAN },
    'the conflicting files are not archived (a new file keeps EXISTS from the dispatch, as in Lustre)',
  );
  t.equal(await readFile(join(m.mountpoint, 'c1.txt'), 'utf8'), 'orig\nlocal\n', 'the local data is intact');
  const json = await exportJson(m);
  t.equal(json.job.state, 'Failed');
  t.same(json.job.conflictPaths.sort(), ['/c1.txt', '/c2.txt'], 'a retry reports them again');
  t.equal(json.job.stats.conflicts, 2);
});

t.test('big_writes: 1 MiB writes do not arrive as 4 KiB WRITE requests; sequential reads are large too', async (t) => {
  const m = await mountContainer(t, azurite, []);
  const io = async () => (await status(m)).io as { readOps: number; readBytes: number; writeOps: number; writeBytes: number };
  const before = await io();
  const started = process.hrtime.bigint();
  const w = await m.sh('dd if=/dev/zero of="$MNT/big.bin" bs=1M count=64 conv=fsync status=none');
  const writeMs = Number(process.hrtime.bigint() - started) / 1e6;
  t.equal(w.code, 0, w.stderr);
  const mid = await io();
  const ops = mid.writeOps - before.writeOps;
  const bytes = mid.writeBytes - before.writeBytes;
  t.equal(bytes, 64 * 1048576, 'every byte arrived');
  const avg = bytes / ops;
  t.ok(avg >= 64 * 1024, `average WRITE ${Math.round(avg / 1024)} KiB over ${ops} requests (4 KiB without big_writes)`);
  t.comment(`dd write of 64 MiB: ${writeMs.toFixed(0)} ms (${(64 / (writeMs / 1000)).toFixed(0)} MiB/s), ${ops} WRITE requests, avg ${Math.round(avg / 1024)} KiB`);

  await m.sh('echo 3 > /proc/sys/vm/drop_caches');
  const r = await m.sh('dd if="$MNT/big.bin" of=/dev/null bs=1M status=none');
  t.equal(r.code, 0, r.stderr);
  const after = await io();
  const rops = after.readOps - mid.readOps;
  const ravg = (after.readBytes - mid.readBytes) / rops;
  t.equal(after.readBytes - mid.readBytes, 64 * 1048576);
  t.ok(ravg >= 64 * 1024, `average READ ${Math.round(ravg / 1024)} KiB over ${rops} requests`);

  const exportStart = Date.now();
  const e = await exportJson(m);
  const exportMs = Date.now() - exportStart;
  t.equal(e.code, 0);
  t.comment(`export of 64 MiB: ${exportMs} ms (${(64 / (exportMs / 1000)).toFixed(0)} MiB/s, CLI round trip included)`);
});

t.test('a full cache filesystem is ENOSPC for the writer, and the mount stays usable', { skip: process.getuid?.() === 0 ? false : 'needs root to mount a tmpfs' }, async (t) => {
  const tmpfs = smallTmpfs(t, '16m', 'small');
  if ('error' in tmpfs) return void t.plan(0, tmpfs.error);
  const cacheDir = join(tmpfs.dir, 'cache');
  const m = await mountContainer(t, azurite, [], ['--cache-dir', cacheDir]);
  const full = await m.sh('dd if=/dev/zero of="$MNT/full.bin" bs=1M count=32');
  t.not(full.code, 0);
  t.match(full.stderr, /No space left on device/, 'the writer sees ENOSPC');
  // The reserve is the metadata store's: a new file (its commits) still fits; its data may not (the writer took
  // the room above the reserve, up to what is left after its last whole MiB).
  const small = await m.sh(': > "$MNT/small.txt" && ls "$MNT"');
  t.equal(small.stdout, 'full.bin\nsmall.txt\n', `a new file is still created: the metadata store kept room (${small.stderr})`);
  // rm starts the delete of the cache file (the kernel forgets the inode later, on its own): the mount's statfs and
  // the writes right behind it find the room. The small one goes through dd, which names the errno of a failed
  // write (dash's echo says "I/O error" for any, ENOSPC included).
  const rm = await m.sh('rm "$MNT/full.bin" && stat -f -c "%a %S" "$MNT" && echo small | dd of="$MNT/small.txt" status=none && dd if=/dev/zero of="$MNT/again.bin" bs=1M count=8 status=none && cat "$MNT/small.txt"');
  t.equal(rm.code, 0, `rm frees the space for new writes: ${rm.stderr}`);
  const [room, content] = rm.stdout.split('\n');
  const [blocks, blockSize] = (room ?? '').split(' ').map(Number);
  t.ok(blocks! * blockSize! >= 9 * 1048576, `statfs after rm shows the room (${blocks! * blockSize!} bytes free)`);
  t.equal(content, 'small', 'small.txt holds what was written');
  t.same(await states(m, ['small.txt', 'again.bin']), { 'small.txt': S.NEW, 'again.bin': S.NEW });
  const e = await exportJson(m);
  t.equal(e.code, 0);
  t.equal((await readBlob(m.store, 'again.bin'))!.data.length, 8 * 1048576);
  await m.unmount();
});

t.test('utimens: touch -m/-a (UTIME_OMIT), utimensat with both times and nanoseconds, UTIME_NOW; cp -p reaches the exported modtime', async (t) => {
  const m = await mountContainer(t, azurite, []);
  const times = async (name = 'f') => (await m.sh(`stat -c "%.9X %.9Y" "$MNT/${name}"`)).stdout.trim();
  await m.sh('echo x > "$MNT/f"');
  await m.sh('TZ=UTC touch -d "2001-02-03 04:05:06" "$MNT/f"');
  t.equal(await times(), '981173106.000000000 981173106.000000000', 'touch -d sets both times');
  await m.sh('TZ=UTC touch -m -d "2011-01-01 00:00:00" "$MNT/f"');
  t.equal(await times(), '981173106.000000000 1293840000.000000000', 'touch -m sets the mtime only (atime UTIME_OMIT)');
  await m.sh('TZ=UTC touch -a -d "2012-01-01 00:00:00" "$MNT/f"');
  t.equal(await times(), '1325376000.000000000 1293840000.000000000', 'touch -a sets the atime only');
  await m.sh(`python3 -c 'import os; os.utime(os.environ["MNT"] + "/f", ns=(1000000000123456789, 1200000000987654321))'`);
  const [a, mt] = (await times()).split(' ').map(Number);
  // Times are kept as a double of milliseconds: nanoseconds survive to a fraction of a microsecond.
  t.ok(Math.abs(a! - 1000000000.123456789) < 1e-6 && Math.abs(mt! - 1200000000.987654321) < 1e-6, `utimensat(a, m) with nanoseconds: ${a} ${mt}`);
  const before = Date.now() / 1000 - 5;
  await m.sh('touch "$MNT/f"');
  const [na, nm] = (await times()).split(' ').map(Number);
  t.ok(na! > before && nm! > before, 'touch (UTIME_NOW) sets both to now');
  t.same(await states(m, ['f']), { f: S.NEW }, 'utimens never dirties');
  // cp -p / rsync -t / tar keep the source's mtime: it reaches the blob's modtime.
  const src = join(mkdtempSync(join(tmpdir(), 'blobhsm-cp-')), 'src');
  await m.sh(`echo data > "${src}" && TZ=UTC touch -a -d "2019-09-09 09:09:09" "${src}" && TZ=UTC touch -m -d "2018-08-08 08:08:08" "${src}" && cp -p "${src}" "$MNT/copied"`);
  t.equal((await times('copied')).split(' ')[1], '1533715688.000000000', 'cp -p keeps the source mtime (not its atime)');
  t.equal((await exportJson(m)).code, 0);
  t.equal((await readBlob(m.store, 'copied'))!.info.metadata.modtime, '2018-08-08 08:08:08 +0000', 'the exported modtime is the source mtime');
  rmSync(join(src, '..'), { recursive: true, force: true });
});

t.test('a directory renamed away and re-created: its old blobs are reused or protected', async (t) => {
  const m = await mountContainer(t, azurite, [
    { name: 'proj/a.txt', data: 'A\n' },
    { name: 'proj/b.txt', data: 'B\n' },
  ]);
  const w = await m.sh('cd "$MNT" && cat proj/a.txt >/dev/null && mv proj proj.old && mkdir proj && echo new-a > proj/a.txt && echo new-b > proj/b.txt');
  t.equal(w.code, 0, w.stderr);
  const r = await m.cli(['export', m.mountpoint]);
  t.not(r.code, 0);
  t.match(r.stdout, /^conflict: \/proj\/b\.txt \(not overwritten: .*only copy of a released file/m);
  // proj/a.txt: its old file (now proj.old/a.txt) is resident, so the blob is taken over with If-Match, and the
  // old file, whose archive copy that was, becomes dirty to be exported under its new name.
  t.equal((await readBlob(m.store, 'proj/a.txt'))!.data.toString(), 'new-a\n');
  t.same(await states(m, ['proj/a.txt', 'proj.old/a.txt']), { 'proj/a.txt': S.CLEAN, 'proj.old/a.txt': S.DIRTY });
  // proj/b.txt holds the only copy of the released proj.old/b.txt: not overwritten.
  t.equal((await readBlob(m.store, 'proj/b.txt'))!.data.toString(), 'B\n');
  t.same(await states(m, ['proj/b.txt', 'proj.old/b.txt']), { 'proj/b.txt': S.EXISTS, 'proj.old/b.txt': S.RELEASED });
  // Once the old file is restored (resident), the new one can take the name over.
  t.equal((await m.cli(['hsm_restore', '--wait', join(m.mountpoint, 'proj.old/b.txt')])).code, 0);
  const again = await exportJson(m);
  t.equal(again.code, 0, JSON.stringify(again.job));
  t.equal((await readBlob(m.store, 'proj/b.txt'))!.data.toString(), 'new-b\n');
  t.equal((await readBlob(m.store, 'proj.old/a.txt'))!.data.toString(), 'A\n');
  t.same(await states(m, ['proj.old/b.txt']), { 'proj.old/b.txt': S.DIRTY }, 'proj.old/b.txt lost its copy: dirty now');
  t.equal((await exportJson(m)).job.stats.filesExported, 1, 'and the next export sends it');
  t.equal((await readBlob(m.store, 'proj.old/b.txt'))!.data.toString(), 'B\n');
  t.same(
    await states(m, ['proj/a.txt', 'proj/b.txt', 'proj.old/a.txt', 'proj.old/b.txt']),
    { 'proj/a.txt': S.CLEAN, 'proj/b.txt': S.CLEAN, 'proj.old/a.txt': S.CLEAN, 'proj.old/b.txt': S.CLEAN },
  );
});
