// MD5 threads (src/blob/md5-threads.ts): block digests and running digests equal node:crypto's for any block
// sequence, on threads and inline, from shared and from ordinary buffers; errors are HashThreadError; close()
// ends the threads and fails pending work; a pool nobody closed does not hold a process open.
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import { HashThreadError, Md5Threads, SharedBlockBuffers } from '../src/blob/md5-threads.js';

const md5 = (...parts: Uint8Array[]) => {
  const h = createHash('md5');
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
};

/** A copy of bytes in a SharedArrayBuffer, at an offset (a view, as the upload's block buffers are). */
function shared(bytes: Uint8Array, offset = 0): Buffer {
  const view = Buffer.from(new SharedArrayBuffer(offset + bytes.length), offset, bytes.length);
  view.set(bytes);
  return view;
}

for (const threads of [0, 1, 3]) {
  t.test(`${threads} threads: block and running digests equal createHash('md5')`, async (t) => {
    const pool = new Md5Threads({ threads });
    t.teardown(() => pool.close());
    t.equal(pool.size, threads);
    // Block sizes that cover empty, odd, and multi-MiB blocks; two running hashes fed interleaved.
    const sizes = [0, 1, 63, 64, 65, 4096, 1_000_003, 8 << 20, 17];
    const blocks = sizes.map((n) => randomBytes(n));
    const a = pool.running();
    const b = pool.running();
    const updates: Promise<void>[] = [];
    const digests: Promise<Uint8Array>[] = [];
    blocks.forEach((block, i) => {
      const view = i % 2 === 0 ? shared(block, 3) : block; // shared buffers and ordinary ones
      updates.push(a.update(view), b.update(blocks[blocks.length - 1 - i]!));
      digests.push(pool.md5(view));
    });
    await Promise.all(updates);
    t.same(await Promise.all(digests), blocks.map((block) => md5(block)), 'each block digest');
    t.same(await a.digest(), md5(...blocks), 'running digest, blocks in order');
    t.same(await b.digest(), md5(...[...blocks].reverse()), 'a second running digest, fed interleaved');
    t.same(await pool.running().digest(), md5(), 'a running digest of nothing');
    t.ok(pool.started <= threads, 'no more threads than asked for');
  });
}

t.test('a finished running digest refuses more work; discard is idempotent', async (t) => {
  const pool = new Md5Threads({ threads: 1 });
  t.teardown(() => pool.close());
  const r = pool.running();
  await r.update(Buffer.from('abc'));
  t.same(await r.digest(), md5(Buffer.from('abc')));
  await t.rejects(r.update(Buffer.from('d')), HashThreadError);
  await t.rejects(r.digest(), HashThreadError);
  const d = pool.running();
  d.discard();
  d.discard();
  await t.rejects(d.update(Buffer.from('x')), HashThreadError);
});

t.test('close() ends the threads, fails pending work with HashThreadError, and refuses later work', async (t) => {
  const pool = new Md5Threads({ threads: 2 });
  await pool.md5(Buffer.from('warm up'));
  t.equal(pool.started, 2, 'threads start on first use');
  const big = shared(randomBytes(32 << 20));
  const settled = Promise.allSettled([pool.md5(big), pool.md5(big), pool.running().update(big)]);
  await pool.close();
  t.equal(pool.started, 0);
  for (const s of await settled) {
    // Work a thread finished before it was terminated may have resolved; none may hang or fail otherwise.
    if (s.status === 'rejected') t.type(s.reason, HashThreadError);
  }
  await t.rejects(pool.md5(Buffer.from('x')), HashThreadError);
  t.throws(() => pool.running(), HashThreadError);
});

t.test('a bad thread count is refused', async (t) => {
  t.throws(() => new Md5Threads({ threads: -1 }), RangeError);
  t.throws(() => new Md5Threads({ threads: 1.5 }), RangeError);
});

t.test('a pool that was used and never closed does not keep a process from exiting', async (t) => {
  const moduleUrl = new URL('../src/blob/md5-threads.ts', import.meta.url).href;
  const script = `
    const { Md5Threads } = await import(${JSON.stringify(moduleUrl)});
    const pool = new Md5Threads({ threads: 2 });
    const r = pool.running();
    await r.update(new Uint8Array(1 << 20));
    const d = await pool.md5(new Uint8Array(10));
    process.stdout.write(Buffer.from(await r.digest()).toString('hex') + ' ' + Buffer.from(d).toString('hex'));
  `;
  // The child takes this process's TypeScript loader, so it imports the module as this test does.
  const loader = process.execArgv.filter((a) => a.includes('@tapjs/typescript'));
  const child = spawn(process.execPath, [...loader, '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d));
  child.stderr.on('data', (d: Buffer) => (err += d));
  // A child that hangs is the failure this test exists for: it is killed (not timed) so the test reports it.
  const hung = setTimeout(() => child.kill('SIGKILL'), 120_000);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on('exit', (c, s) => resolve([c, s])));
  clearTimeout(hung);
  t.equal(signal, null, 'the child exited by itself');
  t.equal(code, 0, err);
  t.equal(out, `${Buffer.from(md5(new Uint8Array(1 << 20))).toString('hex')} ${Buffer.from(md5(new Uint8Array(10))).toString('hex')}`);
});

t.test('SharedBlockBuffers: at most count out, reused after give, sized by the first request', async (t) => {
  const buffers = new SharedBlockBuffers(2);
  const a = await buffers.take(100);
  const b = await buffers.take(50);
  t.ok(a.buffer instanceof SharedArrayBuffer);
  t.equal(a.length, 100);
  t.equal(b.length, 50);
  let third: Buffer | undefined;
  const waiting = buffers.take(80).then((buf) => (third = buf));
  await Promise.resolve();
  t.equal(third, undefined, 'a third take waits while two are out');
  buffers.give(a.subarray(10, 20));
  await waiting;
  t.equal(third!.buffer, a.buffer, 'the buffer given back is handed out again');
  t.equal(third!.length, 80);
  buffers.give(b);
  const bigger = await buffers.take(60);
  t.not(bigger.buffer, b.buffer, 'a free buffer too small for the request is replaced');
  t.equal(bigger.length, 60);
  t.throws(() => new SharedBlockBuffers(0), RangeError);
});
