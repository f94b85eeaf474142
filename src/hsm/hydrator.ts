// Lazy restore of a released file from its blob into the local cache file.
//
// One restore per inode at a time (single flight): however many readers wait, each byte is downloaded once. A
// restore splits the missing bytes into pieces on a chunkSize grid. Two p-queues shared by all restores fetch
// them: the stream lane (`concurrency`, p-queue priority: read-ahead before background) walks the file in order
// from the first requested offset and wraps around; the demand lane (`demandConcurrency`) fetches what a reader
// is waiting for. A reader's range is "demanded": the queued piece holding it is split so a small head
// (firstChunkSize) around the reader's offset goes to the demand lane and the rest of that chunk to the front of
// the stream lane (read-ahead); while demanded pieces are in flight the stream lane starts nothing new (bounded
// by backgroundHoldMs), so a random read never queues behind the stream and the first byte arrives after one
// small request. The hold is per file: another file's restore never waits for this file's reader. Each piece is streamed into the sparse cache file at its offset; the readers whose ranges are
// now present are released at once (served from the page cache), then the file is fsynced (one fsync in flight
// per file, covering every piece written before it) and the pieces recorded in the RangeStore, so a restart
// fetches only what is missing. When every byte is present and recorded the file is fsynced and onRestored(ino)
// is called (the caller flips RELEASED off). Reads carry ifMatch: the import-time etag, so a blob changed since
// import fails the restore instead of mixing versions. A failed piece fails the whole restore: the pieces
// already written are recorded, then readers get EIO (cause: the BlobError); the next ensureRange starts a new
// restore that fetches only what is missing.
//
// Integrity (issue 16): when the blob has a Content-MD5 (inode contentMd5) and verifyMd5 is on, the file's MD5 is
// computed as its contiguous prefix grows (PrefixHasher: the bytes are read back from the page cache right after
// they were written), and checked once every byte is present, before onRestored (so the file never leaves
// RELEASED with bytes that do not match). A mismatch discards the data (ranges cleared, cache file emptied:
// its space is given back), refetches the whole file once, and if the digest still differs fails the restore
// with DigestMismatchError (EIO), logging blob, expected and actual digest. Readers served while a restore runs
// got their bytes before the check (lazy hydration cannot wait for the last byte). Counted in verification.
// A restore that fails for lack of space (ENOSPC) discards its partial data too, so the space it took is free
// for the next file; other failures keep what they fetched for the next attempt.
import PQueue from 'p-queue';
import { LRUCache } from 'lru-cache';
import type { BlobStore } from '../blob/blob-store.js';
import type { DataCache } from '../cache/data-cache.js';
import { PrefixHasher } from '../blob/content-md5.js';
import { BlobError, DigestMismatchError, FsError, describeError, errnoCodeOf, readErrnoOf } from '../errors.js';
import type { ByteRange, Inode, RangeStore } from '../namespace/types.js';

/** One log line (the project's logger convention). */
export type HydratorLog = (line: string) => void;

/** The fields of an inode a restore needs. */
export type RestoreTarget = Pick<Inode, 'ino' | 'generation' | 'size' | 'blobName' | 'etag'> & Partial<Pick<Inode, 'contentMd5'>>;

/** Restores checked against their blob's Content-MD5 (and `blobhsm verify` runs), behind `status`. */
export interface VerificationCounts {
  /** Files whose bytes matched their blob's digest. */
  verified: number;
  /** Files restored without a check (no digest on the blob, or verification off). */
  unverified: number;
  /** Digest mismatches found (each attempt counts). */
  mismatches: number;
}

export interface HydratorOptions {
  store: BlobStore;
  cache: DataCache;
  ranges: RangeStore;
  /** Size of the pieces of the sequential stream (default 16 MiB: Azurite and Azure serve large ranges faster). */
  chunkSize?: number;
  /** Size of the piece fetched first around a reader's offset (default 128 KiB, one FUSE read; at most chunkSize). */
  firstChunkSize?: number;
  /** Background (sequential stream) blob reads in flight across all restores (default 8). */
  concurrency?: number;
  /**
   * Reads in flight for ranges a reader is waiting for, on their own lane so they never wait for a slot behind
   * the sequential stream (default 4).
   */
  demandConcurrency?: number;
  /**
   * While a reader waits for a demanded piece, the stream starts no new reads (so the reader's request does not
   * share the bandwidth, the service and the libuv threadpool with up to `concurrency` new chunk reads), for at
   * most this long per hold (default 500 ms; 0 disables holding).
   */
  backgroundHoldMs?: number;
  /**
   * fsync the cache file before recording fetched ranges, so a recorded range survives a power loss too (not
   * only a kill -9, which the page cache survives). One fsync in flight per file, covering every piece written
   * before it. Readers do not wait for it. Default true.
   */
  syncPieces?: boolean;
  /** Check each restored file against its blob's Content-MD5 when it has one (default true). */
  verifyMd5?: boolean;
  /** Called once when every byte of a restore is present and synced. A throw fails the restore. */
  onRestored?: (ino: number) => void | Promise<void>;
  log?: HydratorLog;
  /** The clock (ms since the epoch) of restore start times and durations; tests inject one. Default Date.now. */
  now?: () => number;
}

export interface RestoreProgress {
  /** Bytes downloaded by the running restore. */
  bytesMoved: number;
  /** Bytes present in the cache file (including what earlier restores left). */
  bytesPresent: number;
  size: number;
  startedMs: number;
}

const MiB = 1024 * 1024;
/** A piece whose body breaks off is resumed from its last byte at most this many times. */
const MAX_RESUMES = 5;
/** Body failures worth resuming: the connection broke, stalled or was refused for load. */
const RESUMABLE = new Set<BlobError['kind']>(['Transient', 'Timeout', 'Throttled']);
/** Stream data is written to the cache file in writes of at most this many bytes. */
const WRITE_BATCH = MiB;

const enum Priority {
  Background = 0,
  ReadAhead = 1,
  Demanded = 2,
}

interface Piece {
  start: number;
  end: number;
  state: 'queued' | 'running' | 'done' | 'dropped';
  priority: Priority;
  /** Has a task on the background lane. */
  enqueued: boolean;
  /** Has a task on the demand lane (whichever task starts first fetches it; the other is a no-op). */
  demanded: boolean;
}

interface Waiter {
  start: number;
  end: number;
  resolve: () => void;
  reject: (err: unknown) => void;
}

interface Restore {
  target: RestoreTarget;
  blobName: string;
  startedMs: number;
  /** Present ranges, sorted and merged. */
  present: ByteRange[];
  /** Bytes not yet written to the cache file. */
  missingBytes: number;
  bytesMoved: number;
  /** Pieces written but not yet synced and recorded in the RangeStore. */
  toRecord: Piece[];
  unrecorded: number;
  recording: boolean;
  /** Queued or running pieces by chunk index (a piece never crosses a chunk boundary). */
  pieces: Map<number, Piece[]>;
  /** Where the sequential stream starts. */
  firstOffset: number;
  waiters: Waiter[];
  ready: boolean;
  finishing: boolean;
  settled: boolean;
  /** Why the restore failed, once it has. */
  error?: FsError;
  /** Cancelled or superseded: written pieces are not recorded any more. */
  cancelled: boolean;
  /** The running record loop. */
  recordLoop?: Promise<void>;
  /** Demanded pieces in flight: while there are any, this file's stream pieces wait (the hold, per file). */
  demandsOutstanding: number;
  /** Stream pieces that came up during a hold: queued again when it ends. */
  held: Piece[];
  holdTimer?: NodeJS.Timeout;
  /** MD5 of the contiguous prefix, when the restore is verified. */
  hasher?: PrefixHasher;
  /** This restore refetches a file whose first copy did not match its digest. */
  refetch: boolean;
  /** The data is discarded on failure (ENOSPC, a mismatch): nothing is kept for the next attempt. */
  discard: boolean;
  /** Settles when a failed restore has recorded what it wrote and rejected its waiters. */
  failed?: Promise<void>;
  abort: AbortController;
  done: Promise<void>;
  resolveDone: () => void;
  rejectDone: (err: unknown) => void;
}

const silentLog: HydratorLog = () => undefined;

export class Hydrator {
  private readonly store: BlobStore;
  private readonly cache: DataCache;
  private readonly ranges: RangeStore;
  private readonly chunkSize: number;
  private readonly firstChunkSize: number;
  private readonly syncPieces: boolean;
  private readonly verifyMd5: boolean;
  readonly verification: VerificationCounts = { verified: 0, unverified: 0, mismatches: 0 };
  private readonly onRestored: (ino: number) => void | Promise<void>;
  private readonly log: HydratorLog;
  /** The sequential stream of every restore (priorities: read-ahead before background). */
  private readonly queue: PQueue;
  /** Pieces a reader waits for. */
  private readonly demandQueue: PQueue;
  private readonly backgroundHoldMs: number;
  private readonly now: () => number;
  private readonly active = new Map<number, Restore>();
  /** ino.generation of restores completed by this process, so a late re-read does not finish them again. */
  private readonly completed = new LRUCache<string, true>({ max: 4096 });

  constructor(options: HydratorOptions) {
    this.store = options.store;
    this.cache = options.cache;
    this.ranges = options.ranges;
    this.chunkSize = Math.max(1, Math.floor(options.chunkSize ?? 16 * MiB));
    this.firstChunkSize = Math.max(1, Math.min(this.chunkSize, Math.floor(options.firstChunkSize ?? 128 * 1024)));
    this.syncPieces = options.syncPieces ?? true;
    this.verifyMd5 = options.verifyMd5 ?? true;
    this.onRestored = options.onRestored ?? (() => undefined);
    this.log = options.log ?? silentLog;
    this.queue = new PQueue({ concurrency: Math.max(1, options.concurrency ?? 8) });
    this.demandQueue = new PQueue({ concurrency: Math.max(1, options.demandConcurrency ?? 4) });
    this.backgroundHoldMs = Math.max(0, options.backgroundHoldMs ?? 500);
    this.now = options.now ?? Date.now;
  }

  /**
   * Resolves once [offset, offset+length) (clipped to the size) is present in the cache file. Starts the file's
   * restore if none is running. Rejects with FsError EIO when the restore fails or is cancelled.
   */
  async ensureRange(inode: RestoreTarget, offset: number, length: number): Promise<void> {
    if (inode.size === 0) return this.restore(inode);
    const start = Math.max(0, offset);
    const end = Math.min(inode.size, offset + Math.max(0, length));
    if (end <= start) return;
    let r = this.current(inode);
    if (!r) {
      const present = normalize(this.ranges.ranges(inode.ino, inode.generation));
      if (covers(present, start, end)) {
        // Nothing to fetch for this read; finish the file in the background unless this process just did.
        const complete = presentBytes(present, inode.size) === inode.size;
        if (!(complete && this.completed.has(keyOf(inode)))) this.start(inode, present, end);
        return;
      }
      r = this.start(inode, present, start);
    }
    if (covers(r.present, start, end)) return;
    const restore = r;
    return new Promise<void>((resolve, reject) => {
      if (restore.settled) {
        const error = restore.error;
        if (error) void restore.failed?.finally(() => reject(error));
        else resolve();
        return;
      }
      restore.waiters.push({ start, end, resolve, reject });
      this.demand(restore, start, end);
    });
  }

  /** Restores the whole file (hsm_restore); resolves after onRestored. */
  async restore(inode: RestoreTarget): Promise<void> {
    const r = this.current(inode);
    if (r) return r.done;
    const present = normalize(this.ranges.ranges(inode.ino, inode.generation));
    if (presentBytes(present, inode.size) === inode.size && this.completed.has(keyOf(inode))) return;
    return this.start(inode, present, 0).done;
  }

  /** Progress of the running restore of an inode (behind hsm_action), else undefined. */
  progress(ino: number): RestoreProgress | undefined {
    const r = this.active.get(ino);
    if (!r) return undefined;
    return {
      bytesMoved: r.bytesMoved,
      bytesPresent: r.target.size - r.missingBytes,
      size: r.target.size,
      startedMs: r.startedMs,
    };
  }

  /** Inodes with a running restore. */
  running(): number[] {
    return [...this.active.keys()];
  }

  /**
   * Cancels the running restore of an inode: its readers get EIO, present ranges are kept. False when nothing
   * was running (or it was already completing).
   */
  cancel(ino: number): boolean {
    const r = this.active.get(ino);
    if (!r || r.finishing) return false;
    this.fail(r, new FsError('EIO', `restore of ino ${ino} (blob ${r.blobName}) was cancelled`), true);
    return true;
  }

  /** Cancels every running restore (shutdown). */
  cancelAll(): void {
    for (const ino of [...this.active.keys()]) this.cancel(ino);
  }

  /** Cancels every running restore and waits until each has recorded what it fetched (shutdown). */
  async cancelAllAndWait(): Promise<void> {
    const restores = [...this.active.values()];
    this.cancelAll();
    await Promise.allSettled(restores.map((r) => r.failed ?? r.done));
  }

  private current(inode: RestoreTarget): Restore | undefined {
    const r = this.active.get(inode.ino);
    if (!r) return undefined;
    const t = r.target;
    if (t.generation === inode.generation && t.etag === inode.etag && t.size === inode.size) return r;
    // The file changed under the restore (new generation or re-import): the old one is useless.
    if (!r.finishing) {
      this.fail(r, new FsError('EIO', `restore of ino ${t.ino} was superseded (the file changed)`), true);
    }
    return undefined;
  }

  private start(inode: RestoreTarget, present: ByteRange[], firstOffset: number, refetch = false): Restore {
    let resolveDone!: () => void;
    let rejectDone!: (err: unknown) => void;
    const done = new Promise<void>((resolve, reject) => {
      resolveDone = resolve;
      rejectDone = reject;
    });
    done.catch(() => undefined);
    const r: Restore = {
      target: {
        ino: inode.ino,
        generation: inode.generation,
        size: inode.size,
        blobName: inode.blobName,
        etag: inode.etag,
        contentMd5: inode.contentMd5 ?? null,
      },
      blobName: inode.blobName ?? '',
      startedMs: this.now(),
      present,
      missingBytes: inode.size - presentBytes(present, inode.size),
      bytesMoved: 0,
      toRecord: [],
      unrecorded: 0,
      recording: false,
      pieces: new Map(),
      firstOffset,
      waiters: [],
      demandsOutstanding: 0,
      held: [],
      ready: false,
      finishing: false,
      settled: false,
      cancelled: false,
      refetch,
      discard: false,
      abort: new AbortController(),
      done,
      resolveDone,
      rejectDone,
    };
    this.active.set(inode.ino, r);
    void this.setup(r);
    return r;
  }

  private async setup(r: Restore): Promise<void> {
    const { ino, generation: gen, size } = r.target;
    try {
      await null; // let the caller register its waiter first
      if (size > 0 && !r.target.blobName) {
        throw new FsError('EIO', `ino ${ino} is released but has no blob to restore from`);
      }
      if (r.present.length > 0) {
        const maxEnd = r.present[r.present.length - 1]![1];
        const fileSize = await this.cache.size(ino, gen);
        if (fileSize === undefined || fileSize < maxEnd) {
          this.log(
            `restore of ino ${ino}: recorded ranges end at ${maxEnd} but the cache file ` +
              `${fileSize === undefined ? 'is missing' : `has ${fileSize} bytes`}; fetching the whole file`,
          );
          this.ranges.clearRanges(ino);
          r.present = [];
          r.missingBytes = size;
        }
      }
      // Cancelled meanwhile (a truncate to 0 dropped this generation): creating its cache file would leak it.
      if (r.settled) return;
      await this.cache.truncate(ino, gen, size);
      if (r.settled) return;
      if (this.verifyMd5 && r.target.contentMd5 && size > 0) {
        r.hasher = new PrefixHasher(this.cache.pathFor(ino, gen));
        this.advanceHash(r);
      }
      this.buildPieces(r);
      r.ready = true;
      for (const w of r.waiters) this.demand(r, w.start, w.end);
      const all: Piece[] = [];
      for (const list of r.pieces.values()) all.push(...list);
      const order = (p: Piece) => (p.start >= r.firstOffset || p.end > r.firstOffset ? p.start : p.start + size);
      all.sort((a, b) => b.priority - a.priority || order(a) - order(b));
      for (const p of all) {
        if (p.priority === Priority.Demanded) this.enqueueDemand(r, p);
        else this.enqueue(r, p);
      }
      if (r.missingBytes === 0) void this.finish(r);
    } catch (err) {
      this.fail(r, err);
    }
  }

  private buildPieces(r: Restore): void {
    const size = r.target.size;
    let cursor = 0;
    const gaps: ByteRange[] = [];
    for (const [s, e] of r.present) {
      if (s > cursor) gaps.push([cursor, s]);
      cursor = Math.max(cursor, e);
    }
    if (cursor < size) gaps.push([cursor, size]);
    for (const [gs, ge] of gaps) {
      for (let s = gs; s < ge; ) {
        const e = Math.min(ge, (Math.floor(s / this.chunkSize) + 1) * this.chunkSize);
        this.addPiece(r, s, e, Priority.Background);
        s = e;
      }
    }
  }

  private addPiece(r: Restore, start: number, end: number, priority: Priority): Piece {
    const p: Piece = { start, end, state: 'queued', priority, enqueued: false, demanded: false };
    const idx = Math.floor(start / this.chunkSize);
    const list = r.pieces.get(idx);
    if (list) list.push(p);
    else r.pieces.set(idx, [p]);
    return p;
  }

  private removePiece(r: Restore, p: Piece): void {
    const idx = Math.floor(p.start / this.chunkSize);
    const list = r.pieces.get(idx);
    if (!list) return;
    const i = list.indexOf(p);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) r.pieces.delete(idx);
  }

  private pieceAt(r: Restore, pos: number): Piece | undefined {
    const list = r.pieces.get(Math.floor(pos / this.chunkSize));
    return list?.find((p) => p.start <= pos && pos < p.end);
  }

  private enqueue(r: Restore, p: Piece): void {
    p.enqueued = true;
    // Errors are handled inside runPiece; the queue's promise only settles. A piece whose file is held gives its
    // slot back to the other files' restores and waits for the hold to end.
    this.queue
      .add(async () => (r.demandsOutstanding > 0 && r.holdTimer ? void r.held.push(p) : this.runPiece(r, p)), { priority: p.priority })
      .catch(() => undefined);
  }

  private enqueueDemand(r: Restore, p: Piece): void {
    if (p.demanded) return;
    p.demanded = true;
    p.priority = Priority.Demanded;
    r.demandsOutstanding++;
    this.holdBackground(r);
    this.demandQueue
      .add(async () => {
        try {
          await this.runPiece(r, p);
        } finally {
          if (--r.demandsOutstanding === 0) this.releaseBackground(r);
        }
      })
      .catch(() => undefined);
  }

  /** Holds this file's stream pieces while its demanded pieces are fetched; a timer bounds each hold. */
  private holdBackground(r: Restore): void {
    if (this.backgroundHoldMs === 0 || r.holdTimer) return;
    r.holdTimer = setTimeout(() => this.releaseBackground(r), this.backgroundHoldMs);
    r.holdTimer.unref();
  }

  private releaseBackground(r: Restore): void {
    if (r.holdTimer) clearTimeout(r.holdTimer);
    r.holdTimer = undefined;
    for (const p of r.held.splice(0)) this.enqueue(r, p);
  }

  /** Makes the queued bytes of [start, end) the next thing fetched. */
  private demand(r: Restore, start: number, end: number): void {
    if (!r.ready || r.settled) return;
    let cursor = start;
    while (cursor < end) {
      const p = this.pieceAt(r, cursor);
      if (!p) {
        // Present (or being recorded): skip to the end of the present range holding cursor.
        const e = presentEnd(r.present, cursor);
        cursor = e > cursor ? e : (Math.floor(cursor / this.chunkSize) + 1) * this.chunkSize;
        continue;
      }
      if (p.state === 'queued') cursor = this.split(r, p, cursor).end;
      else cursor = p.end;
    }
  }

  /** Splits a queued piece so a firstChunkSize head holding `at` is fetched next; returns that head. */
  private split(r: Restore, p: Piece, at: number): Piece {
    const f = this.firstChunkSize;
    if (p.end - p.start <= f) {
      if (r.ready) this.enqueueDemand(r, p);
      else p.priority = Priority.Demanded;
      return p;
    }
    const a = Math.max(p.start, Math.min(Math.floor(at / f) * f, p.end - f));
    const head = this.addPiece(r, a, a + f, Priority.Demanded);
    const tail = a + f < p.end ? this.addPiece(r, a + f, p.end, Math.max(p.priority, Priority.ReadAhead)) : undefined;
    if (a > p.start) {
      p.end = a; // keeps its place in the queue
    } else {
      p.state = 'dropped'; // its queue entry becomes a no-op
      this.removePiece(r, p);
    }
    if (r.ready) {
      this.enqueueDemand(r, head);
      if (tail) this.enqueue(r, tail);
    }
    return head;
  }

  /**
   * Streams [p.start, p.end) of the blob into the cache file. A body that breaks off (reset, truncated, stalled)
   * is resumed from the last byte received, at most MAX_RESUMES times per piece; the error a reader finally gets
   * names the cause and how far the piece got. Returns early (nothing more written) once the restore settled.
   */
  private async fetchPiece(r: Restore, p: Piece): Promise<void> {
    const { ino, generation: gen } = r.target;
    let pos = p.start;
    for (let resumes = 0; ; resumes++) {
      const from = pos;
      let broke: unknown;
      const stream = await this.store.readRange(r.blobName, from, p.end - from, {
        ifMatch: r.target.etag ?? undefined,
        signal: r.abort.signal,
      });
      let batch: Buffer[] = [];
      let batchBytes = 0;
      const flush = async () => {
        if (batchBytes === 0) return;
        const buf = batch.length === 1 ? batch[0]! : Buffer.concat(batch, batchBytes);
        batch = [];
        batchBytes = 0;
        await this.cache.write(ino, gen, buf, buf.length, pos);
        pos += buf.length;
        r.bytesMoved += buf.length;
      };
      try {
        for await (const data of stream) {
          if (r.settled) return;
          const chunk = Buffer.isBuffer(data) ? data : Buffer.from(data as Uint8Array);
          if (pos + batchBytes + chunk.length > p.end) {
            throw new BlobError('Invalid', `blob ${r.blobName} returned more than the ${p.end - p.start} bytes asked for at ${p.start}`);
          }
          batch.push(chunk);
          batchBytes += chunk.length;
          if (batchBytes >= WRITE_BATCH) await flush();
        }
      } catch (err) {
        if (!(err instanceof BlobError && RESUMABLE.has(err.kind)) || r.settled) throw err;
        broke = err;
      } finally {
        stream.destroy();
      }
      if (r.settled) return;
      // What arrived before a break is good (TCP delivered it in order): keep it, ask for the rest.
      await flush();
      if (pos === p.end) return;
      const got = `${pos - p.start} of the ${p.end - p.start} bytes asked for at ${p.start}`;
      if (broke === undefined && pos === from) {
        throw new BlobError('Transient', `blob ${r.blobName} returned ${got} (shorter than its recorded size ${r.target.size})`);
      }
      if (resumes >= MAX_RESUMES) {
        const why = broke === undefined ? 'the body ended early' : describeError(broke);
        throw new BlobError(
          broke instanceof BlobError ? broke.kind : 'Transient',
          `read ${r.blobName}: ${why}; got ${got} after resuming ${resumes} times`,
          { cause: broke },
        );
      }
      this.log(
        `read ${r.blobName}: ${broke === undefined ? 'the body ended early' : describeError(broke)} at ${pos}; ` +
          `resuming from there (${resumes + 1} of ${MAX_RESUMES})`,
      );
    }
  }

  private async runPiece(r: Restore, p: Piece): Promise<void> {
    if (p.state !== 'queued' || r.settled) return;
    p.state = 'running';
    try {
      await this.fetchPiece(r, p);
      if (r.settled) return;
      // Readers are served from the page cache at once; the range is recorded after the next fsync.
      p.state = 'done';
      this.removePiece(r, p);
      r.present = addRange(r.present, p.start, p.end);
      r.missingBytes -= p.end - p.start;
      this.advanceHash(r);
      this.wake(r);
      r.toRecord.push(p);
      r.unrecorded++;
      if (!r.recording) r.recordLoop = this.record(r);
    } catch (err) {
      this.fail(r, err);
    }
  }

  /**
   * Syncs the cache file and records the written pieces, one fsync at a time per file; finishes when done. A
   * failed (not cancelled) restore still records what it wrote before its readers see the error.
   */
  private async record(r: Restore): Promise<void> {
    const { ino, generation: gen } = r.target;
    r.recording = true;
    try {
      while (r.toRecord.length > 0 && !r.cancelled) {
        const batch = r.toRecord;
        r.toRecord = [];
        if (this.syncPieces) await this.cache.fsync(ino, gen);
        if (r.cancelled) return;
        for (const p of batch) this.ranges.addRange(ino, gen, [p.start, p.end]);
        r.unrecorded -= batch.length;
      }
    } catch (err) {
      this.fail(r, err);
      return;
    } finally {
      r.recording = false;
    }
    if (r.missingBytes === 0 && r.unrecorded === 0) await this.finish(r);
  }

  private wake(r: Restore): void {
    if (r.waiters.length === 0) return;
    const still: Waiter[] = [];
    for (const w of r.waiters) {
      if (covers(r.present, w.start, w.end)) w.resolve();
      else still.push(w);
    }
    r.waiters = still;
  }

  /** Hashes the contiguous prefix present so far (in the background; finish() waits for the rest). */
  private advanceHash(r: Restore): void {
    const first = r.present[0];
    if (r.hasher && first && first[0] === 0 && first[1] > r.hasher.position) void r.hasher.advance(first[1]);
  }

  /**
   * The whole file is present: checks it against the blob's digest. True when it matches or is not checked; false
   * after a first mismatch (the data was discarded and a refetch started); throws DigestMismatchError on a second.
   */
  private async verify(r: Restore): Promise<boolean> {
    const { ino, generation: gen, size } = r.target;
    const expected = r.target.contentMd5;
    if (!r.hasher || !expected) {
      if (size > 0) this.verification.unverified++;
      return true;
    }
    const actual = await r.hasher.digest(size);
    if (actual === expected) {
      this.verification.verified++;
      return true;
    }
    this.verification.mismatches++;
    const mismatch = new DigestMismatchError(r.blobName, expected, actual, `restore of ino ${ino}`);
    // Bad bytes are never kept: forget the ranges first (a crash then refetches), then give the space back.
    this.ranges.clearRanges(ino);
    await this.cache.truncate(ino, gen, 0);
    r.missingBytes = size;
    r.present = [];
    if (r.refetch) {
      this.log(`${mismatch.message} again after a refetch; the file stays released`);
      r.discard = true;
      throw mismatch;
    }
    this.log(`${mismatch.message}; the data was discarded, fetching the whole file again`);
    r.settled = true;
    r.cancelled = true;
    if (r.holdTimer) clearTimeout(r.holdTimer);
    r.held = [];
    if (this.active.get(ino) === r) this.active.delete(ino);
    const again = this.start(r.target, [], 0, true);
    again.waiters = r.waiters;
    r.waiters = [];
    again.done.then(r.resolveDone, r.rejectDone);
    return false;
  }

  private async finish(r: Restore): Promise<void> {
    if (r.finishing || r.settled) return;
    r.finishing = true;
    const { ino, generation: gen, size } = r.target;
    try {
      await this.cache.fsync(ino, gen);
      if (!(await this.verify(r))) return;
      await this.onRestored(ino);
    } catch (err) {
      r.finishing = false;
      this.fail(r, err);
      return;
    }
    r.settled = true;
    if (this.active.get(ino) === r) this.active.delete(ino);
    this.completed.set(keyOf(r.target), true);
    this.wake(r);
    const ms = this.now() - r.startedMs;
    this.log(
      `restored ino ${ino} from ${r.blobName}: ${r.bytesMoved} bytes fetched of ${size} in ${ms} ms` +
        (ms > 0 && r.bytesMoved > 0 ? ` (${(r.bytesMoved / MiB / (ms / 1000)).toFixed(1)} MiB/s)` : ''),
    );
    r.resolveDone();
  }

  private fail(r: Restore, err: unknown, cancelled = false): void {
    if (r.settled) return;
    r.settled = true;
    r.cancelled = cancelled;
    r.abort.abort(err);
    const { ino, generation: gen } = r.target;
    // A full cache disk: keeping the partial data would leave the next (smaller) file no room either.
    r.discard ||= errnoCodeOf(err) === 'ENOSPC';
    if (this.active.get(ino) === r) this.active.delete(ino);
    let error: FsError;
    if (err instanceof FsError && err.code === 'EIO') {
      error = err;
    } else {
      const why =
        err instanceof BlobError && err.kind === 'PreconditionFailed'
          ? `blob ${r.blobName} changed since it was imported (etag ${r.target.etag} no longer matches); re-import it`
          : describeError(err);
      error = new FsError(readErrnoOf(err), `restore of ino ${ino} from blob ${r.blobName} failed: ${why}`, { cause: err });
    }
    const present = r.target.size - r.missingBytes;
    this.log(
      `${error.message} (${present} of ${r.target.size} bytes present, ` +
        `${r.discard && present > 0 ? 'discarded to free the space' : 'kept for the next attempt'})`,
    );
    r.error = error;
    r.pieces.clear();
    if (r.holdTimer) clearTimeout(r.holdTimer);
    r.held = [];
    const flushed = r.recordLoop ?? Promise.resolve();
    r.failed = flushed
      .catch(() => undefined)
      .then(async () => {
        if (r.discard) {
          this.ranges.clearRanges(ino);
          await this.cache.truncate(ino, gen, 0).catch(() => undefined);
        }
      })
      .then(() => {
        for (const w of r.waiters) w.reject(error);
        r.waiters = [];
        r.rejectDone(error);
      });
  }
}

function keyOf(t: RestoreTarget): string {
  return `${t.ino}.${t.generation}`;
}

/** Sorts and merges ranges (the store's are merged already; this is cheap insurance). */
function normalize(ranges: ByteRange[]): ByteRange[] {
  const sorted = ranges.filter(([s, e]) => e > s).sort((a, b) => a[0] - b[0]);
  const out: ByteRange[] = [];
  for (const [s, e] of sorted) {
    const last = out[out.length - 1];
    if (last && s <= last[1]) last[1] = Math.max(last[1], e);
    else out.push([s, e]);
  }
  return out;
}

/** Index of the last range starting at or before pos, or -1. */
function floorIndex(ranges: ByteRange[], pos: number): number {
  let lo = 0;
  let hi = ranges.length - 1;
  let ans = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (ranges[mid]![0] <= pos) {
      ans = mid;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  return ans;
}

function covers(ranges: ByteRange[], start: number, end: number): boolean {
  if (end <= start) return true;
  const i = floorIndex(ranges, start);
  return i >= 0 && ranges[i]![1] >= end;
}

/** End of the present range holding pos, or pos when none does. */
function presentEnd(ranges: ByteRange[], pos: number): number {
  const i = floorIndex(ranges, pos);
  return i >= 0 && ranges[i]![1] > pos ? ranges[i]![1] : pos;
}

function presentBytes(ranges: ByteRange[], size: number): number {
  let n = 0;
  for (const [s, e] of ranges) n += Math.max(0, Math.min(e, size) - Math.max(0, s));
  return n;
}

/** Adds [start, end) to a sorted merged list, returning the new list. */
function addRange(ranges: ByteRange[], start: number, end: number): ByteRange[] {
  const i = floorIndex(ranges, start);
  const prev = i >= 0 ? ranges[i]! : undefined;
  // Fast path for the sequential stream: extends the range just before it.
  if (prev && prev[1] >= start && (i + 1 >= ranges.length || ranges[i + 1]![0] > end)) {
    prev[1] = Math.max(prev[1], end);
    return ranges;
  }
  return normalize([...ranges, [start, end]]);
}
