// Filesystem semantics with FUSE op names: path based, async, throwing typed FsErrors. Knows nothing of FUSE.
// Owns open handles and the in-memory size overlay of files being written; data goes through the DataCache,
// HSM-driven state changes (restore, dirty marking) through the Coordinator.
import { constants as fsConstants, statfs as statfsCb } from 'node:fs';
import { promisify } from 'node:util';
import { FsError, describeError, errnoCodeOf } from '../errors.js';
import type { DataCache } from '../cache/data-cache.js';
import type { Coordinator } from '../hsm/coordinator.js';
import { flagsHex, isArchived, isReleased, stateWords } from '../hsm/flags.js';
import type { Inode, MetaStore, NewInode } from '../namespace/types.js';
import { ROOT_INO, blankInode } from '../namespace/types.js';
import { posixAclXattr } from '../namespace/hns-encoding.js';
import type { Changelog } from '../hsm/changelog.js';

const statfsAsync = promisify(statfsCb);

const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;
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
}

interface Handle {
  ino: number;
  writable: boolean;
  wrote: boolean;
  /** A full cache disk was logged for this open file. */
  noSpaceLogged?: boolean;
}

export interface VfsOptions {
  meta: MetaStore;
  cache: DataCache;
  coordinator: Coordinator;
  changelog: Changelog;
  readOnly: boolean;
  /** uid/gid given to new files when the caller is unknown (fuse-native does not expose it). */
  owner?: { uid: number; gid: number };
  /** Serve system.posix_acl_access from the stored ACLs (HNS mounts); otherwise it is answered without a lookup. */
  posixAcls?: boolean;
  /** The daemon's log (a full cache disk is logged once per open file). */
  log?: (line: string) => void;
}

export const XATTR_NAMES = ['user.hsm.state', 'user.hsm.flags', 'user.hsm.archive_id', 'user.hsm.blob', 'user.hsm.etag', 'user.hsm.md5'];
/** The access ACL of an entry imported from an HNS account with an extended ACL (Linux's POSIX ACL xattr format). */
export const POSIX_ACL_ACCESS = 'system.posix_acl_access';

/** POSIX NAME_MAX: the longest name component, in bytes. */
const NAME_MAX = 255;

/** Entries per MetaStore query when a whole directory is listed. */
const READDIR_PAGE = 1000;

/** Inode numbers of virtual root entries (fuse-native passes st_ino as 32 bits; real ones never get this high). */
const VIRTUAL_INO = 0xffff_ff00;

export class Vfs {
  private readonly meta: MetaStore;
  private readonly cache: DataCache;
  private readonly coordinator: Coordinator;
  private readonly changelog: Changelog;
  private readonly readOnly: boolean;
  private readonly owner: { uid: number; gid: number };
  private readonly posixAcls: boolean;
  private readonly log: (line: string) => void;
  private readonly handles = new Map<number, Handle>();
  private nextHandle = 1;
  /** Sizes of files being written, not yet persisted (persisted on flush, fsync and release). */
  private readonly pendingSize = new Map<number, number>();
  /** Names of read-only empty files shown in the root without an inode (the import job's IMPORT_<state> marker). */
  private rootMarkers: () => string[] = () => [];
  /** READ and WRITE requests served and their bytes (`blobhsm status`: shows the kernel's request sizes). */
  private readonly io: IoStats = { readOps: 0, readBytes: 0, writeOps: 0, writeBytes: 0 };

  constructor(options: VfsOptions) {
    this.meta = options.meta;
    this.cache = options.cache;
    this.coordinator = options.coordinator;
    this.changelog = options.changelog;
    this.readOnly = options.readOnly;
    this.posixAcls = options.posixAcls ?? false;
    this.log = options.log ?? (() => undefined);
    this.owner = options.owner ?? { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
  }

  // ---- lookups -------------------------------------------------------------------------------------------

  private resolve(path: string): Inode {
    const inode = this.meta.resolve(path) ?? this.virtual(path);
    if (!inode) {
      // POSIX: a component longer than NAME_MAX is ENAMETOOLONG, whether or not the path exists (checked only on
      // a miss: no stored name is that long).
      if (path.split('/').some((c) => Buffer.byteLength(c) > NAME_MAX)) throw new FsError('ENAMETOOLONG', `a name in ${path} is longer than ${NAME_MAX} bytes`);
      throw new FsError('ENOENT', `no such file or directory: ${path}`);
    }
    return inode;
  }

  /** Shows these names in the root as read-only empty files (a real entry of the same name wins). */
  setRootMarkers(names: () => string[]): void {
    this.rootMarkers = names;
  }

  private virtual(path: string): Inode | undefined {
    const i = this.rootMarkers().indexOf(path.slice(1));
    if (!path.startsWith('/') || i < 0) return undefined;
    const root = this.meta.get(ROOT_INO)!;
    return { ...root, ino: VIRTUAL_INO + i, kind: 'file', mode: 0o444, size: 0, nlink: 1, target: null, hsmFlags: 0, archiveId: 0, blobName: null, etag: null, contentMd5: null };
  }

  private resolveParent(path: string): { parent: Inode; name: string } {
    const cut = path.lastIndexOf('/');
    const name = path.slice(cut + 1);
    if (!name) throw new FsError('EINVAL', `bad path: ${path}`);
    if (Buffer.byteLength(name) > NAME_MAX) throw new FsError('ENAMETOOLONG', `name too long: ${name}`);
    const parent = this.resolve(path.slice(0, cut) || '/');
    if (parent.kind !== 'dir') throw new FsError('ENOTDIR', `not a directory: ${path.slice(0, cut)}`);
    return { parent, name };
  }

  private handle(fh: number): Handle {
    const h = this.handles.get(fh);
    if (!h) throw new FsError('EBADF', `bad file handle ${fh}`);
    return h;
  }

  private writable(): void {
    if (this.readOnly) throw new FsError('EROFS', 'the mount is read-only');
  }

  /** The inode as stored, with the size of a file being written. */
  private current(ino: number): Inode {
    const inode = this.meta.get(ino);
    if (!inode) throw new FsError('ENOENT', `inode ${ino} is gone`);
    const size = this.pendingSize.get(ino);
    return size === undefined ? inode : { ...inode, size };
  }

  statOf(inode: Inode): Stat {
    const typeBits = inode.kind === 'dir' ? S_IFDIR : inode.kind === 'symlink' ? S_IFLNK : S_IFREG;
    const size = this.pendingSize.get(inode.ino) ?? inode.size;
    const released = isReleased(inode.hsmFlags);
    const blocks = released ? (size > 0 ? 1 : 0) : Math.ceil(size / 512);
    return {
      ino: inode.ino,
      mode: typeBits | inode.mode,
      nlink: inode.nlink,
      uid: inode.uid,
      gid: inode.gid,
      size,
      blocks,
      blksize: 4096,
      atime: inode.atimeMs,
      mtime: inode.mtimeMs,
      ctime: inode.ctimeMs,
    };
  }

  // ---- read side -----------------------------------------------------------------------------------------

  async getattr(path: string): Promise<Stat> {
    return this.statOf(this.resolve(path));
  }

  /**
   * The whole directory, `.` and `..` first (fuse-native's readdir takes every name at once), read page by page.
   */
  async readdir(path: string): Promise<{ names: string[]; stats: Stat[] }> {
    const names: string[] = [];
    const stats: Stat[] = [];
    let after: string | undefined;
    do {
      const page = await this.readdirPage(path, after, READDIR_PAGE);
      for (const e of page.entries) {
        names.push(e.name);
        stats.push(e.stat);
      }
      after = page.next;
    } while (after !== undefined);
    return { names, stats };
  }

  /**
   * One page of a directory, in name (byte) order, from after the cursor `after` (undefined: the start): at most
   * `limit` entries and the cursor of the next page (undefined after the last). Each page costs the same wherever
   * it starts (an index range scan), so a binding that serves READDIR in pages never builds the whole directory.
   * `.` and `..` come first on the first page (beyond `limit`), the root's virtual marker files (IMPORT_<state>)
   * with its last page.
   */
  async readdirPage(path: string, after: string | undefined, limit: number): Promise<{ entries: Array<{ name: string; stat: Stat }>; next: string | undefined }> {
    const dir = this.resolve(path);
    if (dir.kind !== 'dir') throw new FsError('ENOTDIR', `not a directory: ${path}`);
    const rows = this.meta.readdirPage(dir.ino, after, limit);
    const entries = rows.map((e) => ({ name: e.name, stat: this.statOf(e.inode) }));
    if (after === undefined) {
      // `.` and `..` first, as POSIX readdir lists them (the root is its own parent).
      const trimmed = path.replace(/\/+$/, '');
      const parent = dir.ino === ROOT_INO ? dir : this.resolve(trimmed.slice(0, Math.max(trimmed.lastIndexOf('/'), 0)) || '/');
      entries.unshift({ name: '.', stat: this.statOf(dir) }, { name: '..', stat: this.statOf(parent) });
    }
    if (rows.length === limit) return { entries, next: rows[rows.length - 1]!.name };
    if (dir.ino === ROOT_INO) {
      for (const name of this.rootMarkers()) {
        const v = this.virtual('/' + name);
        if (v && !this.meta.lookup(ROOT_INO, name)) entries.push({ name, stat: this.statOf(v) });
      }
    }
    return { entries, next: undefined };
  }

  async readlink(path: string): Promise<string> {
    const inode = this.resolve(path);
    if (inode.kind !== 'symlink' || inode.target === null) throw new FsError('EINVAL', `not a symlink: ${path}`);
    return inode.target;
  }

  async statfs(_path: string): Promise<StatFs> {
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
      namemax: 255,
    };
  }

  async open(path: string, flags: number): Promise<number> {
    const inode = this.resolve(path);
    if (inode.kind === 'dir') throw new FsError('EISDIR', `is a directory: ${path}`);
    const writable = (flags & O_ACCMODE) !== O_RDONLY;
    if (writable || flags & O_TRUNC) this.writable();
    if (inode.ino >= VIRTUAL_INO && (writable || flags & O_TRUNC)) throw new FsError('EACCES', `${path} is read-only`);
    const fh = this.addHandle(inode.ino, writable);
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

  /** Reads into buf; a released file is restored first, each read waiting only for its own range. */
  async read(fh: number, buf: Buffer, length: number, position: number): Promise<number> {
    const h = this.handle(fh);
    if (h.ino >= VIRTUAL_INO) return 0;
    let inode = this.current(h.ino);
    let n: number;
    for (;;) {
      while (isReleased(inode.hsmFlags) && position < inode.size) {
        const restoring = inode;
        try {
          await this.coordinator.ensureReadable(restoring, position, Math.min(length, restoring.size - position));
        } catch (err) {
          // A truncate changed the file under the restore (a new generation): read what it holds now.
          inode = this.current(h.ino);
          if (inode.generation === restoring.generation) throw err;
          continue;
        }
        inode = this.current(h.ino);
        if (inode.generation === restoring.generation) break;
      }
      if (position >= inode.size) return 0;
      const reading = inode;
      try {
        n = await this.cache.read(reading.ino, reading.generation, buf, Math.min(length, reading.size - position), position);
        break;
      } catch (err) {
        // Released (or truncated) meanwhile: its cache data of that generation is gone; read the file as it is now.
        inode = this.current(h.ino);
        if (inode.generation === reading.generation) throw err;
      }
    }
    this.io.readOps++;
    this.io.readBytes += n;
    return n;
  }

  async getxattr(path: string, name: string): Promise<Buffer | null> {
    // The kernel asks security.* and system.posix_acl_* of every entry `ls -l` lists: answer without a lookup.
    if (name === POSIX_ACL_ACCESS && this.posixAcls) {
      const inode = this.resolve(path);
      const acl = this.meta.accessAcl(inode.ino);
      return acl === null ? null : posixAclXattr(inode.mode, acl);
    }
    if (!XATTR_NAMES.includes(name)) return null;
    const inode = this.resolve(path);
    const value = this.xattrValue(inode, name);
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

  async listxattr(path: string): Promise<string[]> {
    const inode = this.resolve(path);
    const names = XATTR_NAMES.filter((n) => this.xattrValue(inode, n) !== null);
    return !this.posixAcls || this.meta.accessAcl(inode.ino) === null ? names : [...names, POSIX_ACL_ACCESS];
  }

  // ---- write side ----------------------------------------------------------------------------------------

  async create(path: string, mode: number): Promise<number> {
    this.writable();
    const { parent, name } = this.resolveParent(path);
    const now = Date.now();
    const inode = this.meta.create(parent.ino, name, this.newInode('file', mode & 0o7777, now));
    // Open before the first await: an import job meanwhile sees a busy file and does not replace it.
    const fh = this.addHandle(inode.ino, true);
    this.touchDir(parent.ino, now);
    this.changelog.record('CREAT', inode.ino, parent.ino, name);
    try {
      await this.cache.truncate(inode.ino, inode.generation, 0);
    } catch (err) {
      this.dropHandle(fh);
      throw err;
    }
    return fh;
  }

  async write(fh: number, buf: Buffer, length: number, position: number): Promise<number> {
    const h = this.handle(fh);
    if (!h.writable) throw new FsError('EBADF', 'file not open for writing');
    let inode = this.current(h.ino);
    if (isReleased(inode.hsmFlags)) inode = await this.coordinator.ensureResident(inode);
    inode = this.coordinator.beforeContentChange(inode.ino);
    let written: number;
    try {
      written = await this.cache.write(inode.ino, inode.generation, buf, length, position);
    } catch (err) {
      if (errnoCodeOf(err) === 'ENOSPC' && !h.noSpaceLogged) {
        h.noSpaceLogged = true; // once per open file: a writer retrying in a loop must not flood the log
        this.log(`write to ${this.meta.pathOf(inode.ino) ?? `inode ${inode.ino}`} failed: ${describeError(err)}`);
      }
      throw err;
    } finally {
      this.coordinator.contentChangeDone(inode.ino);
    }
    this.io.writeOps++;
    this.io.writeBytes += written;
    h.wrote = true;
    const size = this.pendingSize.get(inode.ino) ?? inode.size;
    if (position + written > size) this.pendingSize.set(inode.ino, position + written);
    else if (!this.pendingSize.has(inode.ino)) this.pendingSize.set(inode.ino, size);
    return written;
  }

  private async truncateInode(ino: number, size: number): Promise<void> {
    let inode = this.current(ino);
    if (inode.kind !== 'file') throw new FsError('EISDIR', 'not a regular file');
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
    const now = Date.now();
    this.meta.update(ino, { size, mtimeMs: now, ctimeMs: now });
    this.changelog.record('TRUNC', ino, 0, '');
  }

  async truncate(path: string, size: number): Promise<void> {
    this.writable();
    const ino = this.resolve(path).ino;
    // Held open while it runs, as by the kernel for ftruncate: a released file restored first must not be evicted
    // (released again) before the truncate changes it, nor released by a request meanwhile.
    const fh = this.addHandle(ino, true);
    try {
      await this.truncateInode(ino, size);
    } finally {
      this.dropHandle(fh);
    }
  }

  async ftruncate(fh: number, size: number): Promise<void> {
    this.writable();
    await this.truncateInode(this.handle(fh).ino, size);
  }

  /** Persists the size and mtime of a written file. */
  private persistWrites(h: Handle): void {
    if (!h.wrote) return;
    const size = this.pendingSize.get(h.ino);
    const now = Date.now();
    if (this.meta.get(h.ino)) this.meta.update(h.ino, { ...(size === undefined ? {} : { size }), mtimeMs: now, ctimeMs: now });
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
    const h = this.dropHandle(fh);
    this.persistWrites(h);
    if (h.wrote) {
      this.changelog.record('CLOSE', h.ino, 0, '');
      this.coordinator.afterClose(h.ino);
    }
    if (!this.coordinator.isOpen(h.ino)) this.pendingSize.delete(h.ino);
  }

  /** Open file handles (what makes an unmount busy). */
  openFileCount(): number {
    return this.handles.size;
  }

  ioStats(): IoStats {
    return { ...this.io };
  }

  /** True while any handle has the file open for writing (release refuses then). */
  hasWriter(ino: number): boolean {
    return this.coordinator.hasWriter(ino);
  }

  isOpen(ino: number): boolean {
    return this.coordinator.isOpen(ino);
  }

  /** A new handle, counted in the file's state at once (before the caller's first await). */
  private addHandle(ino: number, writable: boolean): number {
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

  async mkdir(path: string, mode: number): Promise<void> {
    this.writable();
    const { parent, name } = this.resolveParent(path);
    const now = Date.now();
    const inode = this.meta.create(parent.ino, name, this.newInode('dir', mode & 0o7777, now));
    this.touchDir(parent.ino, now);
    this.changelog.record('MKDIR', inode.ino, parent.ino, name);
  }

  async symlink(target: string, path: string): Promise<void> {
    this.writable();
    const { parent, name } = this.resolveParent(path);
    const now = Date.now();
    const inode = this.meta.create(parent.ino, name, {
      ...this.newInode('symlink', 0o777, now),
      target,
      size: Buffer.byteLength(target),
    });
    this.touchDir(parent.ino, now);
    this.changelog.record('SLINK', inode.ino, parent.ino, name);
  }

  async link(existingPath: string, newPath: string): Promise<void> {
    this.writable();
    const inode = this.resolve(existingPath);
    if (inode.kind === 'dir') throw new FsError('EPERM', 'hard links to directories are not allowed');
    const { parent, name } = this.resolveParent(newPath);
    this.meta.link(inode.ino, parent.ino, name);
    this.meta.update(inode.ino, { ctimeMs: Date.now() });
    this.touchDir(parent.ino, Date.now());
    this.changelog.record('HLINK', inode.ino, parent.ino, name);
  }

  async unlink(path: string): Promise<void> {
    this.writable();
    const { parent, name } = this.resolveParent(path);
    const inode = this.meta.lookup(parent.ino, name);
    if (!inode) throw new FsError('ENOENT', `no such file: ${path}`);
    if (inode.kind === 'dir') throw new FsError('EISDIR', `is a directory: ${path}`);
    const left = this.meta.unlink(parent.ino, name);
    const now = Date.now();
    // POSIX: unlink marks the file's ctime (its link count changed) and the directory's mtime and ctime.
    if (left.nlink > 0) this.meta.update(inode.ino, { ctimeMs: now });
    this.touchDir(parent.ino, now);
    this.changelog.record('UNLNK', inode.ino, parent.ino, name, {
      lastLink: left.nlink === 0 ? 1 : 0,
      hadArchive: isArchived(inode.hsmFlags) ? 1 : 0,
    });
    if (left.nlink === 0) await this.forget(left);
  }

  async rmdir(path: string): Promise<void> {
    this.writable();
    const { parent, name } = this.resolveParent(path);
    const inode = this.meta.lookup(parent.ino, name);
    if (!inode) throw new FsError('ENOENT', `no such directory: ${path}`);
    if (inode.kind !== 'dir') throw new FsError('ENOTDIR', `not a directory: ${path}`);
    if (this.meta.hasEntries(inode.ino)) throw new FsError('ENOTEMPTY', `directory not empty: ${path}`);
    this.meta.unlink(parent.ino, name);
    this.touchDir(parent.ino, Date.now());
    this.changelog.record('RMDIR', inode.ino, parent.ino, name);
  }

  async rename(from: string, to: string): Promise<void> {
    this.writable();
    const src = this.resolveParent(from);
    const dst = this.resolveParent(to);
    const moving = this.meta.lookup(src.parent.ino, src.name);
    if (!moving) throw new FsError('ENOENT', `no such file or directory: ${from}`);
    if (moving.kind === 'dir' && (to + '/').startsWith(from + '/') && to !== from) {
      throw new FsError('EINVAL', `cannot move a directory into itself: ${from} → ${to}`);
    }
    const replaced = this.meta.rename(src.parent.ino, src.name, dst.parent.ino, dst.name);
    const now = Date.now();
    this.meta.update(moving.ino, { ctimeMs: now });
    // A replaced file that keeps other names lost one link: its ctime changes too.
    if (replaced && replaced.nlink > 0 && replaced.ino !== moving.ino) this.meta.update(replaced.ino, { ctimeMs: now });
    this.touchDir(src.parent.ino, now);
    if (dst.parent.ino !== src.parent.ino) this.touchDir(dst.parent.ino, now);
    this.changelog.record('RENME', moving.ino, dst.parent.ino, dst.name, {
      sourceParent: src.parent.ino,
      sourceName: src.name,
      targetIno: replaced?.ino ?? 0,
    });
    if (replaced && replaced.nlink === 0) await this.forget(replaced);
  }

  async chmod(path: string, mode: number): Promise<void> {
    this.writable();
    const inode = this.resolve(path);
    this.meta.update(inode.ino, { mode: mode & 0o7777, ctimeMs: Date.now() });
    this.changelog.record('SATTR', inode.ino, 0, '');
  }

  async chown(path: string, uid: number, gid: number): Promise<void> {
    this.writable();
    const inode = this.resolve(path);
    // (uid_t)-1 / (gid_t)-1 mean "leave unchanged".
    const patch = { ctimeMs: Date.now(), ...(uid !== 0xffffffff && uid !== -1 ? { uid } : {}), ...(gid !== 0xffffffff && gid !== -1 ? { gid } : {}) };
    this.meta.update(inode.ino, patch);
    this.changelog.record('SATTR', inode.ino, 0, '');
  }

  async utimens(path: string, atimeMs: number, mtimeMs: number): Promise<void> {
    this.writable();
    const inode = this.resolve(path);
    this.meta.update(inode.ino, { atimeMs, mtimeMs, ctimeMs: Date.now() });
    this.changelog.record('MTIME', inode.ino, 0, '');
  }

  async setxattr(_path: string, name: string): Promise<void> {
    throw new FsError('ENOTSUP', `extended attribute ${name} cannot be set: use blobhsm hsm_set`);
  }

  // ---- helpers -------------------------------------------------------------------------------------------

  private newInode(kind: NewInode['kind'], mode: number, now: number): NewInode {
    // Version and generation 1: the first content and cache file of a file created here.
    return { ...blankInode(kind, mode, this.owner.uid, this.owner.gid, now), dataVersion: 1, generation: 1 };
  }


  private touchDir(ino: number, now: number): void {
    if (ino === ROOT_INO || this.meta.get(ino)) this.meta.update(ino, { mtimeMs: now, ctimeMs: now });
  }

  /** Drops the cache data of an inode whose last name is gone. */
  private async forget(inode: Inode): Promise<void> {
    this.pendingSize.delete(inode.ino);
    this.coordinator.onDropped(inode);
    if (inode.kind === 'file') await this.cache.drop(inode.ino, inode.generation);
  }
}
