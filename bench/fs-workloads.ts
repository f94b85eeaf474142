// Filesystem workloads as the driver runs them: each spawns a child (the probe, `ls -l` or `dd`) with a time
// limit and returns its figures. The same functions measure blobhsm, the null filesystem, rclone and local disk.
import { productPaths } from './product.js';
import { assertRunning } from './cleanup.js';
import { run, runOk } from './proc.js';
import { MiB } from './profile.js';

const PROBE_ENV = { ...process.env, UV_THREADPOOL_SIZE: '32' };

async function probe<T>(args: string[], timeoutMs: number): Promise<T> {
  assertRunning(`probe ${args[0]}`);
  const r = await runOk(process.execPath, [productPaths.probe(), ...args], { timeoutMs, env: PROBE_ENV });
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as T;
}

/** `ls -l DIR` with its output discarded; wall time of the child in ms. */
export async function lsl(dir: string, timeoutMs = 120_000): Promise<{ ms: number }> {
  const r = await run('ls', ['-l', dir], { timeoutMs, discardStdout: true });
  if (r.code !== 0) throw new Error(`ls -l ${dir}: ${r.timedOut ? 'timed out' : `exit ${r.code}`}: ${r.stderr.trim()}`);
  return { ms: r.ms };
}

/** `xargs -0 -n 1 COMMAND` over `files` (one process per file, as the AMLFS prefetch recipe runs lfs): ms per file. */
export async function xargsPerFile(files: string[], command: string[], env: NodeJS.ProcessEnv, timeoutMs = 1_800_000): Promise<{ msPerFile: number; ms: number }> {
  const r = await run('xargs', ['-0', '-n', '1', ...command], { timeoutMs, env, input: files.join('\0'), discardStdout: true });
  if (r.code !== 0) throw new Error(`xargs -n 1 ${command.join(' ')}: ${r.timedOut ? 'timed out' : `exit ${r.code}`}: ${r.stderr.trim().slice(-500)}`);
  return { msPerFile: r.ms / files.length, ms: r.ms };
}

/** stat() of `count` files one after another; stats per second. */
export async function statRate(dir: string, start: number, count: number, timeoutMs = 120_000): Promise<{ perSec: number; ms: number }> {
  const r = await probe<{ count: number; ms: number }>(['stat', dir, String(start), String(count)], timeoutMs);
  return { perSec: (r.count / r.ms) * 1000, ms: r.ms };
}

export interface SeqRead {
  bytes: number;
  ms: number;
  MiBps: number;
  firstByteMs: number;
}

/** Reads a file start to end in 1 MiB reads; throughput and time from open to the first read's return. */
export async function seqRead(file: string, timeoutMs = 300_000): Promise<SeqRead> {
  const r = await probe<{ bytes: number; ms: number; firstByteMs: number }>(['seqread', file, String(MiB)], timeoutMs);
  return { ...r, MiBps: r.bytes / MiB / (r.ms / 1000) };
}

/** Opens a file and reads its first `bytes`; ms from open to that read's return. */
export async function firstByte(
  file: string,
  bytes = 4096,
  timeoutMs = 60_000,
): Promise<{ firstByteMs: number; statMs: number; openMs: number; readMs: number }> {
  return probe(['firstbyte', file, String(bytes)], timeoutMs);
}

/** Reads `count` whole files with `concurrency` readers; files per second. */
export async function readMany(dir: string, start: number, count: number, concurrency: number, timeoutMs = 300_000): Promise<{ perSec: number; ms: number; bytes: number }> {
  const r = await probe<{ count: number; ms: number; bytes: number }>(['readmany', dir, String(start), String(count), String(concurrency)], timeoutMs);
  return { perSec: (r.count / r.ms) * 1000, ms: r.ms, bytes: r.bytes };
}

export interface RandRead {
  count: number;
  perSec: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** `count` reads of `bs` bytes at random aligned offsets (fixed seed), one after another. */
export async function randRead(file: string, size: number, bs: number, count: number, seed: number, timeoutMs = 300_000): Promise<RandRead> {
  const r = await probe<{ count: number; ms: number; p50Ms: number; p99Ms: number; maxMs: number }>(
    ['randread', file, String(size), String(bs), String(count), String(seed)],
    timeoutMs,
  );
  return { count: r.count, perSec: (r.count / r.ms) * 1000, p50Ms: r.p50Ms, p99Ms: r.p99Ms, maxMs: r.maxMs };
}

/** `dd if=/dev/zero of=FILE bs=1M count=N conv=fsync`: throughput from dd's own timing (a child process). */
export async function ddWrite(file: string, bytes: number, timeoutMs = 300_000): Promise<{ MiBps: number; ms: number }> {
  const count = Math.ceil(bytes / MiB);
  const r = await runOk('dd', ['if=/dev/zero', `of=${file}`, 'bs=1M', `count=${count}`, 'conv=fsync'], { timeoutMs, env: { ...process.env, LC_ALL: 'C' } });
  // "1073741824 bytes (1.1 GB, 1.0 GiB) copied, 1.93 s, 556 MB/s"
  const m = /(\d+) bytes .* copied, ([\d.]+) s/.exec(r.stderr);
  const ms = m ? Number(m[2]) * 1000 : r.ms;
  const written = m ? Number(m[1]) : count * MiB;
  return { MiBps: written / MiB / (ms / 1000), ms };
}

/** Creates `count` files `PREFIXf000000..` of `bytes` each under dir in `chunk`-byte writes; files per second. */
export async function writeMany(dir: string, prefix: string, count: number, bytes: number, chunk: number, timeoutMs = 300_000): Promise<{ perSec: number; ms: number }> {
  const r = await probe<{ count: number; ms: number }>(['writemany', dir, prefix, String(count), String(bytes), String(chunk)], timeoutMs);
  return { perSec: (r.count / r.ms) * 1000, ms: r.ms };
}

/** Writes `count` files of `bytes` each under dir (one `sh` child), e.g. to make files dirty. */
export async function writeFiles(dir: string, names: string[], bytes: number, timeoutMs = 120_000): Promise<{ ms: number }> {
  const kib = Math.max(1, Math.ceil(bytes / 1024));
  const script = names.map((n) => `dd if=/dev/urandom of='${dir}/${n}' bs=1K count=${kib} status=none`).join(' && ');
  const r = await runOk('/bin/sh', ['-c', script], { timeoutMs });
  return { ms: r.ms };
}
