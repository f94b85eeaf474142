// Auto-export (docs/SEMANTICS.md §3, AMLFS auto-export): iterations, `intervalSeconds` apart, that archive the new and
// content-modified files (the export job's candidates: meta.exportCandidates(), never a file whose only names are
// `.fuse_hidden*` ones, never NOARCHIVE) whose last content change (mtime) is at least `minAgeSeconds` old.
//
// - A file open for writing is left for a later iteration, as is one with an HSM action or restore running.
// - Files and symlinks are archived through Coordinator.archiveForExport, a scheduled action: per-file
//   serialisation with hsm_* requests and export jobs, `hsm_action` shows the archive, `hsm_cancel` cancels it,
//   and an import job sees the file as busy.
// - Bounded concurrency (`concurrency`, default 4, so hsm_* requests keep slots of the coordinator's queue).
// - While a manual import or export job runs, iterations are skipped (logged); one that starts during an iteration
//   stops it launching further files.
// - A conflict (the blob changed behind the mount, or holds the only copy of a released file) is logged and
//   counted, the file stays dirty, and auto-export does not try that file again until its content changes (or
//   auto-export is enabled again); `blobhsm export` and `hsm_archive` still do.
// - Stopping (disable, unmount) cancels the archives in flight (those files stay dirty) and waits for them.
//
// Metrics (AMLFS names): totalFilesExported, totalMiBExported, iterationsCompleted, lastSuccessfulIteration (the
// end of the last iteration that ran to the end without a failure or a new conflict), plus conflict and failure
// counts, skipped iterations, the last iteration and the configuration.
import PQueue from 'p-queue';
import { FsError, UsageError, describeError } from '../errors.js';
import type { Coordinator } from '../hsm/coordinator.js';
import { isExportCandidate } from '../hsm/flags.js';
import type { Inode, MetaStore } from '../namespace/types.js';
import { isArchivable } from '../namespace/file-types.js';

export interface AutoExportConfig {
  enabled: boolean;
  /** A file is exported once its last content change is at least this old. */
  minAgeSeconds: number;
  /** Time between the end of one iteration and the start of the next. */
  intervalSeconds: number;
}

export const AUTO_EXPORT_DEFAULTS: AutoExportConfig = { enabled: false, minAgeSeconds: 60, intervalSeconds: 30 };

/** setTimeout's limit (2^31 - 1 ms). */
const MAX_INTERVAL_SECONDS = 2_147_483;

export type AutoExportState = 'Disabled' | 'Idle' | 'Exporting' | 'Stopping';

export interface AutoExportIteration {
  startTime: string;
  finishTime: string;
  filesExported: number;
  bytesExported: number;
  conflicts: number;
  failures: number;
  /** Why it stopped before the end (a manual job started, auto-export was stopped). */
  interrupted?: string;
}

export interface AutoExportMetrics {
  enabled: boolean;
  minAgeSeconds: number;
  intervalSeconds: number;
  state: AutoExportState;
  totalFilesExported: number;
  totalMiBExported: number;
  iterationsCompleted: number;
  /** ISO time, null before the first one. */
  lastSuccessfulIteration: string | null;
  totalConflicts: number;
  totalFailures: number;
  /** Iterations not run because a manual import or export job was running. */
  iterationsSkipped: number;
  lastIteration: AutoExportIteration | null;
  /** When the next iteration is due (ISO time), null when none is scheduled (disabled, or one is running). */
  nextIterationTime: string | null;
  /** Files left dirty by a conflict, not retried until they change (at most 100 listed). */
  conflictPaths: string[];
}

export interface AutoExporterOptions {
  meta: MetaStore;
  coordinator: Coordinator;
  /** Whether a file has an open writer (such a file is never exported). */
  hasWriter: (ino: number) => boolean;
  /** The manual jobs (the JobRunner): an iteration is skipped while one is InProgress or Canceling. */
  jobs: { list(): Array<{ id: string; kind: string; state: string }> };
  log: (line: string) => void;
  config?: Partial<AutoExportConfig>;
  /** Files archived at once (default 4). */
  concurrency?: number;
  /** The clock (ms since the epoch) for file ages and iteration times; tests inject one. Default Date.now. */
  now?: () => number;
}

/** Parses a number of seconds given on the command line (digits, optionally a fraction). */
export function parseSeconds(text: string, what: string): number {
  if (!/^\s*\d+(\.\d+)?\s*$/.test(text)) throw new UsageError(`invalid ${what} '${text}': a number of seconds (e.g. 60)`);
  return Number(text);
}

/** Validates a configuration change (UsageError naming the bad value); returns the complete new configuration. */
export function checkAutoExportConfig(current: AutoExportConfig, change: Partial<AutoExportConfig>): AutoExportConfig {
  const next = { ...current };
  if (change.enabled !== undefined) {
    if (typeof change.enabled !== 'boolean') throw new UsageError(`invalid auto-export enabled value '${String(change.enabled)}'`);
    next.enabled = change.enabled;
  }
  if (change.minAgeSeconds !== undefined) {
    const v = change.minAgeSeconds;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
      throw new UsageError(`invalid auto-export minimum age '${String(v)}': a number of seconds, 0 or more`);
    }
    next.minAgeSeconds = v;
  }
  if (change.intervalSeconds !== undefined) {
    const v = change.intervalSeconds;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || v > MAX_INTERVAL_SECONDS) {
      throw new UsageError(`invalid auto-export interval '${String(v)}': a number of seconds, more than 0 and at most ${MAX_INTERVAL_SECONDS}`);
    }
    next.intervalSeconds = v;
  }
  return next;
}

const MiB = 1024 * 1024;

interface Running {
  stats: Omit<AutoExportIteration, 'finishTime'>;
  /** Set when the iteration stops launching files. */
  stop?: string;
  queue: PQueue;
}

export class AutoExporter {
  private config: AutoExportConfig;
  private timer: NodeJS.Timeout | undefined;
  private nextDueMs: number | null = null;
  private readonly now: () => number;
  private abort = new AbortController();
  private current: Promise<void> | undefined;
  private iteration: Running | undefined;
  private stopping: Promise<void> | undefined;
  /** Files whose archive this exporter requested and that has not finished. */
  private readonly inFlight = new Set<number>();
  /** ino → the data version that met a conflict (not retried until the file changes). */
  private readonly conflicted = new Map<number, number>();
  private readonly totals = { files: 0, bytes: 0, iterations: 0, conflicts: 0, failures: 0, skipped: 0 };
  private lastSuccess: string | null = null;
  private lastIteration: AutoExportIteration | null = null;

  constructor(private readonly o: AutoExporterOptions) {
    this.now = o.now ?? Date.now;
    this.config = checkAutoExportConfig(AUTO_EXPORT_DEFAULTS, o.config ?? {});
    if (this.config.enabled) this.schedule();
  }

  metrics(): AutoExportMetrics {
    const conflictPaths: string[] = [];
    for (const ino of this.conflicted.keys()) {
      if (conflictPaths.length >= 100) break;
      const path = this.o.coordinator.exportPaths(ino)[0];
      if (path !== undefined) conflictPaths.push(path);
    }
    return {
      ...this.config,
      state: this.stopping ? 'Stopping' : this.current ? 'Exporting' : this.config.enabled ? 'Idle' : 'Disabled',
      totalFilesExported: this.totals.files,
      totalMiBExported: Math.round((this.totals.bytes / MiB) * 1e6) / 1e6,
      iterationsCompleted: this.totals.iterations,
      lastSuccessfulIteration: this.lastSuccess,
      totalConflicts: this.totals.conflicts,
      totalFailures: this.totals.failures,
      iterationsSkipped: this.totals.skipped,
      lastIteration: this.lastIteration,
      nextIterationTime: this.nextDueMs === null ? null : new Date(this.nextDueMs).toISOString(),
      conflictPaths,
    };
  }

  /**
   * Changes the configuration (validated first: UsageError, nothing changed). Enabling starts iterations (the first
   * one an interval later) and forgets earlier conflicts; disabling stops them and waits for the archives in flight.
   */
  async configure(change: Partial<AutoExportConfig>): Promise<AutoExportMetrics> {
    const next = checkAutoExportConfig(this.config, change);
    const was = this.config;
    this.config = next;
    if (was.enabled && !next.enabled) {
      this.o.log('auto-export disabled');
      await this.halt();
    } else if (!was.enabled && next.enabled) {
      await this.stopping;
      this.conflicted.clear();
      this.abort = new AbortController();
      this.o.log(`auto-export enabled: files unchanged for ${next.minAgeSeconds} s, every ${next.intervalSeconds} s`);
      this.schedule();
    } else if (next.enabled && next.intervalSeconds !== was.intervalSeconds && this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
      this.nextDueMs = null;
      this.schedule();
    }
    if (next.enabled && (next.minAgeSeconds !== was.minAgeSeconds || next.intervalSeconds !== was.intervalSeconds) && was.enabled) {
      this.o.log(`auto-export: files unchanged for ${next.minAgeSeconds} s, every ${next.intervalSeconds} s`);
    }
    return this.metrics();
  }

  /** Stops for good (daemon shutdown): no further iteration; archives in flight are cancelled and awaited. */
  async close(): Promise<void> {
    this.config = { ...this.config, enabled: false };
    await this.halt();
  }

  /** Runs one iteration now (tests; skipped as usual while a manual job runs). */
  async runOnce(): Promise<void> {
    while (this.current) await this.current;
    await this.startIteration();
  }

  private halt(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.nextDueMs = null;
    this.abort.abort();
    if (this.iteration) {
      this.iteration.stop ??= 'auto-export stopped';
      this.iteration.queue.clear();
    }
    for (const ino of this.inFlight) this.o.coordinator.cancel(ino);
    const p = (this.stopping ??= (async () => {
      while (this.current) await this.current.catch(() => undefined);
    })().finally(() => (this.stopping = undefined)));
    return p;
  }

  private schedule(): void {
    if (!this.config.enabled || this.timer || this.stopping) return;
    this.nextDueMs = this.now() + this.config.intervalSeconds * 1000;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.nextDueMs = null;
      void this.startIteration().finally(() => this.schedule());
    }, this.config.intervalSeconds * 1000);
    this.timer.unref();
  }

  private startIteration(): Promise<void> {
    const run = this.iterate().catch((err) => this.o.log(`auto-export: iteration failed: ${describeError(err)}`));
    const current = run.finally(() => {
      if (this.current === current) this.current = undefined;
    });
    this.current = current;
    return current;
  }

  private manualJob(): { id: string; kind: string } | undefined {
    return this.o.jobs.list().find((j) => j.state === 'InProgress' || j.state === 'Canceling');
  }

  private async iterate(): Promise<void> {
    const job = this.manualJob();
    if (job) {
      this.totals.skipped++;
      this.o.log(`auto-export: iteration skipped: ${job.kind} job ${job.id} is running`);
      return;
    }
    const { meta, coordinator } = this.o;
    const signal = this.abort.signal;
    const it: Running = {
      stats: { startTime: new Date(this.now()).toISOString(), filesExported: 0, bytesExported: 0, conflicts: 0, failures: 0 },
      queue: new PQueue({ concurrency: this.o.concurrency ?? 4 }),
    };
    this.iteration = it;
    const cutoff = this.now() - this.config.minAgeSeconds * 1000;
    try {
      for (const inode of meta.exportCandidates()) {
        if (signal.aborted) break;
        if (!this.eligible(inode, cutoff)) continue;
        void it.queue.add(() => this.exportOne(inode.ino, cutoff, it, signal));
      }
      await it.queue.onIdle();
    } finally {
      this.iteration = undefined;
    }
    if (signal.aborted) it.stop ??= 'auto-export stopped';
    const s: AutoExportIteration = { ...it.stats, finishTime: new Date(this.now()).toISOString(), ...(it.stop ? { interrupted: it.stop } : {}) };
    this.lastIteration = s;
    if (it.stop) {
      this.o.log(`auto-export: iteration stopped (${it.stop}) after ${s.filesExported} files`);
      return;
    }
    this.totals.iterations++;
    if (s.failures === 0 && s.conflicts === 0) this.lastSuccess = s.finishTime;
    if (s.filesExported || s.conflicts || s.failures) {
      this.o.log(
        `auto-export: exported ${s.filesExported} files (${s.bytesExported} bytes), ${s.conflicts} conflicts, ${s.failures} failures`,
      );
    }
  }

  /** A candidate this iteration exports now: old enough, not open for writing, not busy, not a known conflict. */
  private eligible(inode: Inode | undefined, cutoff: number): inode is Inode {
    if (!inode || !isArchivable(inode.kind)) return false;
    const ino = inode.ino;
    if (!isExportCandidate(inode.hsmFlags)) return false;
    if (inode.mtimeMs > cutoff) return false;
    const conflictVersion = this.conflicted.get(ino);
    if (conflictVersion !== undefined) {
      if (conflictVersion === inode.dataVersion) return false;
      this.conflicted.delete(ino);
    }
    if (this.o.hasWriter(ino) || this.o.coordinator.action(ino) || this.inFlight.has(ino)) return false;
    return this.o.coordinator.exportPaths(ino).length > 0;
  }

  private async exportOne(ino: number, cutoff: number, it: Running, signal: AbortSignal): Promise<void> {
    if (signal.aborted || it.stop) return;
    const job = this.manualJob();
    if (job) {
      it.stop = `${job.kind} job ${job.id} started`;
      it.queue.clear();
      return;
    }
    // Checked again: the file may have been written, opened, archived or removed since the iteration listed it.
    const { meta, coordinator } = this.o;
    const before = meta.get(ino);
    if (!this.eligible(before, cutoff)) return;
    const path = coordinator.exportPaths(ino)[0]!;
    this.inFlight.add(ino);
    try {
      const outcome = await coordinator.archiveForExport(ino, 'auto-export', signal);
      const conflict = outcome?.conflict !== undefined;
      const after = meta.get(ino);
      if (conflict) {
        it.stats.conflicts++;
        this.totals.conflicts++;
        this.conflicted.set(ino, before.dataVersion);
        this.o.log(`auto-export conflict: ${path}: the blob was not overwritten; the file stays dirty (the log line above says why)`);
      } else if (after && after.etag !== before.etag) {
        it.stats.filesExported++;
        it.stats.bytesExported += after.size;
        this.totals.files++;
        this.totals.bytes += after.size;
      }
    } catch (err) {
      if (signal.aborted) return;
      if (err instanceof FsError && err.code === 'ECANCELED') {
        this.o.log(`auto-export: archive of ${path} cancelled (hsm_cancel); the file stays dirty`);
        return;
      }
      if (!meta.get(ino)) return; // removed while it was archived
      it.stats.failures++;
      this.totals.failures++;
      this.o.log(`auto-export failed: ${path}: ${describeError(err)}`);
    } finally {
      this.inFlight.delete(ino);
    }
  }
}
