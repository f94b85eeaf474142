// A child process serving a tiny tree through the libfuse3 binding (src/fuse/lowlevel.ts), for
// test/fuse-lowlevel.test.ts: the root holds `data` (SIZE bytes of a known pattern; writes are answered and reported, not kept). It reports every request it
// sees as a JSON line on stdout and takes commands on stdin ("ping <id>" answered after every earlier event,
// "inval <ino>", "stop"), so the test can drive the mount from its own process and check what the kernel sent.
import { createInterface } from 'node:readline';
import { constants } from 'node:os';
import { LowLevelSession, type Attr, type LowLevelHandler } from '../../src/fuse/lowlevel.js';

const [mountpoint, sizeText] = process.argv.slice(2);
const SIZE = Number(sizeText);
const DATA_INO = 2;
const t = { sec: 1_700_000_000, nsec: 123_456_789 };
const emit = (event: Record<string, unknown>) => process.stdout.write(JSON.stringify(event) + '\n');
const fail = (code: keyof typeof constants.errno) => Object.assign(new Error(code), { errno: constants.errno[code] });

export function pattern(offset: number, length: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = (offset + i) % 251;
  return b;
}

const attrOf = (ino: number): Attr => ({
  ino,
  mode: ino === 1 ? 0o040755 : 0o100644,
  nlink: ino === 1 ? 2 : 1,
  uid: 0,
  gid: 0,
  rdev: 0,
  size: ino === 1 ? 0 : SIZE,
  blocks: ino === 1 ? 0 : Math.ceil(SIZE / 512),
  blksize: 4096,
  atime: t,
  mtime: t,
  ctime: t,
});

let nextFh = 100;

const notSupported = async (): Promise<never> => {
  throw fail('EROFS');
};

const handler: LowLevelHandler = {
  errnoOf: (err) => (err as { errno?: number }).errno ?? constants.errno.EIO,
  lookup: async (c, parent, name) => {
    emit({ op: 'lookup', parent, name, uid: c.uid, gid: c.gid });
    return parent === 1 && name === 'data' ? attrOf(DATA_INO) : null;
  },
  forget: (ino, nlookup) => emit({ op: 'forget', ino, nlookup }),
  lookedUp: (ino) => emit({ op: 'lookedUp', ino }),
  getattr: async (_c, ino) => attrOf(ino),
  setattr: notSupported,
  readlink: notSupported,
  mknod: notSupported,
  mkdir: notSupported,
  unlink: notSupported,
  rmdir: notSupported,
  symlink: notSupported,
  rename: notSupported,
  link: notSupported,
  create: notSupported,
  // Each open its own fh; a read-only one has nothing to flush (the binding then answers its FLUSH itself).
  open: async (_c, ino, flags) => {
    const fh = nextFh++;
    const noFlush = (flags & 3) === 0; // O_RDONLY
    emit({ op: 'open', ino, fh, noFlush });
    return { fh, keepCache: true, noFlush };
  },
  read: async (_ino, _fh, size, offset) => {
    emit({ op: 'read', size, offset });
    const length = Math.max(0, Math.min(size, SIZE - offset));
    return { data: pattern(offset, length), length };
  },
  write: async (_ino, _fh, data, offset) => {
    // Keeps the Buffer past the answer: the binding releases a WRITE's data once answered (it is then empty).
    const received = data.length;
    setImmediate(() => emit({ op: 'write', offset, received, lengthAfterAnswer: data.length }));
    return received;
  },
  flush: async (_ino, fh) => void emit({ op: 'flush', fh }),
  release: async (_ino, fh) => void emit({ op: 'release', fh }),
  fsync: async () => undefined,
  opendir: async () => 1,
  readdir: async (_ino, _fh, offset) => [{ name: 'data', attr: attrOf(DATA_INO) }].slice(offset),
  releasedir: async () => undefined,
  statfs: async () => ({ bsize: 4096, frsize: 4096, blocks: 0, bfree: 0, bavail: 0, files: 2, ffree: 0, favail: 0, namemax: 255 }),
  getxattr: async () => null,
  listxattr: async () => [],
  setxattr: notSupported,
  removexattr: notSupported,
};

const { session, negotiated } = await LowLevelSession.mount(mountpoint!, handler, {
  mountOptions: ['fsname=blobhsm', 'subtype=blobhsm', 'default_permissions', 'allow_other'],
  maxRead: 1 << 20,
  maxWrite: 1 << 20,
  maxBackground: 64,
  congestionThreshold: 48,
  writebackCache: false,
  entryTimeout: 60,
  attrTimeout: 60,
});
emit({ op: 'init', ...negotiated });
const commands = createInterface({ input: process.stdin });
commands.on('line', (line) => {
  const [cmd, arg] = line.split(' ');
  if (cmd === 'ping') emit({ op: 'pong', id: arg });
  if (cmd === 'inval') void session.invalidateInode(Number(arg)).then((result) => emit({ op: 'invalidated', result }));
  if (cmd === 'stop') void session.unmount().then(() => emit({ op: 'unmounted' }), (err: Error) => emit({ op: 'unmount-failed', message: err.message }));
});
await session.ended;
emit({ op: 'ended' });
commands.close();
process.stdin.destroy();
