// The libfuse3 adapter (the default binding, src/fuse/lowlevel.ts): the Vfs's inode ops as a LowLevelHandler, one
// line per op (call the Vfs, convert its Stat to the kernel's Attr, map the error through errnoOf), plus the mount
// options, the kernel's references (every entry it is given is remembered by the Vfs until forget) and the
// kernel-cache notifications other layers send when a file or a name changes behind the kernel's back. The
// session's direct writes are the Vfs's DirectWriter: the addon writes granted handles' data into the cache file.
import { constants } from 'node:os';
import { errnoOf, describeError, FsError } from '../errors.js';
import type { KernelCache } from '../namespace/types.js';
import type { AttrChanges as VfsAttrChanges, Stat, TimeToSet, Vfs } from '../vfs/vfs.js';
import type { FuseHandle, FuseMountOptions } from './fuse-adapter.js';
import { fuseMountFlags } from './fuse-adapter.js';
import { LowLevelSession, type Attr, type DirEntryPlus, type LowLevelHandler, type LowLevelOptions, type TimeSpec } from './lowlevel.js';

const MiB = 1 << 20;
const { ENOENT } = constants.errno;

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

/** The Vfs as the binding calls it. Directory listings are taken at opendir, so readdir offsets stay stable. */
export function buildHandler(vfs: Vfs, log: (line: string) => void): LowLevelHandler {
  const listings = new Map<number, DirEntryPlus[]>();
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
      const fh = await vfs.open(ino, flags);
      return { fh, keepCache: true, noFlush: !vfs.flushes(fh) };
    },
    create: async (c, parent, name, mode) => {
      const { fh, stat } = await vfs.create(parent, name, mode, c);
      return { attr: entry(stat), opened: { fh, keepCache: true } };
    },
    read: async (_ino, fh, size, offset) => {
      const data = Buffer.allocUnsafe(size);
      return { data, length: await vfs.read(fh, data, size, offset) };
    },
    write: (_ino, fh, data, offset) => vfs.write(fh, data, data.length, offset),
    written: (_ino, fh, token, offset, _size, result) => vfs.written(fh, token, offset, result),
    flush: (_ino, fh) => vfs.flush(fh),
    release: (_ino, fh) => vfs.release(fh),
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
  log(`libfuse3 binding: max_read ${negotiated.maxRead}, max_write ${negotiated.maxWrite}, max_background ${negotiated.maxBackground}, protocol 7.${negotiated.protoMinor}`);
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
