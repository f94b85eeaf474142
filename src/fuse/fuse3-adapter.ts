// The libfuse3 adapter (the default binding, src/fuse/lowlevel.ts): the Vfs's inode ops as a LowLevelHandler, one
// line per op (call the Vfs, convert its Stat to the kernel's Attr, map the error through errnoOf), plus the mount
// options, the kernel's references (every entry it is given is remembered by the Vfs until forget) and the
// kernel-cache notifications other layers send when a file or a name changes behind the kernel's back. The
// session's direct writes are the Vfs's DirectWriter: the addon writes granted handles' data into the cache file.
import { constants as fsConstants } from 'node:fs';
import { constants } from 'node:os';
import { errnoOf, describeError, FsError } from '../errors.js';
import type { KernelCache } from '../namespace/types.js';
import type { AttrChanges as VfsAttrChanges, Stat, TimeToSet, Vfs } from '../vfs/vfs.js';
import type { FuseHandle, FuseMountOptions } from './fuse-adapter.js';
import { fuseMountFlags } from './fuse-adapter.js';
import { LowLevelSession, type Attr, type DirEntryPlus, type LowLevelHandler, type LowLevelOptions, type TimeSpec } from './lowlevel.js';

const MiB = 1 << 20;
const { ENOENT } = constants.errno;
const O_ACCMODE = 3;
const { O_WRONLY } = fsConstants;
/** S_ISUID | S_ISGID */
const SET_ID_BITS = 0o6000;

function timeOf(ms: number): TimeSpec {
  const sec = Math.floor(ms / 1000);
  return { sec, nsec: Math.min(999_999_999, Math.round((ms - sec * 1000) * 1e6)) };
}

function msOf(t: TimeSpec | 'now' | undefined): TimeToSet | undefined {
  return t === undefined || t === 'now' ? t : t.sec * 1000 + t.nsec / 1e6;
}

/**
 * The kernel's attributes of a Stat, field by field: a spread (`{ ...s, atime: timeOf(s.atime), ... }`) turned
 * number fields into objects and cost 4.9 µs a call against 0.3 µs, and `rsync -a` sends about nine per file.
 */
export function attrOf(s: Stat): Attr {
  return {
    ino: s.ino,
    mode: s.mode,
    nlink: s.nlink,
    uid: s.uid,
    gid: s.gid,
    rdev: 0,
    size: s.size,
    blocks: s.blocks,
    blksize: s.blksize,
    atime: timeOf(s.atime),
    mtime: timeOf(s.mtime),
    ctime: timeOf(s.ctime),
  };
}

/**
 * Which open handles the kernel keeps out of its page cache (FOPEN_DIRECT_IO). A write-only handle that is its
 * file's only open handle, on a file without a setuid or setgid bit, bypasses it: its WRITEs then carry the
 * writer's own pages, where through the page cache the kernel first copied every byte into pages of the FUSE file
 * (which also held each written byte a second time beside the cache file's). Each handle opened while such a
 * handle is open bypasses it too, so no page of the file is cached that one of those writes could leave stale (the
 * kernel drops the cached pages a direct WRITE covers before sending it). The kernel clears setuid/setgid on a
 * write only through its page cache; such files keep it. Measured (README, "Ingest"): 8 dd writers ~1.7x.
 */
export class PageCacheBypass {
  /** Per file: handles open, and how many of them bypass the page cache. */
  private readonly files = new Map<number, { open: number; bypassing: number }>();
  private readonly bypassing = new Set<number>();

  /** Whether a handle opened now with these flags would be the first to bypass (the caller then needs the mode). */
  wouldLead(ino: number, flags: number): boolean {
    return (flags & O_ACCMODE) === O_WRONLY && !this.files.has(ino);
  }

  /** Handle fh of file ino is open (mode: the file's); answers whether it bypasses the page cache. */
  opened(ino: number, fh: number, flags: number, mode: number): boolean {
    const bypass = this.wouldLead(ino, flags) ? (mode & SET_ID_BITS) === 0 : (this.files.get(ino)?.bypassing ?? 0) > 0;
    const f = this.files.get(ino) ?? { open: 0, bypassing: 0 };
    this.files.set(ino, f);
    f.open++;
    if (bypass) {
      f.bypassing++;
      this.bypassing.add(fh);
    }
    return bypass;
  }

  released(ino: number, fh: number): void {
    const f = this.files.get(ino);
    if (!f) return;
    if (this.bypassing.delete(fh)) f.bypassing--;
    if (--f.open <= 0) this.files.delete(ino);
  }
}

/** The Vfs as the binding calls it. Directory listings are taken at opendir, so readdir offsets stay stable. */
export function buildHandler(vfs: Vfs, log: (line: string) => void): LowLevelHandler {
  const listings = new Map<number, DirEntryPlus[]>();
  const bypass = new PageCacheBypass();
  let nextDir = 1;
  const entry = (s: Stat): Attr => {
    vfs.remember(s.ino);
    return attrOf(s);
  };
  return {
    errnoOf,
    onError: (op, err) => {
      if (!(err instanceof FsError) || err.code === 'EIO') log(`${op}: ${describeError(err)}`);
    },
    lookup: async (_c, parent, name) => {
      const found = await vfs.lookup(parent, name);
      return found ? entry(found) : null;
    },
    forget: (ino, n) => void vfs.forget(ino, n).catch((err: unknown) => log(`forget: ${describeError(err)}`)),
    lookedUp: (ino) => vfs.remember(ino),
    getattr: async (_c, ino) => attrOf(await vfs.getattr(ino)),
    setattr: async (_c, ino, ch, fh) => {
      const changes: VfsAttrChanges = { mode: ch.mode, uid: ch.uid, gid: ch.gid, size: ch.size, atime: msOf(ch.atime), mtime: msOf(ch.mtime) };
      return attrOf(await vfs.setattr(ino, changes, fh));
    },
    readlink: (_c, ino) => vfs.readlink(ino),
    mknod: async (c, parent, name, mode) => entry(await vfs.mknod(parent, name, mode, c)),
    mkdir: async (c, parent, name, mode) => entry(await vfs.mkdir(parent, name, mode, c)),
    unlink: (_c, parent, name) => vfs.unlink(parent, name),
    rmdir: (_c, parent, name) => vfs.rmdir(parent, name),
    symlink: async (c, parent, name, target) => entry(await vfs.symlink(parent, name, target, c)),
    rename: (_c, parent, name, newParent, newName, flags) => vfs.rename(parent, name, newParent, newName, flags),
    link: async (_c, ino, newParent, newName) => entry(await vfs.link(ino, newParent, newName)),
    // Pages stay across opens: whatever changes a file behind the kernel's back invalidates them (KernelCache).
    open: async (_c, ino, flags) => {
      const mode = bypass.wouldLead(ino, flags) ? (await vfs.getattr(ino)).mode : 0;
      const fh = await vfs.open(ino, flags);
      return { fh, keepCache: true, noFlush: !vfs.flushes(fh), directIo: bypass.opened(ino, fh, flags, mode) };
    },
    create: async (c, parent, name, mode, flags) => {
      const { fh, stat } = await vfs.create(parent, name, mode, c);
      return { attr: entry(stat), opened: { fh, keepCache: true, directIo: bypass.opened(stat.ino, fh, flags, stat.mode) } };
    },
    read: async (_ino, fh, size, offset) => {
      const data = Buffer.allocUnsafe(size);
      return { data, length: await vfs.read(fh, data, size, offset) };
    },
    write: (_ino, fh, data, offset) => vfs.write(fh, data, data.length, offset),
    written: (_ino, fh, token, offset, size, result) => vfs.written(fh, token, offset, size, result),
    flush: (_ino, fh) => vfs.flush(fh),
    release: (ino, fh) => {
      bypass.released(ino, fh);
      return vfs.release(fh);
    },
    fsync: (_ino, fh) => vfs.fsync(fh),
    opendir: async (_c, ino) => {
      const fh = nextDir++;
      listings.set(fh, (await vfs.readdir(ino)).map((e) => ({ name: e.name, attr: attrOf(e.stat) })));
      return fh;
    },
    readdir: async (_ino, fh, offset) => (listings.get(fh) ?? []).slice(offset),
    releasedir: async (_ino, fh) => void listings.delete(fh),
    statfs: () => vfs.statfs(),
    getxattr: (_c, ino, name) => vfs.getxattr(ino, name),
    listxattr: (_c, ino) => vfs.listxattr(ino),
    setxattr: (_c, ino, name) => vfs.setxattr(ino, name),
    removexattr: (_c, ino, name) => vfs.setxattr(ino, name),
  };
}

/**
 * Session tuning. 1 MiB READ/WRITE (libfuse3 wants max_read in -o and at INIT alike; lowlevel.ts does both);
 * max_background 64 lets read-ahead and parallel readers keep more requests in flight than the default 12.
 * No writeback cache (measured; README, "FUSE bindings"): with it the kernel owns a regular file's size and mtime,
 * so an import that replaced a file left the old size visible and readable (1,000 bytes after the blob grew to
 * 5,000), and write() returns before blobhsm sees the data (export and hsm_archive read the cache file, not the
 * kernel's dirty pages). It saved 20–35 % of the daemon's CPU on 1 MiB and 4 KiB-write workloads.
 */
export function lowLevelOptions(o: FuseMountOptions): LowLevelOptions {
  const timeout = o.attrTimeoutSeconds ?? 60;
  return {
    mountOptions: ['fsname=blobhsm', 'subtype=blobhsm', ...fuseMountFlags(o)],
    maxRead: MiB,
    maxWrite: MiB,
    maxBackground: 64,
    congestionThreshold: 48,
    writebackCache: false,
    entryTimeout: timeout,
    attrTimeout: timeout,
    ...(o.debug ? { debug: true } : {}),
  };
}

/** Mounts the Vfs through libfuse3; resolves once INIT was answered. `kernel` tells the kernel what changed. */
export async function mountFuse3(mountpoint: string, vfs: Vfs, o: FuseMountOptions): Promise<FuseHandle & { kernel: KernelCache }> {
  const log = o.log ?? (() => undefined);
  const options = { ...lowLevelOptions(o), servedXattrs: vfs.servedXattrNames() };
  const { session, negotiated } = await LowLevelSession.mount(mountpoint, buildHandler(vfs, log), options);
  vfs.useDirectWriter(session.directWrites);
  log(`libfuse3 binding: max_read ${negotiated.maxRead}, max_write ${negotiated.maxWrite}, max_background ${negotiated.maxBackground}, protocol 7.${negotiated.protoMinor}, /dev/fuse read by ${negotiated.deviceReader === 'auto' ? 'the JavaScript thread, a session thread while direct writes stream' : `the ${negotiated.deviceReader}`}`);
  const told = (what: string) => (result: number) => {
    // -ENOENT: the kernel had nothing cached for it.
    if (result < 0 && result !== -ENOENT) log(`${what}: notification answered ${result}`);
  };
  return {
    unmount: (mode = 'lazy') => session.unmount(mode === 'lazy'),
    ended: () => session.ended,
    kernel: {
      inodeChanged: (ino) => session.invalidateInode(ino).then(told(`invalidate inode ${ino}`)),
      entryChanged: (parent, name) => session.invalidateEntry(parent, name).then(told(`invalidate entry ${parent}/${name}`)),
      entryDeleted: async (parent, name, child) => {
        // notify_delete answers an error when the kernel's dentry is another inode's or a directory it still holds
        // children of: then the name is at least forgotten.
        if ((await session.deleteEntry(parent, child, name)) < 0) told(`invalidate entry ${parent}/${name}`)(await session.invalidateEntry(parent, name));
      },
    },
  };
}
