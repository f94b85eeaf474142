// `--metrics HOST:PORT`: Prometheus text at /metrics and a health answer at /healthz, served by the daemon. The
// series are read at each scrape from one snapshot (the `blobhsm status` object, plus jobs, files per HSM state and
// auto-export), so a counter added to the status later shows up without touching this module (every numeric
// field of the status is also exported as blobhsm_status{field="..."}). Bytes and errors of blob requests come
// from the metered store (src/blob/metered-store.ts), FUSE op counts and latencies from the instrumented Vfs
// (src/vfs/instrumented-vfs.ts). Auto-import's AMLFS statistics are named series, one per statistic, labelled by
// phase (full_sync, blob_sync): AUTO_IMPORT_PHASE_SERIES maps each AMLFS name to its Prometheus name. One registry
// per daemon (prom-client's global one is never used).
import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { UsageError } from '../errors.js';
import type { MetricsListen } from '../config.js';
import { FIND_STATES, inHsmState, type FindState } from '../hsm/flags.js';
import type { JobSummary } from '../jobs/job-runner.js';
import type { AutoExportMetrics } from '../jobs/auto-export.js';
import { AUTO_IMPORT_STATES, type AutoImportMetrics, type AutoImportPhaseMetrics } from '../jobs/auto-import.js';
import type { BlobMeter } from '../blob/metered-store.js';
import type { OpObserver } from '../vfs/instrumented-vfs.js';

export interface MetricsSnapshot {
  /** The `blobhsm status` object (requests, cacheBytes, openFiles, inodes, hsm, io, integrity, ...). */
  status: {
    requests: Record<string, number>;
    cacheBytes: number;
    openFiles: number;
    inodes: number;
    hsm: { concurrency: number; running: number; waiting: number };
    [field: string]: unknown;
  };
  /** Regular files by exact HSM flags. */
  filesByFlags: Map<number, number>;
  jobs: JobSummary[];
  autoExport: AutoExportMetrics;
  autoImport: AutoImportMetrics;
}

type NumericPhaseStat = { [K in keyof AutoImportPhaseMetrics]: AutoImportPhaseMetrics[K] extends number ? K : never }[keyof AutoImportPhaseMetrics];

/** AMLFS auto-import statistic → Prometheus series (counters end in _total; the two rates are gauges). */
export const AUTO_IMPORT_PHASE_SERIES: ReadonlyArray<{ stat: NumericPhaseStat; name: string; help: string }> = [
  { stat: 'importedFiles', name: 'blobhsm_auto_import_imported_files_total', help: 'Files imported (importedFiles)' },
  { stat: 'importedDirectories', name: 'blobhsm_auto_import_imported_directories_total', help: 'Directories imported (importedDirectories)' },
  { stat: 'importedSymlinks', name: 'blobhsm_auto_import_imported_symlinks_total', help: 'Symlinks imported (importedSymlinks)' },
  { stat: 'preexistingFiles', name: 'blobhsm_auto_import_preexisting_files_total', help: 'Files found already as the blob has them (preexistingFiles)' },
  { stat: 'preexistingDirectories', name: 'blobhsm_auto_import_preexisting_directories_total', help: 'Directories found already as the blob has them (preexistingDirectories)' },
  { stat: 'preexistingSymlinks', name: 'blobhsm_auto_import_preexisting_symlinks_total', help: 'Symlinks found already as the blob has them (preexistingSymlinks)' },
  { stat: 'totalBlobsImported', name: 'blobhsm_auto_import_blobs_imported_total', help: 'Blobs imported (totalBlobsImported)' },
  { stat: 'totalBlobsWalked', name: 'blobhsm_auto_import_blobs_walked_total', help: 'Blobs listed or read from the change feed (totalBlobsWalked)' },
  { stat: 'totalConflicts', name: 'blobhsm_auto_import_conflicts_total', help: 'Conflicts met (totalConflicts)' },
  { stat: 'totalErrors', name: 'blobhsm_auto_import_errors_total', help: 'Errors, counted against --maximum-errors (totalErrors)' },
  { stat: 'deletions', name: 'blobhsm_auto_import_deletions_total', help: 'Local entries deleted because their blob was deleted (deletions)' },
  { stat: 'rateOfBlobImport', name: 'blobhsm_auto_import_blob_import_rate', help: 'Blobs imported per second while the phase ran (rateOfBlobImport)' },
  { stat: 'rateOfBlobWalk', name: 'blobhsm_auto_import_blob_walk_rate', help: 'Blobs walked per second while the phase ran (rateOfBlobWalk)' },
];

const AUTO_IMPORT_PHASES = [
  ['full_sync', 'fullSync'],
  ['blob_sync', 'blobSync'],
] as const;

/** An ISO time as Prometheus timestamp seconds; 0 for never (a gauge without labels always has a sample). */
function timestampSeconds(iso: string | null): number {
  const ms = iso === null ? NaN : Date.parse(iso);
  return Number.isFinite(ms) ? ms / 1000 : 0;
}

/** Every numeric leaf of an object, by dotted path. */
function numericFields(value: unknown, prefix = '', out: Array<[string, number]> = []): Array<[string, number]> {
  if (typeof value === 'number' && Number.isFinite(value)) out.push([prefix, value]);
  else if (typeof value === 'boolean') out.push([prefix, value ? 1 : 0]);
  else if (value && typeof value === 'object' && !Array.isArray(value)) {
    for (const [k, v] of Object.entries(value)) numericFields(v, prefix ? `${prefix}.${k}` : k, out);
  }
  return out;
}

export class DaemonMetrics implements BlobMeter, OpObserver {
  readonly registry = new Registry();
  private snapshot: (() => MetricsSnapshot) | undefined;
  private readonly blobBytes: Counter<'operation'>;
  private readonly blobErrors: Counter<'operation' | 'kind'>;
  private readonly fuseOps: Histogram<'op'>;
  private readonly fuseErrors: Counter<'op' | 'code'>;

  constructor() {
    const registers = [this.registry];
    const read = () => this.snapshot?.();
    /** A collect function: the series are set anew from the snapshot at each scrape. */
    const collectFrom =
      <M extends { reset(): void }>(fill: (m: M, s: MetricsSnapshot) => void) =>
      function (this: M): void {
        const s = read();
        if (!s) return;
        this.reset();
        fill(this, s);
      };
    this.blobBytes = new Counter({ name: 'blobhsm_blob_bytes_total', help: 'Bytes read from and staged to blob storage, by operation', labelNames: ['operation'], registers });
    this.blobErrors = new Counter({ name: 'blobhsm_blob_errors_total', help: 'Failed blob requests, by operation and error kind', labelNames: ['operation', 'kind'], registers });
    this.fuseOps = new Histogram({
      name: 'blobhsm_fuse_op_duration_seconds',
      help: 'Filesystem operations served, by op (count and latency)',
      labelNames: ['op'],
      buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
      registers,
    });
    this.fuseErrors = new Counter({ name: 'blobhsm_fuse_errors_total', help: 'Filesystem operations answered with an error, by op and errno', labelNames: ['op', 'code'], registers });
    new Counter({
      name: 'blobhsm_blob_requests_total',
      help: 'Requests sent to blob storage, by operation',
      labelNames: ['operation'],
      registers,
      collect: collectFrom((c, s) => {
        for (const [operation, n] of Object.entries(s.status.requests)) c.inc({ operation }, n);
      }),
    });
    const gauge = (name: string, help: string, labelNames: string[], fill: (g: Gauge<string>, s: MetricsSnapshot) => void) =>
      new Gauge({
        name,
        help,
        labelNames,
        registers,
        collect: collectFrom(fill),
      });
    gauge('blobhsm_cache_bytes', 'Bytes of file data in the local cache', [], (g, s) => g.set(s.status.cacheBytes));
    gauge('blobhsm_cache_files', 'Regular files with their data in the local cache (not released)', [], (g, s) =>
      g.set([...s.filesByFlags].reduce((n, [flags, count]) => (inHsmState(flags, 'released') ? n : n + count), 0)),
    );
    gauge('blobhsm_files', 'Regular files in each HSM state (lfs find --hsm-state; a file can be in several)', ['state'], (g, s) => {
      for (const state of Object.keys(FIND_STATES) as FindState[]) {
        let n = 0;
        for (const [flags, count] of s.filesByFlags) if (inHsmState(flags, state)) n += count;
        g.set({ state }, n);
      }
    });
    gauge('blobhsm_inodes', 'Entries in the namespace', [], (g, s) => g.set(s.status.inodes));
    gauge('blobhsm_open_files', 'Files open through the mount', [], (g, s) => g.set(s.status.openFiles));
    gauge('blobhsm_hsm_actions', 'HSM actions (archive, restore, release, remove) running and waiting', ['state'], (g, s) => {
      g.set({ state: 'running' }, s.status.hsm.running);
      g.set({ state: 'waiting' }, s.status.hsm.waiting);
    });
    gauge('blobhsm_hsm_action_concurrency', 'HSM actions allowed to run at once', [], (g, s) => g.set(s.status.hsm.concurrency));
    gauge('blobhsm_jobs', 'Import and export jobs of this mount, by kind and state', ['kind', 'state'], (g, s) => {
      for (const j of s.jobs) g.inc({ kind: j.kind, state: j.state });
    });
    gauge('blobhsm_job_stat', 'Statistics of the latest job of each kind (filesExported, bytesExported, totalBlobsWalked, ...)', ['kind', 'stat'], (g, s) => {
      const latest = new Map<string, JobSummary>();
      for (const j of s.jobs) latest.set(j.kind, j);
      for (const j of latest.values()) for (const [stat, n] of numericFields(j.stats)) g.set({ kind: j.kind, stat }, n);
    });
    gauge('blobhsm_auto_export', 'Auto-export metrics (enabled, totalFilesExported, totalMiBExported, iterationsCompleted, ...)', ['stat'], (g, s) => {
      for (const [stat, n] of numericFields(s.autoExport)) if (!stat.startsWith('lastIteration.')) g.set({ stat }, n);
    });
    for (const { stat, name, help } of AUTO_IMPORT_PHASE_SERIES) {
      const fill = (m: Counter<'phase'> | Gauge<'phase'>, s: MetricsSnapshot) => {
        for (const [phase, key] of AUTO_IMPORT_PHASES) m.inc({ phase }, s.autoImport[key][stat]);
      };
      const options = { name, help: `Auto-import, by phase (full_sync, blob_sync): ${help}`, labelNames: ['phase'] as const, registers, collect: collectFrom(fill) };
      if (name.endsWith('_total')) new Counter(options);
      else new Gauge(options);
    }
    gauge('blobhsm_auto_import_enabled', 'Whether auto-import is enabled (1) or not (0)', [], (g, s) => g.set(s.autoImport.enabled ? 1 : 0));
    gauge('blobhsm_auto_import_state', 'Auto-import state: 1 for the current one (Disabled, FullSync, BlobSync, Stopping, Failed)', ['state'], (g, s) => {
      for (const state of AUTO_IMPORT_STATES) g.set({ state }, s.autoImport.state === state ? 1 : 0);
    });
    gauge('blobhsm_auto_import_source', 'The change source Blob Sync reads: 1 for the one in use (change-feed, listing)', ['source'], (g, s) => {
      for (const source of ['change-feed', 'listing'] as const) g.set({ source }, s.autoImport.source === source ? 1 : 0);
    });
    new Counter({
      name: 'blobhsm_auto_import_passes_total',
      help: 'Auto-import passes completed (Full Sync and Blob Sync) and skipped while a manual job ran, by outcome',
      labelNames: ['outcome'],
      registers,
      collect: collectFrom((c, s) => {
        c.inc({ outcome: 'completed' }, s.autoImport.passesCompleted);
        c.inc({ outcome: 'skipped' }, s.autoImport.passesSkipped);
      }),
    });
    const timestamp = (name: string, help: string, field: 'lastChangeFeedEventConsumedTime' | 'lastTimeFullySynchronized') =>
      gauge(name, help, [], (g, s) => g.set(timestampSeconds(s.autoImport[field])));
    timestamp(
      'blobhsm_auto_import_last_change_feed_event_consumed_timestamp_seconds',
      'Time of the newest change-feed event auto-import applied (lastChangeFeedEventConsumedTime; 0 before the first)',
      'lastChangeFeedEventConsumedTime',
    );
    timestamp(
      'blobhsm_auto_import_last_time_fully_synchronized_timestamp_seconds',
      'End of the last auto-import pass that saw the whole container under its prefixes (lastTimeFullySynchronized; 0 before the first)',
      'lastTimeFullySynchronized',
    );
    gauge('blobhsm_status', 'Every numeric field of `blobhsm status`, by its dotted name', ['field'], (g, s) => {
      for (const [field, n] of numericFields(s.status)) g.set({ field }, n);
    });
  }

  /** Where the scrape reads the daemon's state (set once the stack is built). */
  setSource(snapshot: () => MetricsSnapshot): void {
    this.snapshot = snapshot;
  }

  bytes(operation: 'read' | 'upload', n: number): void {
    this.blobBytes.inc({ operation }, n);
  }

  error(operation: string, kind: string): void {
    this.blobErrors.inc({ operation, kind });
  }

  observe(op: string, seconds: number, errorCode?: string): void {
    this.fuseOps.observe({ op }, seconds);
    if (errorCode) this.fuseErrors.inc({ op, code: errorCode });
  }
}

/** Serves /metrics and /healthz; resolves with the URL (the real port when 0 was asked) once listening. */
export async function serveMetrics(
  listen: MetricsListen,
  metrics: DaemonMetrics,
  health: () => Record<string, unknown>,
): Promise<{ url: string; close: () => Promise<void> }> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET') {
      res.writeHead(405, { allow: 'GET' }).end();
    } else if (path === '/metrics') {
      metrics.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
        (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${String(err)}\n`),
      );
    } else if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ status: 'ok', ...health() }) + '\n');
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('blobhsm serves /metrics and /healthz\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(new UsageError(`cannot serve metrics on ${listen.host}:${listen.port}: ${err.code ?? err.message}; pick another --metrics HOST:PORT`, { cause: err })),
    );
    server.listen(listen.port, listen.host, () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : listen.port;
  const host = listen.host.includes(':') ? `[${listen.host}]` : listen.host;
  return {
    url: `http://${host}:${port}/metrics`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
