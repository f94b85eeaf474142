// `npm run bench [-- --profile quick|full] [--no-rclone] [--bindings fuse3,fuse2] [--out FILE]`: one run on one Azurite started here
// (in-memory, own free loopback port). References first (SDK, local disk, a null FUSE filesystem), then the peer
// (rclone mount), then blobhsm on each FUSE binding (`--bindings`, default fuse3 then fuse2); prints the table and writes it as JSON under bench/results/. Everything it
// starts is stopped at the end, on failure and on SIGINT/SIGTERM.
import { rmSync } from 'node:fs';
import { cpus, loadavg, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { startEmulator } from '../src/emulator/emulator.js';
import { parseArgs, MiB, type Binding, type ScaleArgs } from './profile.js';
import { runScale } from './scale.js';
import { cleanupAll, mounts, breakMount, onCleanup, runBench, startBench } from './cleanup.js';
import { canDropCaches, dropCaches, setStuckHandler } from './proc.js';
import { deleteBlobsUnder, seed } from './seed.js';
import { measureSdk, measureSdkDrift, type SdkDrift, type SdkRefs } from './sdk-refs.js';
import { measureDisk } from './disk-refs.js';
import { measureNullFs } from './null-refs.js';
import { runRclone, type RcloneOutcome } from './rclone.js';
import { runBlobhsm } from './blobhsm-workloads.js';
import { mountBlobhsm } from './blobhsm-mount.js';
import { BIG_DIR, CONTAINERS, LARGE_BLOB, SMALL_DIR } from './names.js';
import { buildRows, type References, type Row } from './targets.js';
import { bindingsTable, defaultResultsPath, publish, writeJson } from './report.js';
import { describeError, type Results } from './results.js';
import { REPO, snapshotProduct } from './product.js';

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  const p = args.profile;
  const { started, t0, log, baseDir } = startBench(null);
  // Per binding measured: the blobhsm passes are most of a run.
  const hardLimitMs = (p.name === 'full' || args.scale ? 120 : 30 * args.bindings.length + 5) * 60_000;
  const watchdog = setTimeout(() => {
    log(`the run exceeded its ${hardLimitMs / 60_000} min limit: cleaning up`);
    void cleanupAll(log).finally(() => process.exit(124));
  }, hardLimitMs);
  watchdog.unref();

  snapshotProduct(join(baseDir, 'product'));
  if (args.scale) return scaleMain(args.scale, args.out, baseDir, started, t0, log);
  // A workload child stuck in the kernel (hung FUSE mount): abort every mount of this run so it can die.
  setStuckHandler((what) => {
    log(`a child is stuck (${what}): aborting this run's FUSE connections`);
    for (const m of mounts()) if (m.mountpoint.startsWith(baseDir + '/')) breakMount(m.mountpoint);
  });

  log(`profile ${p.name}: ${p.namespaceBlobs} blobs, ${p.smallFiles} small files, large file ${(p.largeBytes / MiB).toFixed(0)} MiB; work dir ${baseDir}`);
  const loadBefore = loadavg();
  let loadMax = loadBefore[0]!;
  const loadTimer = setInterval(() => (loadMax = Math.max(loadMax, loadavg()[0]!)), 5000);
  loadTimer.unref();
  const emu = await startEmulator({ dataDir: join(baseDir, 'azurite'), inMemory: true });
  onCleanup('Azurite', () => emu.stop(5000));
  log(`Azurite (in memory) on ${emu.blobEndpoint}, pid ${emu.pid}`);
  if (!(await dropCaches())) log('cannot drop the kernel caches (not root?): "cold" figures may be warm');

  const seeded = await seed(emu.connectionString, p, log);
  // Fail fast when the built product cannot mount on a binding (a broken build, the addon not built), before
  // minutes of references.
  for (const binding of args.bindings) {
    try {
      const m = await mountBlobhsm({ baseDir, connectionString: emu.connectionString }, CONTAINERS.smallNamespace, 'preflight', 'preflight', { timeoutMs: 120_000, extraArgs: ['--fuse', binding] });
      await m.unmount();
      rmSync(join(baseDir, 'cache', 'preflight'), { recursive: true, force: true });
    } catch (err) {
      throw new Error(`blobhsm cannot mount with --fuse ${binding}, nothing to measure (--bindings chooses which are measured): ${describeError(err)}`);
    }
  }
  const refs: References = { errors: {} };
  const ref = async <T>(name: string, fn: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await fn();
    } catch (err) {
      refs.errors[name] = describeError(err);
      log(`reference ${name} FAILED: ${describeError(err)}`);
      return undefined;
    }
  };
  refs.sdk = await ref<SdkRefs>('sdk', () => measureSdk(emu.connectionString, p, seeded.data, log));
  seeded.data = Buffer.alloc(0);
  refs.disk = await ref('disk', () => measureDisk(baseDir, p, log));
  refs.nullFs = await ref('null-fs', () => measureNullFs(baseDir, p, log, 'fuse-native'));
  refs.nullLl = await ref('null-ll', () => measureNullFs(baseDir, p, log, 'c-lowlevel'));

  let rclone: RcloneOutcome | undefined;
  if (!args.skipRclone) {
    try {
      rclone = await runRclone({ profile: p, baseDir, blobEndpoint: emu.blobEndpoint, azuritePid: emu.pid, log });
      if (!rclone.available) log(`rclone unavailable: ${rclone.reason}`);
    } catch (err) {
      rclone = { available: false, reason: describeError(err), results: {}, notes: [] };
      log(`rclone FAILED: ${describeError(err)}`);
    }
  }

  const blobhsm: Partial<Record<Binding, Results>> = {};
  for (const binding of args.bindings) {
    // Each pass sees the seeded containers only: what rclone and earlier passes uploaded goes first.
    const removed = await deleteBlobsUnder(emu.connectionString, [[CONTAINERS.data, ''], [CONTAINERS.namespace, `${BIG_DIR}/dirty-`], [CONTAINERS.smallNamespace, `${SMALL_DIR}/dirty-`]], new Set([LARGE_BLOB]));
    log(`blobhsm on --fuse ${binding}${removed ? ` (deleted ${removed} blobs written by earlier mounts)` : ''}:`);
    try {
      blobhsm[binding] = await runBlobhsm({ profile: p, binding, measureCli: binding === args.bindings[0], env: { baseDir, connectionString: emu.connectionString }, azuritePid: emu.pid, log });
    } catch (err) {
      blobhsm[binding] = {};
      log(`blobhsm workloads on ${binding} FAILED: ${describeError(err)}`);
    }
  }

  let drift: SdkDrift | undefined;
  if (refs.sdk) drift = await ref('drift', () => measureSdkDrift(emu.connectionString, p, refs.sdk!));
  clearInterval(loadTimer);
  const driftLine = drift
    ? `reference drift (start → end of run): SDK 4 KiB GET median ${drift.rangedGet4kMs.map((v) => v.toFixed(1)).join(' → ')} ms, ` +
      `small GETs ${drift.smallGetPerSec.map((v) => v.toFixed(0)).join(' → ')}/s` +
      (drift.maxChange > 0.25 ? ` — WARNING: the small-GET rate changed by ${(drift.maxChange * 100).toFixed(0)} % during the run (other load on the machine, or Azurite slowing as it fills); ratios against the references are less reliable` : '')
    : 'reference drift: not measured';

  const rows = Object.fromEntries(args.bindings.map((b) => [b, buildRows(p, refs, blobhsm[b] ?? {}, rclone, b)])) as Partial<Record<Binding, Row[]>>;
  const rcloneNote = !rclone ? 'skipped (--no-rclone)' : rclone.available ? rclone.notes.join('; ') : `unavailable: ${rclone.reason}`;
  const durationS = (performance.now() - t0) / 1000;
  const header =
    `blobhsm bench, profile ${p.name}, ${started.toISOString()}, ${durationS.toFixed(0)} s; ` +
    `${cpus().length} CPUs, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Linux ${release()}, Node ${process.version}; ` +
    `large file ${(p.largeBytes / MiB).toFixed(0)} MiB; caches dropped: ${canDropCaches() ? 'yes' : 'NO'}; ` +
    `load average ${loadBefore[0]!.toFixed(2)} at start, ${loadMax.toFixed(2)} at most\n${driftLine}`;
  process.stdout.write(`\n${header}\n\n${bindingsTable(rows, rcloneNote)}\n`);
  const out = args.out ?? defaultResultsPath(REPO, p.name, started);
  writeJson(out, {
    profile: p,
    startedAt: started.toISOString(),
    durationS,
    machine: { cpus: cpus().length, memBytes: totalmem(), kernel: release(), node: process.version, loadBefore, loadMax, loadAfter: loadavg() },
    drift,
    cachesDropped: canDropCaches(),
    seed: { namespaceMs: seeded.namespaceMs, namespaceBlobs: seeded.namespaceBlobs, largeUploadMs: seeded.largeUploadMs },
    references: refs,
    rclone: rclone ?? { skipped: true },
    blobhsm,
    rows,
  });
  process.stdout.write(`\nJSON: ${out}\n`);
  return 0;
}

/** `--profile scale`: bench/scale.ts on synthetic listing sources; prints and writes its own table. */
async function scaleMain(s: ScaleArgs, outPath: string | undefined, baseDir: string, started: Date, t0: number, log: (line: string) => void): Promise<number> {
  log(`profile scale: a tree of ${s.treeBlobs} blobs, a directory of ${s.wideBlobs}; work dir ${baseDir}`);
  const loadStart = loadavg()[0]!;
  const rows = await runScale({ baseDir, treeBlobs: s.treeBlobs, wideBlobs: s.wideBlobs, log });
  const elapsedS = (performance.now() - t0) / 1000;
  publish({ title: 'blobhsm bench, profile scale', profile: 'scale', repoRoot: REPO, out: outPath, started, elapsedS, loadStart, rows, rcloneNote: 'not run in the scale profile', data: { profile: 'scale', scale: s, durationS: elapsedS } });
  return 0;
}

await runBench(main);
