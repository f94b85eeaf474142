// Local cache files holding file data, keyed by inode number and generation (never by path: a rename moves no
// data, and a bumped generation never reuses stale bytes). Layout: <dir>/data/<ino & 0xff as 2 hex>/<ino>.<gen>.
//
// Writes leave a reserve free on the cache's filesystem (ENOSPC before the disk is full): the metadata store
// lives in the same directory, and an unlink must still be able to record itself to free space again. A write that
// finds too little room while cache files are being deleted (drop) waits for those deletes and measures again:
// the room they free belongs to the requests that came after them.
//
// Open file descriptors live in an LRU. Callers that do their own I/O on a raw fd (FUSE reads straight into the
// kernel's buffer) must hold a lease (withFd/acquire) across the await: an fd evicted from the LRU while leased
// is closed only when its last lease ends, so its number is never reused under a running read.
//
// Another writer may write a cache file itself (the libfuse3 binding's direct writes, through its own dup of the
// descriptor): lendForWrites gives it the descriptor and a budget of bytes taken from the room now (so the reserve
// stays free), and it reports each write back (noteLentWrite, lentWriteError) for the accounting; what it did not
// write goes back to the room when the lending ends. Budget lent and not yet spent is taken from every new
// measurement of the room too: the free space found then does not know those bytes may still be written.
import nodeFs from 'node:fs';
import { join } from 'node:path';
import { LRUCache } from 'lru-cache';
import { FsError, errnoCodeOfNumber } from '../errors.js';

/** A budget of bytes lent for direct writes (lendForWrites), as the writer uses it. */
export interface Lending {
  readonly budget: number;
  /** The writer spent `bytes` of it: a write of that size was made through the descriptor (written or not). */
  spend(bytes: number): void;
  /** The lending is over: what was not spent goes back to the room. Once; later calls do nothing. */
  end(): void;
}

/** The subset of node:fs the cache uses; tests pass a wrapper to inject faults (ENOSPC, EIO). */
export type CacheFs = typeof nodeFs;

export interface DataCacheOptions {
  /** State/cache directory; cache files live under <dir>/data/. */
  dir: string;
  /** Open file descriptors kept in the LRU (default 256). */
  maxOpenFiles?: number;
  /** Bytes writes leave free on the filesystem (default 5 % of its size, at most 64 MiB); 0 = none. */
  reserveBytes?: number;
  fs?: CacheFs;
  /** The clock of free-space measurements, ms (Date.now; tests inject one). */
  now?: () => number;
}

/** One cache file found by scan(). */
export interface CacheFile {
  ino: number;
  generation: number;
  path: string;
  /** Logical size (st_size). */
  size: number;
  /** Allocated bytes on disk (st_blocks * 512). */
  allocated: number;
}

export interface FdOptions {
  /** Create the cache file (sparse, empty) when it does not exist. Default false. */
  create?: boolean;
}

/** A leased descriptor: valid until release() is called. */
export interface FdLease {
  readonly fd: number;
  release(): void;
}

interface Entry {
  fd: number;
  refs: number;
  /** Evicted or dropped: close when refs reaches 0. */
  retired: boolean;
  closed: boolean;
  /** Its file was deleted (drop): an operation still finishing on it changes no accounting. */
  dropped: boolean;
}

interface Usage {
  /** Approximate allocated bytes on disk. */
  allocated: number;
  /** Logical size as far as this process knows. */
  size: number;
}

const FILE_NAME = /^(\d+)\.(\d+)$/;
const TEMP_NAME = /(^\.tmp-|\.tmp$|\.tmp\.|\.partial$)/;
const BLOCK = 4096;
/**
 * Writes up to this size are made on the calling thread: copying 64 KiB into the page cache takes about as long as
 * the trip to a thread-pool thread and back, which wakes two threads (the first WRITE of each small file rsync -a
 * sends; larger writes and a file's later writes go to the pool or the binding's direct writes).
 */
const SYNC_WRITE_MAX = 64 * 1024;

/**
 * Turns an fs error into the error callers see. A full disk (ENOSPC, or EDQUOT) becomes FsError ENOSPC naming the
 * cache directory and what to do; other errors pass through unchanged (errnoCodeOf maps their code).
 */
export function translateCacheError(err: unknown, dir: string, what: string): unknown {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new FsError(
      'ENOSPC',
      `the cache directory ${dir} is full (${what}): lower --cache-size so eviction keeps more room, or free space ` +
        `on its filesystem`,
      { cause: err },
    );
  }
  return err;
}

export class DataCache {
  readonly dir: string;
  readonly dataDir: string;
  private readonly fs: CacheFs;
  private readonly fds: LRUCache<string, Entry>;
  private readonly opening = new Map<string, Promise<Entry>>();
  private readonly usage = new Map<string, Usage>();
  private readonly shards = new Set<string>();
  /** Deletes of cache files under way (drop): a write short of room waits for them (ensureRoom). */
  private readonly deletes = new Set<Promise<void>>();
  private used = 0;
  private reserve: number | undefined;
  /** Free bytes on the cache filesystem as last measured (the epoch-th measurement), minus what was taken since. */
  private room = { free: Infinity, measuredMs: 0, epoch: 0 };
  /** Bytes lent for direct writes and not spent yet (lendForWrites): taken from each new measurement of the room. */
  private lentUnspent = 0;
  private readonly now: () => number;

  constructor(options: DataCacheOptions) {
    this.dir = options.dir;
    this.reserve = options.reserveBytes;
    this.dataDir = join(options.dir, 'data');
    this.fs = options.fs ?? nodeFs;
    this.now = options.now ?? Date.now;
    this.fds = new LRUCache<string, Entry>({
      max: Math.max(1, options.maxOpenFiles ?? 256),
      dispose: (entry) => this.retire(entry),
    });
  }

  /** Path of the cache file for one inode generation. */
  pathFor(ino: number, gen: number): string {
    return join(this.dataDir, shardOf(ino), `${ino}.${gen}`);
  }

  /** Approximate bytes allocated on disk by cache files (scan at startup, then tracked). */
  bytesUsed(): number {
    return this.used;
  }

  /** Number of descriptors currently open (for tests and stats). */
  openFiles(): number {
    return this.fds.size;
  }

  /**
   * Lists the cache files present (for reconciliation by the caller), deletes temporaries, and resets the bytes
   * accounting from st_blocks. Call once at startup, before any I/O.
   */
  async scan(): Promise<CacheFile[]> {
    const fsp = this.fs.promises;
    await fsp.mkdir(this.dataDir, { recursive: true, mode: 0o700 });
    const files: CacheFile[] = [];
    this.usage.clear();
    this.used = 0;
    for (const shard of await fsp.readdir(this.dataDir)) {
      const shardPath = join(this.dataDir, shard);
      if (TEMP_NAME.test(shard)) {
        await fsp.rm(shardPath, { recursive: true, force: true });
        continue;
      }
      let names: string[];
      try {
        names = await fsp.readdir(shardPath);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOTDIR') continue;
        throw err;
      }
      this.shards.add(shardPath);
      for (const name of names) {
        const path = join(shardPath, name);
        if (TEMP_NAME.test(name)) {
          await fsp.rm(path, { recursive: true, force: true });
          continue;
        }
        const m = FILE_NAME.exec(name);
        if (!m) continue;
        const st = await fsp.stat(path);
        if (!st.isFile()) continue;
        const ino = Number(m[1]);
        const generation = Number(m[2]);
        if (shardOf(ino) !== shard) continue;
        const allocated = st.blocks * 512;
        files.push({ ino, generation, path, size: st.size, allocated });
        this.setUsage(key(ino, generation), { allocated, size: st.size });
      }
    }
    files.sort((a, b) => a.ino - b.ino || a.generation - b.generation);
    return files;
  }

  /** Whether the cache file exists. */
  async exists(ino: number, gen: number): Promise<boolean> {
    if (this.fds.has(key(ino, gen))) return true;
    try {
      await this.fs.promises.access(this.pathFor(ino, gen));
      return true;
    } catch {
      return false;
    }
  }

  /** Logical size of the cache file (st_size), or undefined when it does not exist. */
  async size(ino: number, gen: number): Promise<number | undefined> {
    try {
      const st = await this.fs.promises.stat(this.pathFor(ino, gen));
      return st.size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  /**
   * The raw descriptor of a cache file (O_RDWR). It stays valid only while it is in the LRU: across an await,
   * hold a lease with withFd() or acquire() instead. A missing file without `create` is FsError EIO.
   */
  async fd(ino: number, gen: number, options: FdOptions = {}): Promise<number> {
    const lease = await this.acquire(ino, gen, options);
    lease.release();
    return lease.fd;
  }

  /** A leased descriptor: not closed (even if evicted or dropped) until release(). */
  async acquire(ino: number, gen: number, options: FdOptions = {}): Promise<FdLease> {
    const { entry, release } = await this.leaseEntry(ino, gen, options);
    return { fd: entry.fd, release };
  }

  /** Runs fn with a leased descriptor. */
  async withFd<T>(ino: number, gen: number, options: FdOptions, fn: (fd: number) => Promise<T>): Promise<T> {
    return this.withEntry(ino, gen, options, (entry) => fn(entry.fd));
  }

  /** Runs fn with a leased entry (its `dropped` says whether a drop deleted the file meanwhile). */
  private async withEntry<T>(ino: number, gen: number, options: FdOptions, fn: (entry: Entry) => Promise<T>): Promise<T> {
    const { entry, release } = await this.leaseEntry(ino, gen, options);
    try {
      return await fn(entry);
    } finally {
      release();
    }
  }

  private async leaseEntry(ino: number, gen: number, options: FdOptions): Promise<{ entry: Entry; release: () => void }> {
    let entry = await this.entry(ino, gen, options.create ?? false);
    // A drop (or an LRU eviction) between the open and this continuation closed it (no lease held it yet): its
    // number may already belong to another file. Open again (a dropped file is then missing: EIO).
    while (entry.closed) entry = await this.entry(ino, gen, options.create ?? false);
    entry.refs++;
    let released = false;
    return {
      entry,
      release: () => {
        if (released) return;
        released = true;
        entry.refs--;
        if (entry.retired && entry.refs === 0) this.closeEntry(entry);
      },
    };
  }

  /**
   * Reads up to `length` bytes at `position` straight into buf[bufOffset...]. Returns the bytes read (short only
   * at end of file).
   */
  async read(ino: number, gen: number, buf: Buffer, length: number, position: number, bufOffset = 0): Promise<number> {
    return this.withFd(ino, gen, {}, async (fd) => {
      let done = 0;
      while (done < length) {
        const n = await this.op<number>('read', ino, (cb) =>
          this.fs.read(fd, buf, bufOffset + done, length - done, position + done, cb),
        );
        if (n === 0) break;
        done += n;
      }
      return done;
    });
  }

  /**
   * Writes buf[bufOffset, bufOffset+length) at `position` (all of it), creating the cache file if `create`.
   * A full disk is FsError ENOSPC.
   */
  async write(
    ino: number,
    gen: number,
    buf: Buffer,
    length: number,
    position: number,
    options: FdOptions & { bufOffset?: number } = {},
  ): Promise<number> {
    const bufOffset = options.bufOffset ?? 0;
    await this.ensureRoom(ino, length);
    return this.withEntry(ino, gen, options, async (entry) => {
      let done = 0;
      while (done < length) {
        const n = length <= SYNC_WRITE_MAX
          ? this.writeHere(entry.fd, ino, buf, bufOffset + done, length - done, position + done)
          : await this.op<number>('write', ino, (cb) => this.fs.write(entry.fd, buf, bufOffset + done, length - done, position + done, cb));
        if (n === 0) throw new FsError('EIO', `write to the cache file of ino ${ino} made no progress`);
        done += n;
      }
      // A drop while it ran deleted the file and its accounting: counting it now would leave ghost bytes.
      if (!entry.dropped) this.noteWrite(key(ino, gen), position, length);
      return done;
    });
  }

  /**
   * Lends the descriptor of an existing cache file to a writer outside this process's I/O: `take(fd, lending)` runs
   * while the descriptor is leased and must be done with the raw number when it returns (dup it), answering whether
   * it took it. The lending's budget, at most `maxBytes`, is taken from the room as if written (none left beyond the
   * reserve: take is not called, and writes go through write(), which reports the full disk); given back when not
   * taken. The writer spends it write by write and ends the lending, which gives back what it did not spend.
   */
  async lendForWrites(ino: number, gen: number, maxBytes: number, take: (fd: number, lending: Lending) => boolean): Promise<boolean> {
    return this.withEntry(ino, gen, {}, async (entry) => {
      const { taken: budget, epoch } = await this.takeRoom(maxBytes);
      // Taken from no measurement (no reserve, or statfs failed): nothing to keep count of or give back.
      let unspent = epoch === undefined ? 0 : budget;
      this.lentUnspent += unspent;
      const lending: Lending = {
        budget,
        spend: (bytes) => {
          const spent = Math.min(unspent, Math.max(0, bytes));
          unspent -= spent;
          this.lentUnspent -= spent;
        },
        end: () => {
          // Before or after a new measurement alike: each one took the unspent budget from the free space it found.
          this.lentUnspent -= unspent;
          this.room.free += unspent;
          unspent = 0;
        },
      };
      if (budget > 0 && !entry.dropped && take(entry.fd, lending)) return true;
      lending.end();
      return false;
    });
  }

  /** A write done through a lent descriptor (lendForWrites): counted as write() counts its own (not after a drop). */
  noteLentWrite(ino: number, gen: number, position: number, length: number): void {
    if (this.usage.has(key(ino, gen))) this.noteWrite(key(ino, gen), position, length);
  }

  /** The error a write through a lent descriptor failed with (its errno), as write() would have thrown it. */
  lentWriteError(ino: number, errno: number): unknown {
    const code = errnoCodeOfNumber(errno);
    const err = Object.assign(new Error(`write to the cache file of ino ${ino} failed: ${code}`), { code, errno: -errno });
    return translateCacheError(err, this.dir, `write of ino ${ino}`);
  }

  /**
   * The empty cache file of a new file: one open with O_CREAT|O_TRUNC, no ftruncate or fstat, made on the calling
   * thread, as the metadata commit of the create is. A trip to the thread pool and back cost more than the open
   * itself (rsync -a of 2,000 small files: a create took 390 µs that way, 270 µs like this, on 2 loaded cores). An
   * already open descriptor is truncated instead.
   */
  async createEmpty(ino: number, gen: number): Promise<void> {
    const k = key(ino, gen);
    if (this.fds.has(k) || this.opening.has(k)) return this.truncate(ino, gen, 0);
    const { O_RDWR, O_CREAT, O_TRUNC } = this.fs.constants;
    this.ensureShard(ino);
    let fd: number;
    try {
      fd = this.fs.openSync(this.pathFor(ino, gen), O_RDWR | O_CREAT | O_TRUNC, 0o600);
    } catch (err) {
      throw translateCacheError(err, this.dir, `creating the cache file of ino ${ino}`);
    }
    this.fds.set(k, { fd, refs: 0, retired: false, closed: false, dropped: false });
    this.setUsage(k, { allocated: 0, size: 0 });
  }

  /** Sets the cache file's size (creating it if missing). */
  async truncate(ino: number, gen: number, size: number): Promise<void> {
    await this.withEntry(ino, gen, { create: true }, async (entry) => {
      await this.op<void>('truncate', ino, (cb) => this.fs.ftruncate(entry.fd, size, cb));
      await this.refresh(ino, gen, entry);
    });
  }

  /** fsync of the cache file; refreshes its bytes accounting from st_blocks. */
  async fsync(ino: number, gen: number): Promise<void> {
    await this.withEntry(ino, gen, {}, async (entry) => {
      await this.op<void>('fsync', ino, (cb) => this.fs.fsync(entry.fd, cb));
      await this.refresh(ino, gen, entry);
    });
  }

  /** Closes the descriptor (once no lease holds it) and deletes the cache file. Missing files are fine. */
  async drop(ino: number, gen: number): Promise<void> {
    const deleting = this.deleteFile(ino, gen);
    this.deletes.add(deleting);
    try {
      await deleting;
    } finally {
      this.deletes.delete(deleting);
    }
  }

  /** Resolves once the deletes under way now (drop) are done, failed ones too. */
  async deletesDone(): Promise<void> {
    await Promise.allSettled(this.deletes);
  }

  private async deleteFile(ino: number, gen: number): Promise<void> {
    const k = key(ino, gen);
    const pending = this.opening.get(k);
    if (pending) await pending.catch(() => undefined);
    const entry = this.fds.peek(k);
    if (entry) entry.dropped = true;
    this.fds.delete(k);
    try {
      await this.fs.promises.unlink(this.pathFor(ino, gen));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    this.setUsage(k, undefined);
  }

  /** Closes every descriptor (leased ones when their lease ends). */
  close(): void {
    this.fds.clear();
  }

  /**
   * Closed on the calling thread: no lease holds it (no I/O runs on it), and a close of a regular file is one short
   * system call, where a trip to the thread pool woke a pool thread and then this one (rsync -a into a mount evicts
   * one descriptor per new file once 256 are open).
   */
  private closeEntry(entry: Entry): void {
    if (entry.closed) return;
    entry.closed = true;
    try {
      this.fs.closeSync(entry.fd);
    } catch {
      // EIO from a close reports nothing a later read of the file would not (the descriptor is gone either way).
    }
  }

  private retire(entry: Entry): void {
    entry.retired = true;
    if (entry.refs === 0) this.closeEntry(entry);
  }

  private async entry(ino: number, gen: number, create: boolean): Promise<Entry> {
    const k = key(ino, gen);
    const hit = this.fds.get(k);
    if (hit) return hit;
    let pending = this.opening.get(k);
    if (!pending) {
      pending = this.open(ino, gen, create).finally(() => this.opening.delete(k));
      this.opening.set(k, pending);
      return pending;
    }
    try {
      return await pending;
    } catch (err) {
      // The other opener did not create; retry with our own flags.
      if (create) return this.entry(ino, gen, create);
      throw err;
    }
  }

  private async open(ino: number, gen: number, create: boolean): Promise<Entry> {
    const path = this.pathFor(ino, gen);
    const { O_RDWR, O_CREAT } = this.fs.constants;
    if (create) this.ensureShard(ino);
    const flags = create ? O_RDWR | O_CREAT : O_RDWR;
    let fd: number;
    try {
      fd = await new Promise<number>((resolve, reject) =>
        this.fs.open(path, flags, 0o600, (err, fd) => (err ? reject(err) : resolve(fd))),
      );
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' && !create) {
        throw new FsError('EIO', `the cache data of ino ${ino} (generation ${gen}) is missing: ${path}`, {
          cause: err,
        });
      }
      throw translateCacheError(err, this.dir, `creating the cache file of ino ${ino}`);
    }
    const entry: Entry = { fd, refs: 0, retired: false, closed: false, dropped: false };
    this.fds.set(key(ino, gen), entry);
    if (create && !this.usage.has(key(ino, gen))) this.setUsage(key(ino, gen), { allocated: 0, size: 0 });
    return entry;
  }

  /** The shard directory of an inode's cache files (made once per shard and process: 256 at most). */
  private ensureShard(ino: number): void {
    const shardPath = join(this.dataDir, shardOf(ino));
    if (this.shards.has(shardPath)) return;
    try {
      this.fs.mkdirSync(shardPath, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw translateCacheError(err, this.dir, 'creating a cache directory');
    }
    this.shards.add(shardPath);
  }

  /** A small write on the calling thread (see SYNC_WRITE_MAX). */
  private writeHere(fd: number, ino: number, buf: Buffer, offset: number, length: number, position: number): number {
    try {
      return this.fs.writeSync(fd, buf, offset, length, position);
    } catch (err) {
      throw translateCacheError(err, this.dir, `write of ino ${ino}`);
    }
  }

  private op<T>(what: string, ino: number, call: (cb: (err: NodeJS.ErrnoException | null, v: T) => void) => void) {
    return new Promise<T>((resolve, reject) =>
      call((err, v) => (err ? reject(translateCacheError(err, this.dir, `${what} of ino ${ino}`)) : resolve(v))),
    );
  }

  /** Exact accounting from fstat (after fsync/truncate). */
  private async refresh(ino: number, gen: number, entry: Entry): Promise<void> {
    const st = await new Promise<nodeFs.Stats>((resolve, reject) =>
      this.fs.fstat(entry.fd, (err, st) => (err ? reject(err) : resolve(st))),
    );
    if (!entry.dropped) this.setUsage(key(ino, gen), { allocated: st.blocks * 512, size: st.size });
  }

  /**
   * ENOSPC for a write that would eat into the reserve (free space measured at most once a second, or near it).
   * Short of room while cache files are being deleted, it waits for those deletes and measures again first.
   */
  private async ensureRoom(ino: number, length: number): Promise<void> {
    let { taken, epoch } = await this.takeRoom(length);
    if (taken < length && this.deletes.size > 0) {
      this.giveRoom(taken, epoch);
      await this.deletesDone();
      ({ taken, epoch } = await this.takeRoom(length)); // measured again: the room is short
    }
    if (taken < length) {
      this.giveRoom(taken, epoch);
      const full = Object.assign(new Error(`less than ${this.reserve} bytes would be left free`), { code: 'ENOSPC' });
      throw translateCacheError(full, this.dir, `write of ino ${ino}`);
    }
  }

  /**
   * Takes up to `length` bytes from the room left above the reserve (re-measured every second, and when it gets
   * low); answers what it took, and from which measurement (giveRoom). All of it, from none, without a reserve or
   * when the filesystem cannot say (the write itself then reports a full disk).
   */
  private async takeRoom(length: number): Promise<{ taken: number; epoch: number | undefined }> {
    if (this.reserve === 0) return { taken: length, epoch: undefined };
    const now = this.now();
    if (now - this.room.measuredMs > 1000 || this.room.free - length < 2 * (this.reserve ?? 0)) {
      try {
        const st = await this.fs.promises.statfs(this.dir);
        this.room = { free: st.bavail * st.bsize - this.lentUnspent, measuredMs: now, epoch: this.room.epoch + 1 };
        this.reserve ??= Math.min(64 * 1024 * 1024, Math.floor(st.blocks * st.bsize * 0.05));
      } catch {
        return { taken: length, epoch: undefined };
      }
    }
    const taken = Math.max(0, Math.min(length, this.room.free - (this.reserve ?? 0)));
    this.room.free -= taken;
    return { taken, epoch: this.room.epoch };
  }

  /**
   * Gives back bytes takeRoom took from measurement `epoch` and nothing used. After a new measurement they are
   * not added: the free space it found already counts every byte that was not written.
   */
  private giveRoom(bytes: number, epoch: number | undefined): void {
    if (epoch !== undefined && epoch === this.room.epoch) this.room.free += bytes;
  }

  /** Approximate accounting after a write: add what it may allocate, capped at the file's rounded size. */
  private noteWrite(k: string, position: number, length: number): void {
    const cur = this.usage.get(k) ?? { allocated: 0, size: 0 };
    const size = Math.max(cur.size, position + length);
    const cap = Math.ceil(size / BLOCK) * BLOCK;
    this.setUsage(k, { allocated: Math.min(cap, cur.allocated + Math.ceil(length / BLOCK) * BLOCK), size });
  }

  private setUsage(k: string, u: Usage | undefined): void {
    this.used -= this.usage.get(k)?.allocated ?? 0;
    if (u) {
      this.usage.set(k, u);
      this.used += u.allocated;
    } else {
      this.usage.delete(k);
    }
  }
}

function key(ino: number, gen: number): string {
  return `${ino}.${gen}`;
}

function shardOf(ino: number): string {
  return (ino & 0xff).toString(16).padStart(2, '0');
}
