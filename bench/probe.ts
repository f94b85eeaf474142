// The bench's hands: run as a child process (`node dist/bench/probe.js <command> ...`), it does one filesystem
// workload on a path (a mount or the local cache disk), times it itself and prints one JSON line. The driver never
// touches a mount directly, and the process serving a mount never runs this.
import { closeSync, mkdirSync, openSync, readSync, statSync, writeSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileName } from './names.js';

const now = () => performance.now();

function seqRead(file: string, bufBytes: number): unknown {
  const buf = Buffer.allocUnsafe(bufBytes);
  const t0 = now();
  const fd = openSync(file, 'r');
  const tOpen = now();
  let bytes = 0;
  let firstByteMs = -1;
  try {
    for (;;) {
      const n = readSync(fd, buf, 0, bufBytes, null);
      if (firstByteMs < 0) firstByteMs = now() - t0;
      if (n === 0) break;
      bytes += n;
    }
  } finally {
    closeSync(fd);
  }
  return { bytes, ms: now() - t0, openMs: tOpen - t0, firstByteMs };
}

/** The first bytes of a file only, in stages: stat (lookup), open, first read (a separate probe, so nothing else
 * is queued behind it). firstByteMs runs from before the stat to the read's return. */
function firstByte(file: string, bytes: number): unknown {
  const buf = Buffer.allocUnsafe(bytes);
  const t0 = now();
  statSync(file);
  const tStat = now();
  const fd = openSync(file, 'r');
  const tOpen = now();
  try {
    const n = readSync(fd, buf, 0, bytes, 0);
    const tRead = now();
    return { bytes: n, firstByteMs: tRead - t0, statMs: tStat - t0, openMs: tOpen - tStat, readMs: tRead - tOpen };
  } finally {
    closeSync(fd);
  }
}

function statMany(dir: string, start: number, count: number): unknown {
  const t0 = now();
  let size = 0;
  for (let i = start; i < start + count; i++) size += statSync(join(dir, fileName(i))).size;
  return { count, ms: now() - t0, size };
}

async function readMany(dir: string, start: number, count: number, concurrency: number): Promise<unknown> {
  let next = start;
  let bytes = 0;
  const t0 = now();
  const worker = async () => {
    for (;;) {
      const i = next++;
      if (i >= start + count) return;
      const data = await readFile(join(dir, fileName(i)));
      bytes += data.length; // after the await: `x += await y` would read x before waiting
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return { count, bytes, ms: now() - t0 };
}

/** Creates `count` new files of `bytes` each, written in `chunk`-byte writes and closed one after another (an
 * untar-like small-file write; the writeback-cache comparison). The directory is made first, untimed. */
function writeMany(dir: string, prefix: string, count: number, bytes: number, chunk: number): unknown {
  mkdirSync(dir, { recursive: true });
  const buf = Buffer.alloc(chunk, 0x5a);
  const t0 = now();
  for (let i = 0; i < count; i++) {
    const fd = openSync(join(dir, `${prefix}${fileName(i)}`), 'w');
    try {
      for (let off = 0; off < bytes; off += chunk) writeSync(fd, buf, 0, Math.min(chunk, bytes - off));
    } finally {
      closeSync(fd);
    }
  }
  return { count, bytes: count * bytes, ms: now() - t0 };
}

/** A small deterministic PRNG (mulberry32), so every target reads the same offsets. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randRead(file: string, size: number, bs: number, count: number, seed: number): unknown {
  const buf = Buffer.allocUnsafe(bs);
  const rnd = prng(seed);
  const blocks = Math.floor(size / bs);
  const lat: number[] = [];
  const fd = openSync(file, 'r');
  const t0 = now();
  let bytes = 0;
  try {
    for (let i = 0; i < count; i++) {
      const pos = Math.floor(rnd() * blocks) * bs;
      const s = now();
      bytes += readSync(fd, buf, 0, bs, pos);
      lat.push(now() - s);
    }
  } finally {
    closeSync(fd);
  }
  const ms = now() - t0;
  lat.sort((a, b) => a - b);
  const q = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] ?? 0;
  return { count, bytes, ms, p50Ms: q(0.5), p99Ms: q(0.99), maxMs: lat[lat.length - 1] ?? 0 };
}

async function main(argv: string[]): Promise<void> {
  const [cmd, ...a] = argv;
  const n = (i: number) => Number(a[i]);
  let out: unknown;
  switch (cmd) {
    case 'seqread':
      out = seqRead(a[0]!, n(1) || 1024 * 1024);
      break;
    case 'firstbyte':
      out = firstByte(a[0]!, n(1) || 4096);
      break;
    case 'stat':
      out = statMany(a[0]!, n(1), n(2));
      break;
    case 'readmany':
      out = await readMany(a[0]!, n(1), n(2), n(3));
      break;
    case 'writemany':
      out = writeMany(a[0]!, a[1]!, n(2), n(3), n(4));
      break;
    case 'randread':
      out = randRead(a[0]!, n(1), n(2), n(3), n(4));
      break;
    default:
      throw new Error(`probe: unknown command '${cmd}'`);
  }
  process.stdout.write(JSON.stringify(out) + '\n');
}

main(process.argv.slice(2)).catch((err) => {
  process.stderr.write(`probe: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
