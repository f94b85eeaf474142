// A minimal fuse-native null filesystem with blobhsm's own mount options (src/fuse/fuse-adapter.ts fuseOptions
// and the daemon's read-ahead tuning): the ceiling FUSE-through-JavaScript allows on this machine. Run as its own
// process (`node dist/bench/null-fs.js <json config>` with an IPC channel), never in the process that uses the
// mount. Tree: /big/f000000.. (N files, no data), /large.bin (reads return zeros), /w/ (writes are counted and
// dropped). getxattr answers ENODATA like blobhsm does, so `ls -l` sends the kernel the same requests.
import { createRequire } from 'node:module';
import { fuseOptions } from '../src/fuse/fuse-adapter.js';
import { tuneReadAhead } from '../src/daemon/mount-checks.js';
import { BIG_DIR, LARGE_BLOB, fileName } from './names.js';

export interface NullFsConfig {
  mountpoint: string;
  entries: number;
  smallBytes: number;
  largeBytes: number;
}

export interface NullFsStats {
  ops: Record<string, number>;
  /** WRITE request sizes the kernel sent: size → count. */
  writeSizes: Record<string, number>;
  readSizes: Record<string, number>;
  /** getxattr requests by attribute name (which names `ls -l` asks for). */
  xattrNames: Record<string, number>;
}

type Cb = (code: number, ...rest: unknown[]) => void;

const ENOENT = -2;
const EACCES = -13;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const T0 = new Date('2024-01-01T00:00:00Z');

function serve(cfg: NullFsConfig): void {
  const require = createRequire(import.meta.url);
  const Fuse = require('fuse-native') as new (mnt: string, ops: unknown, opts: unknown) => {
    mount(cb: (err: Error | null) => void): void;
    unmount(cb: (err: Error | null) => void): void;
  };
  const stats: NullFsStats = { ops: {}, writeSizes: {}, readSizes: {}, xattrNames: {} };
  const count = (op: string) => (stats.ops[op] = (stats.ops[op] ?? 0) + 1);
  const written = new Map<string, number>();
  let nextFh = 1;

  const dirStat = (ino: number) => ({ ino, mode: S_IFDIR | 0o755, nlink: 2, size: 4096, uid: 0, gid: 0, mtime: T0, atime: T0, ctime: T0, blksize: 4096, blocks: 8 });
  const fileStat = (ino: number, size: number) => ({ ino, mode: S_IFREG | 0o644, nlink: 1, size, uid: 1000, gid: 1000, mtime: T0, atime: T0, ctime: T0, blksize: 4096, blocks: Math.ceil(size / 512) });
  const bigPrefix = `/${BIG_DIR}/`;
  const bigIndex = (path: string) => {
    if (!path.startsWith(bigPrefix)) return -1;
    const m = /^f(\d{6})$/.exec(path.slice(bigPrefix.length));
    const i = m ? Number(m[1]) : -1;
    return i >= 0 && i < cfg.entries ? i : -1;
  };
  const statOf = (path: string) => {
    if (path === '/') return dirStat(1);
    if (path === `/${BIG_DIR}` ) return dirStat(2);
    if (path === '/w') return dirStat(3);
    if (path === `/${LARGE_BLOB}`) return fileStat(4, cfg.largeBytes);
    const i = bigIndex(path);
    if (i >= 0) return fileStat(1000 + i, cfg.smallBytes);
    const w = written.get(path);
    if (w !== undefined) return fileStat(10_000_000 + [...written.keys()].indexOf(path), w);
    return undefined;
  };
  const sizeOf = (path: string) => statOf(path)?.size ?? 0;

  const ops = {
    getattr: (path: string, cb: Cb) => {
      count('getattr');
      const s = statOf(path);
      return s ? cb(0, s) : cb(ENOENT);
    },
    fgetattr: (path: string, _fd: number, cb: Cb) => {
      count('fgetattr');
      const s = statOf(path);
      return s ? cb(0, s) : cb(ENOENT);
    },
    readdir: (path: string, cb: Cb) => {
      count('readdir');
      if (path === '/') return cb(0, [BIG_DIR, LARGE_BLOB, 'w'], [dirStat(2), fileStat(4, cfg.largeBytes), dirStat(3)]);
      if (path === `/${BIG_DIR}`) {
        const names = Array.from({ length: cfg.entries }, (_, i) => fileName(i));
        return cb(0, names, names.map((_, i) => fileStat(1000 + i, cfg.smallBytes)));
      }
      if (path === '/w') return cb(0, [...written.keys()].map((p) => p.slice(3)), [...written.values()].map((s, i) => fileStat(10_000_000 + i, s)));
      return cb(ENOENT);
    },
    open: (path: string, _flags: number, cb: Cb) => {
      count('open');
      return statOf(path) ? cb(0, nextFh++) : cb(ENOENT);
    },
    create: (path: string, _mode: number, cb: Cb) => {
      count('create');
      if (!path.startsWith('/w/')) return cb(EACCES);
      written.set(path, 0);
      return cb(0, nextFh++);
    },
    read: (path: string, _fh: number, buf: Buffer, len: number, pos: number, cb: Cb) => {
      count('read');
      stats.readSizes[len] = (stats.readSizes[len] ?? 0) + 1;
      const n = Math.max(0, Math.min(len, sizeOf(path) - pos));
      buf.fill(0, 0, n);
      return cb(n);
    },
    write: (path: string, _fh: number, _buf: Buffer, len: number, pos: number, cb: Cb) => {
      count('write');
      stats.writeSizes[len] = (stats.writeSizes[len] ?? 0) + 1;
      if (written.has(path)) written.set(path, Math.max(written.get(path)!, pos + len));
      return cb(len);
    },
    truncate: (path: string, size: number, cb: Cb) => {
      count('truncate');
      if (written.has(path)) written.set(path, size);
      return cb(0);
    },
    ftruncate: (path: string, _fh: number, size: number, cb: Cb) => {
      count('ftruncate');
      if (written.has(path)) written.set(path, size);
      return cb(0);
    },
    unlink: (path: string, cb: Cb) => {
      count('unlink');
      return written.delete(path) ? cb(0) : cb(ENOENT);
    },
    flush: (_p: string, _fh: number, cb: Cb) => (count('flush'), cb(0)),
    fsync: (_p: string, _d: number, _fh: number, cb: Cb) => (count('fsync'), cb(0)),
    release: (_p: string, _fh: number, cb: Cb) => (count('release'), cb(0)),
    chmod: (_p: string, _m: number, cb: Cb) => (count('chmod'), cb(0)),
    utimens: (_p: string, _a: number, _m: number, cb: Cb) => (count('utimens'), cb(0)),
    getxattr: (_p: string, name: string, _pos: number, cb: Cb) => {
      count('getxattr');
      stats.xattrNames[name] = (stats.xattrNames[name] ?? 0) + 1;
      return cb(0, null);
    },
    listxattr: (_p: string, cb: Cb) => (count('listxattr'), cb(0, [])),
    statfs: (_p: string, cb: Cb) => {
      count('statfs');
      return cb(0, { bsize: 4096, frsize: 4096, blocks: 1 << 28, bfree: 1 << 27, bavail: 1 << 27, files: 1 << 24, ffree: 1 << 23, favail: 1 << 23, namemax: 255 });
    },
  };

  const fuse = new Fuse(cfg.mountpoint, ops, fuseOptions({ readOnly: false }));
  const log = (line: string) => process.stderr.write(`null-fs: ${line}\n`);
  let closing = false;
  const stop = () => {
    if (closing) return;
    closing = true;
    fuse.unmount(() => process.exit(0));
    setTimeout(() => process.exit(1), 10_000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  // If the driver dies, the IPC channel closes: unmount rather than linger.
  process.on('disconnect', stop);
  process.on('message', (m: { cmd?: string }) => {
    if (m.cmd === 'stats') process.send?.({ stats });
    else if (m.cmd === 'reset') {
      stats.ops = {};
      stats.writeSizes = {};
      stats.readSizes = {};
      stats.xattrNames = {};
      process.send?.({ reset: true });
    } else if (m.cmd === 'stop') stop();
  });
  fuse.mount((err) => {
    if (err) {
      process.send?.({ error: String(err) });
      process.exit(1);
    }
    tuneReadAhead(cfg.mountpoint, 1024, log);
    process.send?.({ ready: true });
  });
}

serve(JSON.parse(process.argv[2] ?? '{}') as NullFsConfig);
