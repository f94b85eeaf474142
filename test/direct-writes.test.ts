// Direct writes on the real stack without a kernel (MemoryBlobStore, in-memory MetaStore, DataCache in a temp
// dir): a DirectWriter modelled on the libfuse3 addon (it pwrites into the descriptor it was lent, and reports each
// write to Vfs.written, as the addon's OP_WRITTEN does) gets a grant only after a write through the Vfs recorded the
// change (DIRTY durable before the first byte of archived data), and the Vfs keeps size, mtime and counters from the
// reports; an archive revokes the grants and does not start while a write landed unreported; a failed direct write
// is the writer's errno and ends the grant. test/e2e-direct-writes.test.ts runs the real addon on a kernel mount.
import t from 'tap';
import { writeSync } from 'node:fs';
import { constants } from 'node:os';
import { FsError } from '../src/errors.js';
import { HsmFlag } from '../src/hsm/flags.js';
import type { UpdateOptions } from '../src/namespace/meta-store.js';
import type { DirectWriter } from '../src/vfs/vfs.js';
import { makeStack, O_WRONLY, type TestStack } from './helpers/stack.js';

interface Lent {
  fd: number;
  token: number;
  budget: number;
  started: number;
}

/** The addon's side of direct writes, in-process: grants by handle, pwrite into the lent descriptor. */
class ModelWriter implements DirectWriter {
  readonly grants = new Map<number, Lent>();
  readonly events: string[] = [];

  grant(fh: number, fd: number, token: number, budget: number): void {
    if (this.grants.has(fh)) throw new Error(`handle ${fh} already has a grant`);
    this.grants.set(fh, { fd, token, budget, started: 0 });
    this.events.push(`grant ${fh}`);
  }

  revoke(fh: number): number {
    const g = this.grants.get(fh);
    this.grants.delete(fh);
    this.events.push(`revoke ${fh}`);
    return g ? g.started : -1;
  }

  /** A WRITE on handle fh as the addon serves it: written here if granted (the report to pass on), else undefined. */
  write(fh: number, data: Buffer, position: number): { token: number; size: number; result: number } | undefined {
    const g = this.grants.get(fh);
    if (!g || g.budget < data.length) return undefined;
    g.budget -= data.length;
    g.started++;
    return { token: g.token, size: data.length, result: writeSync(g.fd, data, 0, data.length, position) };
  }
}

async function stackWithWriter(t: { teardown(fn: () => Promise<void>): void }, blobs: Record<string, string> = {}): Promise<{ s: TestStack; w: ModelWriter }> {
  const s = await makeStack({ blobs });
  t.teardown(() => s.cleanup());
  const w = new ModelWriter();
  s.inodes.useDirectWriter(w);
  return { s, w };
}

/** Writes through the model writer when it holds a grant (reporting to the Vfs), else through Vfs.write. */
async function write(s: TestStack, w: ModelWriter, fh: number, data: string, position: number): Promise<number> {
  const buf = Buffer.from(data);
  const direct = w.write(fh, buf, position);
  return direct ? s.inodes.written(fh, direct.token, position, direct.size, direct.result) : s.vfs.write(fh, buf, buf.length, position);
}

t.test('after the first write, a handle writes directly; size, mtime, counters and content follow the reports', async (t) => {
  const { s, w } = await stackWithWriter(t);
  const fh = await s.vfs.create('/new.txt', 0o644);
  t.notOk(w.write(fh, Buffer.from('x'), 0), 'no grant before the first write');
  t.equal(await write(s, w, fh, 'abc', 0), 3);
  t.same(w.events, [`grant ${fh}`], 'the first write, through the Vfs, grants direct writes');
  const lent = w.grants.get(fh)!;
  t.ok(lent.budget > 0 && lent.budget <= 64 << 20, `a budget of at most 64 MiB (${lent.budget})`);
  const mtimeBefore = (await s.vfs.getattr('/new.txt')).mtime;
  const report = w.write(fh, Buffer.from('DEFGH'), 5)!;
  t.ok(report, 'the next write goes direct');
  t.equal(s.inodes.written(fh, report.token, 5, report.size, report.result), 5, 'the report answers the bytes written');
  const st = await s.vfs.getattr('/new.txt');
  t.equal(st.size, 10, 'the size includes the direct write at once');
  t.ok(st.mtime >= mtimeBefore, 'the mtime follows the last write');
  t.match(s.inodes.ioStats(), { writeOps: 2, writeBytes: 8, directWriteOps: 1 });
  await s.vfs.release(fh);
  t.same(w.events, [`grant ${fh}`, `revoke ${fh}`], 'release ends the grant');
  t.equal(s.inode('/new.txt').size, 10, 'the size is persisted at release');
  t.equal((await s.readFile('/new.txt')).toString('latin1'), 'abc\0\0DEFGH', 'the cache file holds both writes');
  await s.coordinator.request('ARCHIVE', s.inode('/new.txt').ino, 0).done;
  t.equal(s.store.getData('new.txt')?.toString('latin1'), 'abc\0\0DEFGH', 'the export has what was written directly');
});

t.test('the first write of archived data records DIRTY durably before any grant; direct writes keep it dirty', async (t) => {
  const { s, w } = await stackWithWriter(t, { 'archived.txt': 'archived\n' });
  await s.readFile('/archived.txt'); // restored: resident, archived, clean
  await s.settle();
  const update = s.meta.update.bind(s.meta);
  s.meta.update = (ino, patch, options: UpdateOptions = {}) => {
    if (patch.hsmFlags !== undefined) w.events.push(`flags 0x${patch.hsmFlags.toString(16)}${options.durable === false ? '' : ' durable'}`);
    return update(ino, patch, options);
  };
  const fh = await s.vfs.open('/archived.txt', O_WRONLY);
  await write(s, w, fh, 'A', 0);
  t.same(w.events, ['flags 0xb durable', `grant ${fh}`], 'DIRTY is committed durably, then the grant is given');
  await write(s, w, fh, 'BC', 1);
  t.equal(w.grants.get(fh)!.started, 1, 'the second write went direct');
  t.equal(w.events.filter((e) => e.startsWith('flags')).length, 1, 'no commit for a direct write');
  await s.vfs.release(fh);
  t.ok(s.inode('/archived.txt').hsmFlags & HsmFlag.DIRTY, 'the file is dirty');
  t.equal((await s.readFile('/archived.txt')).toString(), 'ABChived\n');
});

t.test('an archive revokes grants; a direct write that landed unreported keeps it from starting', async (t) => {
  const { s, w } = await stackWithWriter(t);
  const fh = await s.vfs.create('/f', 0o644);
  await write(s, w, fh, 'one ', 0);
  const ino = s.inode('/f').ino;
  const landed = w.write(fh, Buffer.from('two'), 4)!; // in the cache file, its report still queued
  await t.rejects(s.coordinator.request('ARCHIVE', ino, 0).done, { code: 'EBUSY' }, 'the archive does not start: a write is in flight');
  t.notOk(w.grants.has(fh), 'the archive revoked the grant');
  t.equal(s.inodes.written(fh, landed.token, 4, landed.size, landed.result), 3, 'the queued report is still accounted');
  t.equal((await s.vfs.getattr('/f')).size, 7);
  t.notOk(w.write(fh, Buffer.from('!'), 7), 'after a revoke, writes come through the Vfs');
  await write(s, w, fh, '!', 7);
  t.ok(w.grants.has(fh), 'which grants again');
  await s.vfs.release(fh);
  await s.coordinator.request('ARCHIVE', ino, 0).done;
  t.equal(s.store.getData('f')?.toString(), 'one two!', 'archived once nothing is in flight');
  t.equal(s.inode('/f').hsmFlags & HsmFlag.DIRTY, 0, 'clean after the archive');
});

t.test('a grant is not given while an archive of the file runs', async (t) => {
  const { s, w } = await stackWithWriter(t);
  await s.createFile('/g', 'first\n');
  const ino = s.inode('/g').ino;
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const upload = s.store.upload.bind(s.store);
  s.store.upload = async (...args: Parameters<typeof upload>) => {
    await gate;
    return upload(...args);
  };
  const archived = s.coordinator.request('ARCHIVE', ino, 0).done;
  await new Promise<void>((r) => setImmediate(r));
  const fh = await s.vfs.open('/g', O_WRONLY);
  await write(s, w, fh, 'F', 0);
  t.notOk(w.grants.has(fh), 'no grant during the archive');
  release();
  await t.rejects(archived, { code: 'EBUSY' }, 'the write cancelled the running archive');
  await write(s, w, fh, 'I', 1);
  t.ok(w.grants.has(fh), 'granted once the archive is over');
  await s.vfs.release(fh);
  t.equal((await s.readFile('/g')).toString(), 'FIrst\n');
});

t.test('a direct write that failed is its errno for the writer and ends the grant; the next write re-grants', async (t) => {
  const { s, w } = await stackWithWriter(t);
  const fh = await s.vfs.create('/full.bin', 0o644);
  await write(s, w, fh, 'ok', 0);
  const { token } = w.grants.get(fh)!;
  w.grants.get(fh)!.started++; // the addon's pwrite failed with ENOSPC
  try {
    s.inodes.written(fh, token, 2, 5, -constants.errno.ENOSPC);
    t.fail('a failed direct write must throw');
  } catch (err) {
    t.ok(err instanceof FsError && err.code === 'ENOSPC', `ENOSPC for the writer: ${String(err)}`);
    t.match((err as Error).message, /cache directory .* is full/, 'with what to do');
  }
  t.notOk(w.grants.has(fh), 'the grant ended');
  t.match(s.logs.join('\n'), /write to \/full\.bin failed: .*full/, 'logged once, naming the file');
  t.equal((await s.vfs.getattr('/full.bin')).size, 2, 'the failed write changed no size');
  await write(s, w, fh, 'again', 2);
  t.ok(w.grants.has(fh), 'a write through the Vfs grants again');
  t.throws(() => s.inodes.written(fh, token, 0, 1, 1), { code: 'EIO' }, 'a report through an unknown (ended) grant is EIO');
  await s.vfs.release(fh);
  t.equal((await s.readFile('/full.bin')).toString(), 'okagain');
});

t.test('a grant whose budget ran out is replaced by the next write through the Vfs', async (t) => {
  const { s, w } = await stackWithWriter(t);
  const fh = await s.vfs.create('/b', 0o644);
  await write(s, w, fh, 'a', 0);
  const first = w.grants.get(fh)!;
  first.budget = 1;
  t.notOk(w.write(fh, Buffer.from('bb'), 1), 'a write bigger than the budget left is not written directly');
  await s.vfs.write(fh, Buffer.from('bb'), 2, 1);
  t.same(w.events, [`grant ${fh}`, `revoke ${fh}`, `grant ${fh}`], 'the old grant is revoked and a new one given');
  t.not(w.grants.get(fh)!.token, first.token, 'under a new token');
  await s.vfs.release(fh);
  t.equal((await s.readFile('/b')).toString(), 'abb');
});

t.test('a grant the writer refuses leaves the write done and the handle writing through the Vfs', async (t) => {
  const { s, w } = await stackWithWriter(t);
  const grant = w.grant.bind(w);
  let refuse = true;
  w.grant = (fh, fd, token, budget) => {
    if (refuse) throw new Error('EMFILE: too many open files');
    grant(fh, fd, token, budget);
  };
  const fh = await s.vfs.create('/r', 0o644);
  t.equal(await write(s, w, fh, 'abc', 0), 3, 'the write succeeds');
  t.notOk(w.grants.has(fh), 'no grant');
  t.match(s.logs.join('\n'), /direct writes of \/r not granted: .*EMFILE/, 'logged with the cause');
  refuse = false;
  await write(s, w, fh, 'd', 3);
  t.ok(w.grants.has(fh), 'the next write through the Vfs grants');
  await s.vfs.release(fh);
  t.equal((await s.readFile('/r')).toString(), 'abcd');
  const ino = s.inode('/r').ino;
  await s.coordinator.request('ARCHIVE', ino, 0).done;
  t.equal(s.store.getData('r')?.toString(), 'abcd', 'nothing was left in flight by the refused grant');
});

t.test("a grant's unused budget goes back to the cache's room once it ended and its writes were reported", async (t) => {
  const { s, w } = await stackWithWriter(t);
  const returned: number[] = [];
  const lend = s.cache.lendForWrites.bind(s.cache);
  s.cache.lendForWrites = (ino, gen, max, take) =>
    lend(ino, gen, max, (fd, lending) => {
      let spent = 0;
      return take(fd, {
        budget: lending.budget,
        spend: (bytes) => ((spent += bytes), lending.spend(bytes)),
        end: () => (returned.push(lending.budget - spent), lending.end()),
      });
    });
  const fh = await s.vfs.create('/f', 0o644);
  await write(s, w, fh, 'abc', 0);
  const budget = w.grants.get(fh)!.budget;
  await write(s, w, fh, 'defgh', 3);
  await write(s, w, fh, 'ijklm', 8);
  t.same(returned, [], 'nothing while the grant lasts');
  await s.vfs.release(fh);
  t.same(returned, [budget - 10], 'the release gives back what the two direct writes did not take');

  const g = await s.vfs.create('/g', 0o644);
  await write(s, w, g, 'one ', 0);
  const second = w.grants.get(g)!.budget;
  const landed = w.write(g, Buffer.from('two'), 4)!; // in the cache file, its report still queued
  await t.rejects(s.coordinator.request('ARCHIVE', s.inode('/g').ino, 0).done, { code: 'EBUSY' });
  t.same(returned, [budget - 10], 'revoked with a write unreported: not yet');
  s.inodes.written(g, landed.token, 4, landed.size, landed.result);
  t.same(returned, [budget - 10, second - 3], 'given back once that write was reported');
  await s.vfs.release(g);
  t.equal(returned.length, 2, 'once');
});
