// Jobs, one at a time (AMLFS semantics). Export archives every new and content-modified file under the given
// prefixes with bounded concurrency; import walks the container under the given prefixes and applies a conflict
// mode to every blob (src/jobs/decide-import.ts, applied by the namespace importer). Shared: a second job is
// refused naming the running one, cancel (prompt; every file stays consistent), a short history, summaries.
//
// An import writes its conflicts, warnings and errors, one JSON line each, to <logDir>/<job id>.jsonl, and the
// mount root shows a read-only empty file `IMPORT_<state>.<start>` (markers(), served by the Vfs) while it runs
// (InProgress, Canceling) and after it failed or was cancelled (Failed, Canceled), until the next import starts;
// a successful import removes it. Each change of that name is told to the kernel (its dentry forgotten) before the
// job's state is reported, so a `stat` right after sees what `ls` sees.
import PQueue from 'p-queue';
import type { Log } from '../log.js';
import type { BlobStore } from '../blob/blob-store.js';
import { FsError, UsageError, describeError } from '../errors.js';
import { isHiddenPath, type Coordinator } from '../hsm/coordinator.js';
import { emptyImportStats, importNamespace, type ImportStats } from '../namespace/importer.js';
import type { DefaultModes } from '../namespace/blob-encoding.js';
import type { IdMap } from '../namespace/id-map.js';
import { exportDirectoryRenames } from './directory-rename.js';
import { JobLog } from './job-log.js';
import { LOCAL_ONLY_REASON } from '../namespace/file-types.js';
import { ROOT_INO, type Inode, type KernelCache, type MetaStore } from '../namespace/types.js';
import { CONFLICT_MODES, decideImport, isConflictMode, type ConflictMode } from './decide-import.js';

/** Whether a path ('/a/b') is under one of the job's prefixes ('/' takes everything). */
function underPrefixes(prefixes: string[]): (path: string) => boolean {
  return (path) => prefixes.some((p) => p === '/' || path === p || path.startsWith(p.replace(/\/+$/, '') + '/'));
}

export type JobState = 'InProgress' | 'Canceling' | 'Succeeded' | 'Failed' | 'Canceled';
export type JobKind = 'export' | 'import';

export interface ExportStats {
  filesDiscovered: number;
  bytesDiscovered: number;
  filesExported: number;
  /** Bytes of the files whose archive has committed. */
  bytesExported: number;
  /** Bytes staged so far of the files still uploading (progress within large files). */
  bytesUploading: number;
  filesFailed: number;
  conflicts: number;
  /** HNS: locally renamed directories exported as one server-side rename each (src/jobs/directory-rename.ts). */
  directoriesRenamed: number;
  /** Empty directories given their `hdi_isfolder` stub (the others get theirs with their files). */
  directoriesExported: number;
  /** Names of FIFOs and sockets under the prefixes: never uploaded (file-types.ts LOCAL_ONLY_REASON, logged each). */
  skippedLocalOnly: number;
}

export interface ExportJobSummary {
  id: string;
  kind: 'export';
  state: JobState;
  prefixes: string[];
  startTime: string;
  finishTime?: string;
  stats: ExportStats;
  conflictPaths: string[];
  failures: Array<{ path: string; error: string }>;
}

/** The importer's statistics (docs/SEMANTICS.md §3 names), with the job's state and times. */
export type ImportJobStats = Omit<ImportStats, 'state' | 'error'> & { state: JobState };

export interface ImportJobSummary {
  id: string;
  kind: 'import';
  state: JobState;
  prefixes: string[];
  conflictMode: ConflictMode;
  maximumErrors: number;
  startTime: string;
  finishTime?: string;
  stats: ImportJobStats;
  /** The job's JSON-lines log of conflicts, warnings and errors. */
  logFile?: string;
  /** The job's log blob in the logging container, when one is set. */
  logBlob?: string;
  /** Why the job failed. */
  error?: string;
}

export type JobSummary = ExportJobSummary | ImportJobSummary;

export interface ImportJobOptions {
  /** Paths inside the mount ('/' = everything); string prefixes of blob names relative to the mount prefix. */
  prefixes?: string[];
  /** Default Fail (as AMLFS). */
  conflictMode?: string;
  /** Errors tolerated (0 = the first one fails the job, the default; -1 = unlimited). */
  maximumErrors?: number;
  /** Listing page size (default: the service's, 5000). */
  pageSize?: number;
}

export interface JobRunnerOptions {
  meta: MetaStore;
  store: BlobStore;
  coordinator: Coordinator;
  log: Log;
  prefix: string;
  mountRoot: string;
  /** Files archived in parallel (default 8). */
  concurrency?: number;
  /** Directory for the import jobs' JSON-lines logs (none when absent). */
  logDir?: string;
  /** The logging container (`--logging-container`): each import job's log is appended there too. */
  loggingContainer?: { store: BlobStore; folder: string };
  /** HNS owners/groups → uid/gid for import jobs. */
  idMap?: IdMap;
  /** Modes of imported entries whose blob carries no permissions (the mount's --file-mode/--dir-mode). */
  defaultModes?: DefaultModes;
  /** The mount's kernel caches: import jobs tell them which files and names changed. */
  kernel?: KernelCache;
}

/** Validates AMLFS-style job prefixes: 1..100 absolute paths, none a prefix of another. */
export function checkJobPrefixes(prefixes: string[]): string[] {
  if (prefixes.length === 0) return ['/'];
  if (prefixes.length > 100) throw new UsageError(`too many prefixes (${prefixes.length}): at most 100`);
  const norm = prefixes.map((p) => {
    if (!p.startsWith('/')) throw new UsageError(`invalid prefix '${p}': prefixes are paths inside the mount and start with '/'`);
    if (p.includes('\0') || p.split('/').some((c) => c === '.' || c === '..')) throw new UsageError(`invalid prefix '${p}'`);
    return p;
  });
  for (const a of norm) {
    for (const b of norm) {
      if (a !== b && b.startsWith(a)) throw new UsageError(`overlapping prefixes '${a}' and '${b}': give only one of them`);
    }
  }
  if (new Set(norm).size !== norm.length) throw new UsageError('duplicate prefixes');
  return norm;
}

/** Validates a maximumErrors value (a number, or a flag's text): an integer, 0 or more, or -1 for unlimited. */
export function checkMaximumErrors(value: unknown, what = 'maximum errors'): number {
  const n = typeof value === 'string' && /^\s*-?\d+\s*$/.test(value) ? Number(value) : value;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < -1) {
    throw new UsageError(`invalid ${what} '${String(value)}': an integer, 0 or more, or -1 for unlimited`);
  }
  return n;
}

/** Validates the options of an import job (before anything runs). */
export function checkImportOptions(o: ImportJobOptions): { prefixes: string[]; conflictMode: ConflictMode; maximumErrors: number; pageSize?: number } {
  const prefixes = checkJobPrefixes(o.prefixes ?? []);
  const conflictMode = o.conflictMode ?? 'Fail';
  if (!isConflictMode(conflictMode)) {
    throw new UsageError(`unknown conflict mode '${conflictMode}': use one of ${CONFLICT_MODES.join(', ')}`);
  }
  const maximumErrors = checkMaximumErrors(o.maximumErrors ?? 0);
  if (o.pageSize !== undefined && (!Number.isInteger(o.pageSize) || o.pageSize < 1 || o.pageSize > 5000)) {
    throw new UsageError(`invalid page size '${o.pageSize}': 1 to 5000`);
  }
  return { prefixes, conflictMode, maximumErrors, ...(o.pageSize !== undefined ? { pageSize: o.pageSize } : {}) };
}

/** 2024-05-01T13:45:07.123Z → 20240501T134507Z */
const compactTime = (d: Date) => d.toISOString().replace(/\.\d+Z$/, 'Z').replace(/[-:]/g, '');

abstract class Job {
  readonly id: string;
  state: JobState = 'InProgress';
  readonly startTime = new Date();
  finishTime?: Date;
  readonly abort = new AbortController();
  done!: Promise<void>;

  constructor(
    readonly kind: JobKind,
    readonly prefixes: string[],
  ) {
    this.id = `${kind}-${this.startTime.toISOString().replace(/[-:.]/g, '')}`;
  }

  abstract summary(): JobSummary;

  protected times(): { startTime: string; finishTime?: string } {
    return { startTime: this.startTime.toISOString(), ...(this.finishTime ? { finishTime: this.finishTime.toISOString() } : {}) };
  }
}

class ExportJob extends Job {
  readonly stats: ExportStats = { filesDiscovered: 0, bytesDiscovered: 0, filesExported: 0, bytesExported: 0, bytesUploading: 0, filesFailed: 0, conflicts: 0, directoriesRenamed: 0, directoriesExported: 0, skippedLocalOnly: 0 };
  readonly conflictPaths: string[] = [];
  readonly failures: Array<{ path: string; error: string }> = [];
  /** Inodes whose archive is running. */
  readonly uploading = new Set<number>();

  constructor(
    prefixes: string[],
    /** Bytes staged so far by a running archive (the coordinator's action state). */
    private readonly stagedBytes: (ino: number) => number,
  ) {
    super('export', prefixes);
  }

  summary(): ExportJobSummary {
    return {
      id: this.id,
      kind: 'export',
      state: this.state,
      prefixes: this.prefixes,
      ...this.times(),
      stats: { ...this.stats, bytesUploading: [...this.uploading].reduce((n, ino) => n + this.stagedBytes(ino), 0) },
      conflictPaths: [...this.conflictPaths],
      failures: [...this.failures],
    };
  }
}

class ImportJob extends Job {
  progress: ImportStats;
  error?: string;
  logFile?: string;
  /** The job's log blob in the logging container, when one is set. */
  logBlob?: string;

  constructor(
    prefixes: string[],
    readonly conflictMode: ConflictMode,
    readonly maximumErrors: number,
    readonly pageSize: number | undefined,
  ) {
    super('import', prefixes);
    this.progress = emptyImportStats(this.startTime.toISOString());
  }

  /** The root marker's name while it runs, or after it failed or was cancelled. */
  marker(): string | undefined {
    return this.state === 'Succeeded' ? undefined : `IMPORT_${this.state}.${compactTime(this.startTime)}`;
  }

  summary(): ImportJobSummary {
    const { state: _state, error: _error, startTime: _start, finishTime: _finish, ...counts } = this.progress;
    return {
      id: this.id,
      kind: 'import',
      state: this.state,
      prefixes: this.prefixes,
      conflictMode: this.conflictMode,
      maximumErrors: this.maximumErrors,
      ...this.times(),
      stats: { ...counts, state: this.state, ...this.times() },
      ...(this.logFile ? { logFile: this.logFile } : {}),
      ...(this.logBlob ? { logBlob: this.logBlob } : {}),
      ...(this.error ? { error: this.error } : {}),
    };
  }
}

export class JobRunner {
  private running: Job | undefined;
  private readonly history: Job[] = [];
  private lastImport: ImportJob | undefined;
  /** The root markers the kernel was last told about. */
  private shownMarkers: string[] = [];

  constructor(private readonly o: JobRunnerOptions) {}

  startExport(prefixes: string[]): ExportJob {
    const job = new ExportJob(checkJobPrefixes(prefixes), (ino) => this.o.coordinator.action(ino)?.bytesMoved ?? 0);
    return this.launch(job, () => this.runExport(job));
  }

  /** Validates the options (UsageError before anything runs), then starts the import. */
  startImport(options: ImportJobOptions = {}): ImportJob {
    const o = checkImportOptions(options);
    const job = new ImportJob(o.prefixes, o.conflictMode, o.maximumErrors, o.pageSize);
    return this.launch(job, () => this.runImport(job));
  }

  list(): JobSummary[] {
    return [...this.history, ...(this.running ? [this.running] : [])].map((j) => j.summary());
  }

  cancelRunning(): JobSummary | null {
    const job = this.running;
    if (!job) return null;
    job.state = 'Canceling';
    void this.markersChanged();
    job.abort.abort();
    return job.summary();
  }

  async cancelAll(): Promise<void> {
    const job = this.running;
    if (!job) return;
    this.cancelRunning();
    await job.done.catch(() => undefined);
  }

  /** Entries the mount root shows for the import job: `IMPORT_<state>.<start>` (none after a success). */
  markers(): string[] {
    const name = this.lastImport?.marker();
    return name ? [name] : [];
  }

  /** Tells the kernel which root markers appeared or went since it was last told (their dentries, negative ones too). */
  private async markersChanged(): Promise<void> {
    const now = this.markers();
    const moved = [...this.shownMarkers.filter((n) => !now.includes(n)), ...now.filter((n) => !this.shownMarkers.includes(n))];
    this.shownMarkers = now;
    const kernel = this.o.kernel;
    if (kernel) await Promise.all(moved.map((name) => kernel.entryChanged(ROOT_INO, name)));
  }

  private launch<J extends Job>(job: J, run: () => Promise<void>): J {
    if (this.running) {
      throw new FsError('EBUSY', `${this.running.kind} job ${this.running.id} is running: wait for it or cancel it (blobhsm jobs cancel ${this.o.mountRoot})`);
    }
    this.running = job;
    if (job instanceof ImportJob) this.lastImport = job;
    void this.markersChanged();
    this.o.log(`${job.kind} ${job.id} started (prefixes ${job.prefixes.join(', ')})`, { event: 'job', job: job.id, kind: job.kind, state: 'InProgress', prefixes: job.prefixes });
    let cause: string | undefined;
    job.done = run()
      .catch((err) => {
        job.state = 'Failed';
        cause = describeError(err);
        if (job instanceof ImportJob) job.error = cause;
        this.o.log(`${job.kind} ${job.id} failed: ${cause}`, { event: 'job_error', level: 'error', job: job.id, kind: job.kind, cause });
      })
      .finally(async () => {
        const { stats } = job.summary();
        this.o.log(`${job.kind} ${job.id} ${job.state}`, {
          event: 'job',
          level: job.state === 'Succeeded' || job.state === 'Canceled' ? 'info' : 'warn',
          job: job.id,
          kind: job.kind,
          state: job.state,
          stats,
          ...(cause ? { cause } : {}),
        });
        job.finishTime = new Date();
        this.running = undefined;
        this.history.push(job);
        if (this.history.length > 20) this.history.shift();
        await this.markersChanged();
      });
    return job;
  }

  // ---- import ----------------------------------------------------------------------------------------------

  private async runImport(job: ImportJob): Promise<void> {
    const { coordinator } = this.o;
    const jobLog = new JobLog({ ...(this.o.logDir ? { dir: this.o.logDir } : {}), name: job.id, ...(this.o.loggingContainer ? { container: this.o.loggingContainer } : {}), log: this.o.log });
    job.logFile = jobLog.file;
    job.logBlob = jobLog.blob;
    this.o.log(`import ${job.id} started: prefixes ${job.prefixes.join(' ')}, conflict mode ${job.conflictMode}, maximum errors ${job.maximumErrors}`);
    try {
      const stats = await importNamespace({
        store: this.o.store,
        meta: this.o.meta,
        prefix: this.o.prefix,
        listPrefixes: job.prefixes.map((p) => p.replace(/^\/+/, '')),
        ...(job.pageSize !== undefined ? { pageSize: job.pageSize } : {}),
        maximumErrors: job.maximumErrors,
        ...(this.o.idMap ? { idMap: this.o.idMap } : {}),
        ...(this.o.defaultModes ? { defaultModes: this.o.defaultModes } : {}),
        signal: job.abort.signal,
        decide: (local, remote) => decideImport(job.conflictMode, local, remote),
        isBusy: (ino) => coordinator.isBusy(ino),
        dropData: (ino, generation) => coordinator.dropData(ino, generation),
        ...(this.o.kernel ? { kernel: this.o.kernel } : {}),
        log: (line) => jobLog.write(line),
        onProgress: (s) => (job.progress = s),
      });
      job.progress = stats;
      job.state = stats.state === 'Completed' ? 'Succeeded' : stats.state === 'Canceled' ? 'Canceled' : 'Failed';
      if (stats.error) job.error = stats.error;
    } finally {
      await jobLog.close();
    }
    const s = job.progress;
    this.o.log(
      `import ${job.id} ${job.state}: ${s.totalBlobsWalked} blobs walked, ${s.totalBlobsImported} imported, ` +
        `${s.totalConflicts} conflicts, ${s.totalErrors} errors${job.error ? ` (${job.error})` : ''}`,
    );
  }

  // ---- export ----------------------------------------------------------------------------------------------

  /**
   * New and content-modified files with a name under one of the prefixes (a hard-linked file is exported under
   * all its names); files whose only name is a `.fuse_hidden*` one (unlinked, still open) never are.
   */
  private candidates(job: ExportJob): Array<{ inode: Inode; path: string }> {
    const out: Array<{ inode: Inode; path: string }> = [];
    const under = underPrefixes(job.prefixes);
    for (const inode of this.o.meta.exportCandidates()) {
      const path = this.o.coordinator.exportPaths(inode.ino).find(under);
      if (path !== undefined) out.push({ inode, path });
    }
    return out;
  }

  /** Names of FIFOs and sockets under the prefixes (each name of a hard-linked one). */
  private localOnlyPaths(job: ExportJob): string[] {
    const under = underPrefixes(job.prefixes);
    return this.o.meta.localOnlyInodes().flatMap((inode) => this.o.coordinator.exportPaths(inode.ino).filter(under));
  }

  /** Empty directories under the prefixes (never a `.fuse_hidden*` name): each needs its own stub. */
  private emptyDirectories(job: ExportJob): string[] {
    const under = underPrefixes(job.prefixes);
    return this.o.meta
      .emptyDirectories()
      .map((d) => this.o.meta.pathOf(d.ino))
      .filter((p): p is string => p !== undefined && under(p) && !isHiddenPath(p));
  }

  private async runExport(job: ExportJob): Promise<void> {
    const todo = this.candidates(job);
    job.stats.filesDiscovered = todo.length;
    job.stats.bytesDiscovered = todo.reduce((n, t) => n + t.inode.size, 0);
    for (const path of this.localOnlyPaths(job)) {
      job.stats.skippedLocalOnly++;
      this.o.log(`export skipped: ${path}: ${LOCAL_ONLY_REASON}`, { event: 'export', level: 'info', job: job.id, path, outcome: 'skipped', reason: LOCAL_ONLY_REASON });
    }
    // Renamed directories first (their files are clean, so never in todo).
    if (this.o.store.hierarchicalPaths()) {
      try {
        const moved = await exportDirectoryRenames({
          meta: this.o.meta,
          store: this.o.store,
          coordinator: this.o.coordinator,
          under: underPrefixes(job.prefixes),
          log: this.o.log,
          signal: job.abort.signal,
        });
        job.stats.directoriesRenamed = moved.renamed.length;
        job.stats.conflicts += moved.conflicts.length;
        job.conflictPaths.push(...moved.conflicts);
      } catch (err) {
        if (job.abort.signal.aborted) return;
        // The files of a directory whose rename failed export one by one below (if they are candidates).
        this.o.log(`export: renaming directories on the service failed: ${describeError(err)}`);
      }
    }
    const queue = new PQueue({ concurrency: this.o.concurrency ?? 8 });
    // A cancel empties the queue; archives already running see the job's signal and stop (the files stay dirty).
    const onAbort = () => queue.clear();
    job.abort.signal.addEventListener('abort', onAbort, { once: true });
    for (const { inode, path } of todo) {
      void queue.add(async () => {
        if (job.abort.signal.aborted) return;
        job.uploading.add(inode.ino);
        try {
          // Scheduled like hsm_archive (one archive per file at a time); skipped when the file was removed,
          // archived (hsm_archive) or made never_archive since the job listed it.
          const outcome = await this.o.coordinator.archiveForExport(inode.ino, 'export job', job.abort.signal);
          if (!outcome) return;
          if (outcome.conflict) {
            job.stats.conflicts++;
            job.conflictPaths.push(outcome.path);
            this.o.log(`export conflict: ${outcome.path}: blob ${outcome.blobName} was not overwritten; the file stays dirty`, {
              event: 'export',
              level: 'warn',
              job: job.id,
              path: outcome.path,
              blob: outcome.blobName,
              outcome: 'conflict',
            });
          } else {
            job.stats.filesExported++;
            job.stats.bytesExported += outcome.bytes;
            this.o.log(`exported ${outcome.path} to ${outcome.blobName} (${outcome.bytes} bytes)`, {
              event: 'export',
              level: 'debug',
              job: job.id,
              path: outcome.path,
              blob: outcome.blobName,
              bytes: outcome.bytes,
              outcome: 'exported',
            });
          }
        } catch (err) {
          if (job.abort.signal.aborted) return;
          job.stats.filesFailed++;
          job.failures.push({ path, error: describeError(err) });
          this.o.log(`export failed: ${path}: ${describeError(err)}`, { event: 'export', level: 'error', job: job.id, path, outcome: 'failed', cause: describeError(err) });
        } finally {
          job.uploading.delete(inode.ino);
        }
      });
    }
    for (const path of this.emptyDirectories(job)) {
      void queue.add(async () => {
        if (job.abort.signal.aborted) return;
        try {
          if (await this.o.coordinator.ensureDirectoryStub(path)) job.stats.directoriesExported++;
        } catch (err) {
          job.stats.filesFailed++;
          job.failures.push({ path, error: describeError(err) });
          this.o.log(`export failed: directory stub of ${path}: ${describeError(err)}`);
        }
      });
    }
    await queue.onIdle();
    job.abort.signal.removeEventListener('abort', onAbort);
    if (job.abort.signal.aborted) job.state = 'Canceled';
    else job.state = job.stats.filesFailed > 0 || job.stats.conflicts > 0 ? 'Failed' : 'Succeeded';
  }
}
