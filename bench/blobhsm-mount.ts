// blobhsm mounts for the bench, driven only through its CLI (`blobhsm mount/status/export/unmount` as child
// processes): a mount of a container with its own cache directory, request counters from `blobhsm status`, the
// daemon's /proc I/O counters, and an unmount that falls back to breaking the mount and killing the daemon.
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { productPaths } from './product.js';
import { assertRunning, breakMount, isMounted, onCleanup } from './cleanup.js';
import { isAlive, procIo, run, runOk, sleep, type ProcIo } from './proc.js';

export type Requests = Record<string, number>;

export interface BlobhsmMount {
  mountpoint: string;
  cacheDir: string;
  container: string;
  /** Wall time of `blobhsm mount` (includes the import on a first mount), in ms. */
  mountMs: number;
  daemonPid: number;
  /** The daemon's log file, as `blobhsm mount` reports it. */
  logPath?: string;
  requests(): Promise<Requests>;
  daemonIo(): ProcIo | undefined;
  /** `blobhsm export MNT --json`; wall time of the child and the job summary. */
  exportAll(timeoutMs?: number): Promise<{ ms: number; job: Record<string, unknown> }>;
  unmount(): Promise<void>;
}

export interface BlobhsmEnv {
  /** Everything of one bench run lives under here (state, logs, caches, mountpoints). */
  baseDir: string;
  connectionString: string;
}

export function envFor(e: BlobhsmEnv): NodeJS.ProcessEnv {
  return {
    ...process.env,
    BLOBHSM_STATE_DIR: join(e.baseDir, 'blobhsm-state'),
    XDG_CACHE_HOME: join(e.baseDir, 'xdg-cache'),
    XDG_DATA_HOME: join(e.baseDir, 'xdg-data'),
    // The connection string goes by environment, not argv, so the (public, emulator) key never shows in `ps`.
    AZURE_STORAGE_CONNECTION_STRING: e.connectionString,
  };
}

export function blobhsmCli(e: BlobhsmEnv, args: string[], timeoutMs: number) {
  return run(process.execPath, [productPaths.bin(), ...args], { env: envFor(e), timeoutMs });
}

/** Mounts `container` on `name` with cache directory `cacheName` (reuse a cache name to remount without import). */
export async function mountBlobhsm(
  e: BlobhsmEnv,
  container: string,
  name: string,
  cacheName: string,
  o: { extraArgs?: string[]; timeoutMs?: number } = {},
): Promise<BlobhsmMount> {
  const timeoutMs = o.timeoutMs ?? 600_000;
  assertRunning(`a blobhsm mount of ${container}`);
  const mountpoint = join(e.baseDir, 'mnt', name);
  const cacheDir = join(e.baseDir, 'cache', cacheName);
  mkdirSync(mountpoint, { recursive: true });
  const env = envFor(e);
  const bin = productPaths.bin();
  const cli = (args: string[], t: number) => run(process.execPath, [bin, ...args], { env, timeoutMs: t });
  let daemonPid = 0;
  const unmount = onCleanup(`blobhsm ${mountpoint}`, async () => {
    const r = await cli(['unmount', mountpoint], 90_000);
    if (r.code !== 0 && isMounted(mountpoint)) breakMount(mountpoint);
    if (daemonPid && isAlive(daemonPid)) {
      process.kill(daemonPid, 'SIGKILL');
      await sleep(200);
    }
    if (isMounted(mountpoint)) breakMount(mountpoint);
  });
  const r = await cli(['mount', mountpoint, '--container', container, '--cache-dir', cacheDir, ...(o.extraArgs ?? [])], timeoutMs);
  if (r.code !== 0) {
    await unmount();
    throw new Error(`blobhsm mount ${container} failed (${r.timedOut ? 'timed out' : `exit ${r.code}`}): ${(r.stderr + r.stdout).trim().slice(-2000)}`);
  }
  const status = async () => JSON.parse((await runOk(process.execPath, [bin, 'status', '--json', mountpoint], { env, timeoutMs: 30_000 })).stdout) as { pid: number; requests: Requests };
  daemonPid = (await status()).pid;
  return {
    mountpoint,
    cacheDir,
    container,
    mountMs: r.ms,
    daemonPid,
    logPath: /log (\/[^)]+)\)/.exec(r.stdout)?.[1],
    requests: async () => (await status()).requests ?? {},
    daemonIo: () => procIo(daemonPid),
    exportAll: async (t = 600_000) => {
      const x = await runOk(process.execPath, [bin, 'export', mountpoint, '--json'], { env, timeoutMs: t });
      return { ms: x.ms, job: JSON.parse(x.stdout.trim().split('\n').pop()!) as Record<string, unknown> };
    },
    unmount,
  };
}

/** b − a per operation, without zero entries. */
export function requestDelta(a: Requests, b: Requests): Requests {
  const out: Requests = {};
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
    const d = (b[k] ?? 0) - (a[k] ?? 0);
    if (d !== 0) out[k] = d;
  }
  return out;
}

export function totalRequests(r: Requests): number {
  return Object.values(r).reduce((s, n) => s + n, 0);
}
