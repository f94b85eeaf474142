// The HSM coordinator: the only owner of network-driven state changes. Restore (through the Hydrator), release,
// archive, remove, cancel; durable dirty marking before content changes; cache-size eviction (eviction = release
// of LRU clean files). Every data-moving action runs through the ActionScheduler (src/hsm/scheduler.ts, which
// holds the per-file state and the concurrency contract): hsm_* requests, export jobs and auto-export
// (archiveForExport), eviction and the truncate of a released file.
//
// Ordering rules (what survives kill -9): a content change is recorded (DIRTY, dataVersion+1) durably before the
// first byte reaches the cache file; release records RELEASED durably before deleting cache data; archive clears
// DIRTY only if the data version did not change while it uploaded. An archive never commits bytes the file did not
// hold at one instant (issue 10 R2): a content change while it uploads aborts it before the commit (the first write
// or truncate calls beforeContentChange before its bytes reach the cache file), an archive that finds a write in
// flight does not start, and the upload fails unless it read exactly the recorded size; the Content-MD5 it commits
// is the digest of exactly the bytes it staged. (A stable snapshot, a copy of the cache file per archive, would
// cost one more full read and write of every file exported; aborting costs one map lookup per write.)
//
// Blob names are paths, so export keeps track of which etag it expects under each name: the file's own blob
// (blobName/etag), else the etag remembered for a name no inode owns (a file unlinked or replaced locally, an extra
// hard-link name). A name some other file still owns (renamed away from it) is taken over only if that file is
// resident: its archive copy is about to be overwritten, so it becomes DIRTY and is exported again under its new
// name; a released owner makes it a conflict (its only copy is that blob).
import { BlobError, ConflictError, FsError, NotRegularFileError, SourceChangedError, describeError, errnoCodeOf, errnoOf } from '../errors.js';
import type { BlobInfo, BlobStore } from '../blob/blob-store.js';
import type { DataCache } from '../cache/data-cache.js';
import type { Hydrator } from './hydrator.js';
import type { Inode, KernelCache, MetaStore } from '../namespace/types.js';
import * as flags from './flags.js';
import { exportMetadata } from '../namespace/blob-encoding.js';
import { isArchivable } from '../namespace/file-types.js';
import type { Changelog } from './changelog.js';
import type { Log } from '../log.js';
import { ActionScheduler, cancelledError, type ActionKind, type ActionOrigin, type ActionState, type ActionStats, type ScheduledAction } from './scheduler.js';
import type { HnsExport } from './hns-export.js';

export type { ActionKind, ActionState, ActionStats } from './scheduler.js';

export interface CoordinatorOptions {
  meta: MetaStore;
  store: BlobStore;
  cache: DataCache;
  hydrator: Hydrator;
  changelog: Changelog;
  /** Blob name prefix of the mount ('' or 'some/prefix/'). */
  blobPrefix: string;
  /** Bytes the cache may hold before clean archived files are released; 0 = unbounded. */
  cacheSizeLimit: number;
  /** Parallel HSM actions (bulk requests run with this bound). */
  concurrency?: number;
  /** Identifies this namespace in the `blobhsm_version` stamp. */
  namespaceId: string;
  log: Log;
  /** On a hierarchical-namespace account: real directories and access control instead of stubs and metadata. */
  hns?: HnsExport;
  /** The clock of access times (default Date.now). */
  now?: () => number;
  /** The mount's kernel caches: a release drops the file's pages there, so the next read restores it. */
  kernel?: KernelCache;
}

export interface ArchiveOutcome {
  ino: number;
  path: string;
  blobName: string;
  bytes: number;
  /** Set when a blob changed behind the mount's back: nothing was overwritten and the file stays dirty. */
  conflict?: ConflictError;
}

/** The first BlobError among a failure's causes. */
function firstBlobError(err: unknown): BlobError | undefined {
  for (let cur: unknown = err, depth = 0; cur && depth < 6; depth++) {
    if (cur instanceof BlobError) return cur;
    cur = cur instanceof Error ? cur.cause : undefined;
  }
  return undefined;
}

/** A HEAD that checks whether a precondition failure met our own upload: attempts, and what is retried. */
const HEAD_ATTEMPTS = 3;
const RETRIED_KINDS = new Set(['Throttled', 'Transient', 'Timeout']);

/** Metadata key stamping our own version on uploaded blobs, to recognise our upload after a crash. */
export const VERSION_KEY = 'blobhsm_version';

/** libfuse's stand-ins for unlinked files that are still open: never exported. */
export function isHiddenPath(path: string): boolean {
  return /(^|\/)\.fuse_hidden[0-9a-f]+$/.test(path);
}

export class Coordinator {
  private readonly o: CoordinatorOptions;
  /** The per-file state and the one queue of data-moving actions. */
  readonly scheduler: ActionScheduler;
  private readonly accessed = new Map<number, number>();
  /** Directory stub uploads in flight, by blob name. */
  private readonly stubUploads = new Map<string, Promise<void>>();
  private evicting = false;
  /** The clock of access times (LRU order); tests inject one. */
  private readonly now: () => number;

  constructor(options: CoordinatorOptions) {
    this.o = options;
    this.now = options.now ?? Date.now;
    this.scheduler = new ActionScheduler(options.concurrency ?? 8);
    // Every HSM action in the log, with its file and, when it failed, the cause.
    this.scheduler.onFinished = (a) => {
      const path = this.o.meta.pathOf(a.ino) ?? `inode ${a.ino}`;
      const outcome = a.error === undefined ? 'succeeded' : 'failed';
      this.o.log(`${a.kind.toLowerCase()} of ${path} (${a.origin}) ${outcome} after ${a.ms} ms${a.error === undefined ? '' : `: ${describeError(a.error)}`}`, {
        event: 'hsm_action',
        level: a.error === undefined ? 'info' : errnoCodeOf(a.error) === 'ECANCELED' ? 'warn' : 'error',
        action: a.kind,
        origin: a.origin,
        path,
        ino: a.ino,
        outcome,
        ms: a.ms,
        bytesMoved: a.bytesMoved,
        ...(a.error === undefined ? {} : { cause: describeError(a.error) }),
      });
    };
  }

  stats(): ActionStats {
    return this.scheduler.stats();
  }

  // ---- opens (the VFS's handles) -------------------------------------------------------------------------

  /** A handle was opened (registered before the opener's first await: see the scheduler's contract). */
  opened(ino: number, writable: boolean): void {
    const f = this.scheduler.file(ino);
    f.opens++;
    if (writable) f.writers++;
  }

  closed(ino: number, writable: boolean): void {
    const f = this.scheduler.peek(ino);
    if (!f) return;
    f.opens = Math.max(0, f.opens - 1);
    if (writable) f.writers = Math.max(0, f.writers - 1);
    this.scheduler.release(f);
  }

  /** Whether a handle has the file open for writing (release refuses then). */
  hasWriter(ino: number): boolean {
    return (this.scheduler.peek(ino)?.writers ?? 0) > 0;
  }

  /** Whether any handle has the file open (never evicted then). */
  isOpen(ino: number): boolean {
    return (this.scheduler.peek(ino)?.opens ?? 0) > 0;
  }

  // ---- called by the VFS ---------------------------------------------------------------------------------

  touch(ino: number): void {
    this.accessed.set(ino, this.now());
  }

  /** Persists access times gathered since the last call (LRU order for eviction). */
  flushAccessTimes(): void {
    if (this.accessed.size === 0) return;
    const entries = [...this.accessed];
    this.accessed.clear();
    this.o.meta.transaction(() => {
      for (const [ino, t] of entries) if (this.o.meta.get(ino)) this.o.meta.update(ino, { lastAccessMs: t });
    });
  }

  /** Waits until [offset, offset+length) of a released file is in the cache (an implicit restore). */
  async ensureReadable(inode: Inode, offset: number, length: number): Promise<void> {
    await this.restoring(inode, () => this.o.hydrator.ensureRange(inode, offset, length));
  }

  /** Restores a released file completely (before a write or truncate) and returns its record. */
  async ensureResident(inode: Inode): Promise<Inode> {
    if (flags.isReleased(inode.hsmFlags)) await this.restoring(inode, () => this.o.hydrator.restore(inode));
    return this.get(inode.ino);
  }

  /**
   * A restore, and what its failure means: a blob that is gone (deleted by another client) is the archived copy
   * lost, so the file becomes lost_from_hsm (Lustre's meaning) and says so; later reads fail at once with the same
   * explanation instead of asking the service again. Other failures pass through (the file stays released).
   */
  private async restoring(inode: Inode, restore: () => Promise<void>): Promise<void> {
    if (flags.isLost(inode.hsmFlags)) throw this.lostError(inode);
    try {
      await restore();
    } catch (err) {
      if (!(await this.copyGone(inode, err))) throw err;
      const now = this.o.meta.get(inode.ino);
      // Only the version that failed: a file truncated or reimported meanwhile is not lost.
      if (!now || now.generation !== inode.generation || now.etag !== inode.etag || !flags.isReleased(now.hsmFlags)) throw err;
      if (!flags.isLost(now.hsmFlags)) {
        this.o.meta.update(inode.ino, { hsmFlags: flags.onArchiveLost(now.hsmFlags) });
        this.o.changelog.hsm('RESTORE', inode.ino, errnoOf(err), false);
        this.o.log(`${this.lostError(now).message} (${describeError(err)})`);
      }
      throw this.lostError(now, err);
    }
  }

  /**
   * Whether a failed restore failed because its blob is gone. A read with If-Match of a deleted blob answers 404 or
   * 412 (Azurite); a HEAD tells a deleted blob from a changed one, and a missing container (also 404) is a
   * configuration problem, not a lost copy. A check that fails says nothing (false).
   */
  private async copyGone(inode: Inode, err: unknown): Promise<boolean> {
    const kind = firstBlobError(err)?.kind;
    if (!inode.blobName || (kind !== 'NotFound' && kind !== 'PreconditionFailed')) return false;
    try {
      await this.o.store.head(inode.blobName);
      return false;
    } catch (headErr) {
      if (!(headErr instanceof BlobError && headErr.kind === 'NotFound')) return false;
    }
    return this.o.store.containerExists().catch(() => false);
  }

  private lostError(inode: Inode, cause?: unknown): FsError {
    const path = this.o.meta.pathOf(inode.ino) ?? `inode ${inode.ino}`;
    return new FsError(
      'EIO',
      `the archived copy of ${path} (blob ${inode.blobName}) is gone: the file is lost_from_hsm and cannot be read; ` +
        'delete it, or import the blob again if it comes back',
      { cause },
    );
  }

  /**
   * A released file truncated to zero needs no data: make it resident and empty without a download. A scheduled
   * action (a RESTORE, which is what a truncate of a released file is in Lustre); a restore request already
   * running for the file is cancelled, not waited for. Returns the file as it is then (not released any more).
   */
  async discardReleased(ino: number): Promise<Inode> {
    if (this.scheduler.current(ino)?.kind === 'RESTORE') this.cancel(ino);
    return this.scheduler.schedule(ino, 'RESTORE', 'truncate', async () => {
      const inode = this.get(ino);
      return flags.isReleased(inode.hsmFlags) ? this.discard(inode) : inode;
    });
  }

  private async discard(inode: Inode): Promise<Inode> {
    // The new generation's (empty) cache file exists before the record points to it, so a reader racing the
    // truncate reads an empty file instead of failing on a missing one (its restore is cancelled below, and it
    // retries once it sees the new generation).
    await this.o.cache.truncate(inode.ino, inode.generation + 1, 0);
    this.o.hydrator.cancel(inode.ino);
    this.o.meta.clearRanges(inode.ino);
    const updated = this.o.meta.update(inode.ino, {
      hsmFlags: flags.onRestoreSucceeded(this.get(inode.ino).hsmFlags),
      generation: inode.generation + 1,
      size: 0,
    });
    // A partial restore may have left data under the old generation: it would stay until the next mount.
    await this.o.cache.drop(inode.ino, inode.generation);
    return updated;
  }

  /**
   * Records a content change durably (DIRTY if archived, data version +1) before the cache file changes. Every
   * call must be followed by contentChangeDone() once the cache file has changed (or the change failed).
   */
  beforeContentChange(ino: number): Inode {
    let inode = this.get(ino);
    const f = this.scheduler.file(ino);
    // An upload of this file in flight would commit a mix of old and new bytes: stop it before it commits.
    for (const a of f.actions) {
      if (a.kind === 'ARCHIVE' && a.status === 'running') {
        a.abort.abort(
          new SourceChangedError(`${this.o.meta.pathOf(ino) ?? `inode ${ino}`} changed while it was archived; it stays dirty (archive it again)`),
        );
      }
    }
    if (!f.changeRecorded) {
      // DIRTY must be on disk before the first byte only where it is set (a file with archived data); a new or
      // never-archived file's first write costs no fsync (measured: one per file was most of `rsync -a`'s commits).
      const hsmFlags = flags.onContentChange(inode.hsmFlags);
      inode = this.o.meta.update(ino, { hsmFlags, dataVersion: inode.dataVersion + 1 }, { durable: hsmFlags !== inode.hsmFlags });
      f.changeRecorded = true;
    }
    f.writesInFlight++;
    return inode;
  }

  /**
   * A file was just created here, and the handle of its create is open: a new, empty file that was never archived,
   * whose creation committed its first data version. Its content change counts as recorded, so its first write
   * commits nothing more (there is no DIRTY to set; an archive that starts before that write settles the change
   * as it does for any file, and the write then records a new version).
   */
  created(ino: number): void {
    this.scheduler.file(ino).changeRecorded = true;
  }

  /**
   * Lets a handle write the file's cache file without beforeContentChange for each write (the libfuse3 binding's
   * direct writes), while the current change stays recorded and no archive of the file runs. `revoke` ends that and
   * answers how many of its writes have landed but were not reported yet: until each is reported with
   * contentChangeDone they count as writes in flight (an archive does not start). Revoked when the change is
   * settled (archive dispatched, last close, data dropped). Answers the function that revokes it the same way
   * earlier (the handle ends it itself), or undefined when direct writes are not allowed now.
   */
  allowDirectWrites(ino: number, revoke: () => number): (() => void) | undefined {
    const f = this.scheduler.peek(ino);
    if (!f?.changeRecorded || f.actions.some((a) => a.kind === 'ARCHIVE' && a.status === 'running')) return undefined;
    f.directWriters.add(revoke);
    return () => {
      if (f.directWriters.delete(revoke)) f.writesInFlight += revoke();
      this.scheduler.release(f);
    };
  }

  /** Ends every direct-write grant of the file; their unreported writes count as in flight. */
  private revokeDirectWrites(ino: number): void {
    const f = this.scheduler.peek(ino);
    if (!f) return;
    for (const revoke of f.directWriters) f.writesInFlight += revoke();
    f.directWriters.clear();
  }

  contentChangeDone(ino: number): void {
    const f = this.scheduler.peek(ino);
    if (!f) return;
    f.writesInFlight = Math.max(0, f.writesInFlight - 1);
    this.scheduler.release(f);
  }

  /** The current content change is no longer recorded (an archive copies it, or the data went). */
  private changeSettled(ino: number): void {
    this.revokeDirectWrites(ino);
    const f = this.scheduler.peek(ino);
    if (!f) return;
    f.changeRecorded = false;
    this.scheduler.release(f);
  }

  /**
   * The last name of a file is gone (unlink, or replaced by a rename). Its blob stays (as with AMLFS); remember the
   * blob's etag so that a file created under that name later is exported with If-Match, not reported as a conflict.
   */
  onDropped(inode: Inode): void {
    this.changeSettled(inode.ino);
    if (inode.blobName && inode.etag) this.o.meta.rememberBlobEtag(inode.blobName, inode.etag, inode.ino);
  }

  afterClose(ino: number): void {
    this.changeSettled(ino);
    this.touch(ino);
    void this.evictIfNeeded();
  }

  /** Called by the Hydrator when every byte of a file is present and synced. */
  onRestored(ino: number): void {
    const inode = this.o.meta.get(ino);
    if (!inode || !flags.isReleased(inode.hsmFlags)) return;
    this.o.meta.update(ino, { hsmFlags: flags.onRestoreSucceeded(inode.hsmFlags), lastAccessMs: this.now() });
    this.o.changelog.hsm('RESTORE', ino, 0, false);
    void this.evictIfNeeded();
  }

  // ---- HSM requests --------------------------------------------------------------------------------------

  /**
   * Waits for a restore that has every byte but is still being recorded (readers are served before that): a
   * state query, flag change or request right after the read that completed a file then sees it restored, as in
   * Lustre, where that read itself waits for the restore. (A release would otherwise be a no-op on the still
   * released file, and be lost when the restore completes.)
   */
  async settle(ino: number): Promise<void> {
    const p = this.o.hydrator.progress(ino);
    if (!p || p.bytesPresent < p.size) return;
    const inode = this.o.meta.get(ino);
    if (inode) await this.o.hydrator.restore(inode).catch(() => undefined);
  }

  /** The file's current action; an implicit restore (a reader of a released file) shows as a running RESTORE. */
  action(ino: number): ActionState | undefined {
    const a = this.scheduler.current(ino);
    const p = this.o.hydrator.progress(ino);
    if (!a) return p ? { kind: 'RESTORE', status: 'running', bytesMoved: p.bytesMoved, startedMs: p.startedMs } : undefined;
    const state: ActionState = { kind: a.kind, status: a.status, bytesMoved: a.bytesMoved, startedMs: a.startedMs, ...(a.cancelled ? { cancelled: true } : {}) };
    if (a.kind === 'RESTORE' && p) return { ...state, status: 'running', bytesMoved: p.bytesMoved };
    return state;
  }

  /**
   * Queues an action and returns its completion promise; the request itself is validated synchronously
   * (EPERM/EINVAL thrown before anything is queued), as Lustre validates before queueing.
   */
  request(kind: ActionKind, ino: number, archiveId?: number): { done: Promise<void> } {
    const inode = this.get(ino);
    if (inode.kind !== 'file') throw new NotRegularFileError(this.o.meta.pathOf(ino) ?? `inode ${ino}`);
    const decision = this.decide(kind, inode, archiveId);
    if (decision === 'noop') return { done: Promise.resolve() };
    const done = this.scheduler
      .schedule(ino, kind, 'request', (action) => this.perform(kind, ino, archiveId, action))
      .catch((err) => {
        // ARCHIVE records its own outcome; the others record a failure here, as the Lustre coordinator does.
        if (kind !== 'ARCHIVE' && this.o.meta.get(ino)) this.o.changelog.hsm(kind, ino, errnoOf(err), false);
        throw err;
      });
    return { done };
  }

  private decide(kind: ActionKind, inode: Inode, archiveId: number | undefined): 'noop' | 'run' {
    switch (kind) {
      case 'ARCHIVE':
        if (flags.isReleased(inode.hsmFlags)) return 'noop';
        return flags.archiveDecision(inode.hsmFlags, { requested: archiveId, current: inode.archiveId });
      case 'RESTORE':
        return flags.restoreDecision(inode.hsmFlags);
      case 'RELEASE':
        return flags.releaseDecision(inode.hsmFlags, {
          dataVersion: inode.dataVersion,
          archivedVersion: inode.archivedVersion,
          writersOpen: this.hasWriter(inode.ino),
        });
      case 'REMOVE':
        return flags.removeDecision(inode.hsmFlags);
    }
  }

  private async perform(kind: ActionKind, ino: number, archiveId: number | undefined, action: ScheduledAction): Promise<void> {
    const inode = this.get(ino);
    if (this.decide(kind, inode, archiveId) === 'noop') return;
    switch (kind) {
      case 'RESTORE': {
        const onAbort = () => this.o.hydrator.cancel(ino);
        action.abort.signal.addEventListener('abort', onAbort, { once: true });
        try {
          await this.restoring(inode, () => this.o.hydrator.restore(inode));
        } finally {
          action.abort.signal.removeEventListener('abort', onAbort);
        }
        return;
      }
      case 'RELEASE':
        await this.release(inode);
        return;
      case 'REMOVE':
        await this.remove(inode);
        return;
      case 'ARCHIVE': {
        const outcome = await this.archive(inode, flags.archiveIdForRequest(archiveId, inode.archiveId), action);
        if (outcome.conflict) throw outcome.conflict;
      }
    }
  }

  /**
   * Cancels the action of a file: a waiting one never runs, a running one is aborted (a restore keeps the ranges
   * already fetched). Its requester sees ECANCELED. False when the file has no action.
   */
  cancel(ino: number): boolean {
    return this.scheduler.cancel(ino);
  }

  /**
   * An archive for an export job or auto-export: scheduled like hsm_archive (one archive per file at a time,
   * shown by hsm_action, cancelled by hsm_cancel or the caller's signal). Re-checked when its turn comes:
   * undefined when the file no longer needs exporting (gone, archived meanwhile, made never_archive) or no name
   * of it is exported.
   */
  archiveForExport(ino: number, origin: ActionOrigin, signal?: AbortSignal): Promise<ArchiveOutcome | undefined> {
    return this.scheduler.schedule(
      ino,
      'ARCHIVE',
      origin,
      async (action) => {
        const inode = this.o.meta.get(ino);
        if (!inode || !isArchivable(inode.kind) || !flags.isExportCandidate(inode.hsmFlags) || flags.isReleased(inode.hsmFlags)) return undefined;
        return this.archive(inode, flags.archiveIdForRequest(undefined, inode.archiveId), action);
      },
      signal,
    );
  }

  setFlags(ino: number, set: number, clear: number, privileged: boolean, archiveId?: number): Inode {
    const inode = this.get(ino);
    const next = flags.setFlags(inode.hsmFlags, set, clear, { privileged });
    // The next content change records itself again (DIRTY after hsm_clear --dirty, a new data version).
    this.changeSettled(ino);
    const updated = this.o.meta.update(ino, { hsmFlags: next, archiveId: flags.archiveIdAfterSet(next, inode.archiveId, archiveId) });
    this.o.changelog.hsm('STATE', ino, 0, flags.isDirty(next));
    return updated;
  }

  /** Waits for every queued action. */
  async idle(): Promise<void> {
    await this.scheduler.idle();
  }

  /**
   * Shutdown, after the mount and the jobs have stopped and before the metadata store closes: no new action is
   * accepted, waiting ones are cancelled, running ones aborted and awaited (each leaves its file consistent:
   * an aborted archive leaves it dirty, an aborted restore keeps the ranges fetched), then every restore is
   * cancelled and awaited, and access times are saved.
   */
  async shutdown(): Promise<void> {
    await this.scheduler.close();
    await this.o.hydrator.cancelAllAndWait();
    this.flushAccessTimes();
  }

  // ---- called by import jobs -----------------------------------------------------------------------------

  /** True while a file has an HSM action or a restore, or is open: an import job does not replace or release it. */
  isBusy(ino: number): boolean {
    return this.scheduler.busy(ino) || this.o.hydrator.progress(ino) !== undefined;
  }

  /**
   * Deletes the cache data of a generation an import job released or unlinked (the new record is already
   * committed, so nothing reads that generation again).
   */
  async dropData(ino: number, generation: number): Promise<void> {
    this.changeSettled(ino);
    await this.o.cache.drop(ino, generation);
  }

  // ---- the actions ---------------------------------------------------------------------------------------

  private async release(inode: Inode): Promise<void> {
    if (this.hasWriter(inode.ino)) throw new FsError('EBUSY', 'the file is open for writing');
    const updated = this.o.meta.update(inode.ino, {
      hsmFlags: flags.onReleaseSucceeded(inode.hsmFlags),
      generation: inode.generation + 1,
    });
    this.o.meta.clearRanges(inode.ino);
    this.changeSettled(inode.ino);
    // Released first, then the kernel's pages: a read in between finds the file released and restores it.
    await this.o.kernel?.inodeChanged(inode.ino);
    await this.o.cache.drop(inode.ino, inode.generation);
    this.o.changelog.hsm('RELEASE', updated.ino, 0, false);
  }

  /**
   * Deletes the file's blob with If-Match on the etag recorded at its import or archive: a blob another client
   * changed since is not ours to delete (ConflictError, the file keeps its state). A blob already gone is fine.
   */
  private async remove(inode: Inode): Promise<void> {
    // Other files recording the same copy (a file renamed away, then its name imported again): a released one has
    // its only copy there (refused); a resident one loses the record once the blob is gone.
    const sharers = inode.blobName && inode.etag ? this.o.meta.inodesOfBlob(inode.blobName, inode.ino).filter((o) => o.etag === inode.etag) : [];
    for (const sharer of sharers) {
      const onlyCopy = this.onlyCopyConflict(inode.blobName!, sharer, 'remove');
      if (onlyCopy) throw onlyCopy;
    }
    if (inode.blobName) {
      if (inode.etag) {
        try {
          await this.o.store.delete(inode.blobName, { ifMatch: inode.etag });
        } catch (err) {
          // A blob that is gone fails If-Match on some services (412) and not on others (404): gone either way.
          // The check is retried if it fails, and its failure fails the remove: it is never taken as a conflict.
          const now = err instanceof BlobError && err.kind === 'PreconditionFailed' ? await this.headWithRetry(inode.blobName) : undefined;
          const found = now?.etag;
          if (found !== undefined) {
            const path = this.o.meta.pathOf(inode.ino) ?? `inode ${inode.ino}`;
            throw new ConflictError(
              inode.blobName,
              inode.etag,
              found,
              `conflict: blob ${inode.blobName} changed since ${path} was archived (etag ${inode.etag}, now ${found}): ` +
                'it was not deleted and the file keeps its HSM state',
              { cause: err },
            );
          }
          if (!(err instanceof BlobError && (err.kind === 'NotFound' || err.kind === 'PreconditionFailed'))) throw err;
        }
      }
      this.o.meta.setBlobEtag(inode.blobName, null);
    }
    // The current flags: hsm_set may have changed the policy flags (kept by a remove) while the delete ran.
    // The blob name goes too: a stale one would make a later export of this file to that name expect no blob
    // (If-None-Match), a false conflict once another file has been archived there.
    this.o.meta.transaction(() => {
      this.o.meta.update(inode.ino, {
        hsmFlags: flags.onRemoveSucceeded(this.get(inode.ino).hsmFlags),
        blobName: null,
        etag: null,
        contentMd5: null,
        archivedVersion: 0,
      });
      for (const sharer of sharers) this.giveUpBlob(this.get(sharer.ino));
    });
    this.o.changelog.hsm('REMOVE', inode.ino, 0, false);
  }

  /** The blob name a path exports to. */
  blobNameFor(path: string): string {
    return this.o.blobPrefix + path.replace(/^\/+/, '');
  }

  /**
   * The paths a file is exported under: every name it has (one copy per hard link), never a `.fuse_hidden*` one,
   * unless the file was imported from a blob of that very name (a real file that merely looks like a stand-in).
   */
  exportPaths(ino: number): string[] {
    const own = this.o.meta.get(ino)?.blobName;
    return this.o.meta.pathsOf(ino).filter((p) => !isHiddenPath(p) || this.blobNameFor(p) === own);
  }

  /**
   * Uploads a file or symlink under each of its names (staged blocks, one commit per name) with If-Match on the
   * etag expected under that name, or If-None-Match: * for a name never seen. A conflict (the blob changed behind
   * the mount's back) leaves the file dirty and is reported, never overwritten. `signal` aborts the upload (the
   * file stays dirty; staged blocks are never committed, so no reader sees a partial blob). Runs only as a
   * scheduled action (request() or archiveForExport()), whose abort signal it obeys.
   */
  private async archive(inode: Inode, archiveId: number, action: ScheduledAction): Promise<ArchiveOutcome> {
    const paths = this.exportPaths(inode.ino);
    if (paths.length === 0) throw new FsError('ENOENT', `inode ${inode.ino} has no name to export`);
    const names = paths.map((p) => this.blobNameFor(p));
    // The file's own blob stays its primary name while it still has that path.
    const primary = Math.max(0, names.indexOf(inode.blobName ?? ''));
    const version = inode.dataVersion;
    // A write already in flight would land while the upload reads the file (a torn blob): do not start. Direct
    // writes end first: those that landed unreported count as in flight.
    this.revokeDirectWrites(inode.ino);
    const racing = (this.scheduler.peek(inode.ino)?.writesInFlight ?? 0) > 0;
    const stamp = `${this.o.namespaceId}:${inode.ino}:${version}`;
    this.changeSettled(inode.ino);
    const dispatched = this.o.meta.update(inode.ino, { hsmFlags: flags.onArchiveDispatched(inode.hsmFlags) });
    const abort = action.abort;
    const state = action;
    const outcome: ArchiveOutcome = { ino: inode.ino, path: paths[primary]!, blobName: names[primary]!, bytes: 0 };
    const etags: string[] = [];
    try {
      const metadata = { ...(this.o.hns ? this.o.hns.metadata(dispatched) : exportMetadata(dispatched)), [VERSION_KEY]: stamp };
      const source =
        inode.kind === 'symlink'
          ? { data: Buffer.from(inode.target ?? '') }
          : { path: this.o.cache.pathFor(inode.ino, inode.generation) };
      if (racing) throw new SourceChangedError(`${outcome.path} is being written; it stays dirty (archive it again)`);
      if (inode.kind === 'file') await this.o.cache.fsync(inode.ino, inode.generation);
      let contentMd5: string | undefined;
      for (const [i, path] of paths.entries()) {
        const blobName = names[i]!;
        outcome.path = path;
        outcome.blobName = blobName;
        await this.ensureParentStubs(path);
        abort.signal.throwIfAborted();
        const uploaded = await this.uploadChecked(inode, blobName, source, { metadata, stamp, state, signal: abort.signal });
        if (uploaded instanceof ConflictError) {
          outcome.conflict = uploaded;
          break;
        }
        etags[i] = this.o.hns ? await this.o.hns.setAttributes(blobName, dispatched, path, uploaded.etag, abort.signal) : uploaded.etag;
        if (i === primary) contentMd5 = uploaded.contentMd5;
      }
      if (!outcome.conflict) {
        outcome.path = paths[primary]!;
        outcome.blobName = names[primary]!;
        outcome.bytes = inode.size;
        this.commitArchived(inode.ino, version, names, etags, primary, archiveId, contentMd5 ?? null);
        return outcome;
      }
    } catch (err) {
      this.recordFailure(inode.ino, names, etags, err);
      if (abort.signal.aborted) throw abort.signal.reason instanceof Error ? abort.signal.reason : cancelledError();
      if (err instanceof SourceChangedError) throw err;
      throw new FsError('EIO', `archive of ${outcome.path} to ${outcome.blobName} failed: ${describeError(err)}`, { cause: err });
    }
    this.recordFailure(inode.ino, names, etags, outcome.conflict!);
    return outcome;
  }

  /**
   * One upload of an archive: returns the new etag and the digest committed, or the conflict. A precondition
   * failure on a blob our own earlier upload of this file wrote (a crash between upload and the local commit) is no
   * conflict: an upload of the same data version is taken as done, an older one is overwritten. The check itself (a
   * HEAD) is retried when it fails; a check that keeps failing fails the archive with its cause, and is never
   * reported as a conflict.
   */
  private async uploadChecked(
    inode: Inode,
    blobName: string,
    source: { data: Buffer } | { path: string },
    o: { metadata: Record<string, string>; stamp: string; state: ActionState; signal: AbortSignal },
  ): Promise<{ etag: string; contentMd5: string | undefined } | ConflictError> {
    let expected = this.expectedEtag(inode, blobName);
    if (expected instanceof ConflictError) return expected;
    for (let attempt = 0; ; attempt++) {
      try {
        const r = await this.o.store.upload(blobName, source, {
          metadata: o.metadata,
          ...(expected !== undefined ? { ifMatch: expected } : { ifNoneMatch: '*' as const }),
          ...('path' in source ? { expectedSize: inode.size } : {}),
          onProgress: (n) => {
            o.state.bytesMoved = n;
          },
          signal: o.signal,
        });
        return { etag: r.etag, contentMd5: r.contentMd5 };
      } catch (err) {
        if (!(err instanceof BlobError && (err.kind === 'PreconditionFailed' || err.kind === 'AlreadyExists'))) throw err;
        const found = await this.headWithRetry(blobName, o.signal);
        const stamp = found?.metadata[VERSION_KEY];
        const ours = found && stamp?.startsWith(`${this.o.namespaceId}:${inode.ino}:`) ? { etag: found.etag, stamp } : undefined;
        if (ours?.stamp === o.stamp) return { etag: ours.etag, contentMd5: found?.contentMd5 };
        if (ours && attempt === 0) {
          expected = ours.etag;
          continue;
        }
        const path = this.o.meta.pathOf(inode.ino) ?? `inode ${inode.ino}`;
        const message =
          `archive conflict: ${blobName} changed since ${expected ? `etag ${expected}` : 'never seen'} ` +
          `(now ${found ? `etag ${found.etag}` : 'gone'}); ${path} stays dirty`;
        this.o.log(message);
        return new ConflictError(blobName, expected ?? null, found?.etag ?? null, message, { cause: err });
      }
    }
  }

  /**
   * The etag export expects under a blob name (undefined: none, upload with If-None-Match), or a conflict when the
   * name holds the only copy of another, released, file. A resident file that owns the name loses it (see the
   * header).
   */
  /**
   * The etag an upload to `blobName` expects: remembered for the name, the file's own record of it, or another
   * file's. Any other file recording this blob (renamed away from its path; or still recording it after an import
   * made a new file of that name) loses it to this upload: a released one holds its only copy there, so that is a
   * conflict; a resident one gives the name up and needs an archive of its own (DIRTY).
   */
  private expectedEtag(inode: Inode, blobName: string): string | undefined | ConflictError {
    const remembered = this.o.meta.blobEtag(blobName);
    if (remembered !== undefined) return remembered;
    const own = inode.blobName === blobName;
    let expected = own ? (inode.etag ?? undefined) : undefined;
    for (const owner of this.o.meta.inodesOfBlob(blobName, inode.ino)) {
      if (!owner.etag) continue;
      const onlyCopy = this.onlyCopyConflict(blobName, owner, 'archive');
      if (onlyCopy) return onlyCopy;
      this.o.meta.transaction(() => {
        if (!own) this.o.meta.setBlobEtag(blobName, owner.etag);
        this.giveUpBlob(owner);
      });
      expected ??= owner.etag ?? undefined;
    }
    return expected;
  }

  /** A conflict when `owner` is released: the blob holds its only copy, so it may be neither replaced nor deleted. */
  private onlyCopyConflict(blobName: string, owner: Inode, action: 'archive' | 'remove'): ConflictError | undefined {
    if (!flags.isReleased(owner.hsmFlags)) return undefined;
    const message =
      `${action} conflict: ${blobName} holds the only copy of the released file ` +
      `${this.o.meta.pathOf(owner.ino) ?? `inode ${owner.ino}`}; restore that file (hsm_restore) before ` +
      (action === 'archive' ? 'exporting over it' : 'removing it');
    this.o.log(message);
    return new ConflictError(blobName, owner.etag, owner.etag, message);
  }

  /** A resident file loses its record of a blob another file takes over or removes: it needs an archive of its own. */
  private giveUpBlob(owner: Inode): void {
    this.o.meta.update(owner.ino, { blobName: null, etag: null, contentMd5: null, hsmFlags: flags.onContentChange(owner.hsmFlags), archivedVersion: 0 });
  }

  /** HEAD of a blob, undefined when it does not exist; a failing HEAD is retried (bounded), then thrown. */
  private async headWithRetry(blobName: string, signal?: AbortSignal): Promise<BlobInfo | undefined> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.o.store.head(blobName, signal ? { signal } : {});
      } catch (err) {
        if (err instanceof BlobError && err.kind === 'NotFound') return undefined;
        if (attempt >= HEAD_ATTEMPTS || signal?.aborted || !(err instanceof BlobError && RETRIED_KINDS.has(err.kind))) throw err;
      }
    }
  }


  /** An archive that failed or met a conflict: the etags of names already uploaded are kept for the retry. */
  private recordFailure(ino: number, names: string[], etags: string[], err: unknown): void {
    const now = this.o.meta.get(ino);
    this.o.meta.transaction(() => {
      etags.forEach((etag, i) => etag && this.o.meta.setBlobEtag(names[i]!, etag));
      if (now) this.o.meta.update(ino, { hsmFlags: flags.onArchiveFailed(now.hsmFlags) });
    });
    if (now) this.o.changelog.hsm('ARCHIVE', ino, errnoOf(err), true);
  }

  /**
   * Every name is uploaded: the primary name becomes the file's blob; the others (and a previous blob name the file
   * no longer has) are remembered by name. DIRTY is cleared only if the data version is still `version`.
   */
  private commitArchived(
    ino: number,
    version: number,
    names: string[],
    etags: string[],
    primary: number,
    archiveId: number,
    contentMd5: string | null,
  ): void {
    const now = this.o.meta.get(ino);
    if (!now) {
      // Unlinked while it uploaded: its blobs stay, as after any unlink; remember their etags.
      this.o.meta.transaction(() => names.forEach((name, i) => this.o.meta.setBlobEtag(name, etags[i]!)));
      return;
    }
    const unchanged = now.dataVersion === version;
    const hsmFlags = flags.onArchiveSucceeded(now.hsmFlags, { dataChanged: !unchanged });
    this.o.meta.transaction(() => {
      if (now.blobName && now.etag && !names.includes(now.blobName)) this.o.meta.rememberBlobEtag(now.blobName, now.etag, ino);
      names.forEach((name, i) => this.o.meta.setBlobEtag(name, i === primary ? null : etags[i]!));
      this.o.meta.update(ino, {
        hsmFlags,
        archiveId,
        blobName: names[primary]!,
        etag: etags[primary]!,
        contentMd5,
        ...(unchanged ? { archivedVersion: version } : {}),
      });
    });
    this.o.changelog.hsm('ARCHIVE', ino, 0, !unchanged);
  }

  /** Uploads an `hdi_isfolder` stub for every parent directory whose path has none yet. */
  async ensureParentStubs(path: string): Promise<void> {
    await this.ensureStubs(path.split('/').filter(Boolean).slice(0, -1));
  }

  /**
   * Uploads the `hdi_isfolder` stubs of a directory and its parents that have none yet (an empty directory has no
   * file to carry it into the container: without its stub a remount from an empty cache loses it). True when the
   * directory's own stub was uploaded now.
   */
  async ensureDirectoryStub(dirPath: string): Promise<boolean> {
    const dir = this.o.meta.resolve(dirPath);
    const had = dir?.etag != null && dir.blobName === this.blobNameFor(dirPath);
    await this.ensureStubs(dirPath.split('/').filter(Boolean));
    return !had && dir?.kind === 'dir';
  }

  private async ensureStubs(parts: string[]): Promise<void> {
    let dirPath = '';
    for (const part of parts) {
      dirPath += '/' + part;
      const dir = this.o.meta.resolve(dirPath);
      const blobName = this.blobNameFor(dirPath);
      if (!dir || dir.kind !== 'dir' || (dir.etag && dir.blobName === blobName)) continue;
      // Files archived in parallel share their parents: one stub upload per directory at a time.
      let pending = this.stubUploads.get(blobName);
      if (!pending) {
        pending = this.uploadStub(dir, blobName, dirPath).finally(() => this.stubUploads.delete(blobName));
        this.stubUploads.set(blobName, pending);
      }
      await pending;
    }
  }

  private async uploadStub(dir: Inode, blobName: string, path: string): Promise<void> {
    if (this.o.hns) {
      const made = await this.o.hns.createDirectory(blobName, dir, path);
      this.o.meta.update(dir.ino, { blobName, etag: made ? made.etag : (await this.o.store.head(blobName)).etag });
      return;
    }
    try {
      const r = await this.o.store.upload(blobName, { data: Buffer.alloc(0) }, { metadata: exportMetadata(dir), ifNoneMatch: '*' });
      this.o.meta.update(dir.ino, { blobName, etag: r.etag });
    } catch (err) {
      if (!(err instanceof BlobError && (err.kind === 'AlreadyExists' || err.kind === 'PreconditionFailed'))) throw err;
      const info = await this.o.store.head(blobName);
      this.o.meta.update(dir.ino, { blobName, etag: info.etag });
    }
  }


  // ---- eviction ------------------------------------------------------------------------------------------

  /**
   * Releases least recently used clean archived files (never an open or busy one) while the cache is over its
   * limit. Each release is a scheduled action, re-checked when its turn comes.
   */
  async evictIfNeeded(): Promise<void> {
    if (!this.o.cacheSizeLimit || this.evicting) return;
    this.evicting = true;
    try {
      this.flushAccessTimes();
      while (this.o.cache.bytesUsed() > this.o.cacheSizeLimit) {
        const candidates = this.o.meta.evictionCandidates(64).filter((c) => !this.isBusy(c.ino));
        if (candidates.length === 0) break;
        let released = 0;
        for (const listed of candidates) {
          if (this.o.cache.bytesUsed() <= this.o.cacheSizeLimit) break;
          // Re-read: an earlier release awaited, and the file may have been opened, written or archived since.
          if (this.isBusy(listed.ino) || !this.o.meta.get(listed.ino)) continue;
          const evicted = await this.scheduler.schedule(listed.ino, 'RELEASE', 'eviction', async () => {
            const c = this.o.meta.get(listed.ino);
            const f = this.scheduler.peek(listed.ino);
            if (!c || (f && (f.opens > 0 || f.writesInFlight > 0)) || this.o.hydrator.progress(c.ino)) return undefined;
            if (!flags.matches(c.hsmFlags, flags.EVICTABLE) || c.dataVersion !== c.archivedVersion) return undefined;
            await this.release(c);
            return c;
          });
          if (!evicted) continue;
          released++;
          this.o.log(`evicted ${this.o.meta.pathOf(evicted.ino) ?? evicted.ino} (${evicted.size} bytes) to keep the cache under ${this.o.cacheSizeLimit} bytes`);
        }
        if (released === 0) break;
      }
    } catch (err) {
      if (!(err instanceof FsError && err.code === 'ECANCELED')) this.o.log(`eviction stopped: ${describeError(err)}`);
    } finally {
      this.evicting = false;
    }
  }

  private get(ino: number): Inode {
    const inode = this.o.meta.get(ino);
    if (!inode) throw new FsError('ENOENT', `inode ${ino} does not exist`);
    return inode;
  }
}

