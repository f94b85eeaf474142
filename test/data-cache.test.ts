import t from 'tap';
import fs from 'node:fs';
import { join } from 'node:path';
import { DataCache, translateCacheError, type Lending } from '../src/cache/data-cache.js';
import { FsError, errnoCodeOf } from '../src/errors.js';

function enospc(): NodeJS.ErrnoException {
  return Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28 });
}

t.test('write, read into a caller buffer, keyed by ino and generation', async (t) => {
  const dir = t.testdir();
  const cache = new DataCache({ dir });
  t.teardown(() => cache.close());
  t.equal(cache.pathFor(258, 3), join(dir, 'data', '02', '258.3'));
  t.not(cache.pathFor(258, 3), cache.pathFor(258, 4));
  await cache.truncate(258, 3, 0);
  const data = Buffer.from('hello, cache');
  t.equal(await cache.write(258, 3, data, data.length, 100), data.length);
  const buf = Buffer.alloc(64, 0xff);
  t.equal(await cache.read(258, 3, buf, 12, 100), 12);
  t.equal(buf.subarray(0, 12).toString(), 'hello, cache');
  t.equal(buf[12], 0xff, 'nothing written past length');
  // Sparse hole reads as zeros; short read at EOF.
  t.equal(await cache.read(258, 3, buf, 64, 0), 64);
  t.ok(buf.subarray(0, 64).equals(Buffer.concat([Buffer.alloc(64)])));
  t.equal(await cache.read(258, 3, buf, 64, 106), 6);
  // bufOffset
  const out = Buffer.alloc(10, 0);
  t.equal(await cache.read(258, 3, out, 5, 100, 5), 5);
  t.equal(out.subarray(5).toString(), 'hello');
  // Another generation is another file.
  await t.rejects(cache.read(258, 4, buf, 1, 0), { name: 'FsError', code: 'EIO' });
  t.equal(await cache.exists(258, 3), true);
  t.equal(await cache.exists(258, 4), false);
  t.equal(await cache.size(258, 3), 112);
  t.equal(await cache.size(258, 4), undefined);
});

t.test('write without create on a missing file is EIO; with create it works', async (t) => {
  const cache = new DataCache({ dir: t.testdir() });
  t.teardown(() => cache.close());
  const b = Buffer.from('x');
  await t.rejects(cache.write(1, 1, b, 1, 0), { code: 'EIO', message: /cache data of ino 1 \(generation 1\) is missing/ });
  t.equal(await cache.write(1, 1, b, 1, 0, { create: true }), 1);
});

t.test('truncate, fsync, drop and bytes accounting', async (t) => {
  const cache = new DataCache({ dir: t.testdir() });
  t.teardown(() => cache.close());
  await cache.scan();
  t.equal(cache.bytesUsed(), 0);
  await cache.truncate(5, 1, 10 * 1024 * 1024);
  t.ok(cache.bytesUsed() < 64 * 1024, 'a sparse truncate allocates (almost) nothing');
  const mib = Buffer.alloc(1024 * 1024, 7);
  await cache.write(5, 1, mib, mib.length, 0);
  t.equal(cache.bytesUsed(), 1024 * 1024, 'tracked on write');
  await cache.write(5, 1, mib, mib.length, 0);
  t.ok(cache.bytesUsed() <= 2 * 1024 * 1024, 'overwrite estimate stays bounded');
  await cache.fsync(5, 1);
  const st = fs.statSync(cache.pathFor(5, 1));
  t.equal(cache.bytesUsed(), st.blocks * 512, 'exact after fsync');
  await cache.truncate(6, 1, 0);
  await cache.write(6, 1, mib, 4096, 0);
  const before = cache.bytesUsed();
  await cache.drop(5, 1);
  t.equal(cache.bytesUsed(), before - st.blocks * 512);
  t.equal(fs.existsSync(cache.pathFor(5, 1)), false);
  await cache.drop(5, 1); // missing is fine
  await cache.drop(6, 1);
  t.equal(cache.bytesUsed(), 0);
});

t.test('scan lists cache files, deletes temporaries, accounts st_blocks', async (t) => {
  const dir = t.testdir();
  const a = new DataCache({ dir });
  await a.truncate(1, 1, 0);
  await a.write(1, 1, Buffer.alloc(8192, 1), 8192, 0);
  await a.truncate(300, 2, 50000); // sparse
  await a.fsync(1, 1);
  a.close();
  const shard = join(dir, 'data', '01');
  fs.writeFileSync(join(shard, '1.2.tmp'), 'partial');
  fs.writeFileSync(join(shard, '.tmp-abc'), 'partial');
  fs.mkdirSync(join(dir, 'data', '.tmp-restore'));
  fs.writeFileSync(join(shard, 'README'), 'not a cache file');
  const b = new DataCache({ dir });
  t.teardown(() => b.close());
  const files = await b.scan();
  t.same(
    files.map((f) => [f.ino, f.generation, f.size]),
    [
      [1, 1, 8192],
      [300, 2, 50000],
    ],
  );
  t.equal(files[0]!.path, b.pathFor(1, 1));
  t.equal(fs.existsSync(join(shard, '1.2.tmp')), false);
  t.equal(fs.existsSync(join(shard, '.tmp-abc')), false);
  t.equal(fs.existsSync(join(dir, 'data', '.tmp-restore')), false);
  t.equal(fs.existsSync(join(shard, 'README')), true, 'unknown names are left alone');
  const expected = files.reduce((n, f) => n + f.allocated, 0);
  t.equal(b.bytesUsed(), expected);
  t.ok(b.bytesUsed() >= 8192);
  const buf = Buffer.alloc(4);
  t.equal(await b.read(1, 1, buf, 4, 0), 4);
  t.same([...buf], [1, 1, 1, 1]);
});

t.test('scan of a fresh directory creates it', async (t) => {
  const dir = join(t.testdir(), 'state');
  const cache = new DataCache({ dir });
  t.same(await cache.scan(), []);
  t.ok(fs.statSync(join(dir, 'data')).isDirectory());
});

t.test('fd LRU closes evicted descriptors, but not while leased', async (t) => {
  const closed: number[] = [];
  const wrapped = {
    ...fs,
    closeSync: ((fd: number) => {
      closed.push(fd);
      fs.closeSync(fd);
    }) as typeof fs.closeSync,
  } as typeof fs;
  const cache = new DataCache({ dir: t.testdir(), maxOpenFiles: 2, fs: wrapped });
  t.teardown(() => cache.close());
  const fd1 = await cache.fd(1, 1, { create: true });
  t.equal(await cache.fd(1, 1), fd1, 'cached');
  const lease2 = await cache.acquire(2, 1, { create: true });
  await cache.fd(3, 1, { create: true }); // evicts ino 1
  t.same(closed, [fd1]);
  t.equal(cache.openFiles(), 2);
  await cache.fd(4, 1, { create: true }); // evicts ino 2, which is leased
  t.same(closed, [fd1], 'leased fd stays open');
  fs.fstatSync(lease2.fd); // still valid
  lease2.release();
  lease2.release(); // idempotent
  t.same(closed, [fd1, lease2.fd], 'closed when the lease ends');
  // withFd: a drop during a read does not close the fd under it.
  await cache.write(3, 1, Buffer.from('abc'), 3, 0);
  const got = await cache.withFd(3, 1, {}, async (fd) => {
    await cache.drop(3, 1);
    const b = Buffer.alloc(3);
    fs.readSync(fd, b, 0, 3, 0);
    return b.toString();
  });
  t.equal(got, 'abc');
  t.equal(fs.existsSync(cache.pathFor(3, 1)), false);
});

t.test('concurrent opens of one file share a descriptor', async (t) => {
  let opens = 0;
  const wrapped = {
    ...fs,
    open: ((...args: Parameters<typeof fs.open>) => {
      opens++;
      return (fs.open as (...a: unknown[]) => void)(...args);
    }) as typeof fs.open,
  } as typeof fs;
  const cache = new DataCache({ dir: t.testdir(), fs: wrapped });
  t.teardown(() => cache.close());
  const fds = await Promise.all([1, 2, 3, 4, 5].map(() => cache.fd(9, 1, { create: true })));
  t.equal(new Set(fds).size, 1);
  t.equal(opens, 1);
});

t.test('a full disk is ENOSPC naming the cache directory and the fix', async (t) => {
  const dir = t.testdir();
  let fail = false;
  const wrapped = {
    ...fs,
    write: ((...args: unknown[]) => {
      const cb = args[args.length - 1] as (err: NodeJS.ErrnoException | null, n?: number) => void;
      if (fail) return process.nextTick(() => cb(enospc()));
      return (fs.write as (...a: unknown[]) => void)(...args);
    }) as typeof fs.write,
    writeSync: ((...args: unknown[]) => {
      if (fail) throw enospc();
      return (fs.writeSync as (...a: unknown[]) => number)(...args);
    }) as typeof fs.writeSync,
  } as typeof fs;
  const cache = new DataCache({ dir, fs: wrapped });
  t.teardown(() => cache.close());
  await cache.truncate(7, 1, 0);
  fail = true;
  // A small write is made on the calling thread, a large one on the thread pool: both report the full disk alike.
  for (const size of [10, 1 << 20]) {
    const err = await cache.write(7, 1, Buffer.alloc(size), size, 0).catch((e: unknown) => e);
    t.ok(err instanceof FsError, `${size} bytes`);
    t.equal((err as FsError).code, 'ENOSPC');
    t.equal(errnoCodeOf(err), 'ENOSPC');
    t.match((err as FsError).message, dir);
    t.match((err as FsError).message, /is full/);
    t.match((err as FsError).message, /--cache-size/);
    t.match((err as FsError).message, /free space/);
    t.equal(((err as FsError).cause as NodeJS.ErrnoException).code, 'ENOSPC');
  }
});

t.test('writes leave a reserve free for the metadata store', async (t) => {
  let free = 1024 * 1024 + 8192;
  const wrapped = {
    ...fs,
    promises: { ...fs.promises, statfs: async () => ({ bavail: free / 4096, bsize: 4096, blocks: 1024 * 1024 }) },
  } as unknown as typeof fs;
  const cache = new DataCache({ dir: t.testdir(), fs: wrapped, reserveBytes: 1024 * 1024 });
  t.teardown(() => cache.close());
  t.equal(await cache.write(1, 1, Buffer.alloc(4096), 4096, 0, { create: true }), 4096);
  const err = await cache.write(1, 1, Buffer.alloc(16384), 16384, 0).catch((e: unknown) => e);
  t.equal(errnoCodeOf(err), 'ENOSPC', 'a write into the reserve is refused');
  t.match((err as FsError).message, /is full/);
  t.equal(await cache.write(1, 1, Buffer.alloc(4096), 4096, 0), 4096, 'a smaller one still fits');
  const none = new DataCache({ dir: t.testdir(), fs: wrapped, reserveBytes: 0 });
  t.teardown(() => none.close());
  free = 0;
  t.equal(await none.write(1, 1, Buffer.alloc(10), 10, 0, { create: true }), 10, 'reserveBytes 0: no check');
});

t.test('a lent budget: what was not spent goes back to the room, and what may still be written is taken from every new measurement', async (t) => {
  const MiB = 1024 * 1024;
  let free = 4 * MiB; // what statfs answers: the 1 MiB reserve and 3 MiB above it
  let statfsCalls = 0;
  let clock = 10_000;
  const wrapped = {
    ...fs,
    promises: { ...fs.promises, statfs: async () => (statfsCalls++, { bavail: free / 4096, bsize: 4096, blocks: 1024 * 1024 }) },
  } as unknown as typeof fs;
  const cache = new DataCache({ dir: t.testdir(), fs: wrapped, reserveBytes: MiB, now: () => clock });
  t.teardown(() => cache.close());
  await cache.createEmpty(1, 1);
  const lend = async (max: number) => {
    let got: Lending | undefined;
    await cache.lendForWrites(1, 1, max, (_fd, lending) => ((got = lending), true));
    return got!;
  };
  const a = await lend(2 * MiB);
  t.equal(a.budget, 2 * MiB);
  a.end();
  free = 0; // a new measurement now would find the disk full
  const b = await lend(2 * MiB);
  t.equal(b.budget, 2 * MiB, 'the budget given back is room again: the next lending gets it without a new measurement');
  t.equal(statfsCalls, 1);
  b.spend(MiB); // b wrote 1 MiB and may write 1 MiB more
  clock += 2000;
  free = 3 * MiB; // the disk after b's 1 MiB
  const c = await lend(2 * MiB);
  t.equal(statfsCalls, 2, 'measured again');
  t.equal(c.budget, MiB, "a new measurement counts what b may still write as taken: 3 MiB free, 1 MiB of it b's, 1 MiB the reserve");
  b.end();
  c.end();
  b.end(); // a second end gives nothing back
  const d = await lend(3 * MiB);
  t.equal(statfsCalls, 3);
  t.equal(d.budget, 2 * MiB, 'ended after that measurement, their unspent budget is room again, and counted once');
});

t.test('a write short of room while a cache file is being deleted waits for the delete and measures again', async (t) => {
  const MiB = 1024 * 1024;
  let free = 4 * MiB; // what statfs answers
  let measured: (() => void) | undefined;
  let letGo!: () => void;
  const gate = new Promise<void>((r) => (letGo = r));
  const wrapped = {
    ...fs,
    promises: {
      ...fs.promises,
      statfs: async () => {
        const answer = { bavail: free / 4096, bsize: 4096, blocks: 1024 * 1024 };
        measured?.();
        return answer;
      },
      // The deleted file held 8 MiB: its room is free once the unlink is done.
      unlink: async (path: string) => {
        await gate;
        await fs.promises.unlink(path);
        free += 8 * MiB;
      },
    },
  } as unknown as typeof fs;
  let clock = 10_000;
  const cache = new DataCache({ dir: t.testdir(), fs: wrapped, reserveBytes: MiB, now: () => clock });
  t.teardown(() => cache.close());
  await cache.scan();
  await cache.write(1, 1, Buffer.alloc(128 * 1024), 128 * 1024, 0, { create: true });
  await cache.createEmpty(2, 1);
  free = MiB + 64 * 1024; // the 1 MiB reserve and 64 KiB above it
  clock += 2000; // measured again by the next write
  // The drop of file 1 (an rm, answered once its file is deleted, or a last release after one) is under way when
  // the next request's write asks for more room than is left.
  const dropping = cache.drop(1, 1);
  const seen = new Promise<void>((r) => (measured = r));
  const writing = cache.write(2, 1, Buffer.alloc(256 * 1024), 256 * 1024, 0);
  await seen; // it measured the disk while the delete had freed nothing yet (before, that was ENOSPC at once)
  letGo();
  t.equal(await writing, 256 * 1024, 'the write waited for the delete and found the room it freed');
  await dropping;
  t.notOk(await cache.exists(1, 1));
  free = MiB + 64 * 1024;
  clock += 2000; // measured again
  const err = await cache.write(2, 1, Buffer.alloc(256 * 1024), 256 * 1024, 0).catch((e: unknown) => e);
  t.equal(errnoCodeOf(err), 'ENOSPC', 'with nothing being deleted, a write that does not fit is ENOSPC at once');
});

t.test('translateCacheError', async (t) => {
  const e1 = translateCacheError(enospc(), '/c', 'x');
  t.ok(e1 instanceof FsError && e1.code === 'ENOSPC');
  const edquot = Object.assign(new Error('quota'), { code: 'EDQUOT' });
  const e2 = translateCacheError(edquot, '/c', 'x');
  t.ok(e2 instanceof FsError && e2.code === 'ENOSPC');
  const eio = Object.assign(new Error('io'), { code: 'EIO' });
  t.equal(translateCacheError(eio, '/c', 'x'), eio, 'others pass through');
  t.equal(errnoCodeOf(eio), 'EIO');
});

t.test('ENOSPC creating a cache file', async (t) => {
  const wrapped = {
    ...fs,
    open: ((...args: unknown[]) => {
      const cb = args[args.length - 1] as (err: NodeJS.ErrnoException | null) => void;
      process.nextTick(() => cb(enospc()));
    }) as typeof fs.open,
  } as typeof fs;
  const cache = new DataCache({ dir: t.testdir(), fs: wrapped });
  await t.rejects(cache.truncate(1, 1, 0), { name: 'FsError', code: 'ENOSPC', message: /--cache-size/ });
});

t.test('a drop racing the open of a lease never hands out a closed descriptor', async (t) => {
  const cache = new DataCache({ dir: t.testdir() });
  t.teardown(() => cache.close());
  await cache.write(5, 1, Buffer.from('hello'), 5, 0, { create: true });
  cache.close(); // the next read opens the file again
  const buf = Buffer.alloc(5);
  const read = cache.read(5, 1, buf, 5, 0);
  const drop = cache.drop(5, 1);
  // Before the fix the read leased the descriptor the drop had just closed: EBADF (or another file's data).
  // Which of the two wins the thread pool varies: the read either got in first (the whole, right data) or finds
  // the file gone (EIO); it never reads through a closed descriptor.
  const outcome = await read.then(
    (n) => ({ n, data: buf.toString() }),
    (err: unknown) => err,
  );
  if (outcome instanceof Error) t.match(outcome, { name: 'FsError', code: 'EIO', message: /missing/ });
  else t.same(outcome, { n: 5, data: 'hello' }, 'the read won the race: whole and right');
  await drop;
});

t.test('R4: a drop racing a write in flight leaves no ghost bytes in the usage count', async (t) => {
  let entered!: () => void;
  const inside = new Promise<void>((r) => (entered = r));
  let letGo!: () => void;
  const gate = new Promise<void>((r) => (letGo = r));
  const wrapped = {
    ...fs,
    write: ((...args: Parameters<typeof fs.write>) => {
      entered();
      void gate.then(() => (fs.write as (...a: unknown[]) => void)(...args));
    }) as typeof fs.write,
  } as typeof fs;
  const cache = new DataCache({ dir: t.testdir(), fs: wrapped, reserveBytes: 0 });
  t.teardown(() => cache.close());
  await cache.scan();
  await cache.truncate(3, 1, 0);
  // Larger than what is written on the calling thread: this write goes to the thread pool, where a drop can race it.
  const writing = cache.write(3, 1, Buffer.alloc(256 * 1024, 1), 256 * 1024, 0);
  await inside;
  await cache.drop(3, 1);
  t.equal(cache.bytesUsed(), 0, 'the dropped file counts nothing');
  letGo();
  await writing;
  t.equal(cache.bytesUsed(), 0, 'the write that finished after the drop adds nothing');
  t.equal(await cache.exists(3, 1), false);
});

t.test('createEmpty makes an empty cache file in one open on the calling thread, and empties one that has data', async (t) => {
  const dir = t.testdir();
  const opens: number[] = [];
  const counting = { ...fs, openSync: ((path: string, flags: number, mode: number) => {
    opens.push(flags);
    return fs.openSync(path, flags, mode);
  }) as typeof fs.openSync, open: (() => t.fail('no trip to the thread pool')) as unknown as typeof fs.open, ftruncate: (() => t.fail('no ftruncate')) as unknown as typeof fs.ftruncate } as typeof fs;
  const cache = new DataCache({ dir, fs: counting, reserveBytes: 0 });
  t.teardown(() => cache.close());
  await cache.createEmpty(7, 1);
  t.equal(opens.length, 1, 'one open');
  t.ok(opens[0]! & fs.constants.O_TRUNC && opens[0]! & fs.constants.O_CREAT);
  t.equal(await cache.size(7, 1), 0);
  t.equal(cache.bytesUsed(), 0);
  await cache.write(7, 1, Buffer.alloc(8192, 1), 8192, 0);
  t.equal(cache.bytesUsed(), 8192);
  cache.close(); // the descriptor is gone: createEmpty opens (and empties) the file again
  await cache.createEmpty(7, 1);
  t.equal(await cache.size(7, 1), 0, 'emptied');
  t.equal(cache.bytesUsed(), 0, 'its bytes no longer counted');
});

t.test('a write of up to 64 KiB is made on the calling thread, a larger one on the thread pool; closes are on the calling thread', async (t) => {
  const calls: string[] = [];
  const counting = {
    ...fs,
    write: ((...args: unknown[]) => {
      calls.push(`pool write ${args[3] as number}`);
      return (fs.write as (...a: unknown[]) => void)(...args);
    }) as typeof fs.write,
    writeSync: ((...args: unknown[]) => {
      calls.push(`write ${args[3] as number}`);
      return (fs.writeSync as (...a: unknown[]) => number)(...args);
    }) as typeof fs.writeSync,
    close: (() => t.fail('no close on the thread pool')) as unknown as typeof fs.close,
  } as typeof fs;
  const cache = new DataCache({ dir: t.testdir(), fs: counting, reserveBytes: 0, maxOpenFiles: 1 });
  t.teardown(() => cache.close());
  await cache.createEmpty(1, 1);
  t.equal(await cache.write(1, 1, Buffer.alloc(64 * 1024, 1), 64 * 1024, 0), 64 * 1024);
  t.equal(await cache.write(1, 1, Buffer.alloc(64 * 1024 + 1, 2), 64 * 1024 + 1, 64 * 1024), 64 * 1024 + 1);
  t.same(calls, ['write 65536', 'pool write 65537']);
  await cache.createEmpty(2, 1); // evicts (closes) the descriptor of ino 1
  t.equal(cache.openFiles(), 1);
  const back = Buffer.alloc(128 * 1024 + 1);
  t.equal(await cache.read(1, 1, back, back.length, 0), back.length);
  t.ok(back.subarray(0, 64 * 1024).every((b) => b === 1) && back.subarray(64 * 1024).every((b) => b === 2), 'both landed');
});

t.test('createEmpty on a full disk is ENOSPC naming the cache directory, and the file is not made', async (t) => {
  const dir = t.testdir();
  const full = { ...fs, openSync: (() => { throw enospc(); }) as unknown as typeof fs.openSync } as typeof fs;
  const cache = new DataCache({ dir, fs: full, reserveBytes: 0 });
  t.teardown(() => cache.close());
  const err = await cache.createEmpty(5, 1).catch((e: unknown) => e);
  t.ok(err instanceof FsError);
  t.equal((err as FsError).code, 'ENOSPC');
  t.match((err as FsError).message, dir);
  t.equal(await cache.exists(5, 1), false);
  t.equal(cache.openFiles(), 0);
});
