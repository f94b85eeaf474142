// End to end on a real kernel mount (libfuse3 binding) and a real Azurite: direct writes, where the addon writes a
// handle's WRITEs into its cache file itself once the first write went through JavaScript. What dd writes (one
// writer, and eight at once) is what the mount reads back, what the cache file holds and what export uploads, and
// `blobhsm status` counts the direct writes; a direct write that fails in C (the cache filesystem filled behind
// the daemon's back) is ENOSPC for the writer, and once there is room again the same open file writes on. A
// write answered by the addon is seen by the stat and the read that follow it; a write-only file alone stays out
// of the kernel page cache (fincore), a reader beside it cannot map it shared, a cached reader beside a write-only
// handle sees its writes.
// Semantics without a kernel: test/direct-writes.test.ts.
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startAzurite } from './helpers/azurite.js';
import { mountContainer, smallTmpfs } from './helpers/mount.js';
import { exportJson, readBlob, status } from './helpers/write-checks.js';

const azurite = await startAzurite();
t.teardown(() => azurite.stop());

const MiB = 1 << 20;
const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');

/** md5 of every cache file (under <cache>/data/<shard>/). */
function cacheFileDigests(cacheDir: string): Set<string> {
  const data = join(cacheDir, 'data');
  const digests = new Set<string>();
  for (const shard of readdirSync(data)) for (const f of readdirSync(join(data, shard))) digests.add(md5(readFileSync(join(data, shard, f))));
  return digests;
}

const directWriteOps = async (m: Parameters<typeof status>[0]) => ((await status(m)).io as { directWriteOps: number }).directWriteOps;

t.test('what one and eight dd writers write reaches the cache file and the export, written directly', async (t) => {
  const m = await mountContainer(t, azurite, []);
  const src = mkdtempSync(join(tmpdir(), 'blobhsm-direct-src-'));
  t.teardown(() => rmSync(src, { recursive: true, force: true }));
  const big = randomBytes(8 * MiB + 12345); // a last WRITE shorter than 1 MiB
  writeFileSync(join(src, 'big.bin'), big);
  const parts = Array.from({ length: 8 }, () => randomBytes(2 * MiB));
  parts.forEach((p, i) => writeFileSync(join(src, `p${i}.bin`), p));

  const one = await m.sh(`dd if="${src}/big.bin" of="$MNT/big.bin" bs=1M conv=fsync status=none`);
  t.equal(one.code, 0, `dd: ${one.stderr}`);
  const afterOne = await directWriteOps(m);
  t.ok(afterOne >= 8, `8 of its 9 WRITEs written directly (${afterOne})`);
  const eight = await m.sh(`for i in 0 1 2 3 4 5 6 7; do dd if="${src}/p$i.bin" of="$MNT/p$i.bin" bs=1M conv=fsync status=none & done; wait`);
  t.equal(eight.code, 0, `8 parallel dd: ${eight.stderr}`);
  t.ok((await directWriteOps(m)) - afterOne >= 8, 'each of the 8 writers wrote its second MiB directly');

  t.equal(statSync(join(m.mountpoint, 'big.bin')).size, big.length, 'stat sees the whole size');
  t.equal(md5(readFileSync(join(m.mountpoint, 'big.bin'))), md5(big), 'the mount reads back what was written');
  const digests = cacheFileDigests(m.cacheDir);
  t.ok(digests.has(md5(big)), 'the cache file holds it');
  parts.forEach((p, i) => t.ok(digests.has(md5(p)), `p${i}.bin's cache file holds it`));

  const e = await exportJson(m);
  t.equal(e.code, 0, `export: ${e.stderr}`);
  t.equal(md5((await readBlob(m.store, 'big.bin'))!.data), md5(big), 'the exported blob is what was written');
  for (const [i, p] of parts.entries()) t.equal(md5((await readBlob(m.store, `p${i}.bin`))!.data), md5(p), `p${i}.bin exported`);
  t.equal((await m.unmount()).code, 0);
});

t.test('a direct write answered by the addon is seen by the next request: stat and read after each write', async (t) => {
  const m = await mountContainer(t, azurite, []);
  // Each os.write of 1 MiB after the first is written and answered in C; its report to JavaScript is queued ahead
  // of whatever the writer asks next, so a stat (GETATTR through JavaScript: the kernel drops its attributes on
  // every write) and a read of the new bytes through another handle see it.
  const script = `
import os, sys
path = sys.argv[1] + '/seen.bin'
fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
rd = os.open(path, os.O_RDONLY)
bad = []
for i in range(24):
    chunk = bytes([i]) * (1 << 20)
    os.write(fd, chunk)
    size = os.stat(path).st_size
    if size != (i + 1) << 20: bad.append('after write %d: stat size %d' % (i, size))
    if os.pread(rd, 1 << 20, i << 20) != chunk: bad.append('after write %d: read back differs' % i)
os.fsync(fd)
os.close(fd)
os.close(rd)
print('; '.join(bad) or 'all seen')
`;
  const before = await directWriteOps(m);
  const run = spawnSync('python3', ['-c', script, m.mountpoint], { encoding: 'utf8' });
  t.equal(run.status, 0, `python: ${run.stderr}`);
  t.equal(run.stdout.trim(), 'all seen', 'every stat and read after a write saw it');
  t.ok((await directWriteOps(m)) - before >= 23, 'the writes after the first were direct');
  t.equal(statSync(join(m.mountpoint, 'seen.bin')).size, 24 * MiB);
  t.equal((await m.unmount()).code, 0);
});

t.test('a write-only file alone stays out of the kernel page cache; beside a cached reader it is cached and seen', async (t) => {
  const m = await mountContainer(t, azurite, []);
  const pagesCached = (p: string) => {
    const r = spawnSync('fincore', ['--raw', '--noheadings', '--output', 'PAGES', join(m.mountpoint, p)], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`fincore: ${r.stderr}`);
    return Number(r.stdout.trim());
  };
  const script = `
import os, sys
mnt = sys.argv[1]
def fill(path, flags, byte):
    fd = os.open(path, flags | os.O_CREAT, 0o644)
    for i in range(4): os.write(fd, bytes([byte]) * (1 << 20))
    os.close(fd)
fill(mnt + '/wo.bin', os.O_WRONLY, 1)
fill(mnt + '/rw.bin', os.O_RDWR, 2)
# A reader caches the file's pages; a write-only handle opened beside it overwrites them: the reader sees the new bytes.
rd = os.open(mnt + '/rw.bin', os.O_RDONLY)
assert os.pread(rd, 1 << 20, 0) == bytes([2]) * (1 << 20)
wr = os.open(mnt + '/rw.bin', os.O_WRONLY)
os.pwrite(wr, bytes([3]) * (1 << 20), 0)
print('reader: %s' % ('new' if os.pread(rd, 1 << 20, 0) == bytes([3]) * (1 << 20) else 'stale'))
os.close(wr)
os.close(rd)
`;
  // Beside a write-only handle alone (uncached), a reader is uncached too: no shared mapping (ENODEV); once the
  // writer is closed, a new reader maps the file.
  const mapScript = `
import errno, mmap, os, sys
mnt = sys.argv[1]
wr = os.open(mnt + '/wo.bin', os.O_WRONLY)
rd = os.open(mnt + '/wo.bin', os.O_RDONLY)
try:
    mmap.mmap(rd, 0, prot=mmap.PROT_READ)
    print('map beside: mapped')
except OSError as e:
    print('map beside: ' + errno.errorcode[e.errno])
os.close(rd)
os.close(wr)
rd = os.open(mnt + '/wo.bin', os.O_RDONLY)
m = mmap.mmap(rd, 0, prot=mmap.PROT_READ)
print('map after: %d' % m[0])
m.close()
os.close(rd)
`;
  const run = spawnSync('python3', ['-c', script, m.mountpoint], { encoding: 'utf8' });
  t.equal(run.status, 0, `python: ${run.stderr}`);
  t.equal(pagesCached('wo.bin'), 0, 'what a write-only handle alone wrote is not in the page cache of the mount');
  t.equal(pagesCached('rw.bin'), 1024, 'what a read-write handle wrote is (4 MiB)');
  t.match(run.stdout, /^reader: new$/m, 'a cached reader sees what a write-only handle opened beside it wrote');
  t.equal(md5(readFileSync(join(m.mountpoint, 'wo.bin'))), md5(Buffer.alloc(4 * MiB, 1)), 'the write-only file reads back');
  const map = spawnSync('python3', ['-c', mapScript, m.mountpoint], { encoding: 'utf8' });
  t.equal(map.status, 0, `python: ${map.stderr}`);
  t.match(map.stdout, /^map beside: ENODEV$/m, 'a reader opened beside a write-only handle alone cannot map the file shared');
  t.match(map.stdout, /^map after: 1$/m, 'once the writer closed, a reader maps it');
  t.equal((await m.unmount()).code, 0);
});

t.test('a direct write that fails in C is ENOSPC for the writer; with room again the open file writes on', { skip: process.getuid?.() === 0 ? false : 'needs root to mount a tmpfs' }, async (t) => {
  const small = smallTmpfs(t, '32m', 'direct-full');
  if ('error' in small) return void t.plan(0, small.error);
  const dir = small.dir;
  const m = await mountContainer(t, azurite, [], ['--cache-dir', join(dir, 'cache')]);
  // One open file: a WRITE through JavaScript (the grant), one written directly; then the tmpfs is filled from
  // outside the mount, so the daemon's budget still allows the next write and only the pwrite in C fails.
  const script = `
import errno, mmap, os, sys
mnt, filler = sys.argv[1], sys.argv[2]
fd = os.open(mnt + '/held.bin', os.O_WRONLY | os.O_CREAT, 0o644)
# Page-aligned (an anonymous mapping): the kernel keeps this write-only file out of its page cache, so a WRITE
# carries the writer's own pages, and an unaligned 1 MiB buffer would span 257 pages, one more than a WRITE takes.
chunk = mmap.mmap(-1, 1 << 20)
chunk.write(b'x' * (1 << 20))
os.write(fd, chunk)
os.write(fd, chunk)
f = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
try:
    while os.write(f, chunk) > 0:
        pass
except OSError as e:
    assert e.errno == errno.ENOSPC, e
os.close(f)
try:
    os.write(fd, chunk)
    print('full: wrote')
except OSError as e:
    print('full: ' + errno.errorcode[e.errno])
os.remove(filler)
print('again: %d' % os.write(fd, chunk))
os.close(fd)
`;
  const before = await directWriteOps(m);
  const run = spawnSync('python3', ['-c', script, m.mountpoint, join(dir, 'filler')], { encoding: 'utf8' });
  t.equal(run.status, 0, `python: ${run.stderr}`);
  t.match(run.stdout, /^full: ENOSPC$/m, 'the write into the full cache filesystem is ENOSPC for the writer');
  t.match(run.stdout, /^again: 1048576$/m, 'after room is freed, the same open file writes again');
  t.equal((await directWriteOps(m)) - before, 2, 'the second write and the failed third were direct (the first and the fourth, after the failure, went through JavaScript)');
  const size = statSync(join(m.mountpoint, 'held.bin')).size;
  t.equal(size, 3 * MiB, 'the file has the three writes that succeeded');
  t.equal((await m.unmount()).code, 0);
});
