// End to end, POSIX behaviours the default (libfuse3) binding gives through the blobhsm daemon on a real mount
// (what e2e-write, e2e-permissions and fuse-lowlevel do not already cover): a file created by another uid
// (runuser -u nobody on a root --allow-other mount) belongs to it, and so does its exported blob (`owner`,
// `group`); renameat2 RENAME_NOREPLACE (EEXIST, nothing changes) and RENAME_EXCHANGE (the names swap); hard links
// are one kernel inode, so a write through one name shows through the other at once (size and bytes, within the
// 60 s attribute timeout); the kernel's pages of a file go when the daemon releases it, by hsm_release (sent
// straight to the control socket, without the CLI's own page drop) or by --cache-size eviction, so the next read
// restores the file from the blob (one more blob GET) instead of being served from the page cache.
import t from 'tap';
import { chmodSync, mkdirSync } from 'node:fs';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { dirname, join } from 'node:path';
import { callDaemon } from '../src/control/client.js';
import { MountRegistry } from '../src/control/registry.js';
import { startAzurite } from './helpers/azurite.js';
import { mountContainer, type MountFixture } from './helpers/mount.js';
import { readBlob, withoutStamp } from './helpers/write-checks.js';

const azurite = await startAzurite();
t.teardown(() => azurite.stop());

const MiB = 1024 * 1024;
const released = /\(0x0000000d\) released exists archived/;
const hsmState = async (m: MountFixture, p: string) => (await m.cli(['hsm_state', p])).stdout;

/** renameat2(AT_FDCWD, from, AT_FDCWD, to, flags) from a child process: 0 or the errno. */
async function renameat2(m: MountFixture, from: string, to: string, flags: number): Promise<number> {
  const script =
    'import ctypes, sys\n' +
    'libc = ctypes.CDLL(None, use_errno=True)\n' +
    'r = libc.renameat2(-100, sys.argv[1].encode(), -100, sys.argv[2].encode(), int(sys.argv[3]))\n' +
    'print(0 if r == 0 else ctypes.get_errno())\n';
  const r = await m.sh(`python3 -c '${script}' "$MNT/${from}" "$MNT/${to}" ${flags}`);
  if (r.code !== 0) throw new Error(`python3 renameat2: ${r.stderr}`);
  return Number(r.stdout.trim());
}
const RENAME_NOREPLACE = 1;
const RENAME_EXCHANGE = 2;
const EEXIST = 17;

t.test('on one --allow-other root mount: ownership, renameat2 flags, hard links, hsm_release', async (t) => {
  const data = randomBytes(MiB);
  const m = await mountContainer(t, azurite, [{ name: 'rel.bin', data }], ['--allow-other']);
  const mnt = (p: string) => join(m.mountpoint, p);
  t.match(await m.sh('mount | grep " $MNT "'), { stdout: /max_read=1048576/ }, 'the libfuse3 binding serves it');

  // Another uid creates a file in a directory it may write.
  chmodSync(dirname(m.mountpoint), 0o755);
  mkdirSync(mnt('drop'));
  chmodSync(mnt('drop'), 0o777);
  const made = await m.sh(`runuser -u nobody -- /bin/sh -c 'echo by nobody > "$MNT/drop/mine.txt" && mkdir "$MNT/drop/sub"'`);
  t.equal(made.code, 0, made.stderr);
  for (const p of ['drop/mine.txt', 'drop/sub']) {
    const st = await stat(mnt(p));
    t.same([st.uid, st.gid], [65534, 65534], `${p} belongs to nobody`);
  }
  const exported = await m.cli(['export', m.mountpoint]);
  t.equal(exported.code, 0, exported.stderr);
  const blob = await readBlob(m.store, 'drop/mine.txt');
  t.equal(blob?.data.toString(), 'by nobody\n');
  t.match(withoutStamp(blob!.info.metadata), { owner: '65534', group: '65534' }, "the exported blob's owner and group");

  // renameat2 flags.
  await writeFile(mnt('a.txt'), 'A\n');
  await writeFile(mnt('b.txt'), 'B\n');
  const [a, b] = [(await stat(mnt('a.txt'))).ino, (await stat(mnt('b.txt'))).ino];
  t.equal(await renameat2(m, 'a.txt', 'b.txt', RENAME_NOREPLACE), EEXIST, 'RENAME_NOREPLACE onto a name: EEXIST');
  t.same([await readFile(mnt('a.txt'), 'utf8'), await readFile(mnt('b.txt'), 'utf8')], ['A\n', 'B\n'], 'nothing changed');
  t.equal(await renameat2(m, 'a.txt', 'c.txt', RENAME_NOREPLACE), 0, 'RENAME_NOREPLACE onto a free name');
  t.equal(await renameat2(m, 'c.txt', 'b.txt', RENAME_EXCHANGE), 0, 'RENAME_EXCHANGE');
  t.same([await readFile(mnt('c.txt'), 'utf8'), await readFile(mnt('b.txt'), 'utf8')], ['B\n', 'A\n'], 'the names swapped');
  t.same([(await stat(mnt('c.txt'))).ino, (await stat(mnt('b.txt'))).ino], [b, a], 'with their inodes');
  const listed = await m.sh('ls "$MNT"');
  t.notMatch(listed.stdout, /^a\.txt$/m, 'a.txt is gone');

  // Hard links: one kernel inode.
  await writeFile(mnt('one.txt'), 'first\n');
  t.equal((await m.sh('ln "$MNT/one.txt" "$MNT/two.txt"')).code, 0);
  t.equal(await readFile(mnt('two.txt'), 'utf8'), 'first\n', 'read (and cached) through the second name');
  t.equal((await stat(mnt('two.txt'))).size, 6);
  t.equal((await m.sh('echo "second, longer" >> "$MNT/one.txt"')).code, 0);
  const two = await stat(mnt('two.txt'));
  t.same([two.size, two.nlink, two.ino], [21, 2, (await stat(mnt('one.txt'))).ino], 'the other name shows the new size at once');
  t.equal(await readFile(mnt('two.txt'), 'utf8'), 'first\nsecond, longer\n', 'and the new bytes');

  // hsm_release drops the kernel's pages: the next read restores.
  t.ok((await readFile(mnt('rel.bin'))).equals(data), 'read through the kernel: the file is resident, its pages cached');
  const cached = await m.reads();
  t.ok((await readFile(mnt('rel.bin'))).equals(data));
  t.equal(await m.reads(), cached, 'a re-read is served without the blob');
  const socket = new MountRegistry(m.env.BLOBHSM_STATE_DIR!).socketPathFor(m.mountpoint);
  const answer = (await callDaemon(socket, 'hsm_request', { command: 'hsm_release', paths: ['/rel.bin'] })) as Array<{ ok: boolean }>;
  t.same(answer.map((r) => r.ok), [true], 'released by the daemon alone (no page drop by the CLI)');
  t.match(await hsmState(m, mnt('rel.bin')), released);
  t.ok((await readFile(mnt('rel.bin'))).equals(data), 'the same bytes after the release');
  t.ok((await m.reads()) > cached, 'the read after the release restored from the blob (the pages were gone)');
});

t.test('--cache-size eviction drops the kernel\'s pages of the evicted file: its next read restores', async (t) => {
  const blobs = ['a.bin', 'b.bin'].map((name) => ({ name, data: randomBytes(2 * MiB) }));
  const m = await mountContainer(t, azurite, blobs, ['--cache-size', '3M']);
  const mnt = (p: string) => join(m.mountpoint, p);
  t.ok((await readFile(mnt('a.bin'))).equals(blobs[0]!.data), 'a.bin read through the kernel');
  const before = await m.reads();
  t.ok((await readFile(mnt('a.bin'))).equals(blobs[0]!.data));
  t.equal(await m.reads(), before, 'and served from the page cache');
  t.ok((await readFile(mnt('b.bin'))).equals(blobs[1]!.data), 'b.bin: 4 MiB cached in all, over the 3 MiB bound');
  // Eviction runs after the read that went over the bound: wait until the daemon says a.bin (least recently used) went.
  for (let i = 0; i < 300 && !released.test(await hsmState(m, mnt('a.bin'))); i++) await new Promise((r) => setTimeout(r, 100));
  t.match(await hsmState(m, mnt('a.bin')), released, 'a.bin was evicted (released)');
  const evicted = await m.reads();
  t.ok((await readFile(mnt('a.bin'))).equals(blobs[0]!.data), 'the same bytes after the eviction');
  t.ok((await m.reads()) > evicted, 'read from the blob again: the kernel had no pages left');
});
