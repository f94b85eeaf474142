// Drives the null filesystem references, each started in its own process for every measurement (a fresh mount,
// so the kernel caches nothing): `fuse-native` (bench/null-fs.js, libfuse 2 through JavaScript: the fuse2
// binding's ceiling; op counters over IPC) and `c-lowlevel` (bench/null-ll.c, libfuse3's low-level API in C with
// blobhsm's libfuse3 settings: the FUSE ceiling; compiled here with cc and pkg-config, counters over its
// stdin/stdout). Runs the workloads from child processes and stops the server (breaking the mount if it does not go).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { mountAt } from '../src/daemon/mount-checks.js';
import { productPaths } from './product.js';
import type { Profile } from './profile.js';
import { assertRunning, breakMount, isMounted, onCleanup } from './cleanup.js';
import { sleep } from './proc.js';
import { lsl, readMany, seqRead, statRate, ddWrite, writeMany } from './fs-workloads.js';
import type { NullFsConfig, NullFsStats } from './null-fs.js';
import { BIG_DIR, LARGE_BLOB } from './names.js';

export type NullFsKind = 'fuse-native' | 'c-lowlevel';

export interface NullRefs {
  kind: NullFsKind;
  lslMs: number;
  /** FUSE requests one `ls -l` of the directory sent, by op. */
  lslOps: Record<string, number>;
  /** getxattr requests of that `ls -l` by attribute name. */
  lslXattrNames: Record<string, number>;
  /** A second `ls -l` on the same mount (entries and attributes cached by the kernel). */
  lslWarmMs: number;
  statPerSec: number;
  readMiBps: number;
  writeMiBps: number;
  writeSizes: Record<string, number>;
  /** READ sizes the kernel sent during the sequential read: size → count. */
  readSizes: Record<string, number>;
  smallReadPerSec: number;
  /** c-lowlevel only: the same write with FUSE_CAP_WRITEBACK_CACHE negotiated (the writeback ceiling). */
  writeback?: { writeMiBps: number; writeSizes: Record<string, number>; smallWritePerSec: number; smallWritePerSecNoWriteback: number };
}

interface NullFs {
  stats(): Promise<NullFsStats>;
  stop(): Promise<void>;
}

/** Stops a null filesystem server (registered for cleanup): asks it to unmount and exit, and after 10 s breaks its
 * mount and kills it. */
function stopper(name: string, child: ChildProcess, exited: Promise<void>, mountpoint: string, ask: () => void): () => Promise<void> {
  return onCleanup(name, async () => {
    if (child.exitCode === null) ask();
    const gone = await Promise.race([exited.then(() => true), sleep(10_000).then(() => false)]);
    if (!gone) {
      breakMount(mountpoint);
      child.kill('SIGKILL');
      await Promise.race([exited, sleep(5000)]);
    }
    if (isMounted(mountpoint)) breakMount(mountpoint);
  });
}

async function startFuseNative(cfg: NullFsConfig): Promise<NullFs> {
  assertRunning('the fuse-native null filesystem');
  mkdirSync(cfg.mountpoint, { recursive: true });
  const child: ChildProcess = spawn(process.execPath, [productPaths.nullFs(), JSON.stringify(cfg)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const request = <T>(cmd: string, key: string, timeoutMs = 10_000) =>
    new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`null-fs did not answer '${cmd}'`)), timeoutMs);
      const on = (m: Record<string, unknown>) => {
        if (!(key in m)) return;
        clearTimeout(timer);
        child.off('message', on);
        resolve(m[key] as T);
      };
      child.on('message', on);
      child.send({ cmd });
    });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const stop = stopper(`null-fs ${cfg.mountpoint}`, child, exited, cfg.mountpoint, () => {
    if (child.connected) child.send({ cmd: 'stop' });
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('null-fs did not mount within 20 s')), 20_000);
    child.once('message', (m: { ready?: boolean; error?: string }) => {
      clearTimeout(timer);
      if (m.ready) resolve();
      else reject(new Error(`null-fs: ${m.error ?? 'failed to mount'}`));
    });
    child.once('exit', (code) => reject(new Error(`null-fs exited (${code}) before mounting`)));
  }).catch(async (err) => {
    await stop();
    throw err;
  });
  return { stats: () => request<NullFsStats>('stats', 'stats'), stop };
}

/** Compiles bench/null-ll.c into `dir` (once per run): cc and libfuse3's headers (libfuse3-dev, bin/setup.sh). */
function buildCLowLevel(dir: string): string {
  const out = join(dir, 'null-ll');
  const flags = spawnSync('pkg-config', ['--cflags', '--libs', 'fuse3'], { encoding: 'utf8' });
  if (flags.status !== 0) throw new Error(`pkg-config fuse3 failed (is libfuse3-dev installed? npm run setup): ${(flags.stderr || flags.error?.message || '').trim()}`);
  const cc = spawnSync('cc', ['-O2', '-Wall', '-o', out, productPaths.nullLlSource(), ...flags.stdout.trim().split(/\s+/)], { encoding: 'utf8' });
  if (cc.status !== 0) throw new Error(`cc bench/null-ll.c failed: ${(cc.stderr || cc.error?.message || '').trim().slice(-1000)}`);
  return out;
}

/** Raises the mount's read-ahead to the daemon's 1024 KiB (src/daemon/mount-checks.ts tuneReadAhead does it for
 * blobhsm mounts only), so the kernel sends 1 MiB READs as it does to blobhsm. */
function raiseReadAhead(mountpoint: string, log: (line: string) => void): void {
  const entry = mountAt(mountpoint);
  try {
    if (!entry) throw new Error('not mounted');
    writeFileSync(`/sys/class/bdi/${entry.majorMinor}/read_ahead_kb`, '1024');
  } catch (err) {
    log(`null-ll: could not raise read_ahead_kb of ${mountpoint}: ${(err as Error).message}`);
  }
}

async function startCLowLevel(binary: string, cfg: NullFsConfig, writeback: boolean, log: (line: string) => void): Promise<NullFs> {
  assertRunning('the C null filesystem');
  mkdirSync(cfg.mountpoint, { recursive: true });
  const args = [cfg.mountpoint, String(cfg.entries), String(cfg.smallBytes), String(cfg.largeBytes), ...(writeback ? ['writeback'] : [])];
  const child = spawn(binary, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout! });
  const waiting: Array<(line: string) => void> = [];
  const early: string[] = [];
  lines.on('line', (line) => {
    const w = waiting.shift();
    if (w) w(line);
    else early.push(line);
  });
  const nextLine = (timeoutMs: number, what: string) =>
    new Promise<string>((resolve, reject) => {
      const queued = early.shift();
      if (queued !== undefined) return resolve(queued);
      const timer = setTimeout(() => reject(new Error(`null-ll: no answer to '${what}' within ${timeoutMs / 1000} s`)), timeoutMs);
      waiting.push((line) => {
        clearTimeout(timer);
        resolve(line);
      });
    });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const stop = stopper(`null-ll ${cfg.mountpoint}`, child, exited, cfg.mountpoint, () => child.stdin!.end('stop\n'));
  const died = exited.then(() => {
    throw new Error(`null-ll exited (${child.exitCode}) before mounting`);
  });
  try {
    const first = await Promise.race([nextLine(20_000, 'mount'), died]);
    if (first !== 'ready') throw new Error(`null-ll: unexpected '${first}' instead of 'ready'`);
  } catch (err) {
    await stop();
    throw err;
  }
  died.catch(() => undefined);
  // "ready" comes from the INIT callback, before the kernel has read the reply, and the kernel sets the read-ahead
  // from that reply: one request through the mount (it waits for INIT) first, or 1024 KiB is lowered to 128 again.
  await stat(cfg.mountpoint);
  raiseReadAhead(cfg.mountpoint, log);
  return {
    stats: async () => {
      child.stdin!.write('stats\n');
      return (JSON.parse(await nextLine(10_000, 'stats')) as { stats: NullFsStats }).stats;
    },
    stop,
  };
}

/**
 * One null filesystem's figures: `ls -l` of the N-entry directory (fresh mount, then repeated), uncached stat rate,
 * sequential read and write, small-file reads, and the READ/WRITE sizes the kernel sent; for `c-lowlevel` also the
 * sequential write and the small-file write with the writeback cache negotiated (the writeback ceiling).
 */
export async function measureNullFs(workDir: string, p: Profile, log: (line: string) => void, kind: NullFsKind = 'fuse-native'): Promise<NullRefs> {
  const mnt = join(workDir, kind === 'c-lowlevel' ? 'null-ll-mnt' : 'null-mnt');
  const cfg: NullFsConfig = { mountpoint: mnt, entries: p.namespaceBlobs, smallBytes: p.smallFileBytes, largeBytes: p.largeBytes };
  const binary = kind === 'c-lowlevel' ? buildCLowLevel(workDir) : '';
  const start = (writeback = false) => (kind === 'c-lowlevel' ? startCLowLevel(binary, cfg, writeback, log) : startFuseNative(cfg));
  const best = async <T>(fn: () => Promise<T>, score: (t: T) => number): Promise<T> => {
    let keep: T | undefined;
    // At least two tries: the ceiling should not be a single unlucky sample on a shared machine.
    for (let r = 0; r < Math.max(2, p.repeats); r++) {
      const t = await fn();
      if (keep === undefined || score(t) > score(keep)) keep = t;
    }
    return keep!;
  };
  const onFresh = async <T>(fn: (fs: NullFs) => Promise<T>, writeback = false): Promise<T> => {
    const fs = await start(writeback);
    try {
      return await fn(fs);
    } finally {
      await fs.stop();
    }
  };

  const ls = await best(
    () =>
      onFresh(async (fs) => {
        const cold = await lsl(join(mnt, BIG_DIR));
        const st = await fs.stats();
        const warm = await lsl(join(mnt, BIG_DIR));
        return { ms: cold.ms, ops: st.ops, xattrNames: st.xattrNames, warmMs: warm.ms };
      }),
    (r) => -r.ms,
  );
  const stat = await best(() => onFresh(() => statRate(join(mnt, BIG_DIR), 0, p.statCount)), (r) => r.perSec);
  const read = await best(() => onFresh(async (fs) => ({ ...(await seqRead(join(mnt, LARGE_BLOB))), sizes: (await fs.stats()).readSizes })), (r) => r.MiBps);
  const small = await best(() => onFresh(() => readMany(join(mnt, BIG_DIR), 0, p.smallFiles, p.smallConcurrency)), (r) => r.perSec);
  const writeOn = (writeback: boolean) =>
    best(() => onFresh(async (fs) => ({ ...(await ddWrite(join(mnt, 'w', 'out.bin'), p.largeBytes)), sizes: (await fs.stats()).writeSizes }), writeback), (r) => r.MiBps);
  const smallWriteOn = (writeback: boolean) =>
    best(() => onFresh(() => writeMany(join(mnt, 'w'), 's', p.smallWriteFiles, p.smallWriteBytes, 4096), writeback), (r) => r.perSec);
  const write = await writeOn(false);
  let writeback: NullRefs['writeback'];
  if (kind === 'c-lowlevel') {
    const wb = await writeOn(true);
    writeback = { writeMiBps: wb.MiBps, writeSizes: wb.sizes, smallWritePerSec: (await smallWriteOn(true)).perSec, smallWritePerSecNoWriteback: (await smallWriteOn(false)).perSec };
  }
  log(
    `null fs ${kind}: ls -l ${ls.ms.toFixed(0)} ms (repeated ${ls.warmMs.toFixed(0)} ms), stat ${stat.perSec.toFixed(0)}/s, read ${read.MiBps.toFixed(0)} MiB/s, ` +
      `write ${write.MiBps.toFixed(0)} MiB/s, small files ${small.perSec.toFixed(0)}/s; ls -l ops ${JSON.stringify(ls.ops)}; READ sizes ${JSON.stringify(read.sizes)}, WRITE sizes ${JSON.stringify(write.sizes)}` +
      (writeback ? `; with writeback cache: write ${writeback.writeMiBps.toFixed(0)} MiB/s, small-file writes ${writeback.smallWritePerSec.toFixed(0)}/s (without ${writeback.smallWritePerSecNoWriteback.toFixed(0)}/s)` : ''),
  );
  return {
    kind,
    lslMs: ls.ms,
    lslOps: ls.ops,
    lslXattrNames: ls.xattrNames,
    lslWarmMs: ls.warmMs,
    statPerSec: stat.perSec,
    readMiBps: read.MiBps,
    writeMiBps: write.MiBps,
    writeSizes: write.sizes,
    readSizes: read.sizes,
    smallReadPerSec: small.perSec,
    ...(writeback ? { writeback } : {}),
  };
}
