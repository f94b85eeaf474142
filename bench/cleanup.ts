// Teardown for the whole bench run: a stack of cleanup steps run in reverse on success, failure or a signal
// (mounts, daemons, rclone, the null filesystem, Azurite), and a way to break a FUSE mount that no longer answers
// (abort its fusectl connection, then detach it lazily). Reads /proc only; never touches the mount.
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { mountTable as mounts, isMounted } from '../src/daemon/mount-checks.js';

export { mounts, isMounted };

type Step = { name: string; fn: () => Promise<void> | void };

const steps: Step[] = [];
let running: Promise<void> | undefined;
let shuttingDown = false;

/** True once a signal asked the run to stop: nothing new may be mounted or started. */
export function isShuttingDown(): boolean {
  return shuttingDown;
}

/** Throws when the run is stopping (called before starting a mount or a workload child). */
export function assertRunning(what: string): void {
  if (shuttingDown) throw new Error(`not starting ${what}: the run is stopping`);
}

/**
 * Registers a cleanup step; returns a function that runs it now (once) and removes it from the stack. A step
 * registered while the run is stopping (something started just before the signal) is run at once.
 */
export function onCleanup(name: string, fn: () => Promise<void> | void): () => Promise<void> {
  const step: Step = { name, fn };
  steps.push(step);
  if (shuttingDown) void cleanupAll();
  let done = false;
  return async () => {
    if (done) return;
    done = true;
    const i = steps.indexOf(step);
    if (i >= 0) steps.splice(i, 1);
    await fn();
  };
}

/** Runs every registered step, newest first; each is bounded in time and may fail without stopping the rest. */
export function cleanupAll(log: (line: string) => void = (l) => process.stderr.write(l + '\n')): Promise<void> {
  running ??= (async () => {
    while (steps.length) {
      const step = steps.pop()!;
      try {
        await Promise.race([
          Promise.resolve().then(step.fn),
          new Promise((_, reject) => setTimeout(() => reject(new Error('timed out after 90 s')), 90_000).unref()),
        ]);
      } catch (err) {
        log(`cleanup ${step.name}: ${(err as Error).message}`);
      }
    }
    running = undefined; // a step registered later starts a new pass
  })();
  return running;
}

/** On SIGINT/SIGTERM/SIGHUP: clean up, then exit 130. */
export function installSignalHandlers(log: (line: string) => void): void {
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      shuttingDown = true;
      log(`\n${sig}: cleaning up (mounts, daemons, rclone, Azurite)...`);
      const hard = setTimeout(() => process.exit(130), 120_000);
      void (async () => {
        await cleanupAll(log);
        // Something that was starting when the signal came registers its cleanup a moment later.
        await new Promise((r) => setTimeout(r, 2000));
        await cleanupAll(log);
      })().finally(() => {
        clearTimeout(hard);
        process.exit(130);
      });
    });
  }
}

/** The kernel's block-device id of a mount ("0:53"), for /sys/class/bdi. */
export function mountDevice(mountpoint: string): string | undefined {
  const want = resolve(mountpoint);
  return mounts().find((m) => m.mountpoint === want)?.majorMinor;
}

/** Aborts the FUSE connection of a mount (its pending requests fail) and detaches it lazily. */
export function breakMount(mountpoint: string): void {
  const want = resolve(mountpoint);
  const entry = mounts().find((m) => m.mountpoint === want && m.fstype.startsWith('fuse'));
  if (entry) {
    const conn = entry.majorMinor.split(':')[1];
    const base = '/sys/fs/fuse/connections';
    if (!existsSync(base) || readdirSync(base).length === 0) spawnSync('mount', ['-t', 'fusectl', 'none', base]);
    try {
      writeFileSync(`${base}/${conn}/abort`, '1');
    } catch {
      /* not a FUSE connection any more, or fusectl unavailable */
    }
  }
  spawnSync('fusermount', ['-uz', want], { timeout: 10_000 });
  if (isMounted(want)) spawnSync('umount', ['-l', want], { timeout: 10_000 });
}

/** A bench's entry point: runs main, then every cleanup step whatever happened, and exits with main's code. */
export async function runBench(main: () => Promise<number>): Promise<never> {
  let code = 1;
  try {
    code = await main();
  } catch (err) {
    process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
  } finally {
    await cleanupAll();
  }
  process.exit(code);
}

/**
 * The start of a bench run: its start time, a log with seconds since then, the signal handlers, and a work
 * directory removed by the cleanup (its `product` snapshot's node_modules link first, never the repo's modules),
 * unless something is still mounted under it.
 */
export function startBench(name: string | null): { started: Date; t0: number; log: (line: string) => void; baseDir: string } {
  const started = new Date();
  const t0 = performance.now();
  const log = (line: string) => process.stderr.write(`[${((performance.now() - t0) / 1000).toFixed(0).padStart(4)} s] ${line}\n`);
  installSignalHandlers(log);
  const baseDir = mkdtempSync(join(tmpdir(), name ? `blobhsm-bench-${name}-` : 'blobhsm-bench-'));
  onCleanup('work directory', () => {
    const live = mounts().filter((m) => m.mountpoint.startsWith(baseDir + '/'));
    if (live.length) {
      log(`not removing ${baseDir}: still mounted: ${live.map((m) => m.mountpoint).join(', ')}`);
      return;
    }
    rmSync(join(baseDir, 'product', 'node_modules'), { force: true });
    rmSync(baseDir, { recursive: true, force: true });
  });
  return { started, t0, log, baseDir };
}
