// `npm run bench:auto-import [-- --blobs 10000,100000] [--samples N] [--feed-blobs N]`: auto-import, each figure
// held against a reference from the same run, every mount driven through the CLI in child processes:
// - a listing pass (Blob Sync by listing, deletions on: every name marked as listed) at 10k and 100k blobs, on the
//   synthetic listing source (bench/listing-server.ts; Azurite lists ~2k entries/s and slows as it fills): time
//   and List calls per pass against the SDK's own flat listing of the same source, and the daemon's RSS during
//   the passes (100k against 10k: memory must not grow with the container);
// - blob change → visible in the mount, median and p99, on Azurite: listing mode and change-feed mode (the bench
//   writes `$blobchangefeed` itself, as the e2e test does: Azurite never writes a change feed), both polled
//   every second; a child process stats the new names every 5 ms (negative entries cached by the kernel included);
// - change-feed events applied per second from a large feed appended at once: one event per blob (each blob
//   HEADed once) and ten events per blob (repeats folded before the HEAD), against the SDK's HEAD rate at the
//   same concurrency on the same blobs. AMLFS documents about 2,000 events/s.
// `--parts listing,visible,feed` runs some of them. Prints the rows as the other benches do and writes them as JSON
// under bench/results/.
import { existsSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { startEmulator } from '../src/emulator/emulator.js';
import type { AutoImportMetrics } from '../src/jobs/auto-import.js';
import { ChangeFeedWriter, type FeedEvent } from '../test/helpers/change-feed-writer.js';
import { onCleanup, runBench, startBench } from './cleanup.js';
import { run, sleep } from './proc.js';
import { blobhsmCli, mountBlobhsm, requestDelta, type BlobhsmEnv, type BlobhsmMount } from './blobhsm-mount.js';
import { startListingServer, wideNamespace } from './listing-server.js';
import { memoryOf, row, sdkListRate } from './scale.js';
import { container, pool } from './sdk.js';
import { publish } from './report.js';
import { REPO, snapshotProduct } from './product.js';
import type { Row } from './targets.js';

const MiB = 1024 * 1024;
/** Blobs HEADed at once by auto-import (AutoImporterOptions.headConcurrency default). */
const HEAD_CONCURRENCY = 16;
const EVENTS_PER_APPEND = 4000;

const PARTS = ['listing', 'visible', 'feed'] as const;
type Part = (typeof PARTS)[number];

interface Options {
  blobs: number[];
  samples: number;
  feedBlobs: number;
  parts: Part[];
}

function parse(argv: string[]): Options {
  const o: Options = { blobs: [10_000, 100_000], samples: 30, feedBlobs: 2000, parts: [...PARTS] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--blobs') o.blobs = argv[++i]!.split(',').map(Number);
    else if (a === '--samples') o.samples = Number(argv[++i]);
    else if (a === '--feed-blobs') o.feedBlobs = Number(argv[++i]);
    else if (a === '--parts') o.parts = argv[++i]!.split(',') as Part[];
    else throw new Error(`unknown argument '${a}': --blobs N,M  --samples N  --feed-blobs N  --parts ${PARTS.join(',')}`);
  }
  if (!o.blobs.every((n) => Number.isInteger(n) && n > 0) || !(o.samples >= 2) || !(o.feedBlobs >= 1) || !o.parts.every((p) => PARTS.includes(p))) {
    throw new Error(`--blobs takes positive integers, --samples at least 2, --feed-blobs at least 1, --parts some of ${PARTS.join(',')}`);
  }
  return o;
}

async function autoImport(env: BlobhsmEnv, m: BlobhsmMount, args: string[] = []): Promise<AutoImportMetrics> {
  const r = await blobhsmCli(env, ['auto-import', m.mountpoint, '--json', ...args], 60_000);
  if (r.code !== 0) throw new Error(`blobhsm auto-import: exit ${r.code}: ${r.stderr.slice(-500)}`);
  return JSON.parse(r.stdout) as AutoImportMetrics;
}

/** What the waits need, read from the mount's /metrics: a scrape costs the machine far less than a CLI process. */
interface Progress {
  state: string;
  source: string;
  passes: number;
  walked: number;
  walkRate: number;
  imported: number;
}

/** Mount flags for these mounts: auto-import every second, and /metrics on a free loopback port. */
const MOUNT_FLAGS = ['--auto-import', '--auto-import-interval', '1', '--metrics', '127.0.0.1:0'];

async function metricsUrl(env: BlobhsmEnv, m: BlobhsmMount): Promise<string> {
  const r = await blobhsmCli(env, ['status', '--json', m.mountpoint], 60_000);
  return (JSON.parse(r.stdout) as { metrics: string }).metrics;
}

async function progress(url: string): Promise<Progress> {
  const text = await (await fetch(url)).text();
  const value = (series: string) => Number(text.split('\n').find((l) => l.startsWith(series + ' '))?.slice(series.length + 1) ?? NaN);
  const which = (name: string, label: string) => /^\S+\{\w+="([^"]+)"\} 1$/m.exec(text.split('\n').filter((l) => l.startsWith(`${name}{${label}=`)).join('\n'))?.[1] ?? '';
  return {
    state: which('blobhsm_auto_import_state', 'state'),
    source: which('blobhsm_auto_import_source', 'source'),
    passes: value('blobhsm_auto_import_passes_total{outcome="completed"}'),
    walked: value('blobhsm_auto_import_blobs_walked_total{phase="blob_sync"}'),
    walkRate: value('blobhsm_auto_import_blob_walk_rate{phase="blob_sync"}'),
    imported: value('blobhsm_auto_import_blobs_imported_total{phase="blob_sync"}'),
  };
}

async function until(url: string, what: string, ok: (x: Progress) => boolean, boundMs = 1_800_000): Promise<Progress> {
  const end = Date.now() + boundMs;
  for (;;) {
    const x = await progress(url);
    if (ok(x)) return x;
    if (x.state === 'Failed' || Date.now() > end) throw new Error(`${what}: not reached (state ${x.state})`);
    await sleep(50);
  }
}

/** Seconds Blob Sync has spent in its passes (the daemon's own clock: walked / rateOfBlobWalk). */
const busySeconds = (x: Progress) => (x.walkRate > 0 ? x.walked / x.walkRate : 0);

const quantile = (sorted: number[], q: number) => sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!;

// ---- listing passes on the synthetic source ----

async function listingPasses(baseDir: string, count: number, rows: Row[], smallerRss: number | undefined, log: (l: string) => void): Promise<number> {
  const server = await startListingServer(`auto-${count}`, wideNamespace('big', count));
  onCleanup(`listing source ${count}`, () => server.close());
  const env: BlobhsmEnv = { baseDir: join(baseDir, `listing-${count}`), connectionString: server.connectionString };
  log(`listing ${count}: the SDK's flat listing of the source...`);
  const ref = await sdkListRate(server, count);
  const refMs = (count / ref.perSec) * 1000;
  log(`  ${refMs.toFixed(0)} ms (${ref.perSec.toFixed(0)} blobs/s)`);
  const m = await mountBlobhsm(env, server.container, `listing-${count}`, `listing-${count}`, {
    extraArgs: [...MOUNT_FLAGS, '--auto-import-source', 'listing', '--enable-deletions'],
    timeoutMs: 3_600_000,
  });
  try {
    const url = await metricsUrl(env, m);
    await until(url, 'Full Sync', (x) => x.state === 'BlobSync' && x.passes >= 1);
    const passes = count >= 50_000 ? 3 : 5;
    const m0 = await progress(url);
    const calls0 = server.served().listCalls;
    const r0 = await m.requests();
    let maxRss = 0;
    const rss0 = memoryOf(m.daemonPid)?.rss ?? NaN;
    const sampler = setInterval(() => (maxRss = Math.max(maxRss, memoryOf(m.daemonPid)?.rss ?? 0)), 50);
    const t0 = performance.now();
    const m1 = await until(url, `${passes} listing passes`, (x) => x.passes >= m0.passes + passes);
    const wallMs = performance.now() - t0;
    clearInterval(sampler);
    const n = m1.passes - m0.passes;
    const passMs = ((busySeconds(m1) - busySeconds(m0)) / n) * 1000;
    const calls = (server.served().listCalls - calls0) / n;
    const other = requestDelta(r0, await m.requests());
    // The machine's load moves the SDK's own rate a lot: the reference is the mean of a listing before the mount and
    // one right after the passes (both in the notes).
    const after = await sdkListRate(server, count);
    const afterMs = (count / after.perSec) * 1000;
    const refMeanMs = (refMs + afterMs) / 2;
    log(`  pass ${passMs.toFixed(0)} ms, ${calls} List calls, RSS ${(rss0 / MiB).toFixed(0)} → ≤ ${(maxRss / MiB).toFixed(0)} MiB (${n} passes in ${(wallMs / 1000).toFixed(1)} s)`);
    const perPass = Object.fromEntries(Object.entries(other).map(([k, v]) => [k, Math.round((v / n) * 10) / 10]));
    rows.push(
      row(`auto-import-pass-${count}`, `listing pass, ${count} blobs (deletions on)`, passMs, 'ms', { value: refMeanMs, unit: 'ms', label: 'SDK flat listing with metadata, same source' }, '≤1.5× the SDK listing', passMs <= 1.5 * refMeanMs, [
        `SDK listing ${refMs.toFixed(0)} ms before the mount, ${afterMs.toFixed(0)} ms after the passes; ` +
        `${n} passes one second apart (${(wallMs / 1000).toFixed(1)} s wall); time per pass from the daemon's own accounting (walked / rateOfBlobWalk); ` +
          `List calls per pass ${calls.toFixed(1)} (source count); requests per pass from blobhsm status: ${JSON.stringify(perPass)}; ` +
          `no change between passes (every blob preexisting)`,
      ], perPass),
      row(
        `auto-import-rss-${count}`,
        `daemon RSS during listing passes, ${count} blobs`,
        maxRss / MiB,
        'MiB',
        smallerRss === undefined ? null : { value: smallerRss / MiB, unit: 'MiB', label: 'the same at the smaller count' },
        smallerRss === undefined ? '(reference of the next RSS row)' : '≤1.5× (bounded: no listing held in memory)',
        smallerRss === undefined ? null : maxRss <= 1.5 * smallerRss,
        [`RSS ${(rss0 / MiB).toFixed(0)} MiB before the passes; sampled every 50 ms`],
      ),
    );
    return maxRss;
  } finally {
    await m.unmount();
    await server.close();
  }
}

// ---- blob change → visible ----

const WATCHER = `// Stats each path every 5 ms until it exists; prints "index epochMs" per path, then exits (or at the deadline).
import { statSync } from 'node:fs';
const [deadline, ...paths] = process.argv.slice(2);
const seen = new Map();
const now = () => performance.timeOrigin + performance.now();
while (seen.size < paths.length && now() < Number(deadline)) {
  for (let i = 0; i < paths.length; i++) {
    if (seen.has(i)) continue;
    try { statSync(paths[i]); seen.set(i, now()); } catch {}
  }
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
}
for (const [i, t] of seen) console.log(i + ' ' + t);
`;

async function visibility(
  baseDir: string,
  env: BlobhsmEnv,
  mode: 'listing' | 'change-feed',
  samples: number,
  feed: ChangeFeedWriter | undefined,
  rows: Row[],
  log: (l: string) => void,
): Promise<void> {
  const name = `visible-${mode}`;
  const c = container(env.connectionString, name);
  await c.create();
  await pool(100, 8, async (i) => void (await c.getBlockBlobClient(`old/f${i}`).upload('x', 1)));
  const chunk = feed ? await feed.openCurrentHour() : '';
  const m = await mountBlobhsm(env, name, name, name, { extraArgs: [...MOUNT_FLAGS, '--auto-import-source', mode] });
  try {
    await until(await metricsUrl(env, m), 'Full Sync', (x) => x.state === 'BlobSync' && x.source === mode);
    const paths = Array.from({ length: samples }, (_, i) => join(m.mountpoint, 'new', `f${i}`));
    const script = join(baseDir, 'watcher.mjs');
    writeFileSync(script, WATCHER);
    const deadline = Date.now() + samples * 1500 + 120_000;
    const watcher = run(process.execPath, [script, String(deadline), ...paths], { timeoutMs: deadline - Date.now() + 10_000 });
    const put: number[] = [];
    log(`${mode}: ${samples} blobs created at random phases of the 1 s interval...`);
    for (let i = 0; i < samples; i++) {
      await sleep(Math.random() * 1500);
      const w = await c.getBlockBlobClient(`new/f${i}`).upload('new', 3);
      if (feed) await feed.append(chunk, [{ eventType: 'BlobCreated', container: name, blob: `new/f${i}`, etag: w.etag!, contentLength: 3, sequencer: BigInt(i + 1) } satisfies FeedEvent]);
      put[i] = performance.timeOrigin + performance.now();
    }
    const seen = new Map((await watcher).stdout.trim().split('\n').filter(Boolean).map((l) => l.split(' ').map(Number) as [number, number]));
    if (seen.size < samples) throw new Error(`${mode}: ${samples - seen.size} of ${samples} new blobs never appeared`);
    const lat = [...seen].map(([i, t]) => t - put[i]!).sort((a, b) => a - b);
    const median = quantile(lat, 0.5);
    const p99 = quantile(lat, 0.99);
    log(`  median ${median.toFixed(0)} ms, p99 ${p99.toFixed(0)} ms`);
    const what = mode === 'listing' ? 'after the SDK upload returned' : 'after the event was appended to the feed';
    rows.push(
      row(`auto-import-visible-${mode}`, `blob created → visible in the mount, ${mode} (interval 1 s), median`, median, 'ms', null, '≤ interval + one pass (1 s + pass)', median <= 1000 + 500, [
        `${samples} creations ${what}, stat every 5 ms from a child process; p99 ${p99.toFixed(0)} ms, min ${lat[0]!.toFixed(0)} ms, max ${lat.at(-1)!.toFixed(0)} ms; a container of 100 blobs`,
      ]),
      row(`auto-import-visible-${mode}-p99`, `blob created → visible, ${mode}, p99`, p99, 'ms', null, '≤ 2 × interval', p99 <= 2000),
    );
  } finally {
    await m.unmount();
  }
}

// ---- change-feed events applied per second ----

async function feedRate(env: BlobhsmEnv, feed: ChangeFeedWriter, blobs: number, rows: Row[], log: (l: string) => void): Promise<void> {
  const name = 'feed-rate';
  const c = container(env.connectionString, name);
  await c.create();
  // Chunk 1: the change-feed visibility rows may have appended to chunk 0 of this hour's segment already.
  const chunk = await feed.openCurrentHour(1);
  const m = await mountBlobhsm(env, name, name, name, { extraArgs: [...MOUNT_FLAGS, '--auto-import-source', 'change-feed'] });
  let sequencer = 1_000_000n;
  try {
    const url = await metricsUrl(env, m);
    await until(url, 'Full Sync', (x) => x.state === 'BlobSync' && x.source === 'change-feed');
    for (const repeats of [1, 10]) {
      log(`feed: ${blobs} blobs, ${repeats} event(s) each...`);
      const dir = `r${repeats}`;
      const etags: string[] = [];
      await pool(blobs, 16, async (i) => void (etags[i] = (await c.getBlockBlobClient(`${dir}/f${i}`).upload('feed', 4)).etag!));
      // The SDK's HEAD of the same blobs at auto-import's concurrency: what the HEADs alone cost on this Azurite.
      let t = performance.now();
      await pool(blobs, HEAD_CONCURRENCY, async (i) => void (await c.getBlockBlobClient(`${dir}/f${i}`).getProperties()));
      const headRate = blobs / ((performance.now() - t) / 1000);
      // Held: one pass an hour while the feed is appended, then every second again.
      await autoImport(env, m, ['--interval', '3600']);
      const events: FeedEvent[] = [];
      for (let k = 0; k < repeats; k++) {
        for (let i = 0; i < blobs; i++) {
          events.push({ eventType: k === 0 ? 'BlobCreated' : 'BlobPropertiesUpdated', container: name, blob: `${dir}/f${i}`, etag: etags[i]!, contentLength: 4, sequencer: sequencer++ });
        }
      }
      for (let i = 0; i < events.length; i += EVENTS_PER_APPEND) await feed.append(chunk, events.slice(i, i + EVENTS_PER_APPEND));
      const m0 = await progress(url);
      const r0 = await m.requests();
      // Released: the next pass starts one interval (1 s) after this call.
      await autoImport(env, m, ['--interval', '1']);
      t = performance.now();
      await until(url, `${blobs} blobs from the feed`, (x) => x.imported >= m0.imported + blobs);
      // From the pass's start (one interval after the release) to the metrics showing every blob. The daemon's
      // walked / rate cannot be used here: the empty passes before add time without walking a blob.
      const wallMs = performance.now() - t - 1000;
      const perSec = events.length / (wallMs / 1000);
      const req = requestDelta(r0, await m.requests());
      log(`  ${perSec.toFixed(0)} events/s (${(wallMs / 1000).toFixed(2)} s); SDK HEADs ${headRate.toFixed(0)}/s`);
      const ratioRef = repeats === 1 ? { value: headRate, unit: 'events/s' as const, label: `SDK HEADs of the same blobs, c=${HEAD_CONCURRENCY} (per s)` } : null;
      rows.push(
        row(`auto-import-feed-${repeats}`, `change-feed events applied, ${events.length} events on ${blobs} blobs (${repeats} per blob)`, perSec, 'events/s', ratioRef, repeats === 1 ? '≥0.8× the SDK HEAD rate; AMLFS ~2,000/s' : '> 2,000/s (AMLFS)', repeats === 1 ? perSec >= 0.8 * headRate : perSec > 2000, [
          `${(wallMs / 1000).toFixed(2)} s from the pass's start to /metrics (scraped every 50 ms) showing every blob; each blob HEADed once per batch (its state now), so distinct blobs cost one HEAD each; SDK HEAD rate ${headRate.toFixed(0)}/s`,
        ], req),
      );
    }
  } finally {
    await m.unmount();
  }
}

async function main(): Promise<number> {
  const o = parse(process.argv.slice(2));
  const { started, t0, log, baseDir } = startBench('auto-import');
  const product = snapshotProduct(join(baseDir, 'product'));
  // Without the libfuse3 addon the mounts fall back to fuse-native, whose kernel caches auto-import cannot invalidate.
  if (!existsSync(join(product, 'src/fuse/native/build/Release/blobhsm_fuse.node'))) log('the libfuse3 addon is not built (bash bin/build-addon.sh): mounts use fuse-native');
  const loadStart = loadavg()[0]!;
  log(`auto-import bench: listing passes at ${o.blobs.join(', ')} blobs, ${o.samples} visibility samples per mode, ${o.feedBlobs} feed blobs; load ${loadStart.toFixed(1)}`);
  const rows: Row[] = [];

  let smaller: number | undefined;
  if (o.parts.includes('listing')) for (const count of [...o.blobs].sort((a, b) => a - b)) smaller = await listingPasses(baseDir, count, rows, smaller, log);
  if (!o.parts.includes('visible') && !o.parts.includes('feed')) return report(o, started, t0, loadStart, rows);

  const emu = await startEmulator({ dataDir: join(baseDir, 'azurite'), inMemory: true });
  onCleanup('Azurite', () => emu.stop(5000));
  const env: BlobhsmEnv = { baseDir: join(baseDir, 'azurite-mounts'), connectionString: emu.connectionString };
  const feed = new ChangeFeedWriter(emu.connectionString);
  await feed.init();
  if (o.parts.includes('visible')) {
    await visibility(baseDir, env, 'listing', o.samples, undefined, rows, log);
    await visibility(baseDir, env, 'change-feed', o.samples, feed, rows, log);
  }
  if (o.parts.includes('feed')) await feedRate(env, feed, o.feedBlobs, rows, log);
  return report(o, started, t0, loadStart, rows);
}

function report(o: Options, started: Date, t0: number, loadStart: number, rows: Row[]): number {
  const elapsedS = (performance.now() - t0) / 1000;
  publish({ title: 'blobhsm auto-import bench', profile: 'auto-import', repoRoot: REPO, started, elapsedS, loadStart, rows, rcloneNote: 'not measured (rclone has no auto-import)', data: { options: o } });
  return 0;
}

await runBench(main);
