// The TypeScript side of the libfuse3 low-level binding (src/fuse/native/blobhsm_fuse.c): loads the addon, gives
// its requests types, calls one async handler per operation and answers each request exactly once (an error
// becomes an errno through the handler's errnoOf). Owns the session's lifetime: mount, unmount (fusermount3 -u, or
// -uz to detach lazily), the end of the session and its release once every request was answered. Knows nothing of
// blobhsm's Vfs. Direct writes (DirectWrites): a handler may let the addon write a handle's WRITEs into a file
// descriptor itself; the handler then hears of each one (written). The addon answers those written in full; the
// handler's answer goes back for a short or failed one.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { constants } from 'node:os';
import { fileURLToPath } from 'node:url';
import type { StatFs } from '../vfs/vfs.js';

const require = createRequire(import.meta.url);

/**
 * Where node-gyp leaves the addon (bin/build-addon.sh), seen from src/fuse (tests) or dist/src/fuse (the CLI);
 * BLOBHSM_FUSE3_ADDON points elsewhere (a test hides the addon that way).
 */
export function addonPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.BLOBHSM_FUSE3_ADDON) return env.BLOBHSM_FUSE3_ADDON;
  const built = 'native/build/Release/blobhsm_fuse.node';
  const beside = fileURLToPath(new URL(built, import.meta.url));
  return existsSync(beside) ? beside : fileURLToPath(new URL(`../../../src/fuse/${built}`, import.meta.url));
}

type Req = object;

interface Native {
  mount(mountpoint: string, args: string[], tuning: Float64Array, dispatch: (op: number, req: Req | undefined, n: Float64Array, name?: string, name2?: string, data?: Buffer) => void, servedXattrs: readonly string[] | null): object;
  closeSession(session: object): number;
  notifyInvalInode(session: object, ino: number, offset: number, length: number): Promise<number>;
  notifyInvalEntry(session: object, parent: number, name: string): Promise<number>;
  notifyDelete(session: object, parent: number, child: number, name: string): Promise<number>;
  replyErr(req: Req, errno: number): void;
  replyEntry(req: Req, attr: Float64Array, entryTimeout: number, attrTimeout: number): void;
  replyCreate(req: Req, attr: Float64Array, entryTimeout: number, attrTimeout: number, fh: number, openFlags: number): void;
  replyAttr(req: Req, attr: Float64Array, attrTimeout: number): void;
  replyOpen(req: Req, fh: number, openFlags: number): void;
  replyWrite(req: Req, count: number): void;
  replyXattr(req: Req, size: number): void;
  replyBuf(req: Req, data: Buffer, length: number): void;
  replyReadlink(req: Req, target: string): void;
  replyStatfs(req: Req, st: Float64Array): void;
  replyDir(req: Req, size: number, plus: boolean, names: string[], attrs: Float64Array, firstOffset: number, entryTimeout: number, attrTimeout: number): number;
  peerCred(fd: number): [pid: number, uid: number, gid: number];
  /** Frees a WRITE's data now (detaches it: empty from then on) instead of at a garbage collection. */
  releaseBuffer(data: Buffer): void;
  grantDirectWrite(session: object, fh: number, fd: number, token: number, budget: number): void;
  revokeDirectWrite(session: object, fh: number): number;
}

/** Functions this TypeScript calls that an addon built from an older blobhsm_fuse.c lacks (newest last). */
const ADDON_FUNCTIONS = ['releaseBuffer', 'grantDirectWrite', 'revokeDirectWrite'] as const;

let loaded: Native | Error | undefined;

/** The addon, or the reason it cannot be used (not built, libfuse3 missing). */
export function loadAddon(env: NodeJS.ProcessEnv = process.env): Native | Error {
  if (loaded) return loaded;
  const path = addonPath(env);
  if (!existsSync(path)) return (loaded = new Error(`the libfuse3 binding is not built (${path} is missing; run npm run setup)`));
  try {
    const addon = require(path) as Native;
    // Built from an older blobhsm_fuse.c (a rebase without a rebuild): its WRITEs would be answered twice here.
    const missing = ADDON_FUNCTIONS.find((f) => typeof addon[f] !== 'function');
    loaded = missing === undefined ? addon : new Error(`the libfuse3 binding at ${path} is older than this blobhsm (it has no ${missing}); rebuild it: bash bin/build-addon.sh`);
  } catch (err) {
    loaded = new Error(`the libfuse3 binding at ${path} cannot be loaded: ${(err as Error).message}`, { cause: err });
  }
  return loaded;
}

/** Who made a request (fuse_req_ctx). */
export interface Caller {
  uid: number;
  gid: number;
  pid: number;
  umask: number;
}

/** A time as seconds and nanoseconds since the epoch. */
export interface TimeSpec {
  sec: number;
  nsec: number;
}

/** Attributes sent to the kernel. */
export interface Attr {
  ino: number;
  /** File type and permission bits. */
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdev: number;
  size: number;
  blocks: number;
  blksize: number;
  atime: TimeSpec;
  mtime: TimeSpec;
  ctime: TimeSpec;
}

/** A SETATTR request: only the fields present change; 'now' is the kernel's UTIME_NOW. */
export interface AttrChanges {
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  atime?: TimeSpec | 'now';
  mtime?: TimeSpec | 'now';
}

export interface Opened {
  fh: number;
  /** Keep the kernel's pages of this file from earlier opens (FOPEN_KEEP_CACHE). */
  keepCache?: boolean;
  directIo?: boolean;
  /** A close of this handle has nothing to persist (read-only): the binding answers its FLUSH itself. */
  noFlush?: boolean;
}

export interface DirEntryPlus {
  name: string;
  attr: Attr;
}


/**
 * Direct writes of open handles (the session's side, for the handler): grant(fh, fd, token, budget) lets the addon
 * write the handle's WRITEs into fd itself (it keeps its own dup of fd) while the budget lasts; the handler hears of
 * each through `written` with the grant's token. revoke(fh) ends the grant and answers how many writes were started
 * through it (-1: none was granted): none starts after it returns, and every one started is reported to `written`
 * in request order (a request that followed a WRITE is served after it).
 */
export interface DirectWrites {
  grant(fh: number, fd: number, token: number, budget: number): void;
  revoke(fh: number): number;
}

/** renameat2 flags. */
export const RENAME_NOREPLACE = 1;
export const RENAME_EXCHANGE = 2;

/**
 * What a filesystem implements. Every method may throw; the error becomes errnoOf(err). lookup answers null for
 * a name that does not exist (cached by the kernel for the negative timeout). Each entry returned by lookup,
 * mknod, mkdir, symlink, link, create and a readdirplus counts as one kernel reference, dropped by forget.
 */
export interface LowLevelHandler {
  errnoOf(err: unknown): number;
  onError?(op: string, err: unknown): void;
  lookup(c: Caller, parent: number, name: string): Promise<Attr | null>;
  forget(ino: number, nlookup: number): void;
  /** A READDIRPLUS entry reached the kernel: one more reference, as from a lookup. */
  lookedUp(ino: number): void;
  getattr(c: Caller, ino: number): Promise<Attr>;
  setattr(c: Caller, ino: number, changes: AttrChanges, fh: number | undefined): Promise<Attr>;
  readlink(c: Caller, ino: number): Promise<string>;
  mknod(c: Caller, parent: number, name: string, mode: number, rdev: number): Promise<Attr>;
  mkdir(c: Caller, parent: number, name: string, mode: number): Promise<Attr>;
  unlink(c: Caller, parent: number, name: string): Promise<void>;
  rmdir(c: Caller, parent: number, name: string): Promise<void>;
  symlink(c: Caller, parent: number, name: string, target: string): Promise<Attr>;
  rename(c: Caller, parent: number, name: string, newParent: number, newName: string, flags: number): Promise<void>;
  link(c: Caller, ino: number, newParent: number, newName: string): Promise<Attr>;
  open(c: Caller, ino: number, flags: number): Promise<Opened>;
  create(c: Caller, parent: number, name: string, mode: number, flags: number): Promise<{ attr: Attr; opened: Opened }>;
  read(ino: number, fh: number, size: number, offset: number): Promise<{ data: Buffer; length: number }>;
  write(ino: number, fh: number, data: Buffer, offset: number): Promise<number>;
  /**
   * A WRITE the addon wrote itself through a grant (DirectWrites): `result` is the bytes written or -errno. Answers
   * the count for the writer (or throws its error), which reaches the writer only when the write fell short of
   * `size` (a whole one was answered by the addon); synchronous, so a request that follows sees what it changed.
   * Only handlers that grant direct writes have it.
   */
  written?(ino: number, fh: number, token: number, offset: number, size: number, result: number): number;
  flush(ino: number, fh: number): Promise<void>;
  release(ino: number, fh: number): Promise<void>;
  fsync(ino: number, fh: number, datasync: boolean): Promise<void>;
  opendir(c: Caller, ino: number): Promise<number>;
  /** Entries from `offset` on (offset n = after the n-th entry); the binding sends as many as fit. */
  readdir(ino: number, fh: number, offset: number): Promise<DirEntryPlus[]>;
  releasedir(ino: number, fh: number): Promise<void>;
  statfs(ino: number): Promise<StatFs>;
  getxattr(c: Caller, ino: number, name: string): Promise<Buffer | null>;
  listxattr(c: Caller, ino: number): Promise<string[]>;
  setxattr(c: Caller, ino: number, name: string, value: Buffer, flags: number): Promise<void>;
  removexattr(c: Caller, ino: number, name: string): Promise<void>;
}

export interface LowLevelOptions {
  /** `-o` mount options (fsname, subtype, default_permissions, ...); max_read is added from maxRead. */
  mountOptions: string[];
  maxRead: number;
  maxWrite: number;
  maxBackground: number;
  congestionThreshold: number;
  writebackCache: boolean;
  /** Seconds the kernel caches entries (also negative ones) and attributes. */
  entryTimeout: number;
  attrTimeout: number;
  /**
   * The only extended-attribute names getxattr can find: the addon answers ENODATA for every other name itself,
   * without a trip to JS (the kernel asks security.capability before every write() and security.selinux and
   * system.posix_acl_access of every entry `ls -l` lists). Absent: every getxattr reaches the handler.
   */
  servedXattrs?: readonly string[];
  debug?: boolean;
}

/** What the kernel agreed to at INIT. */
export interface Negotiated {
  maxRead: number;
  maxWrite: number;
  maxBackground: number;
  writebackCache: boolean;
  protoMinor: number;
  /**
   * Which thread reads /dev/fuse: the JS thread, but a session thread while direct writes stream ('auto', the
   * default), a session thread only (BLOBHSM_FUSE_LOOP=thread) or the JS thread only (BLOBHSM_FUSE_LOOP=main).
   */
  deviceReader: 'session thread' | 'JavaScript thread' | 'auto';
}

// Operation codes (the enum at the top of blobhsm_fuse.c).
const Op = {
  INIT: 0, EXIT: 1, LOOKUP: 2, FORGET: 3, GETATTR: 4, SETATTR: 5, READLINK: 6, MKNOD: 7, MKDIR: 8, UNLINK: 9,
  RMDIR: 10, SYMLINK: 11, RENAME: 12, LINK: 13, OPEN: 14, READ: 15, WRITE: 16, FLUSH: 17, RELEASE: 18, FSYNC: 19,
  OPENDIR: 20, READDIR: 21, RELEASEDIR: 22, STATFS: 23, SETXATTR: 24, GETXATTR: 25, LISTXATTR: 26,
  REMOVEXATTR: 27, CREATE: 28, READDIRPLUS: 29, WRITTEN: 30,
} as const;
const OP_NAMES = Object.fromEntries(Object.entries(Op).map(([k, v]) => [v, k.toLowerCase()])) as Record<number, string>;

// FUSE_SET_ATTR_* (fuse_lowlevel.h)
const SET_MODE = 1 << 0, SET_UID = 1 << 1, SET_GID = 1 << 2, SET_SIZE = 1 << 3, SET_ATIME = 1 << 4,
  SET_MTIME = 1 << 5, SET_ATIME_NOW = 1 << 7, SET_MTIME_NOW = 1 << 8;
const ATTR_FIELDS = 15;
const { ERANGE, ENODATA, ENOSYS } = constants.errno;

function packAttr(a: Attr, out: Float64Array, at = 0): Float64Array {
  out[at] = a.ino;
  out[at + 1] = a.mode;
  out[at + 2] = a.nlink;
  out[at + 3] = a.uid;
  out[at + 4] = a.gid;
  out[at + 5] = a.rdev;
  out[at + 6] = a.size;
  out[at + 7] = a.blocks;
  out[at + 8] = a.blksize;
  out[at + 9] = a.atime.sec;
  out[at + 10] = a.atime.nsec;
  out[at + 11] = a.mtime.sec;
  out[at + 12] = a.mtime.nsec;
  out[at + 13] = a.ctime.sec;
  out[at + 14] = a.ctime.nsec;
  return out;
}

const NEGATIVE = new Float64Array(ATTR_FIELDS);

function openFlags(o: Opened): number {
  return (o.keepCache ? 1 : 0) | (o.directIo ? 2 : 0) | (o.noFlush ? 4 : 0);
}

/** Answers a getxattr/listxattr request: the size when asked for it, ERANGE when it does not fit. */
function replyXattrValue(native: Native, req: Req, value: Buffer, size: number): void {
  if (size === 0) native.replyXattr(req, value.length);
  else if (value.length > size) native.replyErr(req, ERANGE);
  else native.replyBuf(req, value, value.length);
}

export class LowLevelSession {
  private readonly native: Native;
  private readonly session: object;
  private readonly exited: Promise<void>;
  private unanswered = 0;
  /** The session loop ended (the kernel let go of the mount). */
  private closed = false;
  /** fusermount3 took the mount out of the namespace (the session may still serve open files). */
  private detached = false;
  private onAllAnswered: (() => void) | undefined;
  /** The attributes of the reply being sent: the addon copies them before the reply call returns. */
  private readonly attrs = new Float64Array(ATTR_FIELDS);

  private constructor(
    native: Native,
    private readonly mountpoint: string,
    private readonly handler: LowLevelHandler,
    private readonly options: LowLevelOptions,
    ready: (n: Negotiated) => void,
  ) {
    this.native = native;
    let exit!: () => void;
    this.exited = new Promise<void>((r) => (exit = r)).then(() => void (this.closed = true));
    const tuning = new Float64Array([options.maxRead, options.maxWrite, options.maxBackground, options.congestionThreshold, options.writebackCache ? 1 : 0]);
    const args = ['-o', [...options.mountOptions, `max_read=${options.maxRead}`].join(','), ...(options.debug ? ['-d'] : [])];
    this.session = native.mount(mountpoint, args, tuning, (op, req, n, name, name2, data) => {
      if (op === Op.INIT) return ready({ maxRead: n[4]!, maxWrite: n[5]!, maxBackground: n[6]!, writebackCache: n[7] === 1, protoMinor: n[8]!, deviceReader: n[9] === 2 ? 'auto' : n[9] === 1 ? 'JavaScript thread' : 'session thread' });
      if (op === Op.EXIT) return exit();
      if (op === Op.FORGET) return handler.forget(n[4]!, n[5]!);
      if (op === Op.WRITTEN) return this.serveWritten(req, n);
      this.serve(op, req!, n, name, name2, data);
    }, options.servedXattrs ?? null);
  }

  /** Mounts and resolves once the kernel's INIT was answered (the mount then serves requests). */
  static async mount(mountpoint: string, handler: LowLevelHandler, options: LowLevelOptions): Promise<{ session: LowLevelSession; negotiated: Negotiated }> {
    const native = loadAddon();
    if (native instanceof Error) throw native;
    let session!: LowLevelSession;
    const negotiated = await new Promise<Negotiated>((resolve, reject) => {
      try {
        session = new LowLevelSession(native, mountpoint, handler, options, resolve);
      } catch (err) {
        reject(err);
      }
    });
    return { session, negotiated };
  }

  /** Drops the kernel's cached pages of an inode (all of them with the defaults); 0, or -errno (-ENOENT: not cached). */
  invalidateInode(ino: number, offset = 0, length = 0): Promise<number> {
    return this.native.notifyInvalInode(this.session, ino, offset, length);
  }

  /** Drops the kernel's dentry of parent/name. */
  invalidateEntry(parent: number, name: string): Promise<number> {
    return this.native.notifyInvalEntry(this.session, parent, name);
  }

  /** Tells the kernel parent/name (inode child) is gone (also ends inotify watches on it). */
  deleteEntry(parent: number, child: number, name: string): Promise<number> {
    return this.native.notifyDelete(this.session, parent, child, name);
  }

  /** Direct writes of this session's handles (see DirectWrites). */
  readonly directWrites: DirectWrites = {
    grant: (fh, fd, token, budget) => this.native.grantDirectWrite(this.session, fh, fd, token, budget),
    revoke: (fh) => this.native.revokeDirectWrite(this.session, fh),
  };

  /** Resolves when the session loop ended (unmounted by us or from outside). */
  get ended(): Promise<void> {
    return this.exited;
  }

  /**
   * Unmounts with fusermount3 -u (refuses while busy, like umount), then frees the session once its loop ended and
   * every request was answered. Lazy: fusermount3 -uz detaches at once and resolves then, while open files are
   * still served; the kernel ends the session when the last user lets go (`ended`), and a later unmount() frees it.
   */
  async unmount(lazy = false): Promise<void> {
    if (!this.closed && !this.detached) {
      const args = [lazy ? '-uz' : '-u', this.mountpoint];
      await new Promise<void>((resolve, reject) =>
        execFile('fusermount3', args, (err, _out, stderr) => (err ? reject(new Error(`fusermount3 ${args.join(' ')}: ${String(stderr).trim() || err.message}`, { cause: err })) : resolve())),
      );
      this.detached = true;
    }
    if (lazy && !this.closed) return;
    await this.exited;
    await this.release();
  }

  private async release(): Promise<void> {
    while (this.native.closeSession(this.session) > 0) await new Promise<void>((r) => (this.onAllAnswered = r));
  }

  private answered(): void {
    this.unanswered--;
    if (this.unanswered === 0 && this.onAllAnswered) {
      const done = this.onAllAnswered;
      this.onAllAnswered = undefined;
      done();
    }
  }

  private serve(op: number, req: Req, n: Float64Array, name: string | undefined, name2: string | undefined, data: Buffer | undefined): void {
    this.unanswered++;
    const c: Caller = { uid: n[0]!, gid: n[1]!, pid: n[2]!, umask: n[3]! };
    const ino = n[4]!;
    let work: Promise<void>;
    try {
      work = this.run(op, req, c, ino, n, name, name2, data);
    } catch (err) {
      work = Promise.reject(err);
    }
    work.then(
      () => this.answered(),
      (err: unknown) => {
        this.handler.onError?.(OP_NAMES[op] ?? String(op), err);
        this.native.replyErr(req, this.handler.errnoOf(err));
        this.answered();
      },
    );
  }

  /**
   * A direct write's report: the handler's bookkeeping, synchronous (no promise per 1 MiB WRITE). A WRITE written
   * in full was answered by the addon already (no request comes with it); a short or failed one is answered here.
   */
  private serveWritten(req: Req | undefined, n: Float64Array): void {
    try {
      if (!this.handler.written) throw new Error('the addon wrote through a grant of direct writes this handler never gave');
      const count = this.handler.written(n[4]!, n[5]!, n[9]!, n[7]!, n[6]!, n[8]!);
      if (req) this.native.replyWrite(req, count);
    } catch (err) {
      this.handler.onError?.('write', err);
      if (req) this.native.replyErr(req, this.handler.errnoOf(err));
    }
  }

  private entry(req: Req, attr: Attr): void {
    this.native.replyEntry(req, packAttr(attr, this.attrs), this.options.entryTimeout, this.options.attrTimeout);
  }

  private async run(op: number, req: Req, c: Caller, ino: number, n: Float64Array, name: string | undefined, name2: string | undefined, data: Buffer | undefined): Promise<void> {
    const h = this.handler;
    const native = this.native;
    switch (op) {
      case Op.LOOKUP: {
        const attr = await h.lookup(c, ino, name!);
        if (attr) this.entry(req, attr);
        else native.replyEntry(req, NEGATIVE, this.options.entryTimeout, 0);
        return;
      }
      case Op.GETATTR:
        return native.replyAttr(req, packAttr(await h.getattr(c, ino), this.attrs), this.options.attrTimeout);
      case Op.SETATTR: {
        const valid = n[5]!;
        const time = (set: number, now: number, sec: number, nsec: number) => (valid & now ? 'now' : valid & set ? { sec, nsec } : undefined);
        const changes: AttrChanges = {};
        if (valid & SET_MODE) changes.mode = n[6]!;
        if (valid & SET_UID) changes.uid = n[7]!;
        if (valid & SET_GID) changes.gid = n[8]!;
        if (valid & SET_SIZE) changes.size = n[9]!;
        const atime = time(SET_ATIME, SET_ATIME_NOW, n[11]!, n[12]!);
        const mtime = time(SET_MTIME, SET_MTIME_NOW, n[13]!, n[14]!);
        if (atime) changes.atime = atime;
        if (mtime) changes.mtime = mtime;
        const attr = await h.setattr(c, ino, changes, n[10]! >= 0 ? n[10]! : undefined);
        return native.replyAttr(req, packAttr(attr, this.attrs), this.options.attrTimeout);
      }
      case Op.READLINK:
        return native.replyReadlink(req, await h.readlink(c, ino));
      case Op.MKNOD:
        return this.entry(req, await h.mknod(c, ino, name!, n[5]!, n[6]!));
      case Op.MKDIR:
        return this.entry(req, await h.mkdir(c, ino, name!, n[5]!));
      case Op.UNLINK:
        await h.unlink(c, ino, name!);
        return native.replyErr(req, 0);
      case Op.RMDIR:
        await h.rmdir(c, ino, name!);
        return native.replyErr(req, 0);
      case Op.SYMLINK:
        return this.entry(req, await h.symlink(c, ino, name!, name2!));
      case Op.RENAME:
        await h.rename(c, ino, name!, n[5]!, name2!, n[6]!);
        return native.replyErr(req, 0);
      case Op.LINK:
        return this.entry(req, await h.link(c, ino, n[5]!, name!));
      case Op.OPEN: {
        const o = await h.open(c, ino, n[5]!);
        return native.replyOpen(req, o.fh, openFlags(o));
      }
      case Op.CREATE: {
        const { attr, opened } = await h.create(c, ino, name!, n[5]!, n[6]!);
        return native.replyCreate(req, packAttr(attr, this.attrs), this.options.entryTimeout, this.options.attrTimeout, opened.fh, openFlags(opened));
      }
      case Op.READ: {
        const { data: out, length } = await h.read(ino, n[5]!, n[6]!, n[7]!);
        return native.replyBuf(req, out, length);
      }
      case Op.WRITE:
        try {
          return native.replyWrite(req, await h.write(ino, n[5]!, data!, n[7]!));
        } finally {
          native.releaseBuffer(data!); // written (or failed): nothing reads it any more
        }
      case Op.FLUSH:
        await h.flush(ino, n[5]!);
        return native.replyErr(req, 0);
      case Op.RELEASE:
        await h.release(ino, n[5]!);
        return native.replyErr(req, 0);
      case Op.FSYNC:
        await h.fsync(ino, n[5]!, n[6] !== 0);
        return native.replyErr(req, 0);
      case Op.OPENDIR:
        return native.replyOpen(req, await h.opendir(c, ino), 0);
      case Op.READDIR:
      case Op.READDIRPLUS: {
        const plus = op === Op.READDIRPLUS;
        const size = n[6]!;
        const offset = n[7]!;
        const all = await h.readdir(ino, n[5]!, offset);
        // At most as many as could fit (a dirent is at least 24 bytes, a direntplus 152) crosses into C.
        const entries = all.length * (plus ? 152 : 24) > size ? all.slice(0, Math.ceil(size / (plus ? 152 : 24))) : all;
        const attrs = new Float64Array(entries.length * ATTR_FIELDS);
        entries.forEach((e, i) => packAttr(e.attr, attrs, i * ATTR_FIELDS));
        const fitted = native.replyDir(req, size, plus, entries.map((e) => e.name), attrs, offset, this.options.entryTimeout, this.options.attrTimeout);
        // Each entry but . and .. that READDIRPLUS sent is a kernel reference, as from a lookup.
        if (plus) for (const e of entries.slice(0, fitted)) if (e.name !== '.' && e.name !== '..') h.lookedUp(e.attr.ino);
        return;
      }
      case Op.RELEASEDIR:
        await h.releasedir(ino, n[5]!);
        return native.replyErr(req, 0);
      case Op.STATFS: {
        const s = await h.statfs(ino);
        return native.replyStatfs(req, new Float64Array([s.bsize, s.frsize, s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.favail, s.namemax]));
      }
      case Op.GETXATTR: {
        const value = await h.getxattr(c, ino, name!);
        if (value === null) return native.replyErr(req, ENODATA);
        return replyXattrValue(native, req, value, n[5]!);
      }
      case Op.LISTXATTR: {
        const names = await h.listxattr(c, ino);
        return replyXattrValue(native, req, Buffer.from(names.map((x) => x + '\0').join('')), n[5]!);
      }
      case Op.SETXATTR:
        await h.setxattr(c, ino, name!, data!, n[5]!);
        return native.replyErr(req, 0);
      case Op.REMOVEXATTR:
        await h.removexattr(c, ino, name!);
        return native.replyErr(req, 0);
      default:
        return native.replyErr(req, ENOSYS);
    }
  }
}

/**
 * The credentials of the peer of a connected Unix socket (SO_PEERCRED), or an Error when the addon is not available
 * or the kernel refuses (not a Unix socket).
 */
export function peerCredentials(fd: number): { pid: number; uid: number; gid: number } | Error {
  const native = loadAddon();
  if (native instanceof Error) return native;
  try {
    const [pid, uid, gid] = native.peerCred(fd);
    return { pid, uid, gid };
  } catch (err) {
    return new Error(`SO_PEERCRED of descriptor ${fd}: ${(err as Error).message}`, { cause: err });
  }
}
