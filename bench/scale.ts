// `npm run bench -- --profile scale`: blobhsm at a million blobs, against a synthetic listing source
// (bench/listing-server.ts: Azure's List Blobs wire format on loopback, parsed by the real SDK in the real daemon).
// Two namespaces: `wide` (one directory of 100k files beside one of 10k) and `tree` (a 100 × 100 × 100 tree, 1M
// files). For each: the SDK's own listing rate of the same source (the reference), the import at the first mount
// (blobs/s, the daemon's peak RSS and its RSS as the import progresses, the SQLite size), the first `ls -l` of the
// root after the mount returns, `ls -l`/`find` of big directories (per entry, 100k against 10k), `lfs find` of the
// tree against find(1) through the mount, and a listing pass + diff against the namespace (an import job: the code
// path auto-import will use) with the daemon's memory during it. Every figure is measured in child processes.
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { BlobServiceClient } from '@azure/storage-blob';
import { blobhsmCli, mountBlobhsm, type BlobhsmEnv, type BlobhsmMount } from './blobhsm-mount.js';
import { startListingServer, joined, treeNamespace, wideNamespace, type ListingServer, type SyntheticNamespace } from './listing-server.js';
import { run } from './proc.js';
import { productPaths } from './product.js';
import type { Row, Verdict } from './targets.js';
import type { Unit } from './results.js';

export interface ScaleOptions {
  baseDir: string;
  /** Files of the tree namespace (rounded to a cube; default 1,000,000). */
  treeBlobs: number;
  /** Files of the wide namespace's big directory (default 100,000); its small one has a tenth. */
  wideBlobs: number;
  log: (line: string) => void;
}

const MiB = 1024 * 1024;

/** VmRSS and VmHWM (peak) of a process, in bytes. */
export function memoryOf(pid: number): { rss: number; peak: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN) * 1024;
    return { rss: kb('VmRSS'), peak: kb('VmHWM') };
  } catch {
    return undefined;
  }
}

/** Samples the daemon of `cacheDir` (found by its pid file) every 250 ms with the source's served count. */
function sampleDaemon(cacheDir: string, server: ListingServer): { stop(): Array<{ served: number; rss: number; peak: number }> } {
  const samples: Array<{ served: number; rss: number; peak: number }> = [];
  let pid = 0;
  const timer = setInterval(() => {
    if (!pid) {
      const file = join(cacheDir, 'daemon.pid');
      if (existsSync(file)) pid = Number(readFileSync(file, 'utf8').trim()) || 0;
      if (!pid) return;
    }
    const m = memoryOf(pid);
    if (m) samples.push({ served: server.served().entries, ...m });
  }, 250);
  return {
    stop: () => {
      clearInterval(timer);
      return samples;
    },
  };
}

/** RSS when the source had served `fraction` of `total` entries (the first sample at or past it). */
function rssAt(samples: Array<{ served: number; rss: number }>, served0: number, total: number, fraction: number): number {
  const want = served0 + total * fraction;
  return samples.find((s) => s.served >= want)?.rss ?? samples[samples.length - 1]?.rss ?? NaN;
}

function sqliteBytes(cacheDir: string): number {
  let total = 0;
  for (const f of ['meta.db', 'meta.db-wal', 'meta.db-shm']) {
    try {
      total += statSync(join(cacheDir, f)).size;
    } catch {
      /* absent */
    }
  }
  return total;
}

/** The SDK listing the source with metadata, no database: blobs/s over at most `limit` entries. */
export async function sdkListRate(server: ListingServer, limit: number): Promise<{ perSec: number; listed: number }> {
  const container = BlobServiceClient.fromConnectionString(server.connectionString).getContainerClient(server.container);
  let listed = 0;
  const t0 = performance.now();
  for await (const page of container.listBlobsFlat({ includeMetadata: true }).byPage({ maxPageSize: 5000 })) {
    listed += page.segment.blobItems.length;
    if (listed >= limit) break;
  }
  return { perSec: (listed / (performance.now() - t0)) * 1000, listed };
}

async function timed(cmd: string, timeoutMs = 1_800_000): Promise<{ ms: number; stdout: string }> {
  const r = await run('/bin/sh', ['-c', cmd], { timeoutMs });
  if (r.code !== 0) throw new Error(`${cmd}: exit ${r.code}${r.timedOut ? ' (timed out)' : ''}: ${r.stderr.slice(-500)}`);
  return { ms: r.ms, stdout: r.stdout };
}

export function row(id: string, workload: string, value: number, unit: Unit, ref: { value: number; unit: Unit; label: string } | null, target: string, ok: boolean | null, notes: string[] = [], requests?: Record<string, number>): Row {
  const ratio = ref && ref.value > 0 ? value / ref.value : null;
  const verdict: Verdict = ok === null ? 'n/a' : ok ? 'meets' : 'short';
  return { id: id as Row['id'], workload, blobhsm: { value, unit }, reference: ref, ratio, rclone: null, target, verdict, requests, notes };
}

interface NamespaceRun {
  name: string;
  ns: SyntheticNamespace;
  server: ListingServer;
  env: BlobhsmEnv;
  mount: BlobhsmMount;
  refPerSec: number;
  peakRss: number;
}

/** Mounts a fresh container on the source (the import), measuring rate, memory, SQLite and the first `ls -l`. */
async function importRun(o: ScaleOptions, name: string, ns: SyntheticNamespace, rows: Row[], peakReference: number | undefined): Promise<NamespaceRun> {
  const { log } = o;
  const server = await startListingServer(`scale-${name}`, ns);
  const env: BlobhsmEnv = { baseDir: join(o.baseDir, name), connectionString: server.connectionString };
  log(`scale ${name}: SDK listing of the source (${ns.count} blobs)...`);
  const ref = await sdkListRate(server, Math.min(ns.count, 200_000));
  log(`  ${ref.perSec.toFixed(0)} blobs/s over ${ref.listed}`);
  const served0 = server.served().entries;
  const cacheDir = join(env.baseDir, 'cache', name);
  const sampler = sampleDaemon(cacheDir, server);
  log(`scale ${name}: mount (import of ${ns.count} blobs)...`);
  const mount = await mountBlobhsm(env, server.container, name, name, { timeoutMs: 3_600_000 });
  const samples = sampler.stop();
  const rate = ns.count / (mount.mountMs / 1000);
  const firstLs = await timed(`ls -l "${mount.mountpoint}" > /dev/null`);
  const peak = Math.max(...samples.map((s) => s.peak).filter(Number.isFinite), memoryOf(mount.daemonPid)?.peak ?? 0);
  const quarters = [0.25, 0.5, 0.75, 1].map((f) => rssAt(samples, served0, ns.count, f));
  const db = sqliteBytes(cacheDir);
  log(`  ${rate.toFixed(0)} blobs/s; peak RSS ${(peak / MiB).toFixed(0)} MiB; RSS at 25/50/75/100 %: ${quarters.map((q) => (q / MiB).toFixed(0)).join('/')} MiB; SQLite ${(db / MiB).toFixed(0)} MiB; first ls -l ${firstLs.ms.toFixed(0)} ms`);
  const requests = await mount.requests();
  rows.push(
    row(`scale-import-${name}`, `import of ${ns.count} blobs (synthetic listing)`, rate, 'blobs/s', { value: ref.perSec, unit: 'blobs/s', label: 'SDK listing of the same source' }, '≥0.8× the source via the SDK', rate >= 0.8 * ref.perSec, [`mount wall time ${(mount.mountMs / 1000).toFixed(1)} s (daemon start and FUSE mount included)`], requests),
    row(
      `scale-rss-${name}`,
      `daemon peak RSS, import of ${ns.count}`,
      peak / MiB,
      'MiB',
      peakReference === undefined ? null : { value: peakReference / MiB, unit: 'MiB', label: 'peak RSS of the smaller import' },
      peakReference === undefined ? '(reference of the row below)' : '≤1.5× the smaller import (flat with the blob count)',
      peakReference === undefined ? null : peak <= 1.5 * peakReference,
      [`RSS at 25/50/75/100 % of the listing: ${quarters.map((q) => (q / MiB).toFixed(0)).join('/')} MiB`],
    ),
    row(`scale-sqlite-${name}`, `SQLite size, ${ns.count} blobs`, db / MiB, 'MiB', null, `info: ${((db / ns.count) | 0)} B per blob`, null),
    row(`scale-first-ls-${name}`, `first ls -l of the root after mount (${ns.count})`, firstLs.ms, 'ms', null, '< 1000 ms', firstLs.ms < 1000),
  );
  return { name, ns, server, env, mount, refPerSec: ref.perSec, peakRss: peak };
}

/** A listing pass + diff against the namespace (an import job over an unchanged container: all preexisting). */
async function listingPass(o: ScaleOptions, r: NamespaceRun, rows: Row[]): Promise<void> {
  o.log(`scale ${r.name}: listing pass (import job over ${r.ns.count} unchanged blobs)...`);
  const before = r.server.served().listCalls;
  const sampler = sampleDaemon(r.mount.cacheDir, r.server);
  const x = await blobhsmCli(r.env, ['import', r.mount.mountpoint, '--json'], 3_600_000);
  const samples = sampler.stop();
  if (x.code !== 0) throw new Error(`blobhsm import: exit ${x.code}: ${x.stderr.slice(-500)}`);
  const job = JSON.parse(x.stdout.trim().split('\n').pop()!) as Record<string, unknown>;
  const rate = r.ns.count / (x.ms / 1000);
  const maxRss = Math.max(...samples.map((s) => s.rss).filter(Number.isFinite));
  const calls = r.server.served().listCalls - before;
  o.log(`  ${(x.ms / 1000).toFixed(1)} s, ${rate.toFixed(0)} blobs/s, ${calls} list calls, daemon RSS ≤ ${(maxRss / MiB).toFixed(0)} MiB`);
  rows.push(
    row(`scale-pass-${r.name}`, `listing pass + diff, ${r.ns.count} blobs (import job)`, rate, 'blobs/s', { value: r.refPerSec, unit: 'blobs/s', label: 'SDK listing of the same source' }, '≥0.8× the source via the SDK', rate >= 0.8 * r.refPerSec, [`${(x.ms / 1000).toFixed(1)} s, ${calls} List calls, daemon RSS at most ${(maxRss / MiB).toFixed(0)} MiB during the pass, state ${String(job.state)}, preexisting files ${String((job.stats as Record<string, unknown> | undefined)?.preexistingFiles ?? '?')}`], { list: calls }),
  );
}

export async function runScale(o: ScaleOptions): Promise<Row[]> {
  const rows: Row[] = [];
  const { log } = o;
  const small = Math.max(1, Math.floor(o.wideBlobs / 10));
  const width = Math.max(2, Math.round(Math.cbrt(o.treeBlobs)));

  // The wide namespace: a directory of 100k entries beside one of 10k.
  const wide = await importRun(o, 'wide', joined(wideNamespace('big', o.wideBlobs), wideNamespace('mid', small)), rows, undefined);
  try {
    const mnt = wide.mount.mountpoint;
    const lsBig = await timed(`ls -l "${mnt}/big" > /dev/null`);
    const lsMid = await timed(`ls -l "${mnt}/mid" > /dev/null`);
    const perBig = (lsBig.ms * 1000) / o.wideBlobs;
    const perMid = (lsMid.ms * 1000) / small;
    log(`  ls -l: ${o.wideBlobs} entries ${lsBig.ms.toFixed(0)} ms, ${small} entries ${lsMid.ms.toFixed(0)} ms`);
    rows.push(row('scale-lsl-big', `ls -l of ${o.wideBlobs} entries, per entry`, perBig, 'µs/entry', { value: perMid, unit: 'µs/entry', label: `ls -l of ${small} entries, per entry` }, '≤1.3× (one more entry costs the same)', perBig <= 1.3 * perMid, [`${lsBig.ms.toFixed(0)} ms vs ${lsMid.ms.toFixed(0)} ms`]));
    const findBig = await timed(`find "${mnt}/big" | wc -l`);
    const findMid = await timed(`find "${mnt}/mid" | wc -l`);
    const fBig = (findBig.ms * 1000) / o.wideBlobs;
    const fMid = (findMid.ms * 1000) / small;
    rows.push(row('scale-find-big', `find of ${o.wideBlobs} entries, per entry`, fBig, 'µs/entry', { value: fMid, unit: 'µs/entry', label: `find of ${small} entries, per entry` }, '≤1.3× (one more entry costs the same)', fBig <= 1.3 * fMid, [`${findBig.ms.toFixed(0)} ms vs ${findMid.ms.toFixed(0)} ms; ${findBig.stdout.trim()} lines`]));
    await listingPass(o, wide, rows);
  } finally {
    await wide.mount.unmount();
    await wide.server.close();
  }

  // The deep-and-wide tree.
  const tree = await importRun(o, 'tree', treeNamespace('tree', width), rows, wide.peakRss);
  try {
    const mnt = tree.mount.mountpoint;
    const cli = `"${process.execPath}" "${productPaths.bin()}"`;
    const env = `BLOBHSM_STATE_DIR="${join(tree.env.baseDir, 'blobhsm-state')}"`;
    const lfsFind = await timed(`${env} ${cli} lfs find "${mnt}" -type f --hsm-state released | wc -l`);
    const find = await timed(`find "${mnt}" -type f | wc -l`);
    log(`  lfs find ${lfsFind.ms.toFixed(0)} ms (${lfsFind.stdout.trim()} paths), find(1) through the mount ${find.ms.toFixed(0)} ms (${find.stdout.trim()})`);
    const n = tree.ns.count;
    rows.push(
      row('scale-find-tree', `find -type f of a ${width}×${width}×${width} tree (${n} files), through the mount`, (find.ms * 1000) / n, 'µs/entry', null, '(reference of the row below)', null, [`${(find.ms / 1000).toFixed(1)} s, ${find.stdout.trim()} paths`]),
      row('scale-lfs-find-tree', `lfs find --hsm-state released of the same tree (daemon side)`, (lfsFind.ms * 1000) / n, 'µs/entry', { value: (find.ms * 1000) / n, unit: 'µs/entry', label: 'find(1) through the mount' }, '≤1× find(1), one request', lfsFind.ms <= find.ms, [`${(lfsFind.ms / 1000).toFixed(1)} s, ${lfsFind.stdout.trim()} paths`]),
    );
    await listingPass(o, tree, rows);
  } finally {
    await tree.mount.unmount();
    await tree.server.close();
  }
  return rows;
}
