// End to end on a real kernel mount (libfuse3 binding) and a real Azurite: direct writes, where the addon writes a
// handle's WRITEs into its cache file itself once the first write went through JavaScript. What dd writes (one
// writer, and eight at once) is what the mount reads back, what the cache file holds and what export uploads, and
// `blobhsm status` counts the direct writes; eight processes writing at once (a pair of them into one new file, a
// pair into an archived one) each see every write in the stat and read after it, and sizes, content, HSM states and
// the export come out right; a direct write that fails in C (the cache filesystem filled behind the daemon's back) is
// ENOSPC for the writer, and once there is room again the same open file writes on. A write answered by the addon is
// seen by the stat and the read that follow it; a write-only file alone stays out of the kernel page cache (fincore),
// a reader beside it cannot map it shared, a cached reader beside a write-only handle sees its writes.
// Semantics without a kernel: test/direct-writes.test.ts.
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { execFile, spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startAzurite } from './helpers/azurite.js';
import { mountContainer, smallTmpfs } from './helpers/mount.js';
import { S, exportJson, readBlob, states, status } from './helpers/write-checks.js';

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

/** A python3 script run as a process of its own (many at once), never rejecting. */
const python = (script: string, ...args: string[]) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
    execFile('python3', ['-c', script, ...args], { maxBuffer: 1 << 20 }, (err, stdout, stderr) => resolve({ code: err ? Number((err as { code?: unknown }).code ?? 1) : 0, stdout, stderr })),
  );

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

t.test('eight processes writing directly at once, two of them into one file each: content, sizes, states, export', async (t) => {
  const CHUNKS = 16;
  const sources = ['solo0', 'solo1', 'solo2', 'solo3', 'shared', 'archived'].map((name) => ({ name, data: randomBytes(CHUNKS * MiB) }));
  const old = randomBytes(CHUNKS * MiB);
  const m = await mountContainer(t, azurite, [{ name: 'archived.bin', data: old }]);
  const src = mkdtempSync(join(tmpdir(), 'blobhsm-direct-src-'));
  t.teardown(() => rmSync(src, { recursive: true, force: true }));
  for (const f of sources) writeFileSync(join(src, `${f.name}.bin`), f.data);
  writeFileSync(join(m.mountpoint, 'shared.bin'), '');
  // Each writer copies every stride-th MiB of its source from `start` on into its file (page-aligned, so each
  // write() is one direct WRITE), and after each write checks that a stat and a read through another handle see
  // it. Eight writers stream at once: four into files of their own, two into one new file and two into an archived
  // one (each its own MiBs): every report must reach JavaScript before whatever follows its answer, whichever
  // handle it came from.
  const script = `
import mmap, os, sys
src, dst, start, stride = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
fd = os.open(dst, os.O_WRONLY | os.O_CREAT, 0o644)
rd = os.open(dst, os.O_RDONLY)
s = os.open(src, os.O_RDONLY)
buf = mmap.mmap(-1, 1 << 20)
bad = []
for i in range(start, os.fstat(s).st_size >> 20, stride):
    chunk = os.pread(s, 1 << 20, i << 20)
    buf.seek(0)
    buf.write(chunk)
    os.pwrite(fd, buf, i << 20)
    size = os.stat(dst).st_size
    if size < (i + 1) << 20: bad.append('after MiB %d: stat size %d' % (i, size))
    if os.pread(rd, 1 << 20, i << 20) != chunk: bad.append('after MiB %d: read back differs' % i)
os.fsync(fd)
for f in (fd, rd, s): os.close(f)
print('; '.join(bad) or 'all seen')
`;
  const writers: [file: string, start: number, stride: number][] = [['solo0', 0, 1], ['solo1', 0, 1], ['solo2', 0, 1], ['solo3', 0, 1], ['shared', 0, 2], ['shared', 1, 2], ['archived', 0, 2], ['archived', 1, 2]];
  const before = await directWriteOps(m);
  const runs = await Promise.all(writers.map(([f, start, stride]) => python(script, join(src, `${f}.bin`), join(m.mountpoint, `${f}.bin`), String(start), String(stride))));
  runs.forEach((r, i) => {
    t.equal(r.code, 0, `writer ${i}: ${r.stderr}`);
    t.equal(r.stdout.trim(), 'all seen', `writer ${i} (${writers[i]![0]}): every stat and read after its writes saw them`);
  });
  // A handle's first WRITE goes through JavaScript, and so may one of a handle whose file another handle changed
  // through JavaScript meanwhile (the grant ends then): the four files with one writer each write the rest directly.
  const direct = (await directWriteOps(m)) - before;
  t.ok(direct >= 4 * (CHUNKS - 1) && direct <= sources.length * CHUNKS - writers.length, `at least the lone writers' WRITEs after their first were direct (${direct})`);
  const digests = cacheFileDigests(m.cacheDir);
  for (const f of sources) {
    const path = join(m.mountpoint, `${f.name}.bin`);
    t.equal(statSync(path).size, CHUNKS * MiB, `${f.name}: stat sees the whole size`);
    t.equal(md5(readFileSync(path)), md5(f.data), `${f.name}: the mount reads back what was written`);
    t.ok(digests.has(md5(f.data)), `${f.name}: its cache file holds it`);
  }
  const names = sources.map((f) => `${f.name}.bin`);
  t.same(await states(m, names), { 'solo0.bin': S.NEW, 'solo1.bin': S.NEW, 'solo2.bin': S.NEW, 'solo3.bin': S.NEW, 'shared.bin': S.NEW, 'archived.bin': S.DIRTY }, 'new files new, the archived one dirty');
  const e = await exportJson(m);
  t.equal(e.code, 0, `export: ${e.stderr}`);
  for (const f of sources) t.equal(md5((await readBlob(m.store, `${f.name}.bin`))!.data), md5(f.data), `${f.name}: the exported blob is what was written`);
  t.same(Object.values(await states(m, names)), names.map(() => S.CLEAN), 'all archived and clean after the export');
  t.equal((await m.unmount()).code, 0, 'the unmount is clean');
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
