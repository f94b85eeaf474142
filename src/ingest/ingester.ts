// The ingest engine (`blobhsm ingest`): walks local source trees and writes blobs directly in the encoding an
// export writes (src/namespace/blob-encoding.ts): files with owner/group/permissions/modtime, an hdi_isfolder stub
// per directory, symlinks as ftype=LNK blobs, hard links as copies; FIFOs, sockets and devices are skipped.
// Owns the scheduling (bounded file parallelism; large files in staged blocks, a bounded number at a time), the
// never-overwrite rule (If-None-Match: *, and If-Match only on a blob this journal wrote), torn-read detection
// (a file whose size, mtime or ctime changed while it was read is never committed), the journal and the counts.
// Knows nothing of the command line: the caller renders progress and the summary.
import { open, readlink, type FileHandle } from 'node:fs/promises';
import { closeSync, fstatSync, openSync, readSync, type BigIntStats } from 'node:fs';
import { setMaxListeners } from 'node:events';
import PQueue from 'p-queue';
import { BlobError, SourceChangedError, UsageError, describeError } from '../errors.js';
import type { BlobStore, UploadOptions, UploadSource } from '../blob/blob-store.js';
import { checkBlobName, exportMetadata } from '../namespace/blob-encoding.js';
import { LOCAL_ONLY_REASON } from '../namespace/file-types.js';
import { walkSources, type SourceEntry, type SourceKind } from './source-walk.js';
import type { IngestJournal } from './journal.js';
import { LocalFilesystems } from './local-fs.js';

/** The metadata key of the stamp export writes too (src/hsm/coordinator.ts VERSION_KEY). */
const VERSION_KEY = 'blobhsm_version';

/**
 * Files up to this size on a local filesystem (local-fs.ts) are read with blocking calls: open, read, fstat and
 * close take microseconds each there, and as thread-pool requests they cost more than the read itself (2,000 files
 * of 10 KiB: 0.2–0.3 s less CPU for the whole ingest). A file of this size is at most a few device reads away.
 */
const BLOCKING_READ_MAX = 1024 * 1024;

export interface IngestOptions {
  store: BlobStore;
  journal: IngestJournal;
  sources: readonly string[];
  /** Normalised blob name prefix ('' or ending in '/'). */
  prefix: string;
  /** Files uploaded at once. */
  fileConcurrency: number;
  /** Blocks of one large file staged at once. */
  blockConcurrency: number;
  /** Large files uploaded at once (each with blockConcurrency blocks in flight). */
  largeFileConcurrency: number;
  blockSize: number;
  /** Files up to this size go up in one Put Blob request. */
  singleRequestMaxBytes: number;
  /** Errors tolerated before the run stops: 0 = the first one, -1 = unlimited. */
  maximumErrors: number;
  /** Times a file that changed while it was read is read again before it is reported. */
  changeRetries: number;
  dryRun: boolean;
  allowExisting: boolean;
  signal?: AbortSignal;
  /** One record per error, conflict, skipped entry and changed file (the per-file log). */
  log: (record: IngestLogRecord) => void;
  onProgress?: (progress: IngestProgress) => void;
  /** Walk the sources a second time, only counting, so progress has a total (default true; the CLI walks twice
   * only when it draws a bar: the count costs an lstat per entry). */
  survey?: boolean;
}

export interface IngestLogRecord {
  time: string;
  kind: 'error' | 'conflict' | 'skipped' | 'changed' | 'preexisting';
  path: string;
  blob?: string;
  message: string;
}

export interface IngestStats {
  /** Files, directories and symlinks written (or that a dry run would write). */
  files: number;
  directories: number;
  symlinks: number;
  /** Bytes of the files written. */
  bytes: number;
  /** Entries already committed from the same source version: by the journal (no request sent), or found by
   * their stamp after a crash between the commit and the journal row. */
  alreadyIngested: number;
  /** FIFOs, sockets and devices. */
  skipped: number;
  /** Directory stubs that already existed (not written by this journal; left as they were). */
  preexistingDirectories: number;
  conflicts: number;
  errors: number;
  /** Reads restarted because the file changed while it was read. */
  changedRetries: number;
}

export interface IngestProgress {
  stats: IngestStats;
  /** Bytes sent so far, including files still in flight. */
  bytesSent: number;
  /** Entries and file bytes found by the survey walk; undefined until it has finished. */
  total?: { entries: number; bytes: number };
}

export interface IngestSummary {
  state: 'Completed' | 'Failed' | 'Canceled';
  dryRun: boolean;
  stats: IngestStats;
  /** Blob names of the conflicts (the first 100; the log has all). */
  conflictNames: string[];
  error?: string;
  elapsedMs: number;
  requests: Record<string, number>;
}

const MAX_CONFLICT_NAMES = 100;

export function emptyIngestStats(): IngestStats {
  return {
    files: 0,
    directories: 0,
    symlinks: 0,
    bytes: 0,
    alreadyIngested: 0,
    skipped: 0,
    preexistingDirectories: 0,
    conflicts: 0,
    errors: 0,
    changedRetries: 0,
  };
}

/** The version of a source entry an upload came from: same stamp, same blob. */
function sourceVersion(kind: SourceKind, st: BigIntStats): string {
  return `${kind}:${st.size}:${st.mtimeNs}:${st.mode & 0o7777n}:${st.uid}:${st.gid}`;
}

function sameContentVersion(a: BigIntStats, b: BigIntStats): boolean {
  return a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs && a.ino === b.ino;
}

/** A read is of one version only: size, mtime, ctime and inode as they were before it. */
function assertUnchanged(before: BigIntStats, after: BigIntStats, path: string): void {
  if (!sameContentVersion(before, after)) {
    throw new SourceChangedError(`${path} changed while it was read (size ${before.size} → ${after.size})`);
  }
}

/**
 * A small file read whole with blocking calls (open, read, fstat, close), of exactly the version `walked`; a
 * change since (size, mtime, ctime, inode) is a SourceChangedError and nothing read is returned.
 */
export function readSmallFile(path: string, walked: BigIntStats): Buffer {
  const data = Buffer.allocUnsafe(Number(walked.size));
  const fd = openSync(path, 'r');
  try {
    let got = 0;
    while (got < data.length) {
      const bytesRead = readSync(fd, data, got, data.length - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    assertUnchanged(walked, fstatSync(fd, { bigint: true }), path);
    if (got !== data.length) throw new SourceChangedError(`${path} shrank while it was read`);
    return data;
  } finally {
    closeSync(fd);
  }
}

function isWriteConflict(err: unknown): boolean {
  return err instanceof BlobError && (err.kind === 'PreconditionFailed' || err.kind === 'AlreadyExists');
}

type PutOutcome = 'written' | 'ours' | 'preexisting' | 'conflict';

export class Ingester {
  private readonly o: IngestOptions;
  readonly stats = emptyIngestStats();
  private readonly conflictNames: string[] = [];
  private bytesSent = 0;
  private total: { entries: number; bytes: number } | undefined;
  private readonly abort = new AbortController();
  private failure: string | undefined;
  private readonly largeFiles: PQueue;
  private readonly localFilesystems = new LocalFilesystems();

  constructor(options: IngestOptions) {
    this.o = options;
    this.largeFiles = new PQueue({ concurrency: Math.max(1, options.largeFileConcurrency) });
    // Every request in flight listens to the run's abort signal (16 files at once passed Node's default of 10 and
    // printed a MaxListenersExceededWarning).
    const inFlight = options.fileConcurrency + options.largeFileConcurrency * options.blockConcurrency;
    setMaxListeners(2 * inFlight + 10, this.abort.signal);
  }

  /** Refuses a non-empty destination unless allowed or resuming this journal's own run; creates a missing container. */
  async checkDestination(): Promise<void> {
    const { store, prefix } = this.o;
    if (!(await store.containerExists())) {
      if (this.o.dryRun) return;
      await store.createContainer();
      return;
    }
    if (this.o.allowExisting || this.o.journal.count() > 0) return;
    for await (const page of store.listPages({ prefix, pageSize: 1 })) {
      const first = page[0];
      if (first) {
        throw new UsageError(
          `${store.description}${prefix ? ` under '${prefix}'` : ''} is not empty (it has '${first.name}'): ` +
            'pass --allow-existing to add to it (blobs already there are never overwritten), or choose another --container or --prefix',
        );
      }
    }
  }

  async run(): Promise<IngestSummary> {
    const started = Date.now();
    const onAbort = () => this.abort.abort(this.o.signal?.reason);
    if (this.o.signal?.aborted) onAbort();
    this.o.signal?.addEventListener('abort', onAbort, { once: true });
    if (this.o.survey ?? true) void this.survey();
    try {
      await this.checkDestination();
      const walk = walkSources(this.o.sources, this.localFilesystems);
      const worker = async () => {
        while (!this.abort.signal.aborted) {
          const next = await walk.next();
          if (next.done) return;
          const item = next.value;
          if ('error' in item) {
            this.error(item.path, undefined, `cannot read: ${item.error.message}`);
            continue;
          }
          await this.ingestEntry(item);
          this.progress();
        }
      };
      await Promise.all(Array.from({ length: Math.max(1, this.o.fileConcurrency) }, worker));
      await walk.return(undefined);
    } catch (err) {
      if (!this.abort.signal.aborted) throw err;
    } finally {
      this.o.signal?.removeEventListener('abort', onAbort);
      this.abort.abort(); // ends the survey walk
    }
    const canceled = this.o.signal?.aborted === true;
    return {
      state: canceled ? 'Canceled' : this.failure ? 'Failed' : 'Completed',
      dryRun: this.o.dryRun,
      stats: { ...this.stats },
      conflictNames: [...this.conflictNames],
      ...(this.failure ? { error: this.failure } : canceled ? { error: 'interrupted' } : {}),
      elapsedMs: Date.now() - started,
      requests: this.o.store.requestCounts(),
    };
  }

  snapshot(): IngestProgress {
    return { stats: { ...this.stats }, bytesSent: this.bytesSent, ...(this.total ? { total: { ...this.total } } : {}) };
  }

  private progress(): void {
    this.o.onProgress?.(this.snapshot());
  }

  /** A second walk that only counts (entries, file bytes), so the progress bar can show an ETA. */
  private async survey(): Promise<void> {
    let entries = 0;
    let bytes = 0;
    for await (const item of walkSources(this.o.sources, this.localFilesystems)) {
      if (this.abort.signal.aborted) return;
      if ('error' in item) continue;
      entries++;
      if (item.kind === 'file') bytes += Number(item.stat.size);
    }
    this.total = { entries, bytes };
  }

  private log(kind: IngestLogRecord['kind'], path: string, blob: string | undefined, message: string): void {
    this.o.log({ time: new Date().toISOString(), kind, path, ...(blob !== undefined ? { blob } : {}), message });
  }

  private error(path: string, blob: string | undefined, message: string): void {
    this.stats.errors++;
    this.log('error', path, blob, message);
    const max = this.o.maximumErrors;
    if (max !== -1 && this.stats.errors > max && !this.failure) {
      this.failure = `${this.stats.errors} error${this.stats.errors === 1 ? '' : 's'} (maximum ${max}); the last: ${path}: ${message}`;
      this.abort.abort(new Error(this.failure));
    }
  }

  private async ingestEntry(entry: SourceEntry): Promise<void> {
    const name = this.o.prefix + entry.components.join('/');
    if (entry.kind === 'special') {
      this.stats.skipped++;
      this.log('skipped', entry.path, undefined, `${LOCAL_ONLY_REASON} (FIFO, socket or device)`);
      return;
    }
    const check = checkBlobName(name);
    if (!check.ok) {
      this.error(entry.path, name, `cannot be a blob name: ${check.reason}`);
      return;
    }
    const version = this.stamp(entry.kind, entry.stat);
    if (this.o.journal.get(name)?.stamp === version) {
      this.stats.alreadyIngested++;
      return;
    }
    try {
      if (entry.kind === 'file') {
        const { outcome, size } = await this.ingestFile(entry, name);
        this.count(entry, name, outcome, size);
        return;
      }
      let outcome: PutOutcome = 'written';
      if (!this.o.dryRun) {
        const data = entry.kind === 'symlink' ? Buffer.from(await readlink(entry.path)) : Buffer.alloc(0);
        outcome = await this.put(name, entry.kind, version, entry.stat, () => ({ data }));
      }
      this.count(entry, name, outcome, 0);
    } catch (err) {
      if (this.abort.signal.aborted) return;
      this.error(entry.path, name, describeError(err));
    }
  }

  /** Counts an entry's outcome; `size` is the size of the version that was read (a reread may differ from the walk). */
  private count(entry: SourceEntry, name: string, outcome: PutOutcome, size: number): void {
    if (outcome === 'conflict') {
      this.stats.conflicts++;
      if (this.conflictNames.length < MAX_CONFLICT_NAMES) this.conflictNames.push(name);
      this.log('conflict', entry.path, name, 'a blob of that name exists and was not written by this ingest: left as it was');
      return;
    }
    if (outcome === 'ours') {
      this.stats.alreadyIngested++;
      return;
    }
    if (outcome === 'preexisting') {
      this.stats.preexistingDirectories++;
      this.log('preexisting', entry.path, name, 'the directory stub already exists: left as it was');
      return;
    }
    if (entry.kind === 'dir') this.stats.directories++;
    else if (entry.kind === 'symlink') this.stats.symlinks++;
    else {
      this.stats.files++;
      this.stats.bytes += size;
    }
  }

  /**
   * A regular file: read (single request or staged blocks), rereading it when it changed meanwhile. The first
   * attempt takes the walk's lstat as the version it reads (the check after the read compares size, mtime, ctime
   * and inode with it, so a change since the walk is caught the same way); a reread stats the open file.
   */
  private async ingestFile(entry: SourceEntry, name: string): Promise<{ outcome: PutOutcome; size: number }> {
    const size = Number(entry.stat.size);
    const blocking =
      !this.o.dryRun &&
      size <= Math.min(BLOCKING_READ_MAX, this.o.singleRequestMaxBytes) &&
      this.localFilesystems.isLocal(entry.stat.dev, entry.path);
    for (let attempt = 0; ; attempt++) {
      try {
        if (attempt === 0 && blocking) return { outcome: await this.putSmallLocalFile(entry.path, name, entry.stat), size };
        return await this.putOpenedFile(entry.path, name, attempt === 0 ? entry.stat : undefined);
      } catch (err) {
        if (!(err instanceof SourceChangedError) || attempt >= this.o.changeRetries) {
          if (err instanceof SourceChangedError) {
            throw new SourceChangedError(`${err.message}; read ${attempt + 1} times, not committed`, { cause: err });
          }
          throw err;
        }
        this.stats.changedRetries++;
        this.log('changed', entry.path, name, `${err.message}; reading it again`);
      }
    }
  }

  /** A small file on a local filesystem, on a first attempt (`walked`, the walk's lstat, was looked up in the
   * journal by ingestEntry): read whole with blocking calls, then sent in one request. */
  private async putSmallLocalFile(path: string, name: string, walked: BigIntStats): Promise<PutOutcome> {
    const data = readSmallFile(path, walked);
    return this.put(name, 'file', this.stamp('file', walked), walked, () => ({ data }));
  }

  /** The `blobhsm_version` stamp of a source version, written with its blob and recorded in the journal. */
  private stamp(kind: SourceKind, st: BigIntStats): string {
    return `ingest:${this.o.journal.id}:${sourceVersion(kind, st)}`;
  }

  /**
   * Any other file, a dry run, or a reread: opened, then read whole or streamed in blocks while it is sent. `walked`
   * is the walk's lstat on a first attempt (already looked up in the journal by ingestEntry); a reread stats the
   * open file and looks that version up.
   */
  private async putOpenedFile(path: string, name: string, walked: BigIntStats | undefined): Promise<{ outcome: PutOutcome; size: number }> {
    const fh = await open(path, 'r');
    try {
      const st = walked ?? (await fh.stat({ bigint: true }));
      if (!st.isFile()) throw new SourceChangedError(`${path} is no longer a regular file`);
      const size = Number(st.size);
      if (this.o.dryRun) return { outcome: 'written', size };
      const version = this.stamp('file', st);
      if (!walked && this.o.journal.get(name)?.stamp === version) return { outcome: 'ours', size };
      const send = () => (size <= this.o.singleRequestMaxBytes ? this.readWhole(fh, st, path) : this.fileBlocks(fh, st, path));
      const outcome = size <= this.o.singleRequestMaxBytes ? await this.put(name, 'file', version, st, send) : await this.largeFiles.add(() => this.put(name, 'file', version, st, send));
      return { outcome, size };
    } finally {
      await fh.close();
    }
  }

  private async checkUnchanged(fh: FileHandle, before: BigIntStats, path: string): Promise<void> {
    assertUnchanged(before, await fh.stat({ bigint: true }), path);
  }

  /** The whole file in memory (small files), checked unchanged after the read. */
  private async readWhole(fh: FileHandle, st: BigIntStats, path: string): Promise<UploadSource> {
    const size = Number(st.size);
    const data = Buffer.allocUnsafe(size);
    let got = 0;
    while (got < size) {
      const { bytesRead } = await fh.read(data, got, size - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    await this.checkUnchanged(fh, st, path);
    if (got !== size) throw new SourceChangedError(`${path} shrank while it was read`);
    return { data };
  }

  /**
   * A large file, read by the store from the open file straight into its block buffers; once every byte was read,
   * before the store commits, the file is checked unchanged, else the upload fails and its staged blocks are never
   * committed.
   */
  private fileBlocks(fh: FileHandle, st: BigIntStats, path: string): UploadSource {
    return { handle: fh, size: Number(st.size), verify: () => this.checkUnchanged(fh, st, path) };
  }

  /**
   * One blob, never overwriting one this journal did not write: If-None-Match: *; on a precondition failure the
   * blob is looked at (HEAD): the same stamp is our own earlier write (recorded, not sent again), another stamp of
   * this journal is overwritten with If-Match on its etag, a directory stub for a directory is left as it is, and
   * anything else is a conflict.
   */
  private async put(
    name: string,
    kind: Exclude<SourceKind, 'special'>,
    version: string,
    st: BigIntStats,
    read: () => Promise<UploadSource> | UploadSource,
  ): Promise<PutOutcome> {
    const metadata = {
      ...exportMetadata({ kind, uid: Number(st.uid), gid: Number(st.gid), mode: Number(st.mode), mtimeMs: Number(st.mtimeMs) }),
      [VERSION_KEY]: version,
    };
    let ifMatch: string | undefined;
    for (let attempt = 0; ; attempt++) {
      const source = await read();
      let reported = 0;
      const options: UploadOptions = {
        metadata,
        ...(ifMatch ? { ifMatch } : { ifNoneMatch: '*' as const }),
        singleRequest: 'data' in source,
        expectedSize: 'data' in source ? source.data.length : Number(st.size),
        blockSize: this.o.blockSize,
        concurrency: this.o.blockConcurrency,
        onProgress: (n) => {
          this.bytesSent += n - reported;
          reported = n;
        },
        signal: this.abort.signal,
      };
      try {
        const r = await this.o.store.upload(name, source, options);
        await this.o.journal.record(name, version, r.etag);
        return 'written';
      } catch (err) {
        this.bytesSent -= reported;
        if ('stream' in source) source.stream.destroy();
        if (!isWriteConflict(err)) throw err;
      }
      const info = await this.o.store.head(name, { signal: this.abort.signal });
      const stamp = info.metadata[VERSION_KEY];
      if (stamp === version) {
        await this.o.journal.record(name, version, info.etag);
        return 'ours';
      }
      if (stamp?.startsWith(`ingest:${this.o.journal.id}:`) && attempt === 0) {
        ifMatch = info.etag;
        continue;
      }
      if (kind === 'dir' && info.metadata.hdi_isfolder?.toLowerCase() === 'true' && info.size === 0) return 'preexisting';
      return 'conflict';
    }
  }
}
