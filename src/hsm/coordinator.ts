// The HSM coordinator: the only owner of network-driven state changes. Restore (through the Hydrator), release,
// archive, remove, cancel; durable dirty marking before content changes; the in-flight action table behind
// `hsm_action`; one action per file at a time; cache-size eviction (eviction = release of LRU clean files).
//
// Ordering rules (what survives kill -9): a content change is recorded (DIRTY, dataVersion+1) durably before the
// first byte reaches the cache file; release records RELEASED durably before deleting cache data; archive clears
// DIRTY only if the data version did not change while it uploaded.
import PQueue from 'p-queue';
import { BlobError, FsError, describeError, errnoOf } from '../errors.js';
import type { BlobStore } from '../blob/blob-store.js';
import type { DataCache } from '../cache/data-cache.js';
import type { Hydrator } from './hydrator.js';
import type { Inode, MetaStore } from '../namespace/types.js';
import * as flags from './flags.js';
import { HsmFlag } from './flags.js';
import { exportMetadata } from '../namespace/blob-encoding.js';
import type { Changelog } from './changelog.js';

export type ActionKind = 'ARCHIVE' | 'RESTORE' | 'RELEASE' | 'REMOVE';

export interface ActionState {
  kind: ActionKind;
  status: 'waiting' | 'running';
  bytesMoved: number;
  startedMs: number;
}

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
  /** Whether a file has an open writer (release refuses then) or any open handle (never evicted). */
  openState: { hasWriter(ino: number): boolean; isOpen(ino: number): boolean };
  /** Parallel HSM actions (bulk requests run with this bound). */
  concurrency?: number;
  /** Identifies this namespace in the `blobhsm_version` stamp. */
  namespaceId: string;
  log: (line: string) => void;
}

export interface ArchiveOutcome {
  ino: number;
  path: string;
  blobName: string;
  bytes: number;
  conflict: boolean;
}

/** Metadata key stamping our own version on uploaded blobs, to recognise our upload after a crash. */
export const VERSION_KEY = 'blobhsm_version';

export class Coordinator {
  private readonly o: CoordinatorOptions;
  private readonly queue: PQueue;
  private readonly actions = new Map<number, ActionState>();
  /** Per-file serialisation: the tail of the chain of actions on that inode. */
  private readonly tails = new Map<number, Promise<unknown>>();
  private readonly aborts = new Map<number, AbortController>();
  /** Inodes whose current content change is already recorded (cleared when an archive starts). */
  private readonly changeRecorded = new Set<number>();
  private readonly accessed = new Map<number, number>();
  private evicting = false;

  constructor(options: CoordinatorOptions) {
    this.o = options;
    this.queue = new PQueue({ concurrency: options.concurrency ?? 8 });
  }

  // ---- called by the VFS ---------------------------------------------------------------------------------

  touch(ino: number): void {
    this.accessed.set(ino, Date.now());
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
    await this.o.hydrator.ensureRange(inode, offset, length);
  }

  /** Restores a released file completely (before a write or truncate) and returns its record. */
  async ensureResident(inode: Inode): Promise<Inode> {
    if (inode.hsmFlags & HsmFlag.RELEASED) await this.o.hydrator.restore(inode);
    return this.get(inode.ino);
  }

  /** A released file truncated to zero needs no data: make it resident and empty without a download. */
  async discardReleased(inode: Inode): Promise<Inode> {
    this.o.hydrator.cancel(inode.ino);
    this.o.meta.clearRanges(inode.ino);
    return this.o.meta.update(inode.ino, {
      hsmFlags: flags.onRestoreSucceeded(inode.hsmFlags),
      generation: inode.generation + 1,
    });
  }

  /** Records a content change durably (DIRTY if archived, data version +1) before the cache file changes. */
  beforeContentChange(ino: number): Inode {
    const inode = this.get(ino);
    if (this.changeRecorded.has(ino)) return inode;
    const updated = this.o.meta.update(ino, {
      hsmFlags: flags.onContentChange(inode.hsmFlags),
      dataVersion: inode.dataVersion + 1,
    });
    this.changeRecorded.add(ino);
    return updated;
  }

  afterClose(ino: number): void {
    this.changeRecorded.delete(ino);
    this.touch(ino);
    void this.evictIfNeeded();
  }

  /** Called by the Hydrator when every byte of a file is present and synced. */
  onRestored(ino: number): void {
    const inode = this.o.meta.get(ino);
    if (!inode || !(inode.hsmFlags & HsmFlag.RELEASED)) return;
    this.o.meta.update(ino, { hsmFlags: flags.onRestoreSucceeded(inode.hsmFlags), lastAccessMs: Date.now() });
    this.o.changelog.hsm('RESTORE', ino, 0, false);
    void this.evictIfNeeded();
  }

  // ---- HSM requests --------------------------------------------------------------------------------------

  action(ino: number): ActionState | undefined {
    const a = this.actions.get(ino);
    if (a && a.kind === 'RESTORE') {
      const p = this.o.hydrator.progress(ino);
      if (p) return { ...a, status: 'running', bytesMoved: p.bytesMoved };
    }
    return a;
  }

  /**
   * Queues an action and returns its completion promise; the request itself is validated synchronously
   * (EPERM/EINVAL thrown before anything is queued), as Lustre validates before queueing.
   */
  request(kind: ActionKind, ino: number, archiveId = 1): { done: Promise<void> } {
    const inode = this.get(ino);
    if (inode.kind !== 'file') throw new FsError('EINVAL', 'not a regular file');
    const decision = this.decide(kind, inode);
    if (decision === 'noop') return { done: Promise.resolve() };
    const state: ActionState = { kind, status: 'waiting', bytesMoved: 0, startedMs: Date.now() };
    const run = async () => {
      this.actions.set(ino, state);
      state.status = 'running';
      try {
        await this.queue.add(() => this.perform(kind, ino, archiveId, state));
      } finally {
        if (this.actions.get(ino) === state) this.actions.delete(ino);
      }
    };
    const prev = this.tails.get(ino) ?? Promise.resolve();
    const done = prev.then(run, run);
    const tail = done.catch(() => undefined);
    this.tails.set(ino, tail);
    void tail.then(() => {
      if (this.tails.get(ino) === tail) this.tails.delete(ino);
    });
    if (!this.actions.has(ino)) this.actions.set(ino, state);
    return { done };
  }

  private decide(kind: ActionKind, inode: Inode): 'noop' | 'run' {
    switch (kind) {
      case 'ARCHIVE':
        if (inode.hsmFlags & HsmFlag.RELEASED) return 'noop';
        return flags.archiveDecision(inode.hsmFlags);
      case 'RESTORE':
        return flags.restoreDecision(inode.hsmFlags);
      case 'RELEASE':
        return flags.releaseDecision(inode.hsmFlags, {
          dataVersion: inode.dataVersion,
          archivedVersion: inode.archivedVersion,
          writersOpen: this.o.openState.hasWriter(inode.ino),
        });
      case 'REMOVE':
        return flags.removeDecision(inode.hsmFlags);
    }
  }

  private async perform(kind: ActionKind, ino: number, archiveId: number, state: ActionState): Promise<void> {
    const inode = this.get(ino);
    if (this.decide(kind, inode) === 'noop') return;
    switch (kind) {
      case 'RESTORE':
        await this.o.hydrator.restore(inode);
        return;
      case 'RELEASE':
        await this.release(inode);
        return;
      case 'REMOVE':
        await this.remove(inode);
        return;
      case 'ARCHIVE': {
        const outcome = await this.archive(inode, archiveId, state);
        if (outcome.conflict) {
          throw new FsError('EBUSY', `conflict: blob ${outcome.blobName} was changed by someone else; ${outcome.path} stays dirty`);
        }
      }
    }
  }

  /** Cancels the running action of a file (a restore keeps the ranges already fetched). */
  cancel(ino: number): boolean {
    const a = this.actions.get(ino);
    if (!a) return false;
    this.aborts.get(ino)?.abort(new FsError('ECANCELED', 'cancelled by hsm_cancel'));
    if (a.kind === 'RESTORE') this.o.hydrator.cancel(ino);
    return true;
  }

  setFlags(ino: number, set: number, clear: number, privileged: boolean, archiveId?: number): Inode {
    const inode = this.get(ino);
    const next = flags.setFlags(inode.hsmFlags, set, clear, { privileged });
    const updated = this.o.meta.update(ino, { hsmFlags: next, ...(archiveId !== undefined ? { archiveId } : {}) });
    this.o.changelog.hsm('STATE', ino, 0, (next & HsmFlag.DIRTY) !== 0);
    return updated;
  }

  /** Waits for every queued action. */
  async idle(): Promise<void> {
    await Promise.all([...this.tails.values()]);
    await this.queue.onIdle();
  }

  // ---- the actions ---------------------------------------------------------------------------------------

  private async release(inode: Inode): Promise<void> {
    if (this.o.openState.hasWriter(inode.ino)) throw new FsError('EBUSY', 'the file is open for writing');
    const updated = this.o.meta.update(inode.ino, {
      hsmFlags: inode.hsmFlags | HsmFlag.RELEASED,
      generation: inode.generation + 1,
    });
    this.o.meta.clearRanges(inode.ino);
    this.changeRecorded.delete(inode.ino);
    await this.o.cache.drop(inode.ino, inode.generation);
    this.o.changelog.hsm('RELEASE', updated.ino, 0, false);
  }

  private async remove(inode: Inode): Promise<void> {
    if (inode.blobName) {
      try {
        await this.o.store.delete(inode.blobName);
      } catch (err) {
        if (!(err instanceof BlobError && err.kind === 'NotFound')) throw err;
      }
    }
    this.o.meta.update(inode.ino, { hsmFlags: flags.onRemoveSucceeded(), etag: null, archivedVersion: 0 });
    this.o.changelog.hsm('REMOVE', inode.ino, 0, false);
  }

  /** The blob name a path exports to. */
  blobNameFor(path: string): string {
    return this.o.blobPrefix + path.replace(/^\/+/, '');
  }

  /**
   * Uploads one file (staged blocks, one commit) with If-Match on the etag recorded at import/last archive, or
   * If-None-Match: * for a blob never seen. A conflict leaves the file dirty and is reported, never overwritten.
   */
  async archive(inode: Inode, archiveId: number, state?: ActionState): Promise<ArchiveOutcome> {
    const path = this.o.meta.pathOf(inode.ino);
    if (path === undefined) throw new FsError('ENOENT', `inode ${inode.ino} has no name`);
    const blobName = this.blobNameFor(path);
    const version = inode.dataVersion;
    const stamp = `${this.o.namespaceId}:${inode.ino}:${version}`;
    this.changeRecorded.delete(inode.ino);
    const dispatched = this.o.meta.update(inode.ino, { hsmFlags: flags.onArchiveDispatched(inode.hsmFlags) });
    await this.ensureParentStubs(path);
    const abort = new AbortController();
    this.aborts.set(inode.ino, abort);
    const sameBlob = blobName === inode.blobName && inode.etag !== null;
    const outcome: ArchiveOutcome = { ino: inode.ino, path, blobName, bytes: 0, conflict: false };
    try {
      const metadata = { ...exportMetadata(dispatched), [VERSION_KEY]: stamp };
      const source =
        inode.kind === 'symlink'
          ? { data: Buffer.from(inode.target ?? '') }
          : { path: this.o.cache.pathFor(inode.ino, inode.generation) };
      if (inode.kind === 'file') await this.o.cache.fsync(inode.ino, inode.generation);
      const result = await this.o.store.upload(blobName, source, {
        metadata,
        ...(sameBlob ? { ifMatch: inode.etag! } : { ifNoneMatch: '*' as const }),
        onProgress: (n) => {
          if (state) state.bytesMoved = n;
        },
        signal: abort.signal,
      });
      outcome.bytes = inode.size;
      this.commitArchived(inode.ino, version, blobName, result.etag, archiveId);
      return outcome;
    } catch (err) {
      if (err instanceof BlobError && (err.kind === 'PreconditionFailed' || err.kind === 'AlreadyExists')) {
        const ours = await this.isOurUpload(blobName, stamp);
        if (ours) {
          this.commitArchived(inode.ino, version, blobName, ours, archiveId);
          return outcome;
        }
        outcome.conflict = true;
        this.o.log(`archive conflict: ${blobName} changed since ${inode.etag ? `etag ${inode.etag}` : 'never seen'}; ${path} stays dirty`);
      }
      const now = this.get(inode.ino);
      this.o.meta.update(inode.ino, { hsmFlags: flags.onArchiveFailed(now.hsmFlags) });
      this.o.changelog.hsm('ARCHIVE', inode.ino, errnoOf(err), true);
      if (outcome.conflict) return outcome;
      throw new FsError('EIO', `archive of ${path} to ${blobName} failed: ${describeError(err)}`, { cause: err });
    } finally {
      this.aborts.delete(inode.ino);
    }
  }

  private async isOurUpload(blobName: string, stamp: string): Promise<string | undefined> {
    try {
      const info = await this.o.store.head(blobName);
      return info.metadata[VERSION_KEY] === stamp ? info.etag : undefined;
    } catch {
      return undefined;
    }
  }

  private commitArchived(ino: number, version: number, blobName: string, etag: string, archiveId: number): void {
    const now = this.get(ino);
    const unchanged = now.dataVersion === version;
    const hsmFlags = unchanged ? flags.onArchiveSucceeded(now.hsmFlags) : (now.hsmFlags | HsmFlag.ARCHIVED | HsmFlag.EXISTS | HsmFlag.DIRTY);
    this.o.meta.update(ino, {
      hsmFlags,
      archiveId,
      blobName,
      etag,
      ...(unchanged ? { archivedVersion: version } : {}),
    });
    this.o.changelog.hsm('ARCHIVE', ino, 0, !unchanged);
  }

  /** Uploads an `hdi_isfolder` stub for every parent directory that has none yet. */
  async ensureParentStubs(path: string): Promise<void> {
    const parts = path.split('/').filter(Boolean);
    let dirPath = '';
    for (const part of parts.slice(0, -1)) {
      dirPath += '/' + part;
      const dir = this.o.meta.resolve(dirPath);
      if (!dir || dir.kind !== 'dir' || dir.etag) continue;
      const blobName = this.blobNameFor(dirPath);
      try {
        const r = await this.o.store.upload(blobName, { data: Buffer.alloc(0) }, { metadata: exportMetadata(dir), ifNoneMatch: '*' });
        this.o.meta.update(dir.ino, { blobName, etag: r.etag });
      } catch (err) {
        if (!(err instanceof BlobError && (err.kind === 'AlreadyExists' || err.kind === 'PreconditionFailed'))) throw err;
        const info = await this.o.store.head(blobName);
        this.o.meta.update(dir.ino, { blobName, etag: info.etag });
      }
    }
  }

  // ---- eviction ------------------------------------------------------------------------------------------

  /** Releases least recently used clean archived files (never an open one) while the cache is over its limit. */
  async evictIfNeeded(): Promise<void> {
    if (!this.o.cacheSizeLimit || this.evicting) return;
    this.evicting = true;
    try {
      this.flushAccessTimes();
      while (this.o.cache.bytesUsed() > this.o.cacheSizeLimit) {
        const candidates = this.o.meta.evictionCandidates(64).filter((c) => !this.o.openState.isOpen(c.ino) && !this.actions.has(c.ino));
        if (candidates.length === 0) break;
        for (const c of candidates) {
          if (this.o.cache.bytesUsed() <= this.o.cacheSizeLimit) break;
          if (flags.releaseDecision(c.hsmFlags, { dataVersion: c.dataVersion, archivedVersion: c.archivedVersion, writersOpen: false }) !== 'run') continue;
          await this.release(c);
          this.o.log(`evicted ${this.o.meta.pathOf(c.ino) ?? c.ino} (${c.size} bytes) to keep the cache under ${this.o.cacheSizeLimit} bytes`);
        }
      }
    } catch (err) {
      this.o.log(`eviction stopped: ${describeError(err)}`);
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
