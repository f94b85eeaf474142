// The blobhsm workloads on one FUSE binding (`--fuse fuse3|fuse2` on every mount; run once per binding, with
// cache directories of their own; bench/run.ts deletes what earlier passes and rclone uploaded before each pass), each on a fresh mount (a remount of the same cache directory where the namespace is
// wanted without re-importing it, a new cache directory where the data must not be hydrated), with the kernel
// caches dropped where it matters. Requests come from `blobhsm status` (difference before/after), bytes moved
// from Azurite's /proc I/O counters. Every figure is measured in a child process.
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Binding, Profile } from './profile.js';
import { MiB } from './profile.js';
import { dropCaches, ioDelta, procIo } from './proc.js';
import { envFor, mountBlobhsm, requestDelta, totalRequests, type BlobhsmEnv, type BlobhsmMount, type Requests } from './blobhsm-mount.js';
import { ddWrite, firstByte, lsl, randRead, readMany, seqRead, statRate, writeFiles, writeMany, xargsPerFile } from './fs-workloads.js';
import { productPaths } from './product.js';
import { isMeasurement, step, type Measurement, type Results } from './results.js';
import { BIG_DIR, CONTAINERS, LARGE_BLOB, SMALL_DIR, fileName } from './names.js';

export interface WorkloadContext {
  profile: Profile;
  binding: Binding;
  /** Run the CLI start-up row (bench/run.ts: on the first binding's pass only). */
  measureCli: boolean;
  env: BlobhsmEnv;
  azuritePid: number;
  log: (line: string) => void;
}

/** Counts requests (blobhsm status) and Azurite bytes around fn. */
async function counted<T>(ctx: WorkloadContext, m: BlobhsmMount, fn: () => Promise<T>): Promise<{ value: T; requests: Requests; bytesFetched: number; bytesUploaded: number }> {
  const r0 = await m.requests();
  const a0 = procIo(ctx.azuritePid);
  const value = await fn();
  const a1 = procIo(ctx.azuritePid);
  const r1 = await m.requests();
  const d = ioDelta(a0, a1);
  return { value, requests: requestDelta(r0, r1), bytesFetched: d?.wchar ?? NaN, bytesUploaded: d?.rchar ?? NaN };
}

async function withMount<T>(
  ctx: WorkloadContext,
  container: string,
  name: string,
  cacheName: string,
  fn: (m: BlobhsmMount) => Promise<T>,
  extraArgs: string[] = [],
): Promise<T> {
  const m = await mountBlobhsm(ctx.env, container, name, `${ctx.binding}-${cacheName}`, { extraArgs: ['--fuse', ctx.binding, ...extraArgs] });
  try {
    return await fn(m);
  } finally {
    await m.unmount();
  }
}

function dropCache(ctx: WorkloadContext, cacheName: string): void {
  rmSync(join(ctx.env.baseDir, 'cache', `${ctx.binding}-${cacheName}`), { recursive: true, force: true });
}

export async function runBlobhsm(ctx: WorkloadContext): Promise<Results> {
  const { profile: p, log } = ctx;
  const results: Results = {};
  const big = (m: BlobhsmMount) => join(m.mountpoint, BIG_DIR);
  const large = (m: BlobhsmMount) => join(m.mountpoint, LARGE_BLOB);
  const dirty = Array.from({ length: p.dirtyFiles }, (_, i) => `dirty-${i}`);
  let baselineMountMs = NaN;

  // A small namespace first: its mount time is the baseline cost of a mount (daemon start, FUSE mount).
  log('blobhsm: small namespace (baseline mount time)...');
  try {
    await withMount(ctx, CONTAINERS.smallNamespace, 'small', 'ns-small', async (m) => {
      baselineMountMs = m.mountMs;
    });
  } catch (err) {
    log(`  baseline mount failed: ${(err as Error).message}`);
  }

  log(`blobhsm: import of ${p.namespaceBlobs} blobs, ls -l, stat, small files, export in a large namespace...`);
  await dropCaches();
  let nsMount: BlobhsmMount | undefined;
  await step(results, 'import', log, async () => {
    nsMount = await mountBlobhsm(ctx.env, CONTAINERS.namespace, 'ns', `${ctx.binding}-ns`, { extraArgs: ['--fuse', ctx.binding] });
    const requests = await nsMount.requests();
    return {
      value: p.namespaceBlobs / (nsMount.mountMs / 1000),
      unit: 'blobs/s',
      requests,
      detail: { blobs: p.namespaceBlobs, mountMs: nsMount.mountMs, baselineMountMs },
    };
  });
  if (nsMount) {
    const m = nsMount;
    try {
      await step(results, 'lsl-cold', log, async () => {
        const c = await counted(ctx, m, () => lsl(big(m)));
        return { value: c.value.ms, unit: 'ms', requests: c.requests };
      });
      await step(results, 'lsl-warm', log, async () => {
        const c = await counted(ctx, m, () => lsl(big(m)));
        return { value: c.value.ms, unit: 'ms', requests: c.requests };
      });
      // CLI start-up does not depend on the binding: measured on the first pass only (1,000 Node starts twice).
      if (ctx.measureCli) await step(results, 'cli-xargs', log, async () => {
        const files = Array.from({ length: Math.min(p.cliFiles, p.namespaceBlobs) }, (_, i) => join(big(m), fileName(i)));
        const env = envFor(ctx.env);
        // The floor first: a bare Node start per file, through the same xargs.
        const floor = await xargsPerFile(files, [process.execPath, '-e', '0'], env);
        const c = await counted(ctx, m, () => xargsPerFile(files, [process.execPath, productPaths.bin(), 'hsm_state'], env));
        return { value: c.value.msPerFile, unit: 'ms', requests: c.requests, detail: { files: files.length, nodeMsPerFile: floor.msPerFile, totalMs: c.value.ms, nodeTotalMs: floor.ms } };
      });
    } finally {
      await m.unmount();
    }
    await dropCaches();
    await step(results, 'stat', log, () =>
      withMount(ctx, CONTAINERS.namespace, 'ns', 'ns', async (m) => {
        const c = await counted(ctx, m, () => statRate(big(m), 0, p.statCount));
        return { value: c.value.perSec, unit: 'ops/s', requests: c.requests, detail: { stats: p.statCount } };
      }),
    );
    await dropCaches();
    await withMount(ctx, CONTAINERS.namespace, 'ns', 'ns', async (m) => {
      await step(results, 'small-cold', log, async () => {
        const c = await counted(ctx, m, () => readMany(big(m), 0, p.smallFiles, p.smallConcurrency));
        return { value: c.value.perSec, unit: 'files/s', requests: c.requests, bytesFetched: c.bytesFetched, detail: { files: p.smallFiles, concurrency: p.smallConcurrency } };
      });
      await step(results, 'small-warm', log, async () => {
        const c = await counted(ctx, m, () => readMany(big(m), 0, p.smallFiles, p.smallConcurrency));
        return { value: c.value.perSec, unit: 'files/s', requests: c.requests, detail: { files: p.smallFiles, concurrency: p.smallConcurrency } };
      });
      await step(results, 'export-dirty-large-ns', log, () => exportDirty(ctx, m, big(m), dirty, p.namespaceBlobs));
    }).catch((err) => log(`  namespace mount failed: ${(err as Error).message}`));
  }
  await step(results, 'export-dirty-small-ns', log, () =>
    withMount(ctx, CONTAINERS.smallNamespace, 'small', 'ns-small', (m) => exportDirty(ctx, m, join(m.mountpoint, SMALL_DIR), dirty, p.smallNamespaceBlobs)),
  );
  dropCache(ctx, 'ns');

  log(`blobhsm: sequential and random reads of the ${(p.largeBytes / MiB).toFixed(0)} MiB file...`);
  await dropCaches();
  await withMount(ctx, CONTAINERS.data, 'data', 'data-1', async (m) => {
    await step(results, 'seq-cold', log, async () => {
      const c = await counted(ctx, m, () => seqRead(large(m), 600_000));
      return {
        value: c.value.MiBps,
        unit: 'MiB/s',
        requests: c.requests,
        bytesFetched: c.bytesFetched,
        detail: { bytes: c.value.bytes, firstMiBMs: c.value.firstByteMs },
      };
    });
    await step(results, 'warm-page', log, async () => {
      let best: Measurement | undefined;
      for (let r = 0; r < Math.max(2, p.repeats); r++) {
        const c = await counted(ctx, m, () => seqRead(large(m)));
        if (!best || c.value.MiBps > best.value) best = { value: c.value.MiBps, unit: 'MiB/s', requests: c.requests };
      }
      return best!;
    });
    await step(results, 'warm-dropped', log, async () => {
      const dropped = await dropCaches();
      const c = await counted(ctx, m, () => seqRead(large(m)));
      return { value: c.value.MiBps, unit: 'MiB/s', requests: c.requests, detail: { cachesDropped: dropped } };
    });
    for (const [id, bs, seed] of [['rand4k-hydrated', 4096, 11], ['rand64k-hydrated', 65536, 12]] as const) {
      await step(results, id, log, async () => {
        await dropCaches();
        const c = await counted(ctx, m, () => randRead(large(m), p.largeBytes, bs, p.randomReads, seed));
        return { value: c.value.perSec, unit: 'reads/s', requests: c.requests, detail: { reads: c.value.count, p50Ms: c.value.p50Ms, p99Ms: c.value.p99Ms } };
      });
    }
  }).catch((err) => log(`  data mount failed: ${(err as Error).message}`));
  dropCache(ctx, 'data-1');

  // The same cold read with the Content-MD5 check off (issue 16): the cost of verifying, same run.
  await dropCaches();
  await step(results, 'seq-cold-no-md5', log, () =>
    withMount(
      ctx,
      CONTAINERS.data,
      'data',
      'data-nomd5',
      async (m) => {
        const c = await counted(ctx, m, () => seqRead(large(m), 600_000));
        return { value: c.value.MiBps, unit: 'MiB/s', requests: c.requests, bytesFetched: c.bytesFetched, detail: { bytes: c.value.bytes } };
      },
      ['--no-verify-md5'],
    ),
  );
  dropCache(ctx, 'data-nomd5');

  await dropCaches();
  await step(results, 'ttfb', log, () =>
    withMount(ctx, CONTAINERS.data, 'data', 'data-2', async (m) => {
      const c = await counted(ctx, m, () => firstByte(large(m), 4096));
      const { statMs, openMs, readMs } = c.value;
      return { value: c.value.firstByteMs, unit: 'ms', requests: c.requests, detail: { statMs, openMs, readMs } };
    }),
  );
  dropCache(ctx, 'data-2');

  for (const [id, bs, seed, cache] of [['rand4k-cold', 4096, 21, 'data-3'], ['rand64k-cold', 65536, 22, 'data-4']] as const) {
    await dropCaches();
    await step(results, id, log, () =>
      withMount(ctx, CONTAINERS.data, 'data', cache, async (m) => {
        const c = await counted(ctx, m, () => randRead(large(m), p.largeBytes, bs, p.randomReads, seed));
        return {
          value: c.value.perSec,
          unit: 'reads/s',
          requests: c.requests,
          bytesFetched: c.bytesFetched,
          detail: { reads: c.value.count, p50Ms: c.value.p50Ms, p99Ms: c.value.p99Ms, fileBytes: p.largeBytes },
        };
      }),
    );
    dropCache(ctx, cache);
  }

  log(`blobhsm: sequential write of ${(p.largeBytes / MiB).toFixed(0)} MiB, small-file writes and the export...`);
  // The READ and WRITE sizes the kernel sends, from FUSE's debug output on a separate mount (debug output would
  // slow the timed workloads down): a 16 MiB dd, then the same file read back after dropping the caches.
  const requestSizes: Record<string, number | string> = {};
  try {
    await withMount(
      ctx,
      CONTAINERS.data,
      `data-debug-${ctx.binding}`, // a mountpoint (and so a daemon log) of its own per binding
      'data-debug',
      async (m) => {
        const file = join(m.mountpoint, `debug-write-${ctx.binding}.bin`);
        await ddWrite(file, 16 * MiB);
        await dropCaches();
        await seqRead(file);
        Object.assign(requestSizes, parseRequestSizes(m.logPath ? readFileSync(m.logPath, 'utf8') : ''));
      },
      ['--debug'],
    );
  } catch (err) {
    requestSizes.requestSizesError = (err as Error).message;
  }
  dropCache(ctx, 'data-debug');
  const rereadRow = results['warm-dropped'];
  if (isMeasurement(rereadRow)) {
    const { readRequests, readSizes, requestSizesError } = requestSizes;
    rereadRow.detail = { ...rereadRow.detail, ...(readSizes !== undefined ? { readRequests: readRequests!, readSizes } : {}), ...(requestSizesError !== undefined ? { requestSizesError } : {}) };
  }
  await withMount(ctx, CONTAINERS.data, 'data', 'data-5', async (m) => {
    const file = join(m.mountpoint, writtenName(ctx.binding));
    await step(results, 'write', log, async () => {
      const c = await counted(ctx, m, () => ddWrite(file, p.largeBytes, 600_000));
      return { value: c.value.MiBps, unit: 'MiB/s', requests: c.requests, detail: { bytes: p.largeBytes, ...requestSizes } };
    });
    await step(results, 'export-large', log, async () => {
      const c = await counted(ctx, m, () => m.exportAll(900_000));
      const job = c.value.job as { state?: string; stats?: { filesExported?: number; bytesExported?: number } };
      if (job.state !== 'Succeeded') throw new Error(`export ended ${job.state}: ${JSON.stringify(job).slice(0, 500)}`);
      const bytes = Number(job.stats?.bytesExported ?? p.largeBytes);
      return {
        value: bytes / MiB / (c.value.ms / 1000),
        unit: 'MiB/s',
        requests: c.requests,
        bytesUploaded: c.bytesUploaded,
        detail: { ms: c.value.ms, filesExported: job.stats?.filesExported ?? NaN, bytesExported: job.stats?.bytesExported ?? NaN },
      };
    });
    // After the export, so the export row moves the written file only.
    await step(results, 'small-write', log, async () => {
      const c = await counted(ctx, m, () => writeMany(join(m.mountpoint, smallWriteDir(ctx.binding)), 's', p.smallWriteFiles, p.smallWriteBytes, 4096));
      return { value: c.value.perSec, unit: 'files/s', requests: c.requests, detail: { files: p.smallWriteFiles, bytes: p.smallWriteBytes } };
    });
  }).catch((err) => log(`  write mount failed: ${(err as Error).message}`));
  dropCache(ctx, 'data-5');
  return results;
}

/** The file of the sequential-write row (and the directory of the small-file writes) of a binding's pass. */
const writtenName = (b: Binding) => `written-${b}.bin`;
const smallWriteDir = (b: Binding) => `small-writes-${b}`;

/** Writes `names` (new files) under dir, then times `blobhsm export`; the figure is the export's wall time. */
async function exportDirty(ctx: WorkloadContext, m: BlobhsmMount, dir: string, names: string[], namespaceFiles: number): Promise<Measurement> {
  await writeFiles(dir, names, ctx.profile.dirtyFileBytes);
  const c = await counted(ctx, m, () => m.exportAll());
  const job = c.value.job as { state?: string; stats?: { filesExported?: number } };
  if (job.state !== 'Succeeded') throw new Error(`export ended ${job.state}: ${JSON.stringify(job).slice(0, 500)}`);
  return {
    value: c.value.ms,
    unit: 'ms',
    requests: c.requests,
    detail: { namespaceFiles, dirtyFiles: names.length, filesExported: job.stats?.filesExported ?? NaN, totalRequests: totalRequests(c.requests) },
  };
}

/**
 * READ and WRITE request sizes in FUSE debug output. libfuse 2 and 3 both print every request as
 * `unique: U, opcode: WRITE (16), nodeid: N, insize: S, ...` (S = 80 header bytes + the data) and every reply as
 * `unique: U, success, outsize: S` (for a READ, S = 16 header bytes + the data). Returns
 * { writeRequests, write4k (≤ 4 KiB), writeSizes: "1048576×16", readRequests, readSizes }.
 */
export function parseRequestSizes(text: string): Record<string, number | string> {
  const writes = new Map<number, number>();
  const reads = new Map<number, number>();
  const pendingReads = new Set<string>();
  const add = (h: Map<number, number>, size: number) => h.set(size, (h.get(size) ?? 0) + 1);
  for (const m of text.matchAll(/unique: (\d+), (?:opcode: (\w+) \(\d+\), nodeid: \d+, insize: (\d+)|success, outsize: (\d+))/g)) {
    const [, unique, opcode, insize, outsize] = m;
    if (opcode === 'WRITE') add(writes, Number(insize) - 80);
    else if (opcode === 'READ') pendingReads.add(unique!);
    else if (outsize !== undefined && pendingReads.delete(unique!)) add(reads, Number(outsize) - 16);
  }
  const hist = (h: Map<number, number>) => [...h.entries()].sort((a, b) => b[1] - a[1]).map(([size, n]) => `${size}×${n}`).join(', ') || 'none seen';
  const total = (h: Map<number, number>) => [...h.values()].reduce((a, b) => a + b, 0);
  const small = [...writes.entries()].filter(([size]) => size <= 4096).reduce((a, [, n]) => a + n, 0);
  return { writeRequests: total(writes), write4k: small, writeSizes: hist(writes), readRequests: total(reads), readSizes: hist(reads) };
}
