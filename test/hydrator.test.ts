import t from 'tap';
import fs from 'node:fs';
import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { randomBytes } from 'node:crypto';
import { DataCache } from '../src/cache/data-cache.js';
import { MemoryRangeStore } from '../src/cache/memory-range-store.js';
import { MemoryBlobStore } from '../src/blob/memory-store.js';
import type { ReadOptions } from '../src/blob/blob-store.js';
import { Hydrator, type HydratorOptions, type RestoreTarget } from '../src/hsm/hydrator.js';
import { BlobError, DigestMismatchError, FsError } from '../src/errors.js';
import { md5Of } from '../src/blob/content-md5.js';
import { PassThrough } from 'node:stream';

const KiB = 1024;
const MiB = 1024 * KiB;

/** MemoryBlobStore that records every ranged read and can delay reads by offset. */
class RecordingStore extends MemoryBlobStore {
  reads: { offset: number; length: number; atMs: number }[] = [];
  delayFor: ((offset: number, length: number) => number) | undefined;
  /** This read waits for the promise returned (after the delay). */
  holdFor: ((offset: number, length: number) => Promise<void> | undefined) | undefined;
  /** Throw this error for a read at this offset (after the delay). */
  failFor: ((offset: number, length: number) => BlobError | undefined) | undefined;
  /** The body of this read breaks off with this error after this many bytes. */
  breakFor: ((offset: number, length: number) => { after: number; error: BlobError } | undefined) | undefined;
  override async readRange(name: string, offset: number, length: number | undefined, options: ReadOptions = {}): Promise<Readable> {
    this.reads.push({ offset, length: length ?? -1, atMs: Date.now() });
    const ms = this.delayFor?.(offset, length ?? 0) ?? 0;
    if (ms > 0) await sleep(ms, undefined, { signal: options.signal });
    await this.holdFor?.(offset, length ?? 0);
    const err = this.failFor?.(offset, length ?? 0);
    if (err) throw err;
    const body = await super.readRange(name, offset, length, options);
    const cut = this.breakFor?.(offset, length ?? 0);
    if (!cut) return body;
    const chunks: Buffer[] = [];
    for await (const c of body) chunks.push(c as Buffer);
    const out = new PassThrough();
    out.write(Buffer.concat(chunks).subarray(0, cut.after));
    setImmediate(() => out.destroy(cut.error));
    return out;
  }
  bytesRead(): number {
    return this.reads.reduce((n, r) => n + r.length, 0);
  }
  /** Asserts no byte was fetched twice; returns the merged covered ranges. */
  overlaps(): number {
    const sorted = [...this.reads].sort((a, b) => a.offset - b.offset);
    let overlap = 0;
    let end = 0;
    for (const r of sorted) {
      if (r.offset < end) overlap += Math.min(end, r.offset + r.length) - r.offset;
      end = Math.max(end, r.offset + r.length);
    }
    return overlap;
  }
}

interface Setup {
  store: RecordingStore;
  cache: DataCache;
  ranges: MemoryRangeStore;
  hydrator: Hydrator;
  restored: number[];
  logs: string[];
  inode: RestoreTarget;
  data: Buffer;
  make: (extra?: Partial<HydratorOptions>) => Hydrator;
}

let nextIno = 100;

/** The parts of a tap test setup() needs. */
interface TestDir {
  testdir(): string;
  teardown(fn: () => void): void;
}

function setup(t: TestDir, size: number, extra: Partial<HydratorOptions> = {}): Setup {
  const store = new RecordingStore();
  const data = randomBytes(size);
  const { etag } = store.putDirect('dir/file.bin', data);
  const cache = new DataCache({ dir: t.testdir() });
  t.teardown(() => cache.close());
  const ranges = new MemoryRangeStore();
  const restored: number[] = [];
  const logs: string[] = [];
  const inode: RestoreTarget = { ino: nextIno++, generation: 1, size, blobName: 'dir/file.bin', etag, contentMd5: md5Of(data) };
  const make = (more: Partial<HydratorOptions> = {}) =>
    new Hydrator({
      store,
      cache,
      ranges,
      chunkSize: MiB,
      firstChunkSize: 256 * KiB,
      onRestored: (ino) => {
        restored.push(ino);
      },
      log: (line) => logs.push(line),
      ...extra,
      ...more,
    });
  return { store, cache, ranges, hydrator: make(), restored, logs, inode, data, make };
}

/** A gate reads wait at: `reached` resolves when the first read waits there, `open()` lets every read through. */
function readGate(): { wait: () => Promise<void>; reached: Promise<void>; open: () => void } {
  let open!: () => void;
  let arrived!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  const reached = new Promise<void>((r) => (arrived = r));
  return {
    wait: () => {
      arrived();
      return opened;
    },
    reached,
    open,
  };
}

async function cacheBytes(s: Setup, offset = 0, length = s.inode.size): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  const n = await s.cache.read(s.inode.ino, s.inode.generation, buf, length, offset);
  return buf.subarray(0, n);
}

t.test('five concurrent readers: one restore, each byte downloaded once, correct content', async (t) => {
  const s = setup(t, 10 * MiB + 12345);
  s.store.delayFor = () => 5;
  const offsets = [0, 3 * MiB + 7, 3 * MiB + 100, 9 * MiB, 10 * MiB + 12000];
  let contentAtRestore: Buffer | undefined;
  const h = s.make({
    onRestored: async (ino) => {
      s.restored.push(ino);
      contentAtRestore = await cacheBytes(s);
    },
  });
  await Promise.all(offsets.map((o) => h.ensureRange(s.inode, o, 128 * KiB)));
  for (const o of offsets) {
    const len = Math.min(128 * KiB, s.inode.size - o);
    t.ok((await cacheBytes(s, o, len)).equals(s.data.subarray(o, o + len)), `range at ${o} is correct`);
  }
  await h.restore(s.inode);
  t.same(s.restored, [s.inode.ino], 'onRestored called once');
  t.ok(contentAtRestore?.equals(s.data), 'complete and correct content when onRestored runs');
  t.equal(s.store.overlaps(), 0, 'no byte fetched twice');
  t.equal(s.store.bytesRead(), s.inode.size, 'every byte fetched once');
  t.equal(s.store.requestCounts().read, s.store.reads.length);
  t.equal(h.progress(s.inode.ino), undefined, 'no restore running');
  t.same(s.ranges.ranges(s.inode.ino, 1), [[0, s.inode.size]], 'whole file recorded');
});

t.test('already present: zero requests on re-read, onRestored not repeated', async (t) => {
  const s = setup(t, 3 * MiB);
  await s.hydrator.restore(s.inode);
  const before = s.store.reads.length;
  await s.hydrator.ensureRange(s.inode, 0, 4096);
  await s.hydrator.ensureRange(s.inode, 2 * MiB, 1 * MiB);
  await s.hydrator.restore(s.inode);
  t.equal(s.store.reads.length, before, 'no request');
  t.equal(s.hydrator.progress(s.inode.ino), undefined);
  t.same(s.restored, [s.inode.ino]);
  // A new process (fresh Hydrator, same ranges): present ranges answer without any request.
  const h2 = s.make();
  await h2.ensureRange(s.inode, MiB, 10);
  t.equal(s.store.reads.length, before, 'still no request');
});

t.test('persisted ranges: a new Hydrator fetches only the missing chunks', async (t) => {
  const s = setup(t, 8 * MiB, { concurrency: 1 });
  // Chunks 0..2 succeed, the 4th read fails.
  let n = 0;
  s.store.beforeOp = (op) => {
    if (op === 'read' && ++n === 4) throw new BlobError('Transient', 'connection reset');
  };
  await t.rejects(s.hydrator.restore(s.inode), { name: 'FsError', code: 'EIO' });
  const kept = s.ranges.ranges(s.inode.ino, 1);
  const keptBytes = kept.reduce((a, [x, y]) => a + y - x, 0);
  t.ok(keptBytes > 0, `some progress was recorded (${keptBytes} bytes)`);
  s.store.beforeOp = undefined;
  s.store.reads = [];
  const h2 = s.make();
  await h2.restore(s.inode);
  t.equal(s.store.bytesRead(), 8 * MiB - keptBytes, 'only the missing bytes');
  for (const r of s.store.reads) {
    for (const [x, y] of kept) t.ok(r.offset + r.length <= x || r.offset >= y, `read at ${r.offset} misses kept ranges`);
  }
  t.ok((await cacheBytes(s)).equals(s.data));
  t.same(s.restored, [s.inode.ino]);
});

t.test('the first range resolves before the whole restore completes', async (t) => {
  const s = setup(t, 32 * MiB);
  s.store.delayFor = (offset) => (offset === 0 ? 0 : 200);
  const t0 = Date.now();
  await s.hydrator.ensureRange(s.inode, 0, 4096);
  const first = Date.now() - t0;
  const p = s.hydrator.progress(s.inode.ino);
  t.ok(p, 'restore still running');
  t.ok(p!.bytesPresent < p!.size, `not all present yet (${p!.bytesPresent} of ${p!.size})`);
  t.equal(p!.size, 32 * MiB);
  // Proven by the state above (the rest is held back 200 ms per piece); the time is for information.
  t.comment(`first byte after ${first} ms`);
  t.equal(s.restored.length, 0);
  t.ok((await cacheBytes(s, 0, 4096)).equals(s.data.subarray(0, 4096)));
  t.equal(s.store.reads[0]!.offset, 0);
  t.equal(s.store.reads[0]!.length, 256 * KiB, 'the first fetch is the small head');
  await s.hydrator.restore(s.inode);
  t.same(s.restored, [s.inode.ino]);
  t.equal(s.store.bytesRead(), 32 * MiB);
});

t.test('a random read is served ahead of the sequential stream', async (t) => {
  const s = setup(t, 16 * MiB, { concurrency: 1 });
  // The stream's first request waits at the store until the random read is asked for (demands register at once).
  const first = readGate();
  s.store.holdFor = (offset) => (offset === 0 ? first.wait() : undefined);
  const seq = s.hydrator.ensureRange(s.inode, 0, 4096);
  await first.reached;
  const random = s.hydrator.ensureRange(s.inode, 12 * MiB + 5000, 4096);
  first.open();
  await random;
  await seq;
  // Proven by order, not by time: the random read's piece is among the first requests, not behind the stream.
  const idx = s.store.reads.findIndex((r) => r.offset <= 12 * MiB + 5000 && 12 * MiB + 5000 < r.offset + r.length);
  t.ok(idx >= 0 && idx <= 3, `the random read's piece was fetched as request #${idx} (of ~${16 + 4})`);
  t.ok((await cacheBytes(s, 12 * MiB + 5000, 4096)).equals(s.data.subarray(12 * MiB + 5000, 12 * MiB + 9096)));
  await s.hydrator.restore(s.inode);
  t.equal(s.store.overlaps(), 0);
  t.ok((await cacheBytes(s)).equals(s.data));
});

t.test('a random read does not wait for a slot behind in-flight stream reads', async (t) => {
  const s = setup(t, 16 * MiB, { concurrency: 2 });
  // The stream's whole-chunk reads wait at the store until the random read is served: if it queued behind them it
  // would never be, and the test fails at the bound below instead of hanging.
  const stream = readGate();
  let held = 0;
  let bothHeld!: () => void;
  const slotsBusy = new Promise<void>((r) => (bothHeld = r));
  s.store.holdFor = (_offset, length) => {
    if (length <= 256 * KiB) return undefined;
    if (++held === 2) bothHeld();
    return stream.wait();
  };
  await s.hydrator.ensureRange(s.inode, 0, 4096);
  await slotsBusy;
  const served = await Promise.race([
    s.hydrator.ensureRange(s.inode, 9 * MiB + 77, 128 * KiB).then(() => true),
    new Promise<false>((r) => setTimeout(() => r(false), 30_000).unref()),
  ]);
  t.ok(served, 'served while both stream slots hold their reads');
  t.equal(held, 2, 'the stream started no other read meanwhile');
  t.ok((await cacheBytes(s, 9 * MiB + 77, 128 * KiB)).equals(s.data.subarray(9 * MiB + 77, 9 * MiB + 77 + 128 * KiB)));
  stream.open();
  s.hydrator.cancel(s.inode.ino);
});

t.test('sequential readers after the head get read-ahead before the background stream', async (t) => {
  const s = setup(t, 8 * MiB, { concurrency: 1 });
  s.store.delayFor = () => 5;
  await s.hydrator.ensureRange(s.inode, 4 * MiB, 4096);
  await s.hydrator.restore(s.inode);
  t.same(
    s.store.reads.slice(0, 3).map((r) => [r.offset, r.length]),
    [
      [4 * MiB, 256 * KiB],
      [4 * MiB + 256 * KiB, 768 * KiB],
      [5 * MiB, MiB],
    ],
    'head, rest of its chunk, then the stream in order from there',
  );
  t.equal(s.store.reads[s.store.reads.length - 1]!.offset, 3 * MiB, 'wraps to the start last');
  t.ok((await cacheBytes(s)).equals(s.data));
});

t.test('a failed chunk: EIO to readers, present kept, the next ensureRange retries', async (t) => {
  const s = setup(t, 6 * MiB, { concurrency: 2 });
  // Reads of the last chunk fail once the other readers were served; the rest succeed.
  const served: Promise<unknown>[] = [];
  s.store.holdFor = (offset) => (offset >= 5 * MiB ? Promise.all(served).then(() => undefined) : undefined);
  s.store.failFor = (offset) => (offset >= 5 * MiB ? new BlobError('Throttled', 'HTTP 503 ServerBusy') : undefined);
  const readers = [0, 2 * MiB, 4 * MiB, 5 * MiB + 10].map((o) =>
    s.hydrator.ensureRange(s.inode, o, 64 * KiB).then(
      () => 'ok',
      (e: unknown) => e,
    ),
  );
  served.push(...readers.slice(0, 3));
  const results = await Promise.all(readers);
  const errors = results.filter((r): r is FsError => r instanceof FsError);
  t.same(results.slice(0, 3), ['ok', 'ok', 'ok'], 'readers of ranges that arrived were served');
  t.equal(errors.length, 1, 'the reader of the failed range got an error');
  for (const e of errors) {
    t.equal(e.code, 'EIO');
    t.ok(e.cause instanceof BlobError && e.cause.kind === 'Throttled', 'cause is the BlobError');
    t.match(e.message, /ServerBusy/);
  }
  t.ok(s.logs.some((l) => /ServerBusy/.test(l) && /kept/.test(l)), 'logged why');
  t.equal(s.hydrator.progress(s.inode.ino), undefined, 'restore ended');
  const kept = s.ranges.ranges(s.inode.ino, 1);
  const keptBytes = kept.reduce((a, [x, y]) => a + y - x, 0);
  t.ok(keptBytes > 0, 'present ranges kept');
  t.equal(s.restored.length, 0);
  s.store.failFor = undefined;
  const readsBefore = s.store.bytesRead();
  await s.hydrator.ensureRange(s.inode, 5 * MiB + 10, 64 * KiB);
  await s.hydrator.restore(s.inode);
  t.ok((await cacheBytes(s)).equals(s.data), 'retry completes with correct content');
  t.same(s.restored, [s.inode.ino]);
  const refetched = s.store.bytesRead() - readsBefore;
  t.equal(refetched, 6 * MiB - keptBytes, 'retry fetched only what was missing');
});

t.test('blob changed since import (etag mismatch) → EIO, nothing mixed', async (t) => {
  const s = setup(t, 2 * MiB);
  s.store.putDirect('dir/file.bin', randomBytes(2 * MiB)); // another client rewrote it
  const err = await s.hydrator.ensureRange(s.inode, 0, 10).catch((e: unknown) => e);
  t.ok(err instanceof FsError);
  t.equal((err as FsError).code, 'EIO');
  t.ok((err as FsError).cause instanceof BlobError);
  t.equal(((err as FsError).cause as BlobError).kind, 'PreconditionFailed');
  t.match((err as FsError).message, /changed since it was imported/);
  t.same(s.ranges.ranges(s.inode.ino, 1), [], 'nothing recorded');
  t.same(s.restored, []);
  await t.rejects(s.hydrator.restore(s.inode), { code: 'EIO' });
});

t.test('a blob shorter than recorded → EIO', async (t) => {
  const s = setup(t, MiB);
  const inode = { ...s.inode, size: MiB + 100 };
  await t.rejects(s.hydrator.restore(inode), { code: 'EIO', message: /returned 100 of|returned 0 of|shorter/ });
});

t.test('empty file restores instantly with no request', async (t) => {
  const s = setup(t, 0);
  await s.hydrator.ensureRange(s.inode, 0, 4096);
  t.equal(fs.statSync(s.cache.pathFor(s.inode.ino, 1)).size, 0, 'empty cache file created');
  t.same(s.restored, [s.inode.ino]);
  await s.hydrator.restore(s.inode);
  t.same(s.restored, [s.inode.ino], 'not twice');
  t.equal(s.store.reads.length, 0);
  const h = s.make();
  const other = { ...s.inode, ino: nextIno++, blobName: null, etag: null };
  await h.restore(other);
  t.same(s.restored, [s.inode.ino, other.ino]);
});

t.test('ranges past EOF and zero lengths resolve without a restore', async (t) => {
  const s = setup(t, MiB);
  await s.hydrator.ensureRange(s.inode, MiB, 100);
  await s.hydrator.ensureRange(s.inode, 10, 0);
  t.equal(s.store.reads.length, 0);
  t.equal(s.hydrator.progress(s.inode.ino), undefined);
});

t.test('progress and cancel', async (t) => {
  let clock = 1_700_000_000_000;
  const s = setup(t, 8 * MiB, { concurrency: 1, now: () => clock });
  // Everything after the head waits at the store until the cancel.
  const rest = readGate();
  s.store.holdFor = (offset) => (offset === 0 ? undefined : rest.wait());
  await s.hydrator.ensureRange(s.inode, 0, 1);
  clock += 1000;
  const p = s.hydrator.progress(s.inode.ino)!;
  t.equal(p.startedMs, 1_700_000_000_000, 'the start time from the hydrator\'s clock');
  t.equal(p.bytesMoved, 256 * KiB);
  t.equal(p.bytesPresent, 256 * KiB);
  t.same(s.hydrator.running(), [s.inode.ino]);
  const waiting = s.hydrator.ensureRange(s.inode, 7 * MiB, 1);
  const whole = s.hydrator.restore(s.inode);
  t.equal(s.hydrator.cancel(s.inode.ino), true);
  t.equal(s.hydrator.cancel(s.inode.ino), false, 'nothing left to cancel');
  await t.rejects(waiting, { code: 'EIO', message: /cancelled/ });
  await t.rejects(whole, { code: 'EIO' });
  t.equal(s.hydrator.progress(s.inode.ino), undefined);
  t.same(s.restored, []);
  rest.open();
  s.store.holdFor = undefined;
  await s.hydrator.restore(s.inode);
  t.ok((await cacheBytes(s)).equals(s.data));
  t.same(s.restored, [s.inode.ino]);
});

t.test('recorded ranges without their cache file are fetched again', async (t) => {
  const s = setup(t, 2 * MiB);
  await s.hydrator.restore(s.inode);
  const ino2 = { ...s.inode, generation: 2 };
  s.ranges.addRange(ino2.ino, 2, [0, MiB]); // stale record, no file
  s.store.reads = [];
  await s.hydrator.ensureRange(ino2, 100, 100);
  await s.hydrator.restore(ino2);
  t.equal(s.store.bytesRead(), 2 * MiB);
  t.ok(s.logs.some((l) => /cache file is missing/.test(l)));
  const buf = Buffer.alloc(2 * MiB);
  await s.cache.read(s.inode.ino, 2, buf, buf.length, 0);
  t.ok(buf.equals(s.data));
});

t.test('a new generation supersedes a running restore', async (t) => {
  const s = setup(t, 4 * MiB, { concurrency: 1 });
  // The old generation's first read waits at the store until the new generation's restore has started.
  const first = readGate();
  let reads = 0;
  s.store.holdFor = () => (++reads === 1 ? first.wait() : undefined);
  const old = s.hydrator.restore(s.inode);
  await first.reached;
  const next = { ...s.inode, generation: 2 };
  const fresh = s.hydrator.restore(next);
  first.open();
  await t.rejects(old, { code: 'EIO', message: /superseded/ });
  await fresh;
  const buf = Buffer.alloc(4 * MiB);
  await s.cache.read(s.inode.ino, 2, buf, buf.length, 0);
  t.ok(buf.equals(s.data));
  t.same(s.restored, [s.inode.ino]);
});

t.test('onRestored failure fails the restore; a retry completes it without fetching', async (t) => {
  let fail = true;
  const s = setup(t, MiB);
  const h = s.make({
    onRestored: (ino) => {
      if (fail) throw new Error('database is locked');
      s.restored.push(ino);
    },
  });
  await t.rejects(h.restore(s.inode), { code: 'EIO', message: /database is locked/ });
  fail = false;
  const n = s.store.reads.length;
  await h.restore(s.inode);
  t.equal(s.store.reads.length, n);
  t.same(s.restored, [s.inode.ino]);
});

t.test('a file with no blob cannot be restored', async (t) => {
  const s = setup(t, MiB);
  await t.rejects(s.hydrator.ensureRange({ ...s.inode, blobName: null }, 0, 1), {
    code: 'EIO',
    message: /no blob/,
  });
});

t.test('randomised: many concurrent random reads, odd sizes; every byte fetched once and correct', async (t) => {
  let seed = 42;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed % n;
  };
  for (const [size, chunk, first] of [
    [7 * MiB + 333, MiB, 256 * KiB],
    [5 * MiB, 3 * MiB + 17, 100 * KiB + 3],
    [900 * KiB, 4 * MiB, 512 * KiB],
  ] as const) {
    const s = setup(t, size, { chunkSize: chunk, firstChunkSize: first, concurrency: 3, demandConcurrency: 2 });
    s.store.delayFor = () => rand(8);
    const reads: Promise<void>[] = [];
    for (let i = 0; i < 60; i++) {
      const off = rand(size);
      const len = 1 + rand(300 * KiB);
      reads.push(
        (async () => {
          // A random start among the others (event-loop turns, not time).
          for (let turn = rand(30); turn > 0; turn--) await new Promise((r) => setImmediate(r));
          await s.hydrator.ensureRange(s.inode, off, len);
          const want = s.data.subarray(off, Math.min(size, off + len));
          const got = await cacheBytes(s, off, want.length);
          if (!got.equals(want)) throw new Error(`wrong bytes at ${off}+${len}`);
        })(),
      );
    }
    await Promise.all(reads);
    await s.hydrator.restore(s.inode);
    t.equal(s.store.overlaps(), 0, `size ${size}: no byte fetched twice`);
    t.equal(s.store.bytesRead(), size, `size ${size}: every byte fetched`);
    t.ok((await cacheBytes(s)).equals(s.data), `size ${size}: content`);
    t.same(s.restored, [s.inode.ino]);
    t.same(s.ranges.ranges(s.inode.ino, 1), [[0, size]]);
  }
});

// ---- integrity (issue 16) and faults (issue 10) ------------------------------------------------------------

t.test('Content-MD5: a restore is checked before onRestored and counted', async (t) => {
  const s = setup(t, 3 * MiB + 5);
  await s.hydrator.ensureRange(s.inode, 2 * MiB, 10); // from the middle: the prefix is hashed when it fills in
  await s.hydrator.restore(s.inode);
  t.same(s.restored, [s.inode.ino]);
  t.same(s.hydrator.verification, { verified: 1, unverified: 0, mismatches: 0 });
  const plain = setup(t, 100);
  await plain.hydrator.restore({ ...plain.inode, contentMd5: null });
  t.same(plain.hydrator.verification, { verified: 0, unverified: 1, mismatches: 0 }, 'a blob without a digest: unverified');
});

t.test('Content-MD5 mismatch once: the data is discarded and the file fetched again, once', async (t) => {
  const s = setup(t, 2 * MiB + 7);
  s.store.corruptDirect('dir/file.bin', MiB + 3);
  // The refetch (the first read after the whole file was read once) finds the byte healed: a fault in flight.
  let reads = 0;
  s.store.beforeOp = (op) => {
    if (op === 'read' && ++reads === 4) s.store.corruptDirect('dir/file.bin', MiB + 3);
  };
  await s.hydrator.restore(s.inode);
  t.equal(reads, 6, 'three 1 MiB chunks, twice');
  t.ok((await cacheBytes(s)).equals(s.data), 'the refetched copy is right');
  t.same(s.restored, [s.inode.ino], 'then the file was restored');
  t.same(s.hydrator.verification, { verified: 1, unverified: 0, mismatches: 1 });
  t.match(s.logs.join('\n'), new RegExp(`blob dir/file.bin has Content-MD5 ${escape(s.inode.contentMd5!)} but the bytes hash to .*; the data was discarded, fetching the whole file again`));
});

t.test('Content-MD5 mismatch twice: EIO naming blob and digests, nothing kept, the file stays released', async (t) => {
  const s = setup(t, 2 * MiB);
  s.store.corruptDirect('dir/file.bin', 17);
  const err = await s.hydrator.restore(s.inode).catch((e: unknown) => e);
  t.ok(err instanceof DigestMismatchError, 'a DigestMismatchError');
  t.equal((err as FsError).code, 'EIO');
  t.match((err as Error).message, new RegExp(`blob dir/file.bin has Content-MD5 ${escape(s.inode.contentMd5!)} but the bytes hash to \\S+`));
  t.same(s.restored, [], 'onRestored never ran: the file stays released');
  t.same(s.ranges.ranges(s.inode.ino, 1), [], 'no range recorded');
  t.equal(s.cache.bytesUsed(), 0, 'the bad data is gone and its space accounted');
  t.same(s.hydrator.verification, { verified: 0, unverified: 0, mismatches: 2 });
  t.match(s.logs.join('\n'), /again after a refetch; the file stays released/);
  await t.rejects(s.hydrator.ensureRange(s.inode, 0, 10).then(() => s.hydrator.restore(s.inode)), { code: 'EIO' }, 'a later read fails too');
  const off = setup(t, 1000);
  off.store.corruptDirect('dir/file.bin', 1);
  const h = off.make({ verifyMd5: false });
  await h.restore(off.inode);
  t.same(h.verification, { verified: 0, unverified: 1, mismatches: 0 }, 'verifyMd5: false restores without a check');
});

t.test('a body that breaks off mid-transfer resumes from the last byte received', async (t) => {
  const s = setup(t, 3 * MiB);
  let breaks = 0;
  s.store.breakFor = (offset, length) =>
    length > 100 * KiB && breaks++ < 3 ? { after: 100 * KiB, error: new BlobError('Transient', 'read dir/file.bin: aborted') } : undefined;
  await s.hydrator.restore(s.inode);
  t.ok((await cacheBytes(s)).equals(s.data), 'every byte right');
  t.same(
    s.store.reads.filter((r) => r.offset % MiB !== 0).map((r) => r.offset % MiB),
    [100 * KiB, 100 * KiB, 100 * KiB],
    'each resume starts at the last byte received',
  );
  t.equal(s.store.reads.length, 3 + 3, 'one more read per break');
  t.match(s.logs.join('\n'), /aborted at \d+; resuming from there \(1 of 5\)/);
  t.same(s.hydrator.verification, { verified: 1, unverified: 0, mismatches: 0 });

  const stuck = setup(t, MiB);
  stuck.store.breakFor = () => ({ after: 1000, error: new BlobError('Transient', 'read dir/file.bin: socket hang up') });
  const err = await stuck.hydrator.restore(stuck.inode).catch((e: unknown) => e);
  t.equal((err as FsError).code, 'EIO');
  t.match((err as Error).message, /socket hang up; got 6000 of the 1048576 bytes asked for at 0 after resuming 5 times/, 'the error names the cause');
  t.equal(stuck.store.reads.length, 6, 'bounded: 5 resumes');
});

t.test('a restore that fails for lack of space gives its space back', async (t) => {
  const s = setup(t, 4 * MiB, { concurrency: 1 });
  const write = s.cache.write.bind(s.cache);
  s.cache.write = async (ino, gen, buf, length, position, o) => {
    if (position >= 2 * MiB) throw new FsError('ENOSPC', 'no space left on the cache filesystem');
    return write(ino, gen, buf, length, position, o);
  };
  const err = await s.hydrator.restore(s.inode).catch((e: unknown) => e);
  t.equal((err as FsError).code, 'ENOSPC', 'the reader gets ENOSPC (errors.readErrnoOf: a full cache disk is passed on)');
  t.ok((err as FsError).cause instanceof FsError && ((err as FsError).cause as FsError).code === 'ENOSPC', 'caused by ENOSPC');
  t.same(s.ranges.ranges(s.inode.ino, 1), [], 'no range kept');
  t.equal(s.cache.bytesUsed(), 0, 'the partial data was discarded and its space accounted');
  t.match(s.logs.join('\n'), /no space left.*\(\d+ of 4194304 bytes present, discarded to free the space\)/);
  s.cache.write = write;
  await s.hydrator.restore(s.inode);
  t.ok((await cacheBytes(s)).equals(s.data), 'with room again the restore completes');
});

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}
