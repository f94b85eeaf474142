// Which handles the libfuse3 adapter asks the kernel to keep out of its page cache (FOPEN_DIRECT_IO), on the real
// stack without a kernel (buildHandler over the Vfs of test/helpers/stack.ts): a write-only handle alone on its
// file bypasses it, as does every handle opened while one of those is open; a file with another handle open, a
// read-write handle and a setuid or setgid file stay cached. test/e2e-direct-writes.test.ts checks on a kernel
// mount that the pages stay out and that a reader sees each write.
import t from 'tap';
import { buildHandler } from '../src/fuse/fuse3-adapter.js';
import type { Caller } from '../src/fuse/lowlevel.js';
import { ROOT_INO } from '../src/namespace/types.js';
import { makeStack, O_RDONLY, O_RDWR, O_WRONLY } from './helpers/stack.js';

const root: Caller = { uid: 0, gid: 0, pid: 1, umask: 0o022 };

async function adapter(t: { teardown(fn: () => Promise<void>): void }) {
  const s = await makeStack();
  t.teardown(() => s.cleanup());
  const h = buildHandler(s.inodes, () => undefined);
  const create = async (name: string, flags: number, mode = 0o100644) => {
    const { attr, opened } = await h.create(root, ROOT_INO, name, mode, flags);
    return { ino: attr.ino, fh: opened.fh, bypass: opened.directIo === true };
  };
  const open = async (ino: number, flags: number) => {
    const o = await h.open(root, ino, flags);
    return { fh: o.fh, bypass: o.directIo === true };
  };
  return { s, h, create, open };
}

t.test('a write-only handle alone bypasses the page cache, and so does each handle opened beside it', async (t) => {
  const { h, create, open } = await adapter(t);
  const w = await create('new.bin', O_WRONLY);
  t.ok(w.bypass, 'a new file created write-only');
  const r = await open(w.ino, O_RDONLY);
  t.ok(r.bypass, 'a reader opened while the writer is open');
  await h.release(w.ino, w.fh);
  const r2 = await open(w.ino, O_RDWR);
  t.ok(r2.bypass, 'still, while a handle that bypasses is open');
  await h.release(w.ino, r.fh);
  await h.release(w.ino, r2.fh);
  const again = await open(w.ino, O_WRONLY);
  t.ok(again.bypass, 'an existing file opened write-only, alone');
  await h.release(w.ino, again.fh);
});

t.test('a file with another handle open, a read-write handle, and a setuid or setgid file stay cached', async (t) => {
  const { s, h, create, open } = await adapter(t);
  const rw = await create('rw.bin', O_RDWR);
  t.notOk(rw.bypass, 'created read-write');
  const w = await open(rw.ino, O_WRONLY);
  t.notOk(w.bypass, 'write-only beside a cached handle');
  await h.release(rw.ino, rw.fh);
  const w2 = await open(rw.ino, O_WRONLY);
  t.notOk(w2.bypass, 'write-only while the earlier write-only handle (cached) is still open');
  await h.release(rw.ino, w.fh);
  await h.release(rw.ino, w2.fh);
  t.ok((await open(rw.ino, O_WRONLY)).bypass, 'alone once every other handle is released');

  const suid = await create('suid.bin', O_WRONLY, 0o104755);
  t.notOk(suid.bypass, 'created setuid: the kernel clears the bit on a write only through its page cache');
  await h.release(suid.ino, suid.fh);
  await s.inodes.setattr(suid.ino, { mode: 0o2755 });
  const sgid = await open(suid.ino, O_WRONLY);
  t.notOk(sgid.bypass, 'an existing setgid file opened write-only, alone');
  await h.release(suid.ino, sgid.fh);
  await s.inodes.setattr(suid.ino, { mode: 0o755 });
  t.ok((await open(suid.ino, O_WRONLY)).bypass, 'the same file without those bits');
});
