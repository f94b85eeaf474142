// Jobs, one at a time (AMLFS semantics): the export job archives every new and content-modified file under the
// given prefixes with bounded concurrency, counts what it did, and can be cancelled leaving every file consistent.
import PQueue from 'p-queue';
import type { BlobStore } from '../blob/blob-store.js';
import { UsageError, describeError } from '../errors.js';
import type { Coordinator } from '../hsm/coordinator.js';
import { HsmFlag } from '../hsm/flags.js';
import type { Inode, MetaStore } from '../namespace/types.js';

export type JobState = 'InProgress' | 'Canceling' | 'Succeeded' | 'Failed' | 'Canceled';

export interface ExportStats {
  filesDiscovered: number;
  bytesDiscovered: number;
  filesExported: number;
  bytesExported: number;
  filesFailed: number;
  conflicts: number;
}

export interface JobSummary {
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

export interface JobRunnerOptions {
  meta: MetaStore;
  store: BlobStore;
  coordinator: Coordinator;
  log: (line: string) => void;
  prefix: string;
  mountRoot: string;
  /** Files archived in parallel (default 8). */
  concurrency?: number;
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

class ExportJob {
  readonly id: string;
  state: JobState = 'InProgress';
  readonly startTime = new Date();
  finishTime?: Date;
  readonly stats: ExportStats = { filesDiscovered: 0, bytesDiscovered: 0, filesExported: 0, bytesExported: 0, filesFailed: 0, conflicts: 0 };
  readonly conflictPaths: string[] = [];
  readonly failures: Array<{ path: string; error: string }> = [];
  readonly abort = new AbortController();
  done!: Promise<void>;

  constructor(readonly prefixes: string[]) {
    this.id = `export-${this.startTime.toISOString().replace(/[-:.]/g, '')}`;
  }

  summary(): JobSummary {
    return {
      id: this.id,
      kind: 'export',
      state: this.state,
      prefixes: this.prefixes,
      startTime: this.startTime.toISOString(),
      ...(this.finishTime ? { finishTime: this.finishTime.toISOString() } : {}),
      stats: { ...this.stats },
      conflictPaths: [...this.conflictPaths],
      failures: [...this.failures],
    };
  }
}

export class JobRunner {
  private running: ExportJob | undefined;
  private readonly history: ExportJob[] = [];

  constructor(private readonly o: JobRunnerOptions) {}

  startExport(prefixes: string[]): ExportJob {
    if (this.running) throw new UsageError(`job ${this.running.id} is running: wait for it or cancel it (blobhsm jobs cancel ${this.o.mountRoot})`);
    const job = new ExportJob(checkJobPrefixes(prefixes));
    this.running = job;
    job.done = this.runExport(job).finally(() => {
      job.finishTime = new Date();
      this.running = undefined;
      this.history.push(job);
      if (this.history.length > 20) this.history.shift();
    });
    return job;
  }

  list(): JobSummary[] {
    return [...this.history, ...(this.running ? [this.running] : [])].map((j) => j.summary());
  }

  cancelRunning(): JobSummary | null {
    const job = this.running;
    if (!job) return null;
    job.state = 'Canceling';
    job.abort.abort();
    return job.summary();
  }

  async cancelAll(): Promise<void> {
    const job = this.running;
    if (!job) return;
    this.cancelRunning();
    await job.done.catch(() => undefined);
  }

  /**
   * New and content-modified files with a name under one of the prefixes (a hard-linked file is exported under
   * all its names); files whose only name is a `.fuse_hidden*` one (unlinked, still open) never are.
   */
  private candidates(job: ExportJob): Array<{ inode: Inode; path: string }> {
    const out: Array<{ inode: Inode; path: string }> = [];
    const under = (path: string) => job.prefixes.some((p) => p === '/' || path === p || path.startsWith(p.replace(/\/+$/, '') + '/'));
    for (const inode of this.o.meta.exportCandidates()) {
      const path = this.o.coordinator.exportPaths(inode.ino).find(under);
      if (path !== undefined) out.push({ inode, path });
    }
    return out;
  }

  private async runExport(job: ExportJob): Promise<void> {
    const todo = this.candidates(job);
    job.stats.filesDiscovered = todo.length;
    job.stats.bytesDiscovered = todo.reduce((n, t) => n + t.inode.size, 0);
    const queue = new PQueue({ concurrency: this.o.concurrency ?? 8 });
    // A cancel empties the queue; archives already running see the job's signal and stop (the files stay dirty).
    const onAbort = () => queue.clear();
    job.abort.signal.addEventListener('abort', onAbort, { once: true });
    for (const { inode, path } of todo) {
      void queue.add(async () => {
        if (job.abort.signal.aborted) return;
        const current = this.o.meta.get(inode.ino);
        // Gone, or archived (hsm_archive) or made never_archive since the job listed it.
        if (!current || current.hsmFlags & HsmFlag.NOARCHIVE || (current.hsmFlags & (HsmFlag.DIRTY | HsmFlag.ARCHIVED)) === HsmFlag.ARCHIVED) return;
        try {
          const outcome = await this.o.coordinator.archive(current, current.archiveId || 1, undefined, job.abort.signal);
          if (outcome.conflict) {
            job.stats.conflicts++;
            job.conflictPaths.push(outcome.path);
            this.o.log(`export conflict: ${outcome.path}: blob ${outcome.blobName} was not overwritten; the file stays dirty`);
          } else {
            job.stats.filesExported++;
            job.stats.bytesExported += outcome.bytes;
          }
        } catch (err) {
          if (job.abort.signal.aborted) return;
          job.stats.filesFailed++;
          job.failures.push({ path, error: describeError(err) });
          this.o.log(`export failed: ${path}: ${describeError(err)}`);
        }
      });
    }
    await queue.onIdle();
    job.abort.signal.removeEventListener('abort', onAbort);
    if (job.abort.signal.aborted) job.state = 'Canceled';
    else job.state = job.stats.filesFailed > 0 || job.stats.conflicts > 0 ? 'Failed' : 'Succeeded';
  }
}
