// End to end: `blobhsm mount` of a real Azurite container through a real kernel FUSE mount. Import of the blob
// encoding (stubs, metadata, implicit dirs, symlinks, collisions), the POSIX view, xattrs, lazy hydration, request
// counts, remount, and the mount command's error messages.
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { readFile, stat, readdir, readlink, open } from 'node:fs/promises';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startAzurite } from './helpers/azurite.js';
import { mountContainer, type SeedBlob } from './helpers/mount.js';

const azurite = await startAzurite();
t.teardown(() => azurite.stop());

const big = randomBytes(24 * 1024 * 1024);
// Large enough that its restore (~200 MiB/s on Azurite here) is still running when the first byte is served.
const large = randomBytes(160 * 1024 * 1024);
const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');

const tree: SeedBlob[] = [
  { name: 'dir', metadata: { hdi_isfolder: 'true', owner: '1000', group: '1000', permissions: '0750', modtime: '2024-01-02 03:04:05 +0000' } },
  { name: 'dir/a.txt', data: 'alpha\n', metadata: { owner: '1001', group: '1002', permissions: 'rw-r-----', modtime: '2023-05-06 07:08:09 +0100' } },
  { name: 'dir/sticky', metadata: { Hdi_IsFolder: 'TRUE', permissions: '1777' } },
  { name: 'implicit/deeper/file.bin', data: big },
  { name: 'large/first-byte.bin', data: large },
  { name: 'names/root-owned', data: 'r', metadata: { owner: 'root', group: 'supergroup', permissions: 'rwxrwxrwxt' } },
  { name: 'names/superuser', data: 's', metadata: { owner: '$superuser', group: 'wheel' } },
  { name: 'bad/meta', data: 'b', metadata: { owner: 'alice', permissions: '999', modtime: 'yesterday' } },
  { name: 'link', data: 'dir/a.txt', metadata: { ftype: 'LNK' } },
  { name: 'bf2link', data: 'implicit', metadata: { is_symlink: 'true' } },
  { name: 'collide', data: 'I am hidden by the directory' },
  { name: 'collide/inside', data: 'inside' },
  { name: 'weird//name', data: 'not imported' },
  { name: 'dots/ok', data: 'fine' },
  { name: 'empty.txt', data: '' },
];

const m = await mountContainer(t, azurite, tree);

t.test('the tree, attributes and symlinks are imported from blob metadata', async (t) => {
  t.same((await readdir(m.mountpoint)).sort(), ['bad', 'bf2link', 'collide', 'dir', 'dots', 'empty.txt', 'implicit', 'large', 'link', 'names']);
  const dir = await stat(join(m.mountpoint, 'dir'));
  t.ok(dir.isDirectory());
  t.equal(dir.mode & 0o7777, 0o750);
  t.equal(dir.uid, 1000);
  t.equal(dir.mtime.toISOString(), '2024-01-02T03:04:05.000Z');
  const a = await stat(join(m.mountpoint, 'dir/a.txt'));
  t.equal(a.mode & 0o7777, 0o640, 'rwx permissions');
  t.equal([a.uid, a.gid].join(':'), '1001:1002');
  t.equal(a.size, 6);
  t.equal(a.blocks, 1, 'released file shows one block');
  t.equal(a.mtime.toISOString(), '2023-05-06T06:08:09.000Z', 'lemur modtime with offset');
  t.equal((await stat(join(m.mountpoint, 'dir/sticky'))).mode & 0o7777, 0o1777, 'sticky octal, case-insensitive stub key');
  const rootOwned = await stat(join(m.mountpoint, 'names/root-owned'));
  t.equal(rootOwned.mode & 0o7777, 0o1777, 'rwx with t');
  t.equal([rootOwned.uid, rootOwned.gid].join(':'), '0:0');
  const su = await stat(join(m.mountpoint, 'names/superuser'));
  t.equal([su.uid, su.gid, su.mode & 0o7777].join(':'), '0:0:420', 'superuser/wheel → 0, default 0644');
  const bad = await stat(join(m.mountpoint, 'bad/meta'));
  t.equal([bad.uid, bad.mode & 0o7777].join(':'), '0:420', 'invalid values fall back to defaults');
  const implicit = await stat(join(m.mountpoint, 'implicit'));
  t.equal(implicit.mode & 0o7777, 0o755, 'implicit directories get 0755 (never world-writable by default)');
  t.equal(await readlink(join(m.mountpoint, 'link')), 'dir/a.txt');
  t.equal(await readlink(join(m.mountpoint, 'bf2link')), 'implicit');
  t.equal(await readFile(join(m.mountpoint, 'link'), 'utf8'), 'alpha\n', 'reading through the symlink');
  t.same(await readdir(join(m.mountpoint, 'collide')), ['inside'], 'the directory wins over the file blob');
  t.same(await readdir(join(m.mountpoint, 'dots')), ['ok']);
  t.notOk((await readdir(m.mountpoint)).includes('weird'), 'a name with an empty component is not imported');
  t.equal((await stat(join(m.mountpoint, 'empty.txt'))).blocks, 0, 'empty released file has 0 blocks');
  const ls = await m.sh('ls -l "$MNT/dir"');
  t.match(ls.stdout, /-rw-r----- 1 1001 1002 6 May\s+6\s+2023 a\.txt/);
});

t.test('inode numbers are stable and statfs answers', async (t) => {
  const first = (await stat(join(m.mountpoint, 'dir/a.txt'))).ino;
  t.ok(first > 1);
  const df = await m.sh('stat -f -c "%T %l" "$MNT"');
  t.equal(df.code, 0, df.stderr);
  t.match(df.stdout, /255/);
});

t.test('xattrs and HSM state before and after reading', async (t) => {
  const file = join(m.mountpoint, 'names/superuser');
  let attrs = await m.sh(`getfattr -d -m - "${file}"`);
  t.match(attrs.stdout, /user\.hsm\.state="released exists archived"/);
  t.match(attrs.stdout, /user\.hsm\.flags="0x0000000d"/);
  t.match(attrs.stdout, /user\.hsm\.archive_id="1"/);
  t.match(attrs.stdout, /user\.hsm\.blob="names\/superuser"/);
  t.match(attrs.stdout, /user\.hsm\.etag=".+"/);
  t.equal(await readFile(file, 'utf8'), 's');
  attrs = await m.sh(`getfattr -n user.hsm.state --only-values "${file}"`);
  t.equal(attrs.stdout, 'exists archived');
  const state = await m.cli(['hsm_state', file]);
  t.equal(state.stdout, `${file}: (0x00000009) exists archived, archive_id:1\n`);
  // Names blobhsm never has (on the libfuse3 binding answered by the addon itself) are ENODATA, like any unset one.
  for (const name of ['security.selinux', 'security.capability', 'system.posix_acl_access', 'user.other']) {
    const missing = await m.sh(`getfattr -n ${name} "${file}" 2>&1; true`);
    t.match(missing.stdout, /No such attribute/, `${name}: ENODATA`);
  }
});

t.test('one download for concurrent readers, zero requests on re-read', async (t) => {
  const file = join(m.mountpoint, 'implicit/deeper/file.bin');
  const before = await m.reads();
  // First byte: a 1-byte read returns while the restore of the rest is still running.
  const fh = await open(file, 'r');
  const one = Buffer.alloc(1);
  await fh.read(one, 0, 1, 0);
  await fh.close();
  t.equal(one[0], big[0]);
  const action = await m.cli(['hsm_action', file]);
  t.match(action.stdout, /RESTORE running \(\d+ bytes moved\)|NOOP/, 'hsm_action shows the restore (or it already finished)');
  const readers = await Promise.all([1, 2, 3, 4].map(() => readFile(file)));
  for (const r of readers) t.equal(md5(r), md5(big), 'every reader gets the whole content');
  const afterFirst = await m.reads();
  const chunks = Math.ceil(big.length / (4 * 1024 * 1024));
  t.ok(afterFirst - before <= chunks + 2, `one download for all readers: ${afterFirst - before} GETs for ${chunks} chunks`);
  t.equal((await m.cli(['hsm_state', file])).stdout, `${file}: (0x00000009) exists archived, archive_id:1\n`);
  t.equal((await stat(file)).blocks > 1, true, 'resident file shows its blocks');
  await m.sh(`cat "${file}" > /dev/null; echo 3 > /proc/sys/vm/drop_caches; cat "${file}" > /dev/null`);
  t.equal(await m.reads(), afterFirst, 'a re-read of a hydrated file makes zero requests');
});

t.test('the first byte of a large file is served while its restore is still running', async (t) => {
  const file = join(m.mountpoint, 'large/first-byte.bin');
  const fh = await open(file, 'r');
  const head = Buffer.alloc(4096);
  const started = Date.now();
  await fh.read(head, 0, head.length, 0);
  const firstByteMs = Date.now() - started;
  t.ok(head.equals(large.subarray(0, 4096)), 'the first bytes are right');
  const during = await m.sh(`getfattr -n user.hsm.state --only-values "${file}"`);
  t.equal(during.stdout, 'released exists archived', `still released after the first 4 KiB (served in ${firstByteMs} ms)`);
  const tail = Buffer.alloc(4096);
  await fh.read(tail, 0, tail.length, large.length - tail.length);
  await fh.close();
  t.ok(tail.equals(large.subarray(large.length - 4096)), 'a read far ahead is served too');
  const done = await m.cli(['hsm_restore', '--wait', file]);
  t.equal(done.code, 0, done.stderr);
  t.equal(md5(await readFile(file)), md5(large));
  t.equal((await m.cli(['hsm_state', file])).stdout, `${file}: (0x00000009) exists archived, archive_id:1\n`);
});

t.test('writes fail with EROFS on a --read-only mount', async (t) => {
  const ro = await mountContainer(t, azurite, [{ name: 'f', data: 'x' }], ['--read-only']);
  const r = await ro.sh(`echo hi > "$MNT/new"`);
  t.not(r.code, 0);
  t.match(r.stderr, /Read-only file system/);
});

t.test('remount keeps hydrated data and inode numbers', async (t) => {
  const file = join(m.mountpoint, 'implicit/deeper/file.bin');
  const ino = (await stat(file)).ino;
  t.equal((await m.unmount()).code, 0);
  const again = await m.remount();
  t.equal(again.code, 0, again.stderr);
  t.equal((await stat(file)).ino, ino, 'same inode number');
  t.equal(md5(await readFile(file)), md5(big));
  t.equal(await m.reads(), 0, 'no request after remount for hydrated data');
  t.equal((await m.requests()).list ?? 0, 0, 'the namespace is reused, not listed again');
});

t.test('mount errors give a clear message and a non-zero exit', async (t) => {
  const base = mkdtempSync(join(tmpdir(), 'blobhsm-err-'));
  const missing = await m.cli(['mount', join(base, 'nope'), '--container', m.container]);
  t.not(missing.code, 0);
  t.match(missing.stderr, /does not exist/);
  writeFileSync(join(base, 'file'), '');
  const notDir = await m.cli(['mount', join(base, 'file'), '--container', m.container]);
  t.not(notDir.code, 0);
  t.match(notDir.stderr, /not a directory/);
  const again = await m.cli(['mount', m.mountpoint, '--container', m.container]);
  t.not(again.code, 0);
  t.match(again.stderr, /already a mount point|another blobhsm daemon/);
  const empty = join(base, 'empty');
  mkdirSync(empty);
  const noContainer = await m.cli(['mount', empty, '--container', 'no-such-container']);
  t.not(noContainer.code, 0);
  t.match(noContainer.stderr, /does not exist/);
  const nonEmpty = await m.cli(['mount', base, '--container', m.container]);
  t.equal(nonEmpty.code, 4);
  t.match(nonEmpty.stderr, /mountpoint .* is not empty: use an empty directory, or pass -o nonempty/);
  const sameCache = await m.cli(['mount', empty, '--container', m.container, '--cache-dir', m.cacheDir]);
  t.not(sameCache.code, 0);
  t.match(sameCache.stderr, /another blobhsm daemon \(pid \d+\)/);
  const badKey = await m.cli(['mount', base, '--container', m.container], {});
  void badKey;
  const noCreds = await m.sh(`env -u AZURE_STORAGE_CONNECTION_STRING $BLOBHSM mount "${empty}" --container x-y-z --blob-endpoint http://127.0.0.1:1/acct`);
  t.not(noCreds.code, 0);
  t.match(noCreds.stderr, /^blobhsm: no Azure Storage account or credentials: set a connection string/, "refused before a daemon starts");
  const badName = await m.cli(['mount', empty, '--container', 'Bad_Name']);
  t.equal(badName.code, 4);
  t.match(badName.stderr, /invalid container name/);
});
