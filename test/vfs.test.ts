// Vfs semantics on the real stack (MemoryBlobStore, in-memory MetaStore, DataCache in a temp dir), no kernel mount.
import t from 'tap';
import { md5Of } from '../src/blob/content-md5.js';
import { randomBytes } from 'node:crypto';
import { BlobError, FsError, type FsErrorCode } from '../src/errors.js';
import { HsmFlag } from '../src/hsm/flags.js';
import { decideImport } from '../src/jobs/decide-import.js';
import { importNamespace } from '../src/namespace/importer.js';
import { Vfs } from '../src/vfs/vfs.js';
import { makeStack, O_RDONLY, O_RDWR, O_TRUNC, O_WRONLY, type TestStack, type TestStackOptions } from './helpers/stack.js';

const KiB = 1024;
const MT = '2024-01-02 03:04:05 +0000';
const MT_MS = Date.UTC(2024, 0, 2, 3, 4, 5);
const BIG = randomBytes(300 * KiB);

const { EXISTS, DIRTY, RELEASED, ARCHIVED } = HsmFlag;
const IMPORTED = RELEASED | EXISTS | ARCHIVED; // 0x0d
const RESTORED = EXISTS | ARCHIVED; // 0x09
const MODIFIED = EXISTS | DIRTY | ARCHIVED; // 0x0b

const BLOBS: TestStackOptions['blobs'] = {
  'top.txt': 'hello world',
  dir: { metadata: { hdi_isfolder: 'true', owner: '1234', group: '55', permissions: '0750', modtime: MT } },
  'dir/file.bin': { data: BIG, metadata: { owner: '42', group: '43', permissions: '0600', modtime: MT } },
  'dir/sub/deep.txt': 'deep',
  'implicit/x': 'x',
  link: { data: 'top.txt', metadata: { ftype: 'LNK' } },
  'empty.txt': '',
};

interface Tap {
  teardown(fn: () => void | Promise<void>): void;
}

async function stack(t: Tap, extra: TestStackOptions = {}): Promise<TestStack> {
  const s = await makeStack({ blobs: BLOBS, hydrator: { chunkSize: 64 * KiB, firstChunkSize: 16 * KiB }, ...extra });
  t.teardown(() => s.cleanup());
  return s;
}

/** Asserts the promise rejects with an FsError of this code. */
async function rejectsCode(t: Tap & { fail(m: string): void; pass(m: string): void }, p: Promise<unknown>, code: FsErrorCode, what: string) {
  try {
    await p;
    t.fail(`${what}: expected ${code}, it succeeded`);
  } catch (err) {
    if (err instanceof FsError && err.code === code) t.pass(`${what}: ${code}`);
    else t.fail(`${what}: expected FsError ${code}, got ${err instanceof FsError ? `FsError ${err.code}` : String(err)}`);
  }
}

const reads = (s: TestStack) => s.store.requestCounts().read ?? 0;
const totalRequests = (s: TestStack) => Object.values(s.store.requestCounts()).reduce((a, b) => a + b, 0);

t.test('getattr, readdir, readlink and xattrs of an imported tree', async (t) => {
  const s = await stack(t);
  s.store.resetCounts();
  const root = await s.vfs.getattr('/');
  t.equal(root.mode & 0o170000, 0o040000, 'root is a directory');

  t.same((await s.vfs.readdir('/')).names, ['.', '..', 'dir', 'empty.txt', 'implicit', 'link', 'top.txt']);
  t.same((await s.vfs.readdir('/dir')).names, ['.', '..', 'file.bin', 'sub']);
  const listing = await s.vfs.readdir('/dir');
  t.equal(listing.stats[2]!.size, BIG.length, 'readdir carries stats');

  const top = await s.vfs.getattr('/top.txt');
  t.match(top, { mode: 0o100644, size: 11, blocks: 1, nlink: 1, uid: 0, gid: 0, blksize: 4096 });
  t.equal((await s.vfs.getattr('/empty.txt')).blocks, 0, 'a released empty file has no blocks');

  const dir = await s.vfs.getattr('/dir');
  t.match(dir, { mode: 0o040750, uid: 1234, gid: 55, mtime: MT_MS, atime: MT_MS, ctime: MT_MS });
  const file = await s.vfs.getattr('/dir/file.bin');
  t.match(file, { mode: 0o100600, uid: 42, gid: 43, size: BIG.length, blocks: 1, mtime: MT_MS });
  t.equal((await s.vfs.getattr('/implicit')).mode, 0o040755, 'an implicit directory gets 0755 (the default, never world-writable)');

  const link = await s.vfs.getattr('/link');
  t.match(link, { mode: 0o120777, size: 7 });
  t.equal(await s.vfs.readlink('/link'), 'top.txt');
  await rejectsCode(t, s.vfs.readlink('/top.txt'), 'EINVAL', 'readlink of a file');
  await rejectsCode(t, s.vfs.getattr('/nope'), 'ENOENT', 'getattr of a missing path');
  await rejectsCode(t, s.vfs.readdir('/top.txt'), 'ENOTDIR', 'readdir of a file');

  const x = async (p: string, n: string) => (await s.vfs.getxattr(p, n))?.toString() ?? null;
  t.equal(await x('/top.txt', 'user.hsm.state'), 'released exists archived');
  t.equal(await x('/top.txt', 'user.hsm.flags'), '0x0000000d');
  t.equal(await x('/top.txt', 'user.hsm.archive_id'), '1');
  t.equal(await x('/top.txt', 'user.hsm.blob'), 'top.txt');
  t.equal(await x('/top.txt', 'user.hsm.etag'), s.inode('/top.txt').etag);
  t.match(await x('/top.txt', 'user.hsm.etag'), /^"0x/);
  t.equal(await x('/top.txt', 'user.other'), null, 'an unknown xattr is absent');
  t.equal(await x('/top.txt', 'user.hsm.md5'), md5Of(Buffer.from('hello world')), "user.hsm.md5: the blob's Content-MD5");
  t.same(await s.vfs.listxattr('/top.txt'), ['user.hsm.state', 'user.hsm.flags', 'user.hsm.archive_id', 'user.hsm.blob', 'user.hsm.etag', 'user.hsm.md5']);
  t.same(await s.vfs.listxattr('/implicit'), ['user.hsm.state', 'user.hsm.flags', 'user.hsm.archive_id'], 'no blob, no etag');
  t.equal(await x('/implicit', 'user.hsm.state'), '');
  await rejectsCode(t, s.vfs.setxattr('/top.txt', 'user.hsm.state'), 'ENOTSUP', 'setxattr');
  await rejectsCode(t, s.vfs.getxattr('/nope', 'user.hsm.state'), 'ENOENT', 'getxattr of a missing path');
  const fsStat = await s.vfs.statfs('/');
  t.equal(fsStat.namemax, 255);
  t.equal(totalRequests(s), 0, 'metadata operations send no request');
});

t.test('reading a released file restores it; the second read costs nothing', async (t) => {
  const s = await stack(t);
  s.store.resetCounts();
  const data = await s.readFile('/dir/file.bin');
  t.ok(data.equals(BIG), 'content');
  await s.settle();
  const afterFirst = s.store.requestCounts();
  t.ok((afterFirst.read ?? 0) >= 1, `restore read the blob (${JSON.stringify(afterFirst)})`);
  t.equal(afterFirst.stageBlock ?? 0, 0, 'nothing uploaded');
  t.equal(s.inode('/dir/file.bin').hsmFlags, RESTORED, 'restored: exists archived');
  t.equal((await s.vfs.getattr('/dir/file.bin')).blocks, Math.ceil(BIG.length / 512));

  s.store.resetCounts();
  t.ok((await s.readFile('/dir/file.bin')).equals(BIG));
  t.equal(totalRequests(s), 0, 'second read: zero requests');

  // A read in the middle of another released file returns exactly that range.
  s.store.resetCounts();
  const fh = await s.vfs.open('/top.txt', O_RDONLY);
  const buf = Buffer.alloc(5);
  t.equal(await s.vfs.read(fh, buf, 5, 6), 5);
  t.equal(buf.toString(), 'world');
  t.equal(await s.vfs.read(fh, buf, 5, 11), 0, 'read at EOF');
  await s.vfs.release(fh);
  await s.settle();
  t.equal(s.inode('/top.txt').hsmFlags, RESTORED);
  t.ok(reads(s) >= 1);

  // An empty released file reads as empty without a download.
  s.store.resetCounts();
  t.equal((await s.readFile('/empty.txt')).length, 0);
  t.equal(reads(s), 0);
});

t.test('a restore failure is EIO and the file stays released', async (t) => {
  const s = await stack(t);
  s.store.failNext('read', 'Transient', 100);
  await rejectsCode(t, s.readFile('/top.txt'), 'EIO', 'read with the service failing');
  await s.settle();
  t.equal(s.inode('/top.txt').hsmFlags, IMPORTED, 'still released');
  s.store.clearFaults();
  t.equal((await s.readFile('/top.txt')).toString(), 'hello world', 'the next read retries');
});

t.test('create, write, read back, flush, release', async (t) => {
  const s = await stack(t);
  s.store.resetCounts();
  const fh = await s.vfs.create('/dir/new.txt', 0o640);
  t.match(await s.vfs.getattr('/dir/new.txt'), { mode: 0o100640, size: 0, uid: 1000, gid: 1000, nlink: 1 });
  t.equal(await s.vfs.write(fh, Buffer.from('abc'), 3, 0), 3);
  t.equal(await s.vfs.write(fh, Buffer.from('XYZ'), 3, 5), 3);
  t.equal((await s.vfs.getattr('/dir/new.txt')).size, 8, 'size visible before flush');
  const buf = Buffer.alloc(16);
  t.equal(await s.vfs.read(fh, buf, 16, 0), 8, 'read through the writing handle');
  t.same(buf.subarray(0, 8), Buffer.from('abc\0\0XYZ'));
  await s.vfs.flush(fh);
  t.equal(s.inode('/dir/new.txt').size, 8, 'flush persists the size');
  await s.vfs.fsync(fh);
  await s.vfs.release(fh);
  t.equal((await s.readFile('/dir/new.txt')).toString(), 'abc\0\0XYZ');
  t.equal(s.inode('/dir/new.txt').hsmFlags, 0, 'a new file has no HSM state');
  t.equal(totalRequests(s), 0, 'local writes send no request');
  await rejectsCode(t, s.vfs.create('/dir/new.txt', 0o644), 'EEXIST', 'create of an existing name');

  // O_RDWR on the new file: write in the middle, read-back.
  const fh2 = await s.vfs.open('/dir/new.txt', O_RDWR);
  await s.vfs.write(fh2, Buffer.from('--'), 2, 3);
  await s.vfs.release(fh2);
  t.equal((await s.readFile('/dir/new.txt')).toString(), 'abc--XYZ');
  t.equal(s.inode('/dir/new.txt').hsmFlags, 0);
});

t.test('truncate and O_TRUNC of released files', async (t) => {
  const s = await stack(t);
  s.store.resetCounts();
  await s.vfs.truncate('/top.txt', 0);
  t.equal(totalRequests(s), 0, 'truncate to 0 of a released file needs no download');
  t.equal(s.inode('/top.txt').hsmFlags, MODIFIED, 'truncated: exists dirty archived');
  t.equal((await s.vfs.getattr('/top.txt')).size, 0);
  t.equal((await s.readFile('/top.txt')).length, 0);

  s.store.resetCounts();
  const fh = await s.vfs.open('/dir/file.bin', O_WRONLY | O_TRUNC);
  t.equal(totalRequests(s), 0, 'O_TRUNC open of a released file needs no download');
  t.equal(s.inode('/dir/file.bin').hsmFlags, MODIFIED);
  await s.vfs.write(fh, Buffer.from('new'), 3, 0);
  await s.vfs.release(fh);
  t.equal((await s.readFile('/dir/file.bin')).toString(), 'new');
  t.equal(totalRequests(s), 0);

  s.store.resetCounts();
  await s.vfs.truncate('/dir/sub/deep.txt', 2);
  t.ok(reads(s) >= 1, 'truncate to a non-zero size restores first');
  t.equal((await s.readFile('/dir/sub/deep.txt')).toString(), 'de');
  t.equal(s.inode('/dir/sub/deep.txt').hsmFlags, MODIFIED);
  await s.vfs.truncate('/dir/sub/deep.txt', 5);
  t.same(await s.readFile('/dir/sub/deep.txt'), Buffer.from('de\0\0\0'), 'growing fills with zeros');

  const fh3 = await s.vfs.create('/f', 0o644);
  await s.vfs.write(fh3, Buffer.from('0123456789'), 10, 0);
  await s.vfs.ftruncate(fh3, 4);
  t.equal((await s.vfs.getattr('/f')).size, 4, 'ftruncate through the writing handle');
  await s.vfs.release(fh3);
  t.equal((await s.readFile('/f')).toString(), '0123');
  await rejectsCode(t, s.vfs.truncate('/dir', 0), 'EISDIR', 'truncate of a directory');
  await rejectsCode(t, s.vfs.truncate('/nope', 0), 'ENOENT', 'truncate of a missing file');
});

t.test('truncate to 0 after a failed restore leaves no cache data behind', async (t) => {
  const s = await stack(t);
  const before = s.inode('/dir/file.bin');
  let n = 0;
  s.store.beforeOp = (op) => {
    if (op === 'read' && ++n > 2) throw new BlobError('Transient', 'injected');
  };
  await rejectsCode(t, s.readFile('/dir/file.bin'), 'EIO', 'a restore failing part way');
  await s.settle();
  s.store.beforeOp = undefined;
  t.ok(await s.cache.exists(before.ino, before.generation), 'the partial restore left data');
  await s.vfs.truncate('/dir/file.bin', 0);
  const after = s.inode('/dir/file.bin');
  t.equal(after.generation, before.generation + 1);
  t.notOk(await s.cache.exists(before.ino, before.generation), 'the old generation is dropped');
  t.equal(s.cache.bytesUsed(), 0, 'and no longer counted');
});

t.test('a read racing a truncate to 0 of the released file it restores sees the truncated file', async (t) => {
  const s = await stack(t);
  const before = s.inode('/dir/file.bin');
  let unblock!: () => void;
  const blocked = new Promise<void>((r) => (unblock = r));
  let reading!: () => void;
  const reached = new Promise<void>((r) => (reading = r));
  s.store.beforeOp = async (op) => {
    if (op !== 'read') return;
    reading();
    await blocked;
  };
  const fh = await s.vfs.open('/dir/file.bin', O_RDONLY);
  const read = s.vfs.read(fh, Buffer.alloc(4096), 4096, 0);
  await reached;
  await s.vfs.truncate('/dir/file.bin', 0);
  unblock();
  t.equal(await read, 0, 'the reader gets EOF, not EIO');
  await s.vfs.release(fh);
  await s.settle();
  s.store.beforeOp = undefined;
  const after = s.inode('/dir/file.bin');
  t.equal(after.hsmFlags, MODIFIED);
  t.equal(after.size, 0);
  t.notOk(await s.cache.exists(before.ino, before.generation), 'the cancelled restore left no cache file behind');
  t.ok(await s.cache.exists(after.ino, after.generation));
  t.equal((await s.readFile('/dir/file.bin')).length, 0);
});

t.test('a truncate to 0 cancelling a restore before it created its cache file leaves none', async (t) => {
  const s = await stack(t);
  const before = s.inode('/dir/file.bin');
  const fh = await s.vfs.open('/dir/file.bin', O_RDONLY);
  const read = s.vfs.read(fh, Buffer.alloc(4096), 4096, 0);
  await s.vfs.truncate('/dir/file.bin', 0);
  t.equal(await read, 0);
  await s.vfs.release(fh);
  await s.settle();
  t.notOk(await s.cache.exists(before.ino, before.generation), 'no cache file under the dropped generation');
});

t.test('truncate of a released file larger than the cache limit is not undone by eviction', async (t) => {
  const s = await stack(t, { cacheSizeLimit: 64 * KiB });
  await s.vfs.truncate('/dir/file.bin', 400 * KiB);
  await s.settle();
  t.equal(s.inode('/dir/file.bin').hsmFlags, MODIFIED, 'resident and dirty, not evicted between restore and truncate');
  const expected = Buffer.concat([BIG, Buffer.alloc(100 * KiB)]);
  t.ok((await s.readFile('/dir/file.bin')).equals(expected), 'the truncated content');
  await s.vfs.release(await s.vfs.open('/top.txt', O_RDONLY));
  await s.settle();
  t.equal(s.inode('/dir/file.bin').hsmFlags, MODIFIED, 'a dirty file is never evicted');
});

t.test('a write to a released file restores it first', async (t) => {
  const s = await stack(t);
  s.store.resetCounts();
  await s.writeFile('/dir/file.bin', 'ZZZ', 1000);
  t.ok(reads(s) >= 1, 'the blob was read');
  const expected = Buffer.from(BIG);
  expected.write('ZZZ', 1000);
  t.ok((await s.readFile('/dir/file.bin')).equals(expected), 'the rest of the file is the blob');
  t.equal(s.inode('/dir/file.bin').hsmFlags, MODIFIED);
  t.equal(s.inode('/dir/file.bin').size, BIG.length);

  // Appending past the end of a released file.
  await s.writeFile('/top.txt', '!', 11);
  t.equal((await s.readFile('/top.txt')).toString(), 'hello world!');

  // A failing restore fails the write and changes nothing.
  s.store.failNext('read', 'Transient', 100);
  await rejectsCode(t, s.writeFile('/dir/sub/deep.txt', 'x'), 'EIO', 'write with the restore failing');
  t.equal(s.inode('/dir/sub/deep.txt').hsmFlags, IMPORTED, 'still released, not dirty');
  s.store.clearFaults();
});

t.test('DIRTY rules: only content changes of archived files dirty them', async (t) => {
  const s = await stack(t);
  await s.readFile('/top.txt');
  await s.readFile('/dir/sub/deep.txt');
  await s.settle();
  t.equal(s.inode('/top.txt').hsmFlags, RESTORED);

  const v0 = s.inode('/top.txt').dataVersion;
  await s.vfs.chmod('/top.txt', 0o600);
  await s.vfs.chown('/top.txt', 7, 8);
  await s.vfs.chown('/top.txt', -1, 0xffffffff);
  await s.vfs.utimens('/top.txt', 1000, 2000);
  for (const flags of [O_RDONLY, O_WRONLY, O_RDWR]) await s.vfs.release(await s.vfs.open('/top.txt', flags));
  await s.readFile('/top.txt');
  const top = s.inode('/top.txt');
  t.equal(top.hsmFlags, RESTORED, 'chmod, chown, utimens, open and read do not dirty');
  t.equal(top.dataVersion, v0, 'nor change the data version');
  t.match(top, { mode: 0o600, uid: 7, gid: 8, atimeMs: 1000, mtimeMs: 2000 });

  // Metadata changes of a released file do not restore it either.
  s.store.resetCounts();
  await s.vfs.chmod('/implicit/x', 0o640);
  await s.vfs.release(await s.vfs.open('/implicit/x', O_RDWR));
  t.equal(s.inode('/implicit/x').hsmFlags, IMPORTED);
  t.equal(totalRequests(s), 0);

  await s.writeFile('/top.txt', 'J');
  t.equal(s.inode('/top.txt').hsmFlags, MODIFIED, 'a write dirties');
  t.ok(s.inode('/top.txt').dataVersion > v0, 'and bumps the data version');
  await s.vfs.truncate('/dir/sub/deep.txt', 1);
  t.equal(s.inode('/dir/sub/deep.txt').hsmFlags, MODIFIED, 'a truncate dirties');

  await s.createFile('/new', 'data');
  t.equal(s.inode('/new').hsmFlags, 0, 'a new file stays 0x0 after writes');
  await s.vfs.truncate('/new', 1);
  t.equal(s.inode('/new').hsmFlags, 0, 'and after a truncate');
});

t.test('rename', async (t) => {
  const s = await stack(t);
  const ino = s.inode('/top.txt').ino;
  await s.vfs.rename('/top.txt', '/dir/renamed.txt');
  await rejectsCode(t, s.vfs.getattr('/top.txt'), 'ENOENT', 'the old name is gone');
  t.equal((await s.vfs.getattr('/dir/renamed.txt')).ino, ino, 'same inode');
  t.equal((await s.readFile('/dir/renamed.txt')).toString(), 'hello world', 'a renamed released file still restores');

  await s.vfs.rename('/dir', '/dir2');
  t.equal((await s.readFile('/dir2/sub/deep.txt')).toString(), 'deep', 'children move with their directory');
  t.same((await s.vfs.readdir('/')).names, ['.', '..', 'dir2', 'empty.txt', 'implicit', 'link']);

  // Replacing a target drops its inode and cache data.
  await s.createFile('/a', 'AAA');
  await s.createFile('/b', 'BBBB');
  const b = s.inode('/b');
  t.ok(await s.cache.exists(b.ino, b.generation));
  await s.vfs.rename('/a', '/b');
  t.equal((await s.readFile('/b')).toString(), 'AAA');
  await rejectsCode(t, s.vfs.getattr('/a'), 'ENOENT', 'the source name is gone');
  t.equal(s.meta.get(b.ino), undefined, 'the replaced inode is gone');
  t.notOk(await s.cache.exists(b.ino, b.generation), 'and its cache file');

  await s.vfs.mkdir('/empty', 0o755);
  await s.vfs.rename('/empty', '/dir2/sub/empty');
  t.equal((await s.vfs.getattr('/dir2/sub/empty')).mode, 0o040755);
  await s.vfs.mkdir('/e2', 0o755);
  await s.vfs.rename('/e2', '/dir2/sub/empty');
  t.ok(await s.vfs.getattr('/dir2/sub/empty'), 'a directory replaces an empty directory');

  await rejectsCode(t, s.vfs.rename('/dir2', '/dir2/sub/x'), 'EINVAL', 'a directory into itself');
  await rejectsCode(t, s.vfs.rename('/dir2', '/dir2/x'), 'EINVAL', 'a directory into itself (direct child)');
  await rejectsCode(t, s.vfs.rename('/implicit', '/dir2'), 'ENOTEMPTY', 'over a non-empty directory');
  await rejectsCode(t, s.vfs.rename('/b', '/dir2'), 'EISDIR', 'a file over a directory');
  await rejectsCode(t, s.vfs.rename('/implicit', '/b'), 'ENOTDIR', 'a directory over a file');
  await rejectsCode(t, s.vfs.rename('/nope', '/x'), 'ENOENT', 'a missing source');
  await rejectsCode(t, s.vfs.rename('/b', '/nodir/x'), 'ENOENT', 'into a missing directory');
  await rejectsCode(t, s.vfs.rename('/b', '/b/x'), 'ENOTDIR', 'under a file');
  await s.vfs.rename('/b', '/b');
  t.equal((await s.readFile('/b')).toString(), 'AAA', 'rename onto itself changes nothing');
});

t.test('unlink, rmdir, mkdir, hard links, symlinks', async (t) => {
  const s = await stack(t);
  await s.createFile('/f', 'content');
  const f = s.inode('/f');
  await s.vfs.link('/f', '/dir/hl');
  t.equal((await s.vfs.getattr('/f')).nlink, 2);
  t.equal((await s.vfs.getattr('/dir/hl')).ino, f.ino);
  await s.writeFile('/dir/hl', 'C');
  t.equal((await s.readFile('/f')).toString(), 'Content', 'both names see the same data');
  await s.vfs.unlink('/f');
  t.equal((await s.vfs.getattr('/dir/hl')).nlink, 1);
  t.equal((await s.readFile('/dir/hl')).toString(), 'Content', 'data survives while a name is left');
  t.ok(await s.cache.exists(f.ino, f.generation));
  await s.vfs.unlink('/dir/hl');
  t.equal(s.meta.get(f.ino), undefined, 'the last unlink deletes the inode');
  t.notOk(await s.cache.exists(f.ino, f.generation), 'and drops its cache file');

  // Unlinking a restored file drops its cache data too.
  await s.readFile('/top.txt');
  await s.settle();
  const top = s.inode('/top.txt');
  t.ok(await s.cache.exists(top.ino, top.generation));
  await s.vfs.unlink('/top.txt');
  t.notOk(await s.cache.exists(top.ino, top.generation));
  t.ok(s.store.getData('top.txt'), 'unlink does not delete the blob');

  await rejectsCode(t, s.vfs.unlink('/dir'), 'EISDIR', 'unlink of a directory');
  await rejectsCode(t, s.vfs.unlink('/nope'), 'ENOENT', 'unlink of a missing file');
  await rejectsCode(t, s.vfs.rmdir('/dir'), 'ENOTEMPTY', 'rmdir of a non-empty directory');
  await rejectsCode(t, s.vfs.rmdir('/link'), 'ENOTDIR', 'rmdir of a symlink');
  await rejectsCode(t, s.vfs.rmdir('/nope'), 'ENOENT', 'rmdir of a missing directory');
  await rejectsCode(t, s.vfs.link('/dir', '/dirlink'), 'EPERM', 'a hard link to a directory');
  await rejectsCode(t, s.vfs.link('/link', '/dir'), 'EEXIST', 'a hard link onto an existing name');

  await s.vfs.mkdir('/m', 0o2750);
  t.match(await s.vfs.getattr('/m'), { mode: 0o042750, uid: 1000, gid: 1000, nlink: 2 });
  await s.vfs.mkdir('/m/n', 0o755);
  t.equal((await s.vfs.getattr('/m')).nlink, 3, 'a subdirectory links its parent');
  await rejectsCode(t, s.vfs.mkdir('/m', 0o755), 'EEXIST', 'mkdir of an existing name');
  await rejectsCode(t, s.vfs.mkdir('/nope/n', 0o755), 'ENOENT', 'mkdir in a missing directory');
  await s.vfs.rmdir('/m/n');
  await s.vfs.rmdir('/m');
  await rejectsCode(t, s.vfs.getattr('/m'), 'ENOENT', 'rmdir removed it');

  await s.vfs.symlink('../some/target', '/dir/sl');
  t.equal(await s.vfs.readlink('/dir/sl'), '../some/target');
  t.match(await s.vfs.getattr('/dir/sl'), { mode: 0o120777, size: 14 });
  t.equal(s.inode('/dir/sl').hsmFlags, 0);
  await rejectsCode(t, s.vfs.symlink('x', '/dir/sl'), 'EEXIST', 'symlink onto an existing name');
  await s.vfs.unlink('/dir/sl');
  await rejectsCode(t, s.vfs.readlink('/dir/sl'), 'ENOENT', 'unlinked symlink');
});

t.test('an unlink the kernel still references: the delete of its data starts at the unlink (what comes behind it finds the room), the record goes at forget', async (t) => {
  const s = await stack(t);
  await s.createFile('/full.bin', Buffer.alloc(256 * KiB, 7));
  const { ino, generation } = s.inode('/full.bin');
  s.inodes.remember(ino); // the kernel's reference from a lookup: FUSE forgets it later, on its own
  const used = s.cache.bytesUsed();
  t.ok(used >= 256 * KiB);
  await s.vfs.unlink('/full.bin');
  // Before, the delete started only at the forget, which the kernel sends after the unlink was answered: a write
  // right after `rm` of the file that filled the cache disk found no room (ENOSPC, "echo: I/O error" in dash).
  await s.inodes.statfs(); // waits for the deletes under way, as a write short of room does
  t.notOk(await s.cache.exists(ino, generation), 'the cache file was deleted, with no forget yet');
  t.equal(s.cache.bytesUsed(), used - 256 * KiB, 'its bytes are free');
  t.match(await s.inodes.getattr(ino), { ino, nlink: 0 }, 'the record stays while the kernel references it');
  await rejectsCode(t, s.inodes.open(ino, O_RDONLY), 'ENOENT', 'an open that raced the unlink finds the file gone');
  await rejectsCode(t, s.inodes.setattr(ino, { size: 0 }), 'ENOENT', 'so does a truncate (no cache file is made again)');
  t.notOk(await s.cache.exists(ino, generation));
  await s.inodes.forget(ino, 1);
  t.equal(s.meta.get(ino), undefined, 'forgotten: the record goes');
});

t.test('a file unlinked while open: readable through its handle, its data goes at the last release, its record at forget', async (t) => {
  const s = await stack(t);
  await s.createFile('/open.txt', 'still here\n');
  const { ino, generation } = s.inode('/open.txt');
  s.inodes.remember(ino);
  const fh = await s.inodes.open(ino, O_RDONLY);
  await s.vfs.unlink('/open.txt');
  t.ok(await s.cache.exists(ino, generation), 'open: its data stays');
  const buf = Buffer.alloc(64);
  const n = await s.inodes.read(fh, buf, 64, 0);
  t.equal(buf.subarray(0, n).toString(), 'still here\n', 'and reads through the handle');
  const again = await s.inodes.open(ino, O_RDONLY);
  await s.inodes.release(again);
  await s.inodes.release(fh);
  t.notOk(await s.cache.exists(ino, generation), 'the last release deletes it, though the kernel still references the inode');
  t.match(await s.inodes.getattr(ino), { nlink: 0 });
  await s.inodes.forget(ino, 1);
  t.equal(s.meta.get(ino), undefined);
});

t.test('a read-only mount refuses every change with EROFS', async (t) => {
  const s = await stack(t, { readOnly: true });
  const ops: Array<[string, () => Promise<unknown>]> = [
    ['create', () => s.vfs.create('/n', 0o644)],
    ['mkdir', () => s.vfs.mkdir('/n', 0o755)],
    ['unlink', () => s.vfs.unlink('/top.txt')],
    ['rmdir', () => s.vfs.rmdir('/implicit')],
    ['rename', () => s.vfs.rename('/top.txt', '/n')],
    ['chmod', () => s.vfs.chmod('/top.txt', 0o600)],
    ['chown', () => s.vfs.chown('/top.txt', 1, 1)],
    ['utimens', () => s.vfs.utimens('/top.txt', 1, 1)],
    ['truncate', () => s.vfs.truncate('/top.txt', 0)],
    ['symlink', () => s.vfs.symlink('x', '/n')],
    ['link', () => s.vfs.link('/top.txt', '/n')],
    ['open O_WRONLY', () => s.vfs.open('/top.txt', O_WRONLY)],
    ['open O_RDWR', () => s.vfs.open('/top.txt', O_RDWR)],
    ['open O_TRUNC', () => s.vfs.open('/top.txt', O_RDONLY | O_TRUNC)],
  ];
  for (const [name, op] of ops) await rejectsCode(t, op(), 'EROFS', name);
  t.equal(s.inode('/top.txt').hsmFlags, IMPORTED, 'nothing changed');
  t.equal((await s.readFile('/top.txt')).toString(), 'hello world', 'reads (and restores) still work');
});

t.test('errors are FsErrors with the right codes', async (t) => {
  const s = await stack(t);
  await rejectsCode(t, s.vfs.open('/dir', O_RDONLY), 'EISDIR', 'open of a directory');
  await rejectsCode(t, s.vfs.open('/nope', O_RDONLY), 'ENOENT', 'open of a missing file');
  await rejectsCode(t, s.vfs.read(999, Buffer.alloc(1), 1, 0), 'EBADF', 'read of a bad handle');
  await rejectsCode(t, s.vfs.release(999), 'EBADF', 'release of a bad handle');
  const fh = await s.vfs.open('/top.txt', O_RDONLY);
  await rejectsCode(t, s.vfs.write(fh, Buffer.from('x'), 1, 0), 'EBADF', 'write through a read-only handle');
  await s.vfs.release(fh);
  await rejectsCode(t, s.vfs.create('/nope/f', 0o644), 'ENOENT', 'create in a missing directory');
  await rejectsCode(t, s.vfs.create('/top.txt/f', 0o644), 'ENOTDIR', 'create under a file');
  await rejectsCode(t, s.vfs.create('/' + 'x'.repeat(256), 0o644), 'ENAMETOOLONG', 'a name over 255 bytes');
  t.equal(s.inode('/top.txt').hsmFlags, IMPORTED, 'a refused write did not restore or dirty');
});

t.test('lookup answers null for a missing name and errors only for a bad directory or name', async (t) => {
  const s = await stack(t);
  const root = s.inodes.inodeAt('/');
  const dir = s.inodes.inodeAt('/dir');
  t.equal(await s.inodes.lookup(root, 'nope'), null, 'a missing name is null, not an error');
  t.equal(await s.inodes.lookup(dir, '.file.bin.XyZ123'), null, "rsync's temporary name before its create");
  t.equal((await s.inodes.lookup(dir, 'file.bin'))!.ino, s.inode('/dir/file.bin').ino);
  await rejectsCode(t, s.inodes.lookup(s.inodes.inodeAt('/top.txt'), 'x'), 'ENOTDIR', 'a lookup under a file');
  await rejectsCode(t, s.inodes.lookup(root, 'x'.repeat(256)), 'ENAMETOOLONG', 'a name over 255 bytes');
  await rejectsCode(t, s.inodes.lookup(999_999, 'x'), 'ENOENT', 'a lookup in a gone directory');
  await s.createFile('/dir/new.txt', 'new\n');
  t.equal((await s.inodes.lookup(dir, 'new.txt'))!.size, 4, 'a name created since is found');
});

t.test('changelog records of namespace changes', async (t) => {
  const s = await stack(t);
  s.meta.registerChangelogReader();
  await s.createFile('/c', 'x');
  await s.vfs.mkdir('/d', 0o755);
  await s.vfs.rename('/c', '/d/c');
  await s.vfs.truncate('/d/c', 0);
  await s.vfs.utimens('/d/c', 1, 1);
  await s.vfs.unlink('/d/c');
  await s.vfs.unlink('/top.txt');
  await s.vfs.rmdir('/d');
  const recs = s.meta.readChangelog(0, 100);
  t.same(
    recs.map((r) => r.type),
    ['CREAT', 'CLOSE', 'MKDIR', 'RENME', 'TRUNC', 'MTIME', 'UNLNK', 'UNLNK', 'RMDIR'],
  );
  const unl = recs.filter((r) => r.type === 'UNLNK');
  t.equal(unl[0]!.flags, 0x1, 'last link of a never-archived file');
  t.equal(unl[1]!.flags, 0x3, 'last link of an archived file');
});

// ---- POSIX conformance found by an external suite on a real mount --------------------------------------------

t.test('a name component over 255 bytes is ENAMETOOLONG on every path operation', async (t) => {
  const s = await stack(t);
  const long = 'x'.repeat(256);
  const ops: Array<[string, () => Promise<unknown>]> = [
    ['getattr', () => s.vfs.getattr(`/${long}`)],
    ['getattr below', () => s.vfs.getattr(`/${long}/f`)],
    ['chmod', () => s.vfs.chmod(`/${long}`, 0o600)],
    ['chown', () => s.vfs.chown(`/${long}`, 1, 1)],
    ['utimens', () => s.vfs.utimens(`/${long}`, 1, 1)],
    ['truncate', () => s.vfs.truncate(`/${long}`, 0)],
    ['open', () => s.vfs.open(`/${long}`, O_RDONLY)],
    ['readdir', () => s.vfs.readdir(`/${long}`)],
    ['readlink', () => s.vfs.readlink(`/${long}`)],
    ['unlink', () => s.vfs.unlink(`/${long}`)],
    ['unlink below', () => s.vfs.unlink(`/dir/${long}`)],
    ['rmdir', () => s.vfs.rmdir(`/${long}`)],
    ['mkdir', () => s.vfs.mkdir(`/${long}`, 0o755)],
    ['create', () => s.vfs.create(`/dir/${long}`, 0o644)],
    ['rename from', () => s.vfs.rename(`/${long}`, '/x')],
    ['rename to', () => s.vfs.rename('/top.txt', `/${long}`)],
    ['link from', () => s.vfs.link(`/${long}`, '/x')],
    ['link to', () => s.vfs.link('/top.txt', `/${long}`)],
    ['symlink', () => s.vfs.symlink('t', `/${long}`)],
    ['getxattr', () => s.vfs.getxattr(`/${long}`, 'user.hsm.state')],
  ];
  for (const [name, op] of ops) await rejectsCode(t, op(), 'ENAMETOOLONG', name);
  await rejectsCode(t, s.vfs.getattr(`/${'x'.repeat(255)}`), 'ENOENT', 'a 255-byte name is allowed (and missing)');
  t.ok(await s.vfs.getattr('/top.txt'), 'nothing changed');
});

t.test('ctime changes on unlink, rename over, link, chmod, chown and truncate', async (t) => {
  const s = await stack(t);
  await s.createFile('/a', 'aaa');
  await s.vfs.link('/a', '/b');
  await s.createFile('/c', 'ccc');
  await s.vfs.link('/c', '/c2');
  const ino = s.inode('/a').ino;
  const cIno = s.inode('/c').ino;
  const ops: Array<[string, number, () => Promise<void>]> = [
    ['unlink of one of two names', ino, () => s.vfs.unlink('/b')],
    ['link', ino, () => s.vfs.link('/a', '/b')],
    ['rename over a name of a linked file (the replaced file)', cIno, () => s.vfs.rename('/b', '/c2')],
    ['rename (the moved file)', ino, () => s.vfs.rename('/c2', '/d')],
    ['chmod', ino, () => s.vfs.chmod('/a', 0o600)],
    ['chown', ino, () => s.vfs.chown('/a', 7, 7)],
    ['truncate', ino, () => s.vfs.truncate('/a', 1)],
  ];
  for (const [what, which, op] of ops) {
    // An old ctime first, so any update shows without depending on the clock's resolution.
    s.meta.update(which, { ctimeMs: 1 });
    await op();
    t.ok(s.meta.get(which)!.ctimeMs > 1, `${what} updates the ctime`);
  }
});

t.test("rsync's requests on a new file: its first write, a chmod to the mode and ctime it has, and a directory's second touch in a millisecond commit nothing", async (t) => {
  const s = await stack(t);
  let clock = Date.UTC(2026, 0, 1);
  const vfs = new Vfs({ meta: s.meta, cache: s.cache, coordinator: s.coordinator, changelog: s.changelog, readOnly: false, now: () => clock });
  const updates: string[] = [];
  const update = s.meta.update.bind(s.meta);
  s.meta.update = ((ino, patch, o) => {
    updates.push(Object.keys(patch).filter((k) => patch[k as keyof typeof patch] !== undefined).join(','));
    return update(ino, patch, o);
  }) as typeof s.meta.update;
  const dir = s.inode('/dir').ino;
  const { fh, stat } = await vfs.create(dir, 'new', 0o600, { uid: 1, gid: 1 });
  const ino = stat.ino;
  updates.length = 0;
  t.match(await vfs.setattr(ino, { mode: 0o600 }, fh), { mode: 0o100600, ctime: clock });
  t.same(updates, [], 'a chmod to the mode it was created with, in the millisecond of its create: nothing changes, no commit');
  t.equal(await vfs.write(fh, Buffer.from('abc'), 3, 0), 3);
  t.same(updates, [], 'the first write of a file created here commits nothing (its create was its first version)');
  await vfs.flush(fh);
  t.same(updates, ['size,mtimeMs,ctimeMs'], 'flush persists its size and mtime');
  clock += 1;
  updates.length = 0;
  t.match(await vfs.setattr(ino, { mode: 0o600 }, fh), { ctime: clock });
  t.same(updates, ['mode,ctimeMs'], 'a millisecond later the same chmod changes its ctime: committed');
  await vfs.setattr(ino, { mode: 0o644 }, fh);
  await vfs.setattr(ino, { uid: 1, gid: 1 }, fh);
  t.same(updates, ['mode,ctimeMs', 'mode,ctimeMs'], 'a new mode is committed; a chown to its own owner in the same millisecond is not');
  await vfs.release(fh);
  t.match(s.meta.get(ino), { mode: 0o644, size: 3, ctimeMs: clock, dataVersion: 1, hsmFlags: 0 });
  t.equal((await s.readFile('/dir/new')).toString(), 'abc');

  // An archive between the create and the first write settles the change: the write then records a new version.
  const { fh: fh2, stat: other } = await vfs.create(dir, 'archived-empty', 0o644, { uid: 1, gid: 1 });
  await s.coordinator.request('ARCHIVE', other.ino).done;
  t.equal(s.meta.get(other.ino)!.hsmFlags & ARCHIVED, ARCHIVED, 'archived while empty and open');
  await vfs.write(fh2, Buffer.from('data'), 4, 0);
  await vfs.release(fh2);
  t.match(s.meta.get(other.ino), { dataVersion: 2, hsmFlags: MODIFIED }, 'the write after the archive made it dirty, a new version');

  // The directory's times: written once per millisecond however many creates and renames change it.
  clock += 1;
  updates.length = 0;
  const a = await vfs.create(dir, '.a.tmp', 0o600, { uid: 1, gid: 1 });
  t.same(updates, ['mtimeMs,ctimeMs'], 'the first create of the millisecond touches the directory');
  const b = await vfs.create(dir, '.b.tmp', 0o600, { uid: 1, gid: 1 });
  await vfs.rename(dir, '.a.tmp', dir, 'a');
  t.same(updates, ['mtimeMs,ctimeMs', 'ctimeMs'], 'a second create and a rename in the same millisecond write only the renamed file');
  clock += 1;
  await vfs.rename(dir, '.b.tmp', dir, 'b');
  t.same(updates.slice(2), ['ctimeMs', 'mtimeMs,ctimeMs'], 'a rename a millisecond later touches it again');
  t.match(s.meta.get(dir), { mtimeMs: clock, ctimeMs: clock });
  await vfs.release(a.fh);
  await vfs.release(b.fh);
});

t.test('readdir lists . and .. first, with the directory and its parent', async (t) => {
  const s = await stack(t);
  const root = await s.vfs.readdir('/');
  t.same(root.names.slice(0, 2), ['.', '..']);
  t.equal(root.stats[0]!.ino, 1, '. of the root is the root');
  t.equal(root.stats[1]!.ino, 1, '.. of the root is the root');
  const sub = await s.vfs.readdir('/dir/sub');
  t.same(sub.names.slice(0, 2), ['.', '..']);
  t.equal(sub.stats[0]!.ino, s.inode('/dir/sub').ino);
  t.equal(sub.stats[1]!.ino, s.inode('/dir').ino, '.. is the parent');
  t.equal((await s.vfs.readdir('/dir/sub/')).stats[1]!.ino, s.inode('/dir').ino, 'also with a trailing slash');
});

// ---- races ---------------------------------------------------------------------------------------------------

t.test('R3: create holds its file open before its first await: an import job meanwhile does not replace it', async (t) => {
  const s = await stack(t);
  // Another client's blob of the name the mount creates: OverwriteIfDirty replaces a local file never imported
  // from it, unless the file is open.
  s.store.putDirect('racing.txt', 'the other client');
  let entered!: () => void;
  const inside = new Promise<void>((r) => (entered = r));
  let letGo!: () => void;
  const gate = new Promise<void>((r) => (letGo = r));
  // create's first await: making the new file's empty cache file.
  const createEmpty = s.cache.createEmpty.bind(s.cache);
  s.cache.createEmpty = async (ino, gen) => {
    entered();
    await gate;
    return createEmpty(ino, gen);
  };
  const creating = s.vfs.create('/racing.txt', 0o644);
  await inside;
  const stats = await importNamespace({
    store: s.store,
    meta: s.meta,
    prefix: '',
    log: () => undefined,
    decide: (local, remote) => decideImport('OverwriteIfDirty', local, remote),
    isBusy: (ino) => s.coordinator.isBusy(ino),
    dropData: (ino, gen) => s.coordinator.dropData(ino, gen),
  });
  letGo();
  const fh = await creating;
  t.equal(stats.state, 'Completed');
  t.equal(await s.vfs.write(fh, Buffer.from('mine'), 4, 0), 4, 'the first write finds its file');
  await s.vfs.release(fh);
  t.equal((await s.readFile('/racing.txt')).toString(), 'mine', 'the local file was kept (busy), not replaced');
});

t.test('readdirPage: the listing in pages equals readdir, the import marker on the last page', async (t) => {
  const s = await stack(t);
  s.inodes.setRootMarkers(() => ['IMPORT_InProgress.x']);
  const whole = await s.vfs.readdir('/');
  const paged: string[] = [];
  const pages: number[] = [];
  let after: string | undefined;
  do {
    const page = await s.vfs.readdirPage('/', after, 2);
    paged.push(...page.entries.map((e) => e.name));
    pages.push(page.entries.length);
    after = page.next;
  } while (after !== undefined);
  t.same(paged, whole.names);
  t.same(whole.names, ['.', '..', 'dir', 'empty.txt', 'implicit', 'link', 'top.txt', 'IMPORT_InProgress.x']);
  t.same(pages, [4, 2, 2], 'five entries in pages of two, . and .. with the first, the marker with the last');
  t.equal((await s.vfs.readdirPage('/dir', undefined, 10)).entries[2]!.stat.size, BIG.length);
  await rejectsCode(t, s.vfs.readdirPage('/top.txt', undefined, 10), 'ENOTDIR', 'a page of a file');
});

t.test('a write that finds the cache disk full is logged once per open file, naming the file', async (t) => {
  const s = await makeStack({ blobs: { 'top.txt': 'hello world' } });
  t.teardown(() => s.cleanup());
  await s.readFile('/top.txt');
  const write = s.cache.write.bind(s.cache);
  s.cache.write = async () => {
    throw new FsError('ENOSPC', 'the cache filesystem is full');
  };
  const fh = await s.vfs.open('/top.txt', O_WRONLY);
  for (let i = 0; i < 3; i++) await rejectsCode(t, s.vfs.write(fh, Buffer.from('x'), 1, i), 'ENOSPC', `write ${i}`);
  await s.vfs.release(fh);
  const lines = s.logs.filter((l) => /ENOSPC|full/.test(l));
  t.same(lines, ['write to /top.txt failed: the cache filesystem is full'], 'one line, with the file');
  s.cache.write = write;
});

t.test('a failed restore keeps its cause\'s errno for read(2) when the reader can act on it, else EIO', async (t) => {
  const cases: Array<[string, 'Timeout' | 'Unauthorized' | 'Transient' | 'Throttled', FsErrorCode]> = [
    ['the service did not answer in time', 'Timeout', 'ETIMEDOUT'],
    ['the credentials were refused', 'Unauthorized', 'EACCES'],
    ['a transient failure', 'Transient', 'EIO'],
    ['throttled', 'Throttled', 'EIO'],
  ];
  for (const [what, kind, code] of cases) {
    const s = await stack(t);
    s.store.failNext('read', kind, 100);
    await rejectsCode(t, s.readFile('/top.txt'), code, what);
    t.equal(s.inode('/top.txt').hsmFlags, IMPORTED, 'the file stays released');
  }
});

t.test('mknod: FIFOs and sockets are local-only entries with the caller as owner; devices are refused', async (t) => {
  const s = await stack(t);
  s.store.resetCounts();
  const caller = { uid: 1234, gid: 567 };
  const v = s.inodes;
  const root = s.inode('/').ino;
  const dir = s.inode('/dir').ino;
  s.meta.registerChangelogReader();
  const fifo = await v.mknod(root, 'pipe', 0o010640, caller);
  t.match(s.meta.readChangelog(0, 10), [{ type: 'MKNOD', ino: fifo.ino, parentIno: root, name: 'pipe' }], 'a MKNOD changelog record, as Lustre writes');
  t.match(fifo, { mode: 0o010640, uid: 1234, gid: 567, nlink: 1, size: 0, blocks: 0 }, 'a FIFO: S_IFIFO, the mode given, the caller as owner');
  const sock = await v.mknod(dir, 'sock', 0o140755, caller);
  t.match(sock, { mode: 0o140755, uid: 1234, gid: 567 }, 'a socket: S_IFSOCK');
  t.equal(s.inode('/pipe').kind, 'fifo');
  t.equal(s.inode('/dir/sock').kind, 'socket');
  const regular = await v.mknod(root, 'plain', 0o100600, caller);
  t.match(regular, { mode: 0o100600, uid: 1234 }, 'a regular file through mknod is created as by create');
  t.equal(s.inode('/plain').kind, 'file');
  t.notOk(s.inodes.isOpen(regular.ino), 'and closed');

  const listing = await s.vfs.readdir('/');
  t.equal(listing.stats[listing.names.indexOf('pipe')]!.mode, 0o010640, 'readdir carries the FIFO type');
  const dirListing = await s.vfs.readdir('/dir');
  t.equal(dirListing.stats[dirListing.names.indexOf('sock')]!.mode & 0o170000, 0o140000, 'and the socket type');

  await rejectsCode(t, v.mknod(root, 'tty', 0o020600, caller), 'EPERM', 'a character device');
  await rejectsCode(t, v.mknod(root, 'disk', 0o060600, caller), 'EPERM', 'a block device');
  await rejectsCode(t, v.mknod(root, 'odd', 0o000600, caller), 'EINVAL', 'no file type');
  await rejectsCode(t, v.mknod(root, 'pipe', 0o010600, caller), 'EEXIST', 'an existing name');
  await rejectsCode(t, v.mknod(s.inode('/top.txt').ino, 'x', 0o010600, caller), 'ENOTDIR', 'in a file');
  await rejectsCode(t, s.vfs.open('/pipe', O_RDONLY), 'ENXIO', 'the kernel opens FIFOs, never blobhsm');
  await rejectsCode(t, s.vfs.truncate('/pipe', 0), 'EINVAL', 'truncate of a FIFO');

  // chmod, chown, rename, link, unlink work on them as on files, and keep the type.
  await s.vfs.chmod('/pipe', 0o600);
  await s.vfs.chown('/pipe', 42, 43);
  t.match(await s.vfs.getattr('/pipe'), { mode: 0o010600, uid: 42, gid: 43 });
  await s.vfs.rename('/pipe', '/dir/pipe2');
  await s.vfs.link('/dir/pipe2', '/pipe-link');
  t.match(await s.vfs.getattr('/pipe-link'), { mode: 0o010600, nlink: 2 });
  await s.vfs.unlink('/dir/pipe2');
  t.match(await s.vfs.getattr('/pipe-link'), { mode: 0o010600, nlink: 1 });
  await s.vfs.unlink('/dir/sock');
  await rejectsCode(t, s.vfs.getattr('/dir/sock'), 'ENOENT', 'an unlinked socket is gone');

  // Local only: no HSM state, never an export candidate, no blob; hsm_archive refuses it as lfs does.
  const kept = s.inode('/pipe-link');
  t.equal(kept.hsmFlags, 0);
  t.notOk(s.meta.exportCandidates().some((i) => i.ino === kept.ino), 'not an export candidate');
  t.same(s.meta.localOnlyInodes().map((i) => i.ino), [kept.ino], 'listed as local only');
  t.throws(() => s.coordinator.request('ARCHIVE', kept.ino), { message: /is not a regular file/ }, 'hsm_archive: not a regular file');
  t.equal(totalRequests(s), 0, 'no request reached the blob service');
});

t.test('mknod on a read-only mount is EROFS; the path view (fuse2) creates FIFOs as the daemon user', async (t) => {
  const ro = await stack(t, { readOnly: true });
  await rejectsCode(t, ro.vfs.mknod('/p', 0o010644), 'EROFS', 'read-only');
  const s = await stack(t, { owner: { uid: 77, gid: 88 } });
  await s.vfs.mknod('/p', 0o010644);
  t.match(await s.vfs.getattr('/p'), { mode: 0o010644, uid: 77, gid: 88 });
});
