// Filesystem semantics with the FUSE low-level op names: inode based, async, throwing typed FsErrors. Knows nothing
// of FUSE. Owns open handles, the kernel's references to inodes (lookup counts, dropped by forget: a file
// unlinked while open keeps its data until its last release, and its record, nlink 0, until the kernel forgot it
// too) and the in-memory size overlay of
// files being written; data goes through the DataCache, HSM-driven state changes (restore, dirty marking) through
// the Coordinator. PathVfs (path-vfs.ts) resolves paths onto this API for the fuse-native binding and tests.
// With a DirectWriter (the libfuse3 binding), a handle whose first write went through here may write further data
// into its cache file without this process's I/O: the Vfs grants that once the change is recorded (DIRTY durable
// before the first byte) and keeps the size, mtime and byte accounting from each write's report (written).
import { constants as fsConstants, statfs as statfsCb } from 'node:fs';
import { promisify } from 'node:util';
import { FsError, describeError, errnoCodeOf } from '../errors.js';
import type { DataCache, Lending } from '../cache/data-cache.js';
import type { Coordinator } from '../hsm/coordinator.js';
import { flagsHex, isArchived, isReleased, stateWords } from '../hsm/flags.js';
import type { Inode, MetaStore, NewInode } from '../namespace/types.js';
import { ROOT_INO, blankInode } from '../namespace/types.js';
import { checkName } from '../namespace/meta-store.js';
import { posixAclXattr } from '../namespace/hns-encoding.js';
import { fileTypeOf, isLocalOnly, typeBits } from '../namespace/file-types.js';
import type { Changelog } from '../hsm/changelog.js';

const statfsAsync = promisify(statfsCb);

/** Whether an inode already has every attribute of a setattr patch (the fields present) and this ctime. */
function sameAttrs(inode: Inode, patch: { mode?: number; uid?: number; gid?: number; atimeMs?: number; mtimeMs?: number }, ctimeMs: number): boolean {
  return (
    inode.ctimeMs === ctimeMs &&
    (patch.mode === undefined || patch.mode === inode.mode) &&
    (patch.uid === undefined || patch.uid === inode.uid) &&
    (patch.gid === undefined || patch.gid === inode.gid) &&
    (patch.atimeMs === undefined || patch.atimeMs === inode.atimeMs) &&
    (patch.mtimeMs === undefined || patch.mtimeMs === inode.mtimeMs)
  );
}

const O_ACCMODE = 3;
const { O_RDONLY, O_TRUNC } = fsConstants;

export interface Stat {
  ino: number;
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  size: number;
  blocks: number;
  blksize: number;
  atime: number;
  mtime: number;
  ctime: number;
}

export interface StatFs {
  bsize: number;
  frsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  favail: number;
  namemax: number;
}

export interface IoStats {
  readOps: number;
  readBytes: number;
  writeOps: number;
  writeBytes: number;
  /** WRITE requests the binding wrote into the cache file itself (DirectWriter), failed ones too. */
  directWriteOps: number;
}

/**
 * Writes open handles' data into their cache files itself (the libfuse3 binding, DirectWrites in
 * src/fuse/lowlevel.ts): grant(fh, fd, token, budget) lets it write up to budget bytes of handle fh's writes into
 * (its own dup of) fd, each reported to Vfs.written with the token; revoke(fh) ends that and answers how many
 * writes it started through the grant (every one of them is reported, in request order).
 */
export interface DirectWriter {
  grant(fh: number, fd: number, token: number, budget: number): void;
  revoke(fh: number): number;
}

/** Bytes a grant of direct writes may write before a write comes through here again (room is re-checked then). */
const DIRECT_WRITE_BUDGET = 64 << 20;

interface Grant {
  token: number;
  fh: number;
  handle: Handle;
  ino: number;
  generation: number;
  /** Writes reported through it so far. */
  reported: number;
  /** The bytes it may write, lent from the cache's room: each reported write spends its size; ended at retire. */
  lending: Lending;
  /** Once revoked: writes that landed and are not reported yet (each is in flight for the Coordinator). */
  unreported?: number;
  /** Revokes it through the Coordinator (its unreported writes then count as in flight). */
  end: () => void;
}

interface Handle {
  ino: number;
  writable: boolean;
  wrote: boolean;
  /** A full cache disk was logged for this open file. */
  noSpaceLogged?: boolean;
  /** Its writes go into the cache file without passing through write() (DirectWriter). */
  grant?: Grant;
}

export interface VfsOptions {
  meta: MetaStore;
  cache: DataCache;
  coordinator: Coordinator;
  changelog: Changelog;
  readOnly: boolean;
  /** Serve system.posix_acl_access from the stored ACLs (HNS mounts); otherwise it is answered without a lookup. */
  posixAcls?: boolean;
  /** The daemon's log (a full cache disk is logged once per open file). */
  log?: (line: string) => void;
  /** The clock of file times, ms since the epoch (Date.now; tests inject one). */
  now?: () => number;
}

/** Who asks: new files are theirs. */
export interface Caller {
  uid: number;
  gid: number;
}

/** A time to set: ms since the epoch (fractions keep sub-ms precision), or the current time (UTIME_NOW). */
export type TimeToSet = number | 'now';

/** A setattr request: only the fields present change. */
export interface AttrChanges {
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  atime?: TimeToSet;
  mtime?: TimeToSet;
}

/** renameat2 flags. */
export const RENAME_NOREPLACE = 1;
export const RENAME_EXCHANGE = 2;

export interface DirEntryStat {
  name: string;
  stat: Stat;
}

export const XATTR_NAMES = ['user.hsm.state', 'user.hsm.flags', 'user.hsm.archive_id', 'user.hsm.blob', 'user.hsm.etag', 'user.hsm.md5'];
/** The access ACL of an entry imported from an HNS account with an extended ACL (Linux's POSIX ACL xattr format). */
export const POSIX_ACL_ACCESS = 'system.posix_acl_access';

/** POSIX NAME_MAX: the longest name component, in bytes. */
const NAME_MAX = 255;

/** Entries per MetaStore query when a whole directory is listed. */
const READDIR_PAGE = 1000;

/** Inode numbers of virtual root entries (fuse-native passes st_ino as 32 bits; real ones never get this high). */
export const VIRTUAL_INO = 0xffff_ff00;

export class Vfs {
  private readonly meta: MetaStore;
  private readonly cache: DataCache;
  private readonly coordinator: Coordinator;
  private readonly changelog: Changelog;
  private readonly readOnly: boolean;
  private readonly posixAcls: boolean;
  private readonly log: (line: string) => void;
  private readonly now: () => number;
  private readonly handles = new Map<number, Handle>();
  private nextHandle = 1;
  /** The kernel's references to inodes (entries it was given minus forgets). */
  private readonly kernelRefs = new Map<number, number>();
  /** Sizes of files being written, not yet persisted (persisted on flush, fsync and release). */
  private readonly pendingSize = new Map<number, number>();
  /** Time of the last write of files being written, not yet persisted (a later utimens replaces it). */
  private readonly pendingMtime = new Map<number, number>();
  /** Names of read-only empty files shown in the root without an inode (the import job's IMPORT_<state> marker). */
  private rootMarkers: () => string[] = () => [];
  /** READ and WRITE requests served and their bytes (`blobhsm status`: shows the kernel's request sizes). */
  private readonly io: IoStats = { readOps: 0, readBytes: 0, writeOps: 0, writeBytes: 0, directWriteOps: 0 };
  private directWriter: DirectWriter | undefined;
  /** Grants of direct writes by token, kept until each write started through one was reported. */
  private readonly grants = new Map<number, Grant>();
  private nextGrant = 1;

  constructor(options: VfsOptions) {
    this.meta = options.meta;
    this.cache = options.cache;
    this.coordinator = options.coordinator;
    this.changelog = options.changelog;
    this.readOnly = options.readOnly;
    this.posixAcls = options.posixAcls ?? false;
    this.log = options.log ?? (() => undefined);
    this.now = options.now ?? Date.now;
  }

  // ---- lookups -------------------------------------------------------------------------------------------

  /** Shows these names in the root as read-only empty files (a real entry of the same name wins). */
  setRootMarkers(names: () => string[]): void {
    this.rootMarkers = names;
  }

  private virtualAt(i: number): Inode | undefined {
    if (i < 0 || i >= this.rootMarkers().length) return undefined;
    const root = this.meta.get(ROOT_INO)!;
    return { ...root, ino: VIRTUAL_INO + i, kind: 'file', mode: 0o444, size: 0, nlink: 1, target: null, hsmFlags: 0, archiveId: 0, blobName: null, etag: null, contentMd5: null };
  }

  /** The inode a name in a directory points to (a root marker included), undefined when there is none. */
  private find(parent: number, name: string): Inode | undefined {
    checkName(name);
    const dir = this.inode(parent);
    if (dir.kind !== 'dir') throw new FsError('ENOTDIR', `inode ${parent} is not a directory`);
    return this.meta.lookup(parent, name) ?? (parent === ROOT_INO ? this.virtualAt(this.rootMarkers().indexOf(name)) : undefined);
  }

  /** The inode a name in a directory points to (a root marker included). */
  private child(parent: number, name: string): Inode {
    const found = this.find(parent, name);
    if (!found) throw new FsError('ENOENT', `no such file or directory: ${name} in inode ${parent}`);
    return found;
  }

  /** The directory inode a new name goes into. */
  private directory(parent: number, name: string): Inode {
    checkName(name);
    const dir = this.inode(parent);
    if (dir.kind !== 'dir') throw new FsError('ENOTDIR', `inode ${parent} is not a directory`);
    return dir;
  }

  /** An inode by number (a root marker included), with the size of a file being written. */
  private inode(ino: number): Inode {
    const inode = ino >= VIRTUAL_INO ? this.virtualAt(ino - VIRTUAL_INO) : this.meta.get(ino);
    if (!inode) throw new FsError('ENOENT', `inode ${ino} is gone`);
    const size = this.pendingSize.get(ino);
    return size === undefined ? inode : { ...inode, size };
  }

  /** The inode number at a path (PathVfs resolves paths with it). */
  inodeAt(path: string): number {
    const found = this.meta.resolve(path);
    if (found) return found.ino;
    if (path.lastIndexOf('/') === 0) {
      const i = this.rootMarkers().indexOf(path.slice(1));
      if (i >= 0) return VIRTUAL_INO + i;
    }
    // POSIX: a component longer than NAME_MAX is ENAMETOOLONG, whether or not the path exists (checked only on a
    // miss: no stored name is that long).
    if (path.split('/').some((c) => Buffer.byteLength(c) > NAME_MAX)) throw new FsError('ENAMETOOLONG', `a name in ${path} is longer than ${NAME_MAX} bytes`);
    throw new FsError('ENOENT', `no such file or directory: ${path}`);
  }

  /** The inode a handle has open. */
  inodeOfHandle(fh: number): number {
    return this.handle(fh).ino;
  }

  private handle(fh: number): Handle {
    const h = this.handles.get(fh);
    if (!h) throw new FsError('EBADF', `bad file handle ${fh}`);
    return h;
  }

  private writable(): void {
    if (this.readOnly) throw new FsError('EROFS', 'the mount is read-only');
  }

  statOf(inode: Inode): Stat {
    const size = this.pendingSize.get(inode.ino) ?? inode.size;
    const released = isReleased(inode.hsmFlags);
    const blocks = released ? (size > 0 ? 1 : 0) : Math.ceil(size / 512);
    return {
      ino: inode.ino,
      mode: typeBits(inode.kind) | inode.mode,
      nlink: inode.nlink,
      uid: inode.uid,
      gid: inode.gid,
      size,
      blocks,
      blksize: 4096,
      atime: inode.atimeMs,
      mtime: this.pendingMtime.get(inode.ino) ?? inode.mtimeMs,
      ctime: this.pendingMtime.get(inode.ino) ?? inode.ctimeMs,
    };
  }

  // ---- kernel references ---------------------------------------------------------------------------------

  /** The kernel was given an entry for this inode (lookup, create, mkdir, link, readdirplus, ...). */
  remember(ino: number): void {
    this.kernelRefs.set(ino, (this.kernelRefs.get(ino) ?? 0) + 1);
  }

  /**
   * The kernel dropped n references; the record of an unlinked file nothing references any more goes. Its data
   * went already, with its last name or at its last release (a cache file something made after that is deleted
   * by the next mount's reconcile).
   */
  async forget(ino: number, n: number): Promise<void> {
    const left = (this.kernelRefs.get(ino) ?? 0) - n;
    if (left > 0) return void this.kernelRefs.set(ino, left);
    this.kernelRefs.delete(ino);
    if (this.closedUnlinked(ino)) this.meta.deleteInode(ino);
  }

  /**
   * A file whose last name went while no handle had it open has no data any more (lastNameGone): only its record
   * is left, for the kernel's reference. An open or truncate of it (one that raced the unlink, as the kernel may
   * send it after the unlink was answered) is ENOENT, the answer it would have had a moment later.
   */
  private notDeleted(inode: Inode): void {
    if (inode.kind === 'file' && inode.nlink === 0 && !this.isOpen(inode.ino)) throw new FsError('ENOENT', `inode ${inode.ino} was unlinked`);
  }

  /** Open or known to the kernel: an unlinked file's record is kept (nlink 0) while this holds. */
  private inUse(ino: number): boolean {
    return this.kernelRefs.has(ino) || this.isOpen(ino);
  }

  // ---- read side -----------------------------------------------------------------------------------------

  /**
   * The entry of a name, or null when it does not exist: the kernel asks for missing names all the time (every
   * new name is looked up before it is created, every rename target before the rename), and an error built for
   * each was a third of a lookup's cost.
   */
  async lookup(parent: number, name: string): Promise<Stat | null> {
    const found = this.find(parent, name);
    return found ? this.statOf(found) : null;
  }

  async getattr(ino: number): Promise<Stat> {
    return this.statOf(this.inode(ino));
  }

  /** The whole directory, `.` and `..` first, read page by page. */
  async readdir(ino: number): Promise<DirEntryStat[]> {
    const all: DirEntryStat[] = [];
    let after: string | undefined;
    do {
      const page = await this.readdirPage(ino, after, READDIR_PAGE);
      all.push(...page.entries);
      after = page.next;
    } while (after !== undefined);
    return all;
  }

  /**
   * One page of a directory, in name (byte) order, from after the cursor `after` (undefined: the start): at most
   * `limit` entries and the cursor of the next page (undefined after the last). Each page costs the same wherever
   * it starts (an index range scan), so a binding that serves READDIR in pages never builds the whole directory.
   * `.` and `..` come first on the first page (beyond `limit`), the root's virtual marker files (IMPORT_<state>)
   * with its last page.
   */
  async readdirPage(ino: number, after: string | undefined, limit: number): Promise<{ entries: DirEntryStat[]; next: string | undefined }> {
    const dir = this.inode(ino);
    if (dir.kind !== 'dir') throw new FsError('ENOTDIR', `inode ${ino} is not a directory`);
    const rows = this.meta.readdirPage(ino, after, limit);
    const entries = rows.map((e) => ({ name: e.name, stat: this.statOf(e.inode) }));
    if (after === undefined) {
      // `.` and `..` first, as POSIX readdir lists them (the root is its own parent).
      const parent = ino === ROOT_INO ? dir : this.parentOf(ino);
      entries.unshift({ name: '.', stat: this.statOf(dir) }, { name: '..', stat: this.statOf(parent) });
    }
    if (rows.length === limit) return { entries, next: rows[rows.length - 1]!.name };
    if (ino === ROOT_INO) {
      this.rootMarkers().forEach((name, i) => {
        const v = this.virtualAt(i);
        if (v && !this.meta.lookup(ROOT_INO, name)) entries.push({ name, stat: this.statOf(v) });
      });
    }
    return { entries, next: undefined };
  }

  private parentOf(dirIno: number): Inode {
    const path = this.meta.pathOf(dirIno);
    const parent = path === undefined ? undefined : this.meta.resolve(path.slice(0, path.lastIndexOf('/')) || '/');
    if (!parent) throw new FsError('ENOENT', `directory ${dirIno} has no parent`);
    return parent;
  }

  async readlink(ino: number): Promise<string> {
    const inode = this.inode(ino);
    if (inode.kind !== 'symlink' || inode.target === null) throw new FsError('EINVAL', `inode ${ino} is not a symlink`);
    return inode.target;
  }

  async statfs(): Promise<StatFs> {
    await this.cache.deletesDone(); // df right after rm shows the room
    const disk = await statfsAsync(this.cache.dir);
    const files = this.meta.countInodes();
    return {
      bsize: disk.bsize,
      frsize: disk.bsize,
      blocks: disk.blocks,
      bfree: disk.bfree,
      bavail: disk.bavail,
      files: files + 1_000_000,
      ffree: 1_000_000,
      favail: 1_000_000,
      namemax: NAME_MAX,
    };
  }

  async open(ino: number, flags: number): Promise<number> {
    const inode = this.inode(ino);
    if (inode.kind === 'dir') throw new FsError('EISDIR', `inode ${ino} is a directory`);
    // The kernel opens FIFOs and refuses sockets itself (the request never comes here); the path view might ask.
    if (isLocalOnly(inode.kind)) throw new FsError('ENXIO', `inode ${ino} is a ${inode.kind}: the kernel opens it, not blobhsm`);
    this.notDeleted(inode);
    const writable = (flags & O_ACCMODE) !== O_RDONLY;
    if (writable || flags & O_TRUNC) this.writable();
    if (inode.ino >= VIRTUAL_INO && (writable || flags & O_TRUNC)) throw new FsError('EACCES', `inode ${ino} is read-only`);
    const fh = this.openHandle(inode.ino, writable);
    if (flags & O_TRUNC && writable) {
      try {
        await this.truncateInode(inode.ino, 0);
      } catch (err) {
        this.dropHandle(fh);
        throw err;
      }
    }
    this.coordinator.touch(inode.ino);
    return fh;
  }

  /** A new handle, counted in the file's state at once (before the caller's first await). */
  private openHandle(ino: number, writable: boolean): number {
    const fh = this.nextHandle++;
    this.handles.set(fh, { ino, writable, wrote: false });
    this.coordinator.opened(ino, writable);
    return fh;
  }

  private dropHandle(fh: number): Handle {
    const h = this.handle(fh);
    this.handles.delete(fh);
    this.coordinator.closed(h.ino, h.writable);
    return h;
  }

  /** Reads into buf; a released file is restored first, each read waiting only for its own range. */
  async read(fh: number, buf: Buffer, length: number, position: number): Promise<number> {
    const h = this.handle(fh);
    if (h.ino >= VIRTUAL_INO) return 0;
    let inode = this.inode(h.ino);
    let n: number;
    for (;;) {
      while (isReleased(inode.hsmFlags) && position < inode.size) {
        const restoring = inode;
        try {
          await this.coordinator.ensureReadable(restoring, position, Math.min(length, restoring.size - position));
        } catch (err) {
          // A truncate changed the file under the restore (a new generation): read what it holds now.
          inode = this.inode(h.ino);
          if (inode.generation === restoring.generation) throw err;
          continue;
        }
        inode = this.inode(h.ino);
        if (inode.generation === restoring.generation) break;
      }
      if (position >= inode.size) return 0;
      const reading = inode;
      try {
        n = await this.cache.read(reading.ino, reading.generation, buf, Math.min(length, reading.size - position), position);
        break;
      } catch (err) {
        // Released (or truncated) meanwhile: its cache data of that generation is gone; read the file as it is now.
        inode = this.inode(h.ino);
        if (inode.generation === reading.generation) throw err;
      }
    }
    this.io.readOps++;
    this.io.readBytes += n;
    return n;
  }

  /** Every extended-attribute name getxattr can ever find (any other name is ENODATA on every inode). */
  servedXattrNames(): string[] {
    return [...XATTR_NAMES, ...(this.posixAcls ? [POSIX_ACL_ACCESS] : [])];
  }

  async getxattr(ino: number, name: string): Promise<Buffer | null> {
    // The kernel asks security.* and system.posix_acl_* of every entry `ls -l` lists: answer without a lookup.
    if (name === POSIX_ACL_ACCESS && this.posixAcls) {
      const inode = this.inode(ino);
      const acl = this.meta.accessAcl(inode.ino);
      return acl === null ? null : posixAclXattr(inode.mode, acl);
    }
    if (!XATTR_NAMES.includes(name)) return null;
    const value = this.xattrValue(this.inode(ino), name);
    return value === null ? null : Buffer.from(value);
  }

  private xattrValue(inode: Inode, name: string): string | null {
    switch (name) {
      case 'user.hsm.state':
        return stateWords(inode.hsmFlags).join(' ');
      case 'user.hsm.flags':
        return flagsHex(inode.hsmFlags);
      case 'user.hsm.archive_id':
        return String(inode.archiveId);
      case 'user.hsm.blob':
        return inode.blobName;
      case 'user.hsm.etag':
        return inode.etag;
      case 'user.hsm.md5':
        return inode.contentMd5;
      default:
        return null;
    }
  }

  async listxattr(ino: number): Promise<string[]> {
    const inode = this.inode(ino);
    const names = XATTR_NAMES.filter((n) => this.xattrValue(inode, n) !== null);
    return !this.posixAcls || this.meta.accessAcl(inode.ino) === null ? names : [...names, POSIX_ACL_ACCESS];
  }

  // ---- write side ----------------------------------------------------------------------------------------

  async create(parent: number, name: string, mode: number, caller: Caller): Promise<{ fh: number; stat: Stat }> {
    this.writable();
    const dir = this.directory(parent, name);
    const now = this.now();
    // One commit for the new name, the directory's times and the changelog record.
    const inode = this.meta.transaction(() => {
      const created = this.meta.create(parent, name, this.newInode('file', mode & 0o7777, now, caller, dir));
      this.touchDir(parent, now, dir);
      this.changelog.record('CREAT', created.ino, parent, name);
      return created;
    });
    // Open before the first await: an import job meanwhile sees a busy file and does not replace it.
    const fh = this.openHandle(inode.ino, true);
    this.coordinator.created(inode.ino);
    try {
      await this.cache.createEmpty(inode.ino, inode.generation);
    } catch (err) {
      this.dropHandle(fh);
      throw err;
    }
    return { fh, stat: this.statOf(inode) };
  }

  /**
   * mknod: a regular file (created and closed, as by create), or a FIFO or a socket, which stay local only (no data,
   * no HSM state, never exported). Devices are refused with EPERM, as Linux refuses them to a caller without
   * CAP_MKNOD (docs/SEMANTICS.md §4). `mode` carries the type bits and the permissions the kernel already masked.
   */
  async mknod(parent: number, name: string, mode: number, caller: Caller): Promise<Stat> {
    this.writable();
    const type = fileTypeOf(mode);
    if (type === 'file') {
      const { fh, stat } = await this.create(parent, name, mode, caller);
      await this.release(fh);
      return stat;
    }
    if (type === 'device') throw new FsError('EPERM', `${name}: device files cannot be created in a blobhsm mount`);
    if (type !== 'fifo' && type !== 'socket') throw new FsError('EINVAL', `${name}: mknod of file type 0${(mode & fsConstants.S_IFMT).toString(8)}`);
    const dir = this.directory(parent, name);
    const now = this.now();
    const inode = this.meta.create(parent, name, this.newInode(type, mode & 0o7777, now, caller, dir));
    this.touchDir(parent, now);
    this.changelog.record('MKNOD', inode.ino, parent, name);
    return this.statOf(inode);
  }

  async write(fh: number, buf: Buffer, length: number, position: number): Promise<number> {
    const h = this.handle(fh);
    if (!h.writable) throw new FsError('EBADF', 'file not open for writing');
    let inode = this.inode(h.ino);
    if (isReleased(inode.hsmFlags)) inode = await this.coordinator.ensureResident(inode);
    inode = this.coordinator.beforeContentChange(inode.ino);
    let written: number;
    try {
      written = await this.cache.write(inode.ino, inode.generation, buf, length, position);
    } catch (err) {
      this.logWriteFailure(h, inode.ino, err);
      throw err;
    } finally {
      this.coordinator.contentChangeDone(inode.ino);
    }
    this.noteWritten(h, inode, position, written);
    // Later writes of this handle can go straight into the cache file (the change is recorded by now).
    if (this.directWriter) await this.grantDirectWrites(fh, h, inode);
    return written;
  }

  /** The size, mtime and counters after `written` bytes landed at `position`. */
  private noteWritten(h: Handle, inode: Inode, position: number, written: number): void {
    this.io.writeOps++;
    this.io.writeBytes += written;
    h.wrote = true;
    this.pendingMtime.set(inode.ino, this.now());
    const size = this.pendingSize.get(inode.ino) ?? inode.size;
    if (position + written > size) this.pendingSize.set(inode.ino, position + written);
    else if (!this.pendingSize.has(inode.ino)) this.pendingSize.set(inode.ino, size);
  }

  /** The binding that may write handles' data itself from now on (undefined: none; every write comes here). */
  useDirectWriter(writer: DirectWriter | undefined): void {
    this.directWriter = writer;
  }

  /**
   * Grants handle fh direct writes into its cache file (a grant whose budget ran out is replaced), when the
   * Coordinator allows it: the current change recorded, no archive running. Otherwise its writes keep coming here.
   * Never throws: the write that asked is done by then, so a grant that cannot be made is logged, and the handle's
   * next writes come here as before.
   */
  private async grantDirectWrites(fh: number, h: Handle, inode: Inode): Promise<void> {
    const writer = this.directWriter!;
    const notGranted = (err: unknown) =>
      this.log(`direct writes of ${this.meta.pathOf(inode.ino) ?? `inode ${inode.ino}`} not granted: ${describeError(err)}`);
    try {
      h.grant?.end();
      await this.cache.lendForWrites(inode.ino, inode.generation, DIRECT_WRITE_BUDGET, (fd, lending) => {
        // Released, granted by a concurrent write, or a new generation meanwhile.
        if (this.handles.get(fh) !== h || h.grant || this.meta.get(inode.ino)?.generation !== inode.generation) return false;
        const grant: Grant = { token: this.nextGrant++, fh, handle: h, ino: inode.ino, generation: inode.generation, reported: 0, lending, end: () => undefined };
        const end = this.coordinator.allowDirectWrites(inode.ino, () => this.revoked(writer, grant));
        if (!end) return false;
        try {
          writer.grant(fh, fd, grant.token, lending.budget);
        } catch (err) {
          end(); // and lendForWrites ends the lending, as for any grant not taken
          notGranted(err);
          return false;
        }
        grant.end = end;
        h.grant = grant;
        this.grants.set(grant.token, grant);
        return true;
      });
    } catch (err) {
      notGranted(err);
    }
  }

  /** Ends a grant at the writer; answers how many of its writes landed without being reported yet. */
  private revoked(writer: DirectWriter, g: Grant): number {
    const started = writer.revoke(g.fh);
    if (g.handle.grant === g) g.handle.grant = undefined;
    g.unreported = Math.max(0, started - g.reported);
    if (g.unreported === 0) this.retire(g);
    return g.unreported;
  }

  /** A grant revoked with every write reported: forgotten, and what its writes did not take goes back to the room. */
  private retire(g: Grant): void {
    this.grants.delete(g.token);
    g.lending.end();
  }

  /**
   * A write the DirectWriter did through grant `token`: `size` bytes asked for at `position` (what it took of the
   * grant's budget), `result` the bytes written or -errno. Answers the bytes written, or throws the write's error
   * (the grant then ends: the next writes come here). Synchronous, so whatever the kernel asks next (a getattr
   * after the write) sees the new size.
   */
  written(fh: number, token: number, position: number, size: number, result: number): number {
    const g = this.grants.get(token);
    if (!g || g.fh !== fh) throw new FsError('EIO', `a direct write of handle ${fh} was reported through grant ${token}, which is not known`);
    g.reported++;
    g.lending.spend(size);
    this.io.directWriteOps++;
    if (g.unreported !== undefined) {
      g.unreported--;
      if (g.unreported === 0) this.retire(g);
      this.coordinator.contentChangeDone(g.ino);
    }
    if (result < 0) {
      g.end();
      const err = this.cache.lentWriteError(g.ino, -result);
      this.logWriteFailure(g.handle, g.ino, err);
      throw err;
    }
    this.cache.noteLentWrite(g.ino, g.generation, position, result);
    this.noteWritten(g.handle, this.inode(g.ino), position, result);
    return result;
  }

  /** A full cache disk is logged once per open file: a writer retrying in a loop must not flood the log. */
  private logWriteFailure(h: Handle, ino: number, err: unknown): void {
    if (errnoCodeOf(err) !== 'ENOSPC' || h.noSpaceLogged) return;
    h.noSpaceLogged = true;
    this.log(`write to ${this.meta.pathOf(ino) ?? `inode ${ino}`} failed: ${describeError(err)}`);
  }

  private async truncateInode(ino: number, size: number): Promise<void> {
    let inode = this.inode(ino);
    if (inode.kind !== 'file') throw new FsError(inode.kind === 'dir' ? 'EISDIR' : 'EINVAL', 'not a regular file');
    if (isReleased(inode.hsmFlags)) {
      inode = size === 0 ? await this.coordinator.discardReleased(ino) : await this.coordinator.ensureResident(inode);
    }
    inode = this.coordinator.beforeContentChange(ino);
    try {
      await this.cache.truncate(ino, inode.generation, size);
    } finally {
      this.coordinator.contentChangeDone(ino);
    }
    this.pendingSize.delete(ino);
    const now = this.now();
    this.meta.update(ino, { size, mtimeMs: now, ctimeMs: now });
    this.changelog.record('TRUNC', ino, 0, '');
  }

  /**
   * chmod, chown, truncate and utimensat in one request (as the kernel sends them). A size change without a
   * handle holds the file open while it runs, as the kernel does for ftruncate: a released file restored first
   * must not be evicted (released again) before the truncate changes it, nor released by a request meanwhile.
   */
  async setattr(ino: number, changes: AttrChanges, fh?: number): Promise<Stat> {
    this.writable();
    if (ino >= VIRTUAL_INO) throw new FsError('EACCES', `inode ${ino} is read-only`);
    let current = this.inode(ino);
    if (changes.size !== undefined) {
      if (fh === undefined) this.notDeleted(current);
      const held = fh === undefined ? this.openHandle(ino, true) : undefined;
      try {
        await this.truncateInode(fh === undefined ? ino : this.handle(fh).ino, changes.size);
      } finally {
        if (held !== undefined) this.dropHandle(held);
      }
      current = this.inode(ino);
    }
    const now = this.now();
    const at = (t: TimeToSet | undefined) => (t === 'now' ? now : t);
    const patch = { mode: changes.mode === undefined ? undefined : changes.mode & 0o7777, uid: changes.uid, gid: changes.gid, atimeMs: at(changes.atime), mtimeMs: at(changes.mtime) };
    if (changes.mtime !== undefined) this.pendingMtime.delete(ino); // cp -p sets the mtime after its last write
    if (Object.values(patch).some((v) => v !== undefined)) {
      // A change to what the file already has within the same millisecond (rsync's fchmod to the mode it was just
      // created with) changes nothing: nothing to commit.
      if (!sameAttrs(current, patch, now)) current = this.meta.update(ino, { ...patch, ctimeMs: now });
      if (changes.mode !== undefined || changes.uid !== undefined || changes.gid !== undefined) this.changelog.record('SATTR', ino, 0, '');
      if (changes.atime !== undefined || changes.mtime !== undefined) this.changelog.record('MTIME', ino, 0, '');
    }
    return this.statOf(current);
  }

  /** Persists the size and the time of the last write of a written file. */
  private persistWrites(h: Handle): void {
    if (!h.wrote) return;
    const size = this.pendingSize.get(h.ino);
    const mtime = this.pendingMtime.get(h.ino);
    this.pendingMtime.delete(h.ino);
    const stored = this.meta.get(h.ino);
    if (!stored) return;
    // Nothing new since the last flush (close after flush, a second close of a dup'ed fd): no commit.
    const grown = size !== undefined && size !== stored.size ? { size } : {};
    if (mtime !== undefined || 'size' in grown) this.meta.update(h.ino, { ...grown, ...(mtime === undefined ? {} : { mtimeMs: mtime, ctimeMs: mtime }) });
  }

  /**
   * Whether a flush of this handle can have anything to persist: only a handle open for writing records writes
   * (a read-only one never does, whatever other handles of its file write).
   */
  flushes(fh: number): boolean {
    return this.handle(fh).writable;
  }

  async flush(fh: number): Promise<void> {
    this.persistWrites(this.handle(fh));
  }

  async fsync(fh: number): Promise<void> {
    const h = this.handle(fh);
    this.persistWrites(h);
    const inode = this.meta.get(h.ino);
    if (inode && !isReleased(inode.hsmFlags)) await this.cache.fsync(inode.ino, inode.generation);
  }

  async release(fh: number): Promise<void> {
    this.handle(fh).grant?.end();
    const h = this.dropHandle(fh);
    this.persistWrites(h);
    if (h.wrote) {
      this.changelog.record('CLOSE', h.ino, 0, '');
      this.coordinator.afterClose(h.ino);
    }
    if (!this.isOpen(h.ino)) {
      this.pendingSize.delete(h.ino);
      this.pendingMtime.delete(h.ino);
      await this.endIfUnused(h.ino);
    }
  }

  ioStats(): IoStats {
    return { ...this.io };
  }

  /** Open file handles (what makes an unmount busy). */
  openFileCount(): number {
    return this.handles.size;
  }

  /** True while any handle has the file open for writing (release refuses then). */
  hasWriter(ino: number): boolean {
    return this.coordinator.hasWriter(ino);
  }

  isOpen(ino: number): boolean {
    return this.coordinator.isOpen(ino);
  }

  async mkdir(parent: number, name: string, mode: number, caller: Caller): Promise<Stat> {
    this.writable();
    const dir = this.directory(parent, name);
    const now = this.now();
    const inode = this.meta.create(parent, name, this.newInode('dir', mode & 0o7777, now, caller, dir));
    this.touchDir(parent, now);
    this.changelog.record('MKDIR', inode.ino, parent, name);
    return this.statOf(inode);
  }

  async symlink(parent: number, name: string, target: string, caller: Caller): Promise<Stat> {
    this.writable();
    const dir = this.directory(parent, name);
    const now = this.now();
    const inode = this.meta.create(parent, name, {
      ...this.newInode('symlink', 0o777, now, caller, dir),
      target,
      size: Buffer.byteLength(target),
    });
    this.touchDir(parent, now);
    this.changelog.record('SLINK', inode.ino, parent, name);
    return this.statOf(inode);
  }

  async link(ino: number, newParent: number, newName: string): Promise<Stat> {
    this.writable();
    const inode = this.inode(ino);
    if (inode.kind === 'dir') throw new FsError('EPERM', 'hard links to directories are not allowed');
    if (inode.nlink === 0) throw new FsError('ENOENT', `inode ${ino} was unlinked`);
    this.directory(newParent, newName);
    this.meta.link(ino, newParent, newName);
    const now = this.now();
    const linked = this.meta.update(ino, { ctimeMs: now });
    this.touchDir(newParent, now);
    this.changelog.record('HLINK', ino, newParent, newName);
    return this.statOf(linked);
  }

  async unlink(parent: number, name: string): Promise<void> {
    this.writable();
    const inode = this.child(parent, name);
    if (inode.kind === 'dir') throw new FsError('EISDIR', `${name} is a directory`);
    const left = this.meta.unlink(parent, name, { keepInode: this.inUse(inode.ino) });
    const now = this.now();
    // POSIX: unlink marks the file's ctime (its link count changed) and the directory's mtime and ctime.
    if (left.nlink > 0 || this.inUse(inode.ino)) this.meta.update(inode.ino, { ctimeMs: now });
    this.touchDir(parent, now);
    this.changelog.record('UNLNK', inode.ino, parent, name, {
      lastLink: left.nlink === 0 ? 1 : 0,
      hadArchive: isArchived(inode.hsmFlags) ? 1 : 0,
    });
    if (left.nlink === 0) await this.lastNameGone(left);
  }

  async rmdir(parent: number, name: string): Promise<void> {
    this.writable();
    const inode = this.child(parent, name);
    if (inode.kind !== 'dir') throw new FsError('ENOTDIR', `${name} is not a directory`);
    if (this.meta.hasEntries(inode.ino)) throw new FsError('ENOTEMPTY', `directory not empty: ${name}`);
    this.meta.unlink(parent, name);
    this.touchDir(parent, this.now());
    this.changelog.record('RMDIR', inode.ino, parent, name);
  }

  async rename(parent: number, name: string, newParent: number, newName: string, flags = 0): Promise<void> {
    this.writable();
    const moving = this.child(parent, name);
    const into = this.directory(newParent, newName);
    if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE) || (flags & RENAME_NOREPLACE && flags & RENAME_EXCHANGE)) {
      throw new FsError('EINVAL', `unsupported rename flags 0x${flags.toString(16)}`);
    }
    const target = this.meta.lookup(newParent, newName);
    const now = this.now();
    if (flags & RENAME_EXCHANGE) {
      if (!target) throw new FsError('ENOENT', `no such file or directory: ${newName}`);
      this.meta.exchange(parent, name, newParent, newName);
      for (const ino of [moving.ino, target.ino]) this.meta.update(ino, { ctimeMs: now });
      this.touchDirs(parent, newParent, now, into);
      this.changelog.record('RENME', moving.ino, newParent, newName, { sourceParent: parent, sourceName: name, targetIno: target.ino });
      this.changelog.record('RENME', target.ino, parent, name, { sourceParent: newParent, sourceName: newName, targetIno: moving.ino });
      return;
    }
    if (flags & RENAME_NOREPLACE && target) throw new FsError('EEXIST', `${newName} exists`);
    // One commit for the names, the times and the changelog record (rsync renames every file it writes).
    const replaced = this.meta.transaction(() => {
      const gone = this.meta.rename(parent, name, newParent, newName, { keepReplaced: target !== undefined && this.inUse(target.ino) });
      this.meta.update(moving.ino, { ctimeMs: now });
      // A replaced file that keeps other names (or is still open) lost one link: its ctime changes too.
      if (gone && gone.ino !== moving.ino && (gone.nlink > 0 || this.inUse(gone.ino))) this.meta.update(gone.ino, { ctimeMs: now });
      this.touchDirs(parent, newParent, now, into);
      this.changelog.record('RENME', moving.ino, newParent, newName, {
        sourceParent: parent,
        sourceName: name,
        targetIno: gone?.ino ?? 0,
      });
      return gone;
    });
    if (replaced && replaced.nlink === 0) await this.lastNameGone(replaced);
  }

  async setxattr(_ino: number, name: string): Promise<void> {
    throw new FsError('ENOTSUP', `extended attribute ${name} cannot be set: use blobhsm hsm_set`);
  }

  // ---- helpers -------------------------------------------------------------------------------------------

  /** A new record owned by the caller; in a set-group-ID directory the group is the directory's (and a new directory keeps the bit). */
  private newInode(kind: NewInode['kind'], mode: number, now: number, caller: Caller, dir: Inode): NewInode {
    const sgid = (dir.mode & 0o2000) !== 0;
    const gid = sgid ? dir.gid : caller.gid;
    const bits = sgid && kind === 'dir' ? mode | 0o2000 : mode;
    // Version and generation 1: the first content and cache file of a file created here.
    return { ...blankInode(kind, bits, caller.uid, gid, now), dataVersion: 1, generation: 1 };
  }

  /**
   * A directory's entries changed (every caller found the directory just before, with no await between). `seen`
   * is the directory as the caller read it: already at these times (another change in the same millisecond, as
   * when rsync creates and renames files), there is nothing to write.
   */
  private touchDir(ino: number, now: number, seen?: Inode): void {
    if (seen?.mtimeMs === now && seen.ctimeMs === now) return;
    this.meta.update(ino, { mtimeMs: now, ctimeMs: now });
  }

  /** touchDir of a source and a target directory; `seenTarget` as the caller read the target. */
  private touchDirs(a: number, b: number, now: number, seenTarget?: Inode): void {
    if (b !== a) this.touchDir(a, now);
    this.touchDir(b, now, seenTarget);
  }

  /**
   * The last name of an inode is gone: its blob etag is remembered, and the delete of its data starts now unless a
   * handle has the file open (then at its last release). It used to start at the kernel's forget, which comes
   * later and on its own: a write right after `rm` of the file that had filled the cache disk was ENOSPC whenever
   * it ran first. The writes (and statfs) behind the unlink wait for the deletes under way (DataCache). While the
   * kernel references the inode (every unlink through the libfuse3 binding) its record stays, and the unlink is
   * answered without waiting for the delete (rm -r waits on each unlink, and an ext4 unlink can take milliseconds
   * while its journal is busy); without a reference the record went with the name, and the unlink waits for the
   * delete as before.
   */
  private async lastNameGone(inode: Inode): Promise<void> {
    this.coordinator.onDropped(inode);
    if (this.isOpen(inode.ino)) return;
    const deleting = this.dropData(inode);
    if (!this.kernelRefs.has(inode.ino)) return deleting;
    deleting.catch((err: unknown) => this.log(`the cache data of unlinked inode ${inode.ino} was not deleted: ${describeError(err)}`));
  }

  /** The last release of an unlinked file: its data goes, and its record too unless the kernel references it. */
  private async endIfUnused(ino: number): Promise<void> {
    const inode = this.closedUnlinked(ino);
    if (!inode) return;
    if (!this.kernelRefs.has(ino)) this.meta.deleteInode(ino);
    await this.dropData(inode);
  }

  /** The record of an unlinked entry (nlink 0, not a directory) that no handle has open, if ino is one. */
  private closedUnlinked(ino: number): Inode | undefined {
    if (this.isOpen(ino)) return undefined;
    const inode = this.meta.get(ino);
    return inode && inode.nlink === 0 && inode.kind !== 'dir' ? inode : undefined;
  }

  private async dropData(inode: Inode): Promise<void> {
    this.pendingSize.delete(inode.ino);
    this.pendingMtime.delete(inode.ino);
    if (inode.kind === 'file') await this.cache.drop(inode.ino, inode.generation);
  }
}
