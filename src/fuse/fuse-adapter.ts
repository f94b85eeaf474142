// The fuse-native adapter (libfuse 2, the fallback binding): the only importer of fuse-native. One line per op (call
// the Vfs through its path view, map the error through errnoOf), plus the mount options.
import { execFile } from 'node:child_process';
import { readdirSync, readlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { errnoOf, describeError, FsError } from '../errors.js';
import { isBlobhsmMount, mountAt } from '../daemon/mount-checks.js';
import type { Vfs } from '../vfs/vfs.js';
import { PathVfs } from '../vfs/path-vfs.js';
import type { Log } from '../log.js';

const require = createRequire(import.meta.url);

type Cb = (code: number, ...rest: unknown[]) => void;

export interface FuseMountOptions {
  readOnly: boolean;
  /** Let users other than the mounting one in (`allow_other`; `default_permissions` is always on). */
  allowOther?: boolean;
  /** Extra `-o` options from the command line (comma separated, as for mount). */
  extraOptions?: string[];
  /** Seconds the kernel may cache attributes and entries (imported data changes only through this mount). */
  attrTimeoutSeconds?: number;
  debug?: boolean;
  log?: (line: string) => void;
}

export interface FuseHandle {
  /**
   * `strict`: the kernel unmount proper (fails with EBUSY while anything uses the mount, and then nothing changes);
   * `lazy` (the default, for shutdown on a signal): detach at once, open files keep being served while the process
   * lives. After a strict or lazy unmount the process must exit to end the FUSE session.
   */
  unmount(mode?: 'strict' | 'lazy'): Promise<void>;
  /** Resolves once the kernel ended the FUSE session (after an unmount, once the last user of a lazily detached
   * mount let go): libfuse then closes this process's /dev/fuse descriptor. */
  ended(): Promise<void>;
}

/** Whether this process holds /dev/fuse open (libfuse closes it when the session ends). */
function holdsFuseDevice(): boolean {
  try {
    return readdirSync('/proc/self/fd').some((fd) => {
      try {
        return readlinkSync(`/proc/self/fd/${fd}`) === '/dev/fuse';
      } catch {
        return false;
      }
    });
  } catch {
    return false;
  }
}

/**
 * Mount options. fuse-native has no option for big_writes, use_ino or negative_timeout, drops a zero
 * ac_attr_timeout, and joins its options unescaped, so those ride on the fsname (pinned by the WRITE-size test in
 * test/e2e-write.test.ts). Page cache: `auto_cache` with `ac_attr_timeout=0` keeps a file's pages across opens
 * while its mtime and size are unchanged, and drops them on the next open once an import or a write elsewhere
 * changed them (`kernel_cache` would keep serving the old bytes).
 */
export function fuseOptions(o: FuseMountOptions): Record<string, unknown> {
  const timeout = String(o.attrTimeoutSeconds ?? 60);
  const injected = [
    'big_writes',
    'use_ino',
    `negative_timeout=${timeout}`,
    'max_read=131072',
    'ac_attr_timeout=0',
    ...(o.readOnly ? ['ro'] : []),
    ...(o.extraOptions ?? []),
  ];
  return {
    fsname: ['blobhsm', ...injected].join(','),
    subtype: 'blobhsm',
    autoCache: true,
    attrTimeout: timeout,
    entryTimeout: timeout,
    // The kernel checks permissions itself: needed as soon as anyone but the mounting user can enter.
    defaultPermissions: true,
    allowOther: o.allowOther ?? false,
    debug: o.debug ?? false,
    // Reads wait for hydration: no per-op timeout (fuse-native's 15 s default would answer ETIMEDOUT).
    timeout: false,
  };
}

/**
 * The mount flags the libfuse3 binding passes as -o, mirroring fuseOptions: default_permissions always, allow_other
 * when asked, ro, the user's own, except `nonempty`: libfuse 3 has no such option (it always mounts over a non-empty
 * directory); blobhsm's own mountpoint check (daemon/mount-checks.ts) already applied it.
 */
export function fuseMountFlags(o: FuseMountOptions): string[] {
  const own = (o.extraOptions ?? []).filter((opt) => opt !== 'nonempty');
  return ['default_permissions', ...(o.allowOther ? ['allow_other'] : []), ...(o.readOnly ? ['ro'] : []), ...own];
}

export function buildOps(vfs: PathVfs, log: Log): Record<string, (...args: never[]) => void> {
  const fail = (op: string, cb: Cb, err: unknown) => {
    const errno = errnoOf(err);
    if (!(err instanceof FsError) || err.code === 'EIO') log(`${op}: ${describeError(err)}`, { event: 'fs_error', level: 'error', op, cause: describeError(err) });
    cb(-errno);
  };
  const run = <T>(op: string, cb: Cb, p: Promise<T>, ok: (value: T) => void) => {
    p.then(ok, (err) => fail(op, cb, err));
  };
  return {
    getattr: (path: string, cb: Cb) => run('getattr', cb, vfs.getattr(path), (s) => cb(0, s)),
    fgetattr: (path: string, _fd: number, cb: Cb) => run('getattr', cb, vfs.getattr(path), (s) => cb(0, s)),
    readdir: (path: string, cb: Cb) => run('readdir', cb, vfs.readdir(path), (r) => cb(0, r.names, r.stats)),
    readlink: (path: string, cb: Cb) => run('readlink', cb, vfs.readlink(path), (t) => cb(0, t)),
    statfs: (path: string, cb: Cb) => run('statfs', cb, vfs.statfs(path), (s) => cb(0, s)),
    open: (path: string, flags: number, cb: Cb) => run('open', cb, vfs.open(path, flags), (fh) => cb(0, fh)),
    create: (path: string, mode: number, cb: Cb) => run('create', cb, vfs.create(path, mode), (fh) => cb(0, fh)),
    read: (_p: string, fh: number, buf: Buffer, len: number, pos: number, cb: Cb) =>
      run('read', cb, vfs.read(fh, buf, len, pos), (n) => cb(n)),
    write: (_p: string, fh: number, buf: Buffer, len: number, pos: number, cb: Cb) =>
      run('write', cb, vfs.write(fh, buf, len, pos), (n) => cb(n)),
    flush: (_p: string, fh: number, cb: Cb) => run('flush', cb, vfs.flush(fh), () => cb(0)),
    fsync: (_p: string, _datasync: number, fh: number, cb: Cb) => run('fsync', cb, vfs.fsync(fh), () => cb(0)),
    release: (_p: string, fh: number, cb: Cb) => run('release', cb, vfs.release(fh), () => cb(0)),
    truncate: (path: string, size: number, cb: Cb) => run('truncate', cb, vfs.truncate(path, size), () => cb(0)),
    ftruncate: (_p: string, fh: number, size: number, cb: Cb) => run('ftruncate', cb, vfs.ftruncate(fh, size), () => cb(0)),
    unlink: (path: string, cb: Cb) => run('unlink', cb, vfs.unlink(path), () => cb(0)),
    rename: (from: string, to: string, cb: Cb) => run('rename', cb, vfs.rename(from, to), () => cb(0)),
    link: (from: string, to: string, cb: Cb) => run('link', cb, vfs.link(from, to), () => cb(0)),
    symlink: (target: string, path: string, cb: Cb) => run('symlink', cb, vfs.symlink(target, path), () => cb(0)),
    // FIFOs and sockets (regular files come through create); owned by the daemon's user, as every new file here.
    mknod: (path: string, mode: number, _dev: number, cb: Cb) => run('mknod', cb, vfs.mknod(path, mode), () => cb(0)),
    mkdir: (path: string, mode: number, cb: Cb) => run('mkdir', cb, vfs.mkdir(path, mode), () => cb(0)),
    rmdir: (path: string, cb: Cb) => run('rmdir', cb, vfs.rmdir(path), () => cb(0)),
    chmod: (path: string, mode: number, cb: Cb) => run('chmod', cb, vfs.chmod(path, mode), () => cb(0)),
    chown: (path: string, uid: number, gid: number, cb: Cb) => run('chown', cb, vfs.chown(path, uid, gid), () => cb(0)),
    // Two limits below us (measured in test/e2e-write.test.ts): fuse-native passes the atime as both values, so
    // utimensat(a, m) sets mtime = a (touch and touch -d set both alike and are right; cp -p, rsync -t and tar get
    // the source's atime as mtime); libfuse 2 calls utimens only when both times are set, so touch -m and touch -a
    // are silently ignored. Nothing here can recover the lost value.
    utimens: (path: string, atime: number, mtime: number, cb: Cb) =>
      run('utimens', cb, vfs.utimens(path, atime, mtime), () => cb(0)),
    getxattr: (path: string, name: string, _pos: number, cb: Cb) =>
      run('getxattr', cb, vfs.getxattr(path, name), (v) => (v === null ? cb(-errnoOf(new FsError('ENODATA', name))) : cb(0, v))),
    listxattr: (path: string, cb: Cb) => run('listxattr', cb, vfs.listxattr(path), (names) => cb(0, names)),
    setxattr: (path: string, name: string, _v: Buffer, _pos: number, _flags: number, cb: Cb) =>
      run('setxattr', cb, vfs.setxattr(path, name), () => cb(0)),
  };
}

interface FuseInstance {
  mount(cb: (err: Error | null) => void): void;
  unmount(cb: (err: Error | null) => void): void;
}

/** Runs fusermount on our own mount; rejects with its message (EBUSY when the kernel says the mount is busy). */
function fusermount(args: string[], mountpoint: string): Promise<void> {
  return new Promise((resolve, reject) =>
    execFile('fusermount', [...args, mountpoint], { timeout: 30_000 }, (err, _out, stderr) => {
      if (!err) return resolve();
      const message = String(stderr).trim() || describeError(err);
      reject(new FsError(/busy/i.test(message) ? 'EBUSY' : 'EIO', message, { cause: err }));
    }),
  );
}

/**
 * Mounts the Vfs; resolves once the kernel answers (init has run). When libfuse refuses (its reason is on this
 * process's stderr), a kernel mount it may have left at the mountpoint (fuse_mount succeeded, fuse_new failed:
 * nobody would ever answer it) is detached before the error is thrown.
 */
export async function mountFuse(mountpoint: string, vfs: Vfs, o: FuseMountOptions): Promise<FuseHandle> {
  const Fuse = require('fuse-native') as new (mnt: string, ops: unknown, opts: unknown) => FuseInstance;
  const log = o.log ?? (() => undefined);
  const fuse = new Fuse(mountpoint, buildOps(new PathVfs(vfs), log), fuseOptions(o));
  try {
    await new Promise<void>((resolve, reject) => fuse.mount((err) => (err ? reject(err) : resolve())));
  } catch (err) {
    if (isBlobhsmMount(mountAt(mountpoint))) await fusermount(['-uz'], mountpoint).catch((e) => log(`detaching the failed mount: ${describeError(e)}`));
    // libfuse printed its reason on stderr (fuse-native only says "fuse failed"); the caller shows that line.
    log(`FUSE refused the mount: ${describeError(err)}`);
    throw new FsError('EIO', 'FUSE refused the mount');
  }
  let unmounted = false;
  return {
    unmount: async (mode = 'lazy') => {
      if (unmounted) return;
      if (mode === 'strict') await fusermount(['-u'], mountpoint);
      else await new Promise<void>((resolve, reject) => fuse.unmount((err) => (err ? reject(err) : resolve())));
      unmounted = true;
    },
    // fuse-native has no event for it: look every 500 ms (only while someone waits).
    ended: () =>
      new Promise<void>((resolve) => {
        const timer = setInterval(() => {
          if (holdsFuseDevice()) return;
          clearInterval(timer);
          resolve();
        }, 500);
      }),
  };
}
