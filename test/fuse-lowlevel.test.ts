// The libfuse3 binding on a real kernel mount (src/fuse/lowlevel.ts + src/fuse/native/blobhsm_fuse.c), served by
// a child process (test/helpers/lowlevel-child.ts) and driven from this process: INIT negotiates 1 MiB READ and
// WRITE, the mount is fuse.blobhsm, requests carry the caller's uid/gid, direct reads arrive as 1 MiB READs,
// pages stay cached across opens until notify_inval_inode (sent from the native notify thread) drops them, and
// a WRITE's data is released as soon as it is answered, the FLUSH of a read-only handle is answered by the
// binding (a writable one's reaches the handler), and unmount ends the session loop. Also SO_PEERCRED through the addon, and an addon older than the TypeScript (fuse-native's binary, one without direct writes) is refused.
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { loadAddon, peerCredentials } from '../src/fuse/lowlevel.js';
import { breakMount } from './helpers/mount.js';

const addon = loadAddon();
t.notOk(addon instanceof Error, `the libfuse3 binding is built (npm run setup builds it): ${addon instanceof Error ? addon.message : 'yes'}`);

const CHILD = resolve(import.meta.dirname, '../dist/test/helpers/lowlevel-child.js');
const SIZE = 4 << 20;
const pattern = (offset: number, length: number) => Buffer.from(Array.from({ length }, (_, i) => (offset + i) % 251));

type Event = Record<string, unknown> & { op: string };

t.test('a mount served through the libfuse3 binding', async (t) => {
  const base = mkdtempSync(join(tmpdir(), 'blobhsm-ll-'));
  const mnt = join(base, 'mnt');
  spawnSync('mkdir', ['-p', mnt]);
  chmodSync(base, 0o755); // other users (runuser) reach the mount
  const child = spawn(process.execPath, [CHILD, mnt, String(SIZE)], { stdio: ['pipe', 'pipe', 'inherit'] });
  const exited = new Promise((r) => child.once('exit', r));
  const events: Event[] = [];
  const waiters: Array<{ test: (e: Event) => boolean; resolve: (e: Event) => void }> = [];
  createInterface({ input: child.stdout }).on('line', (line) => {
    const e = JSON.parse(line) as Event;
    events.push(e);
    for (const w of waiters.splice(0)) (w.test(e) ? w.resolve(e) : waiters.push(w));
  });
  const next = (test: (e: Event) => boolean) => {
    const seen = events.find(test);
    return seen ? Promise.resolve(seen) : new Promise<Event>((r) => waiters.push({ test, resolve: r }));
  };
  let pings = 0;
  /** Resolves once the child has reported every request it received before this call. */
  const settled = async () => {
    const id = String(++pings);
    child.stdin.write(`ping ${id}\n`);
    await next((e) => e.op === 'pong' && e.id === id);
  };
  const reads = () => events.filter((e) => e.op === 'read').length;
  t.teardown(() => {
    child.kill('SIGKILL');
    if (readFileSync('/proc/self/mountinfo', 'utf8').includes(` ${mnt} `)) breakMount(mnt);
    rmSync(base, { recursive: true, force: true });
  });

  const init = await next((e) => e.op === 'init');
  t.equal(init.maxRead, 1 << 20, 'max_read 1 MiB agreed at INIT');
  t.equal(init.maxWrite, 1 << 20, 'max_write 1 MiB agreed at INIT');
  const line = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.includes(` ${mnt} `)) ?? '';
  t.match(line, / - fuse\.blobhsm blobhsm /, 'fstype fuse.blobhsm, source blobhsm');
  t.match(line, /max_read=1048576/, 'max_read in the mount options');

  t.same(readdirSync(mnt), ['data'], 'READDIRPLUS lists the tree (and an empty last page ends it)');
  const asNobody = spawnSync('runuser', ['-u', 'nobody', '--', 'stat', join(mnt, 'missing-for-nobody')], { encoding: 'utf8' });
  t.match(asNobody.stderr, /No such file/, 'a missing name answers ENOENT');
  await settled();
  const lookup = events.find((e) => e.op === 'lookup' && e.name === 'missing-for-nobody');
  t.match(lookup, { uid: 65534, gid: 65534 }, 'the lookup carries the caller uid/gid');

  const copy = join(base, 'copy');
  spawnSync('dd', [`if=${join(mnt, 'data')}`, `of=${copy}`, 'bs=4M', 'iflag=direct']);
  t.ok(readFileSync(copy).equals(pattern(0, SIZE)), 'O_DIRECT read returns the data');
  await settled();
  const sizes = events.filter((e) => e.op === 'read').map((e) => e.size);
  t.same([...new Set(sizes)], [1 << 20], 'direct reads arrive as 1 MiB READs');

  const before = reads();
  t.ok(readFileSync(join(mnt, 'data')).equals(pattern(0, SIZE)), 'buffered read returns the data');
  await settled();
  t.ok(reads() > before, 'the first buffered read reaches the filesystem');
  // Another process on the machine may drop every page cache (drop_caches) at any time: of three more opens, one
  // served wholly from the page cache proves keep_cache (without it each open drops the pages).
  let fromCache = false;
  for (let i = 0; i < 3 && !fromCache; i++) {
    const before = reads();
    t.ok(readFileSync(join(mnt, 'data')).equals(pattern(0, SIZE)), 'a later buffered read returns the data');
    await settled();
    fromCache = reads() === before;
  }
  t.ok(fromCache, 'a later open reads from the page cache (keep_cache)');
  const cached = reads();
  child.stdin.write('inval 2\n');
  t.equal((await next((e) => e.op === 'invalidated')).result, 0, 'notify_inval_inode answered 0');
  readFileSync(join(mnt, 'data'));
  await settled();
  t.ok(reads() > cached, 'after the invalidation the next read reaches the filesystem again');

  const dd = spawnSync('dd', ['if=/dev/zero', `of=${join(mnt, 'data')}`, 'bs=1M', 'count=2', 'conv=notrunc,fsync', 'status=none'], { encoding: 'utf8' });
  t.equal(dd.stderr, '', 'dd into the mount');
  await settled();
  const writes = events.filter((e) => e.op === 'write');
  t.same(writes.map((e) => e.received), [1 << 20, 1 << 20], 'buffered 1 MiB writes arrive as 1 MiB WRITEs');
  t.same(writes.map((e) => e.lengthAfterAnswer), [0, 0], "a WRITE's data is released once answered (not left to a garbage collection)");

  // A read-only handle's FLUSH is answered by the binding; a writable one's reaches the handler (close waits for
  // it). Every handle's RELEASE (sent after close returns) reaches the handler with the fh the handler chose.
  const opens = events.filter((e) => e.op === 'open');
  await Promise.all(opens.map((o) => next((e) => e.op === 'release' && e.fh === o.fh)));
  t.pass('every handle was released under its own fh');
  const flushed = new Set(events.filter((e) => e.op === 'flush').map((e) => e.fh));
  const readOnly = opens.filter((e) => e.noFlush);
  const writable = opens.filter((e) => !e.noFlush);
  t.ok(readOnly.length >= 3 && writable.length === 1, 'the reads opened read-only, dd opened for writing');
  t.same(readOnly.filter((e) => flushed.has(e.fh)), [], 'no FLUSH of a read-only handle reached the handler');
  t.ok(flushed.has(writable[0]!.fh), "the writable handle's FLUSH reached the handler");

  child.stdin.write('stop\n');
  await next((e) => e.op === 'unmounted');
  await next((e) => e.op === 'ended');
  t.notOk(readFileSync('/proc/self/mountinfo', 'utf8').includes(` ${mnt} `), 'unmounted');
  await exited;
  t.equal(child.exitCode, 0, 'the serving process exits by itself once unmounted');
});

t.test('peerCredentials reads SO_PEERCRED of a Unix socket connection', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'blobhsm-cred-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 's');
  const accepted = new Promise<Socket>((r) => {
    const server = createServer((s) => r(s));
    server.listen(path);
    t.teardown(() => server.close());
  });
  const client = connect(path);
  const s = await accepted;
  const fd = (s as unknown as { _handle: { fd: number } })._handle.fd;
  t.same(peerCredentials(fd), { pid: process.pid, uid: process.getuid!(), gid: process.getgid!() });
  client.destroy();
  s.destroy();
});

t.test('an addon built from an older blobhsm_fuse.c is refused with what to do', async (t) => {
  // Any N-API module without releaseBuffer stands for it: fuse-native's prebuilt binary.
  const stale = resolve(import.meta.dirname, '../node_modules/fuse-native/prebuilds/linux-x64/node.napi.node');
  const lowlevel = resolve(import.meta.dirname, '../dist/src/fuse/lowlevel.js');
  const script = `const m = await import(${JSON.stringify(lowlevel)}); const a = m.loadAddon(); console.log(a instanceof Error ? a.message : 'loaded');`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', env: { ...process.env, BLOBHSM_FUSE3_ADDON: stale } });
  t.match(r.stdout, /is older than this blobhsm \(it has no releaseBuffer\); rebuild it: bash bin\/build-addon.sh/);
  // One built before direct writes: every function of the addon but those two (a CommonJS module with the same
  // exports stands for it; require() loads either).
  const dir = mkdtempSync(join(tmpdir(), 'blobhsm-stale-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const older = join(dir, 'blobhsm_fuse.cjs');
  const current = Object.getOwnPropertyNames(addon instanceof Error ? {} : addon).filter((k) => k !== 'grantDirectWrite' && k !== 'revokeDirectWrite');
  writeFileSync(older, `for (const k of ${JSON.stringify(current)}) exports[k] = () => {};`);
  const r2 = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', env: { ...process.env, BLOBHSM_FUSE3_ADDON: older } });
  t.ok(current.includes('releaseBuffer'), 'the stand-in has the older functions');
  t.match(r2.stdout, /is older than this blobhsm \(it has no grantDirectWrite\); rebuild it: bash bin\/build-addon.sh/, 'an addon without direct writes is refused');
});
