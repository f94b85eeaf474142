// Auto-import (docs/SEMANTICS.md §3, AMLFS auto-import): the namespace follows the container continuously.
//
// Phase 1, Full Sync: one import pass over the prefixes under the conflict mode (Skip or OverwriteIfDirty, the two
// AMLFS offers), no deletions. Phase 2, Blob Sync, every `intervalSeconds` (counted from the end of the previous
// pass), from one of two change sources:
// - change feed (src/blob/change-feed.ts): the cursor is taken before Full Sync starts, so events that arrive
//   during phase 1 apply after it. Each batch of events is reduced to the latest event per blob (records may repeat:
//   a per-blob sequencer memory drops older ones), each blob is HEADed once (its state now, whatever order the
//   events came in; not at all when the entry at its path records the event's etag already: our own exports), and
//   the blobs, the deletions and the new cursor commit in one metadata transaction: a kill -9 neither loses nor
//   re-applies an event.
// - listing (Azurite, HNS accounts, accounts without the feed): an import pass per interval that records in the
//   metadata store which blob names it listed; a name listed by an earlier pass and missing now is a deletion
//   candidate, confirmed by a HEAD (a name that was exported meanwhile is not deleted). Names never listed since
//   enablement are never deleted: deletions that happened before enablement are not applied (as AMLFS).
// Deletions (`enableDeletions`) follow decideDeletion (src/jobs/decide-import.ts): an unmodified file is deleted,
// one modified locally only under OverwriteIfDirty; open or busy files and non-empty directories never (retried
// on the next pass). Each deletion, conflict and error is one JSON line in the auto-import log; errors (a blob that
// cannot be read, counted by the importer, and each failed pass) count against `maximumErrors` per phase: past it,
// auto-import stops as Failed, as it does at a conflict under conflict mode Fail.
//
// Only changes apply (decideAutoImport): a blob whose etag is the one the local entry recorded is left alone, so a
// locally modified file waits for its export instead of being replaced, and our own exports (the export records
// the etag it committed) are never re-imported as remote changes. Manual hsm_* requests stay allowed: a busy file
// (open, HSM action running) is skipped by the importer and handled by a later pass. A pass is skipped (logged)
// while a manual import or export job runs.
//
// The phase, the source, the change-feed cursor and the listing pass number persist in the metadata store's
// settings: a restarted daemon resumes Blob Sync where it stopped instead of running Full Sync again.
import type { BlobInfo, BlobStore } from '../blob/blob-store.js';
import { ChangeFeedReader, ChangeFeedUnavailable, compareSequencers, type ChangeFeedCursor } from '../blob/change-feed.js';
import { BlobError, UsageError, describeError } from '../errors.js';
import { importNamespace, type ImportOptions, type ImportPage, type ImportStats } from '../namespace/importer.js';
import { normalizePrefix } from '../namespace/blob-encoding.js';
import type { MetaStore } from '../namespace/types.js';
import { CONFLICT_MODES, decideAutoImport, decideDeletion, isConflictMode, type ConflictMode } from './decide-import.js';
import { checkJobPrefixes, checkMaximumErrors } from './job-runner.js';
import { JobLog } from './job-log.js';

export type AutoImportSource = 'change-feed' | 'listing';
export type AutoImportMode = ConflictMode;

export interface AutoImportConfig {
  enabled: boolean;
  /** Seconds between the end of one Blob Sync pass and the start of the next. */
  intervalSeconds: number;
  enableDeletions: boolean;
  conflictMode: AutoImportMode;
  /** Paths inside the mount, as for import jobs. */
  prefixes: string[];
  /** `auto`: the change feed when the account has one, else listing. */
  source: 'auto' | AutoImportSource;
  /**
   * Errors a phase tolerates before auto-import stops as Failed (AMLFS maximumErrors; -1 unlimited, the default:
   * a failed Blob Sync pass is otherwise retried an interval later).
   */
  maximumErrors: number;
}

export const AUTO_IMPORT_DEFAULTS: AutoImportConfig = {
  enabled: false,
  intervalSeconds: 60,
  enableDeletions: false,
  conflictMode: 'Skip',
  prefixes: ['/'],
  source: 'auto',
  maximumErrors: -1,
};

const MAX_INTERVAL_SECONDS = 2_147_483;

/** Validates a configuration change (UsageError naming the bad value); returns the complete new configuration. */
export function checkAutoImportConfig(current: AutoImportConfig, change: Partial<AutoImportConfig>): AutoImportConfig {
  const next = { ...current, ...change };
  if (typeof next.enabled !== 'boolean') throw new UsageError(`invalid auto-import enabled value '${String(next.enabled)}'`);
  if (typeof next.enableDeletions !== 'boolean') throw new UsageError(`invalid enable-deletions value '${String(next.enableDeletions)}'`);
  const v = next.intervalSeconds;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || v > MAX_INTERVAL_SECONDS) {
    throw new UsageError(`invalid auto-import interval '${String(v)}': a number of seconds, more than 0 and at most ${MAX_INTERVAL_SECONDS}`);
  }
  if (!isConflictMode(next.conflictMode)) {
    throw new UsageError(`invalid auto-import conflict mode '${String(next.conflictMode)}': use one of ${CONFLICT_MODES.join(', ')}`);
  }
  if (!['auto', 'change-feed', 'listing'].includes(next.source)) {
    throw new UsageError(`invalid auto-import source '${String(next.source)}': use auto, change-feed or listing`);
  }
  next.prefixes = checkJobPrefixes(next.prefixes);
  next.maximumErrors = checkMaximumErrors(next.maximumErrors);
  return next;
}

/** AMLFS's auto-import statistics of one phase. */
export interface AutoImportPhaseMetrics {
  importedFiles: number;
  importedDirectories: number;
  importedSymlinks: number;
  preexistingFiles: number;
  preexistingDirectories: number;
  preexistingSymlinks: number;
  totalBlobsImported: number;
  /** Blobs imported per second while the phase ran. */
  rateOfBlobImport: number;
  totalBlobsWalked: number;
  rateOfBlobWalk: number;
  totalConflicts: number;
  totalErrors: number;
  deletions: number;
  startTime: string | null;
  finishTime: string | null;
}

export const AUTO_IMPORT_STATES = ['Disabled', 'FullSync', 'BlobSync', 'Stopping', 'Failed'] as const;
export type AutoImportState = (typeof AUTO_IMPORT_STATES)[number];

export interface AutoImportMetrics {
  enabled: boolean;
  state: AutoImportState;
  /** The change source in use (null before the first pass decided it). */
  source: AutoImportSource | null;
  intervalSeconds: number;
  enableDeletions: boolean;
  conflictMode: AutoImportMode;
  prefixes: string[];
  maximumErrors: number;
  fullSync: AutoImportPhaseMetrics;
  blobSync: AutoImportPhaseMetrics;
  /** Time of the newest change-feed event applied (ISO), null if none. */
  lastChangeFeedEventConsumedTime: string | null;
  /** End of the last pass that saw the whole container under the prefixes (Full Sync or a listing pass). */
  lastTimeFullySynchronized: string | null;
  passesCompleted: number;
  passesSkipped: number;
  lastError: string | null;
  /** The current phase's JSON-lines log: the local file, and its blob in the logging container when one is set. */
  logFile: string | null;
  logBlob: string | null;
}

export interface AutoImporterOptions {
  meta: MetaStore;
  store: BlobStore;
  /** A store on the account's `$blobchangefeed` container; absent: listing only. */
  changeFeed?: BlobStore;
  container: string;
  /** The mount prefix ('' or ending in '/'). */
  prefix: string;
  isBusy: (ino: number) => boolean;
  dropData: (ino: number, generation: number) => Promise<void>;
  /** The manual jobs: a pass is skipped while one is InProgress or Canceling. */
  jobs: { list(): Array<{ id: string; kind: string; state: string }> };
  log: (line: string) => void;
  /** Directory of the phases' JSON-lines logs (`auto-import-<phase>-<start>.jsonl`); none when absent. */
  logDir?: string;
  /** Passed to every import pass (HNS identities, default modes, the kernel caches to invalidate), as for import jobs. */
  importOptions?: Pick<ImportOptions, 'idMap' | 'defaultModes' | 'kernel'>;
  /** The logging container (`--logging-container`): each phase's log is appended there too. */
  loggingContainer?: { store: BlobStore; folder: string };
  config?: Partial<AutoImportConfig>;
  /** Called after a pass changed the namespace (the FUSE layer drops what the kernel cached). */
  onNamespaceChanged?: () => void;
  /** Blobs HEADed at once when applying change-feed events or confirming deletions (default 16). */
  headConcurrency?: number;
  now?: () => Date;
  /** Runs fn after ms (default setTimeout, unref'ed); tests pass one that never fires and drive runOnce(). */
  schedule?: (fn: () => void, ms: number) => { cancel(): void };
}

/** What persists in the metadata store between daemon runs. */
interface Persisted {
  phase: 'BlobSync';
  source: AutoImportSource;
  prefixes: string[];
  enabledAt: string;
  /** Listing: the last completed pass number. */
  pass: number;
  /** Change feed: where the next poll starts (null: the feed has no segment yet; start at the first one). */
  cursor: ChangeFeedCursor | null;
  lastChangeFeedEventConsumedTime: string | null;
  lastTimeFullySynchronized: string | null;
}

/** A pass ended at a conflict under conflict mode Fail, or with more errors than maximumErrors: auto-import stops. */
class AutoImportStopped extends Error {}

/** An import run failed; the importer has written the error line to the phase's log already. */
class ImportRunFailed extends Error {}

/** Throws when an import run did not complete (cancelled, failed, or stopped at a conflict under Fail or at maximumErrors). */
function requireCompleted(stats: ImportStats, what: string): void {
  if (stats.state === 'Completed') return;
  if (stats.state === 'Canceled') throw new Error(`${what} cancelled`);
  const why = stats.error ?? 'unknown error';
  if (stats.stoppedAtConflict) throw new AutoImportStopped(`${what}: ${why}`);
  if (stats.stoppedAtMaximumErrors) throw new AutoImportStopped(`${what}: ${why} (maximum errors)`);
  throw new ImportRunFailed(`${what} failed: ${why}`);
}

const SETTING = 'auto-import';
const EVENTS_PER_BATCH = 5000;
const DELETION_BATCH = 1000;
const SEQUENCER_MEMORY = 100_000;

function emptyPhase(): AutoImportPhaseMetrics {
  return {
    importedFiles: 0,
    importedDirectories: 0,
    importedSymlinks: 0,
    preexistingFiles: 0,
    preexistingDirectories: 0,
    preexistingSymlinks: 0,
    totalBlobsImported: 0,
    rateOfBlobImport: 0,
    totalBlobsWalked: 0,
    rateOfBlobWalk: 0,
    totalConflicts: 0,
    totalErrors: 0,
    deletions: 0,
    startTime: null,
    finishTime: null,
  };
}

/** Phase totals plus one import run's statistics; `busyMs` is the time the phase has spent running. */
function accumulate(phase: AutoImportPhaseMetrics, s: ImportStats, busyMs: number): void {
  phase.importedFiles += s.importedFiles;
  phase.importedDirectories += s.importedDirectories;
  phase.importedSymlinks += s.importedSymlinks;
  phase.preexistingFiles += s.preexistingFiles;
  phase.preexistingDirectories += s.preexistingDirectories;
  phase.preexistingSymlinks += s.preexistingSymlinks;
  phase.totalBlobsImported += s.totalBlobsImported;
  phase.totalBlobsWalked += s.totalBlobsWalked;
  phase.totalConflicts += s.totalConflicts;
  phase.totalErrors += s.totalErrors;
  phase.deletions += s.deletions;
  const seconds = Math.max(busyMs / 1000, 0.001);
  phase.rateOfBlobImport = Math.round((phase.totalBlobsImported / seconds) * 10) / 10;
  phase.rateOfBlobWalk = Math.round((phase.totalBlobsWalked / seconds) * 10) / 10;
}

export class AutoImporter {
  private config: AutoImportConfig;
  private state: AutoImportState = 'Disabled';
  private source: AutoImportSource | null = null;
  private persisted: Persisted | undefined;
  private timer: { cancel(): void } | undefined;
  private abort = new AbortController();
  private current: Promise<void> | undefined;
  private readonly setTimer: (fn: () => void, ms: number) => { cancel(): void };
  private fullSync = emptyPhase();
  private blobSync = emptyPhase();
  private blobSyncBusyMs = 0;
  private passes = 0;
  private skipped = 0;
  private lastError: string | null = null;
  private jobLog: { phase: 'FullSync' | 'BlobSync'; log: JobLog } | undefined;
  /** blob name → the newest sequencer applied (bounded; the HEAD per batch makes a forgotten repeat harmless). */
  private readonly sequencers = new Map<string, string>();
  private readonly pfx: string;
  private readonly now: () => Date;

  constructor(private readonly o: AutoImporterOptions) {
    this.config = checkAutoImportConfig(AUTO_IMPORT_DEFAULTS, o.config ?? {});
    this.pfx = normalizePrefix(o.prefix);
    this.now = o.now ?? (() => new Date());
    this.setTimer =
      o.schedule ??
      ((fn, ms) => {
        const timer = setTimeout(fn, ms);
        timer.unref();
        return { cancel: () => clearTimeout(timer) };
      });
    if (this.config.enabled) this.start();
  }

  metrics(): AutoImportMetrics {
    const p = this.persisted;
    return {
      enabled: this.config.enabled,
      state: this.state,
      source: this.source,
      intervalSeconds: this.config.intervalSeconds,
      enableDeletions: this.config.enableDeletions,
      conflictMode: this.config.conflictMode,
      prefixes: this.config.prefixes,
      maximumErrors: this.config.maximumErrors,
      fullSync: { ...this.fullSync },
      blobSync: { ...this.blobSync },
      lastChangeFeedEventConsumedTime: p?.lastChangeFeedEventConsumedTime ?? null,
      lastTimeFullySynchronized: p?.lastTimeFullySynchronized ?? null,
      passesCompleted: this.passes,
      passesSkipped: this.skipped,
      lastError: this.lastError,
      logFile: this.jobLog?.log.file ?? null,
      logBlob: this.jobLog?.log.blob ?? null,
    };
  }

  /**
   * Changes the configuration (validated first; an empty change only reads the metrics). Enabling starts Full Sync;
   * other prefixes or another source start it again; disabling stops the pass in flight; a new interval applies
   * from the next pass, a new conflict mode or deletion setting from the next page.
   */
  async configure(change: Partial<AutoImportConfig>): Promise<AutoImportMetrics> {
    const next = checkAutoImportConfig(this.config, change);
    const was = this.config;
    const setupChanged = next.source !== was.source || next.prefixes.join('\n') !== was.prefixes.join('\n');
    if (was.enabled && (!next.enabled || setupChanged)) await this.halt();
    this.config = next;
    if (!next.enabled) {
      if (was.enabled) {
        this.state = 'Disabled';
        this.o.log('auto-import disabled');
      }
    } else if (!was.enabled || setupChanged) {
      this.forget(); // a new enablement, or other prefixes or source: Full Sync again
      this.start();
    } else if (next.intervalSeconds !== was.intervalSeconds && this.timer) {
      this.timer.cancel();
      this.timer = undefined;
      this.schedule(next.intervalSeconds);
    }
    return this.metrics();
  }

  /** Cancels the pass in flight (whole pages are kept); auto-import stays enabled and runs again an interval later. */
  async cancel(): Promise<AutoImportMetrics> {
    if (!this.current) return this.metrics();
    this.abort.abort();
    while (this.current) await this.current.catch(() => undefined);
    this.abort = new AbortController();
    this.o.log('auto-import: pass cancelled');
    return this.metrics();
  }

  /** Stops for good (daemon shutdown): the pass in flight is cancelled (whole pages only) and awaited. */
  async close(): Promise<void> {
    this.config = { ...this.config, enabled: false };
    await this.halt();
    this.state = 'Disabled';
    await this.jobLog?.log.close();
    this.jobLog = undefined;
  }

  /** Runs the next step now: Full Sync if not done, else one Blob Sync pass (tests). */
  async runOnce(): Promise<void> {
    while (this.current) await this.current;
    const run = this.step();
    this.current = run;
    await run.finally(() => (this.current = undefined));
  }

  // ---- scheduling ----

  private start(): void {
    this.abort = new AbortController();
    this.persisted = this.load();
    this.o.log(
      `auto-import enabled: prefixes ${this.config.prefixes.join(' ')}, conflict mode ${this.config.conflictMode}, ` +
        `deletions ${this.config.enableDeletions ? 'enabled' : 'disabled'}, every ${this.config.intervalSeconds} s` +
        (this.persisted ? ` (resuming Blob Sync from the ${this.persisted.source})` : ''),
    );
    this.state = this.persisted ? 'BlobSync' : 'FullSync';
    this.source = this.persisted?.source ?? null;
    // Full Sync starts at once; Blob Sync passes an interval apart.
    this.schedule(this.persisted ? this.config.intervalSeconds : 0);
  }

  private schedule(seconds: number): void {
    if (!this.config.enabled || this.timer) return;
    this.timer = this.setTimer(() => {
      this.timer = undefined;
      const run = this.step().finally(() => {
        if (this.current === run) this.current = undefined;
        this.schedule(this.config.intervalSeconds);
      });
      this.current = run;
    }, seconds * 1000);
  }

  private async halt(): Promise<void> {
    this.timer?.cancel();
    this.timer = undefined;
    this.abort.abort();
    if (this.current) this.state = 'Stopping';
    while (this.current) await this.current.catch(() => undefined);
  }

  private async step(): Promise<void> {
    const job = this.o.jobs.list().find((j) => j.state === 'InProgress' || j.state === 'Canceling');
    if (job) {
      this.skipped++;
      this.o.log(`auto-import: pass skipped: ${job.kind} job ${job.id} is running`);
      return;
    }
    const signal = this.abort.signal;
    const phase = this.persisted ? 'BlobSync' : 'FullSync';
    await this.useLog(phase);
    try {
      if (!this.persisted) await this.runFullSync(signal);
      else if (this.persisted.source === 'change-feed') await this.runFeedPass(this.persisted, signal);
      else await this.runListingPass(this.persisted, signal);
      if (!signal.aborted) this.passes++;
      this.lastError = null;
    } catch (err) {
      if (signal.aborted) return;
      this.lastError = describeError(err);
      if (err instanceof AutoImportStopped) return this.stop(this.lastError);
      // A failed pass is one error of its phase (one line in the phase's log), counted against maximumErrors.
      const stats = phase === 'FullSync' ? this.fullSync : this.blobSync;
      stats.totalErrors++;
      if (!(err instanceof ImportRunFailed)) this.logEvent('error', undefined, `pass failed: ${this.lastError}`);
      const max = this.config.maximumErrors;
      if (max >= 0 && stats.totalErrors > max) {
        return this.stop(`${this.lastError}; ${stats.totalErrors} errors, more than the ${max} allowed (maximum errors)`);
      }
      this.o.log(`auto-import: pass failed (retried in ${this.config.intervalSeconds} s): ${this.lastError}`);
    }
  }

  /** Auto-import stops as Failed (conflict mode Fail, maximum errors), as AMLFS's job does; enabling it again starts over. */
  private stop(why: string): void {
    this.lastError = why;
    this.state = 'Failed';
    this.config = { ...this.config, enabled: false };
    this.timer?.cancel();
    this.timer = undefined;
    this.logEvent('failed', undefined, why);
    this.o.log(`auto-import stopped (Failed): ${why}; enable it again with blobhsm auto-import MOUNTPOINT --enable (Full Sync starts over)`);
  }

  // ---- phase 1 ----

  private async runFullSync(signal: AbortSignal): Promise<void> {
    this.state = 'FullSync';
    const enabledAt = this.now();
    const source = await this.chooseSource();
    this.source = source;
    // The cursor is taken before the scan: events during the scan apply after it.
    const cursor = source === 'change-feed' ? ((await this.reader(signal).cursorAt(enabledAt)) ?? null) : null;
    if (this.config.enableDeletions) this.o.meta.clearListed();
    const started = Date.now();
    // A retried Full Sync starts its counts again, except the errors: they count against maximumErrors until it completes.
    this.fullSync = { ...emptyPhase(), startTime: enabledAt.toISOString(), totalErrors: this.fullSync.totalErrors };
    const stats = await this.importPass(this.listing(0, signal), signal);
    accumulate(this.fullSync, stats, Date.now() - started);
    requireCompleted(stats, 'Full Sync');
    const finished = this.now().toISOString();
    this.fullSync.finishTime = finished;
    const persisted: Persisted = {
      phase: 'BlobSync',
      source,
      prefixes: this.config.prefixes,
      enabledAt: enabledAt.toISOString(),
      pass: 0,
      cursor,
      lastChangeFeedEventConsumedTime: null,
      lastTimeFullySynchronized: finished,
    };
    this.save(persisted);
    this.persisted = persisted;
    this.state = 'BlobSync';
    this.o.log(
      `auto-import Full Sync done (${source}): ${stats.totalBlobsWalked} blobs walked, ${stats.totalBlobsImported} imported, ` +
        `${stats.totalConflicts} conflicts, ${stats.totalErrors} errors; Blob Sync every ${this.config.intervalSeconds} s`,
    );
  }

  private async chooseSource(): Promise<AutoImportSource> {
    const wanted = this.config.source;
    if (wanted === 'listing') return 'listing';
    if (!this.o.changeFeed) {
      if (wanted === 'change-feed') throw new UsageError('the change feed cannot be read with these credentials: use --auto-import-source listing');
      return 'listing';
    }
    try {
      await this.reader(this.abort.signal).lastConsumable();
      this.o.log('auto-import: the account has a change feed: Blob Sync reads it');
      return 'change-feed';
    } catch (err) {
      const why = err instanceof ChangeFeedUnavailable ? err.message : describeError(err);
      if (wanted === 'change-feed') throw new Error(`auto-import from the change feed: ${why}`, { cause: err });
      this.o.log(`auto-import: ${why}; Blob Sync lists the container instead`);
      return 'listing';
    }
  }

  // ---- phase 2: listing ----

  private async runListingPass(p: Persisted, signal: AbortSignal): Promise<void> {
    const pass = p.pass + 1;
    const started = Date.now();
    const stats = await this.importPass(this.listing(pass, signal), signal);
    accumulate(this.blobSync, stats, (this.blobSyncBusyMs += Date.now() - started));
    requireCompleted(stats, `listing pass ${pass}`);
    let deletions: ImportStats | undefined;
    if (this.config.enableDeletions) {
      const confirming = Date.now();
      deletions = await this.importPass(this.listingDeletions(pass, signal), signal);
      accumulate(this.blobSync, deletions, (this.blobSyncBusyMs += Date.now() - confirming));
      requireCompleted(deletions, `deletions of listing pass ${pass}`);
    }
    this.blobSync.startTime ??= new Date(started).toISOString();
    this.blobSync.finishTime = this.now().toISOString();
    const next: Persisted = { ...p, pass, lastTimeFullySynchronized: this.blobSync.finishTime };
    this.save(next);
    this.persisted = next;
    const changed = stats.totalBlobsImported + stats.updatedAttributes + stats.releasedFiles + (deletions?.deletions ?? 0);
    if (changed > 0) {
      this.o.onNamespaceChanged?.();
      this.o.log(`auto-import: listing pass ${pass}: ${stats.totalBlobsImported} imported, ${stats.updatedAttributes} updated, ${deletions?.deletions ?? 0} deleted`);
    }
  }

  /** The container listed under the prefixes; with deletions enabled each page records its names as listed. */
  private async *listing(pass: number, signal: AbortSignal): AsyncIterable<ImportPage> {
    const track = this.config.enableDeletions;
    for (const prefix of this.listPrefixes()) {
      for await (const blobs of this.o.store.listPages({ prefix: this.pfx + prefix || undefined, signal })) {
        yield { blobs, ...(track ? { onCommit: () => this.o.meta.markListed(blobs.map((b) => b.name), pass) } : {}) };
      }
    }
  }

  /**
   * Names listed before this pass and missing from it, confirmed gone by a HEAD; a name that exists again (created
   * or exported since the listing passed it) is recorded as listed instead. A deletion kept because the file was
   * busy stays a candidate for the next pass.
   */
  private async *listingDeletions(pass: number, signal: AbortSignal): AsyncIterable<ImportPage> {
    const meta = this.o.meta;
    for (;;) {
      const names = meta.listedBefore(pass, DELETION_BATCH);
      if (names.length === 0) return;
      const heads = await this.headAll(names, signal);
      const present = heads.filter((h): h is BlobInfo => h !== null);
      const gone = names.filter((_, i) => heads[i] === null);
      const retry: string[] = [];
      yield {
        blobs: present,
        deleted: gone,
        onCommit: () => {
          for (const name of gone) if (this.keptBusy.has(name)) retry.push(name);
          this.keptBusy.clear();
          meta.forgetListed(gone.filter((n) => !retry.includes(n)));
          meta.markListed([...present.map((b) => b.name), ...retry], pass);
        },
      };
      // Retried names carry this pass's number now: the next query returns only the rest.
    }
  }

  // ---- phase 2: change feed ----

  private async runFeedPass(p: Persisted, signal: AbortSignal): Promise<void> {
    const reader = this.reader(signal);
    const started = Date.now();
    let cursor = p.cursor;
    let current = p;
    for (;;) {
      if (cursor === null) {
        cursor = (await reader.cursorAt(new Date(p.enabledAt))) ?? null;
        if (cursor === null) break; // still no segment
      }
      const batchStarted = Date.now();
      const polled = await reader.poll(cursor, EVENTS_PER_BATCH);
      const enabledAt = Date.parse(p.enabledAt);
      // The newest relevant event per blob; repeats and older events of a blob already applied are dropped.
      const latest = new Map<string, { sequencer?: string; etag?: string; deleted: boolean; time: number }>();
      let newest = 0;
      for (const e of polled.events) {
        newest = Math.max(newest, e.eventTime.getTime());
        if (!this.inPrefixes(e.blobName)) continue;
        const seen = this.sequencers.get(e.blobName);
        if (seen && e.sequencer && compareSequencers(e.sequencer, seen) <= 0) continue;
        const prev = latest.get(e.blobName);
        if (prev?.sequencer && e.sequencer && compareSequencers(e.sequencer, prev.sequencer) <= 0) continue;
        latest.set(e.blobName, { sequencer: e.sequencer, etag: e.etag, deleted: e.eventType === 'BlobDeleted', time: e.eventTime.getTime() });
      }
      const names = [...latest].filter(([name, e]) => e.deleted || !this.recordsEtag(name, e.etag)).map(([name]) => name);
      const heads = await this.headAll(names, signal);
      const blobs = heads.filter((h): h is BlobInfo => h !== null);
      // A blob gone now is deleted locally when deletions are on and its deletion happened after enablement.
      const deleted = this.config.enableDeletions
        ? names.filter((n, i) => heads[i] === null && latest.get(n)!.time >= enabledAt)
        : [];
      const next: Persisted = {
        ...current,
        cursor: polled.cursor,
        lastChangeFeedEventConsumedTime: newest ? new Date(newest).toISOString() : current.lastChangeFeedEventConsumedTime,
      };
      const page: ImportPage = { blobs, deleted, onCommit: () => this.save(next) };
      const stats = await this.importPass(
        (async function* () {
          yield page;
        })(),
        signal,
      );
      this.blobSyncBusyMs += Date.now() - batchStarted;
      accumulate(this.blobSync, stats, this.blobSyncBusyMs);
      requireCompleted(stats, 'applying change-feed events');
      current = next;
      this.persisted = next;
      cursor = polled.cursor;
      for (const [name, e] of latest) if (e.sequencer) this.rememberSequencer(name, e.sequencer);
      if (stats.totalBlobsImported + stats.updatedAttributes + stats.releasedFiles + stats.deletions > 0) this.o.onNamespaceChanged?.();
      if (polled.events.length > 0) {
        this.o.log(
          `auto-import: ${polled.events.length} change-feed events: ${stats.totalBlobsImported} imported, ` +
            `${stats.updatedAttributes} updated, ${stats.deletions} deleted`,
        );
      }
      if (!polled.more) break;
    }
    this.blobSync.startTime ??= new Date(started).toISOString();
    this.blobSync.finishTime = this.now().toISOString();
  }

  /**
   * Whether the entry at a blob's path already records the etag an event reports (our own export, or a change
   * applied before): decideAutoImport would leave it alone, so it needs no HEAD either.
   */
  private recordsEtag(blobName: string, etag: string | undefined): boolean {
    if (!etag) return false;
    const local = this.o.meta.resolve('/' + blobName.slice(this.pfx.length));
    return local !== undefined && local.blobName === blobName && local.etag === etag;
  }

  private rememberSequencer(name: string, sequencer: string): void {
    this.sequencers.delete(name);
    this.sequencers.set(name, sequencer);
    if (this.sequencers.size > SEQUENCER_MEMORY) this.sequencers.delete(this.sequencers.keys().next().value!);
  }

  private reader(signal: AbortSignal): ChangeFeedReader {
    return new ChangeFeedReader({ feed: this.o.changeFeed!, container: this.o.container, signal });
  }

  // ---- shared ----

  /** Names of local entries whose deletion decideDeletion kept because they were busy (during one page). */
  private readonly keptBusy = new Set<string>();

  /** One import run; its errors count against maximumErrors together with those of its phase so far. */
  private importPass(source: AsyncIterable<ImportPage>, signal: AbortSignal): Promise<ImportStats> {
    const mode: ConflictMode = this.config.conflictMode;
    const phase = this.persisted ? this.blobSync : this.fullSync;
    return importNamespace({
      ...this.o.importOptions,
      store: this.o.store,
      meta: this.o.meta,
      prefix: this.o.prefix,
      source,
      signal,
      maximumErrors: this.config.maximumErrors,
      errorsBefore: phase.totalErrors,
      decide: (local, remote) => decideAutoImport(mode, local, remote),
      decideDeletion: (local, blobName) => {
        const d = decideDeletion(mode, local);
        if (!d.delete && local.busy) this.keptBusy.add(blobName);
        return d;
      },
      isBusy: this.o.isBusy,
      dropData: this.o.dropData,
      log: (line) => this.jobLog?.log.write(line),
    });
  }

  /** HEAD of each name (null: the blob does not exist), bounded concurrency, in order. */
  private async headAll(names: string[], signal: AbortSignal): Promise<Array<BlobInfo | null>> {
    const out: Array<BlobInfo | null> = new Array(names.length).fill(null);
    let next = 0;
    const worker = async () => {
      while (next < names.length) {
        const i = next++;
        signal.throwIfAborted();
        try {
          out[i] = await this.o.store.head(names[i]!, { signal });
        } catch (err) {
          if (err instanceof BlobError && err.kind === 'NotFound') out[i] = null;
          else throw err;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.o.headConcurrency ?? 16, names.length) }, worker));
    return out;
  }

  private listPrefixes(): string[] {
    return this.config.prefixes.map((p) => p.replace(/^\/+/, ''));
  }

  private inPrefixes(blobName: string): boolean {
    if (!blobName.startsWith(this.pfx)) return false;
    const rel = blobName.slice(this.pfx.length);
    return this.listPrefixes().some((p) => rel.startsWith(p));
  }

  private load(): Persisted | undefined {
    const text = this.o.meta.getSetting(SETTING);
    if (!text) return undefined;
    try {
      const p = JSON.parse(text) as Persisted;
      const sameSetup = p.prefixes.join('\n') === this.config.prefixes.join('\n') && (this.config.source === 'auto' || this.config.source === p.source);
      return p.phase === 'BlobSync' && sameSetup ? p : undefined;
    } catch {
      return undefined;
    }
  }

  private save(p: Persisted): void {
    this.o.meta.setSetting(SETTING, JSON.stringify(p));
  }

  private forget(): void {
    this.o.meta.setSetting(SETTING, '');
    this.persisted = undefined;
    this.fullSync = emptyPhase();
    this.blobSync = emptyPhase();
    this.blobSyncBusyMs = 0;
    this.sequencers.clear();
  }

  /** One log per phase run: a Full Sync's, then the Blob Sync's (kept across passes until auto-import stops). */
  private async useLog(phase: 'FullSync' | 'BlobSync'): Promise<void> {
    if (this.jobLog?.phase === phase) return;
    await this.jobLog?.log.close();
    const start = this.now().toISOString().replace(/\.\d+Z$/, 'Z').replace(/[-:]/g, '');
    const log = new JobLog({
      ...(this.o.logDir ? { dir: this.o.logDir } : {}),
      name: `auto-import-${phase}-${start}`,
      ...(this.o.loggingContainer ? { container: this.o.loggingContainer } : {}),
      log: this.o.log,
    });
    this.jobLog = { phase, log };
  }

  private logEvent(event: string, blob: string | undefined, reason: string): void {
    this.jobLog?.log.write(JSON.stringify({ time: this.now().toISOString(), event, ...(blob ? { blob } : {}), reason }));
  }
}
