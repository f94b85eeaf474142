// Which writes cost a durable (fsync'd) metadata commit: the first write of a file with archived data records
// DIRTY durably before its first byte reaches the cache (docs/SEMANTICS.md §4, crash safety); creating and writing a new file does
// not, since nothing archived can be lost (`rsync -a` of 2,000 small files made 2,058 fsyncs before, 102 after).
import t from 'tap';
import { makeStack, O_WRONLY } from './helpers/stack.js';
import { HsmFlag } from '../src/namespace/types.js';
import type { UpdateOptions } from '../src/namespace/meta-store.js';

t.test('the first write is durable only where it sets DIRTY', async (t) => {
  const s = await makeStack({ blobs: { 'archived.txt': 'archived\n' } });
  t.teardown(() => s.cleanup());
  const durableFlagWrites: string[] = [];
  const update = s.meta.update.bind(s.meta);
  s.meta.update = (ino, patch, options: UpdateOptions = {}) => {
    if (patch.hsmFlags !== undefined && options.durable !== false) durableFlagWrites.push(s.meta.pathOf(ino) ?? String(ino));
    return update(ino, patch, options);
  };

  await s.createFile('/new.txt', 'new\n');
  t.same(durableFlagWrites, [], 'create + write + close of a new file: no durable commit');
  t.equal(s.inode('/new.txt').hsmFlags, 0);

  await s.readFile('/archived.txt'); // restore it (released → resident, archived)
  await s.settle();
  durableFlagWrites.length = 0;
  const fh = await s.vfs.open('/archived.txt', O_WRONLY);
  await s.vfs.write(fh, Buffer.from('X'), 1, 0);
  t.same(durableFlagWrites, ['/archived.txt'], 'the first write of archived data records DIRTY durably');
  await s.vfs.write(fh, Buffer.from('Y'), 1, 1);
  t.equal(durableFlagWrites.length, 1, 'once per open, not per write');
  await s.vfs.release(fh);
  t.ok(s.inode('/archived.txt').hsmFlags & HsmFlag.DIRTY);
});

t.test('what rsync does to each file costs one metadata commit per operation', async (t) => {
  // One millisecond for the whole sequence, as rsync makes it: a setattr that changes nothing, ctime included,
  // has nothing to commit (a millisecond later the same fchmod would commit its new ctime).
  const s = await makeStack({ fileTimes: () => 1_700_000_000_000 });
  t.teardown(() => s.cleanup());
  // A commit is a store write made outside any other: one SQLite transaction (calls nested in it commit with it).
  const meta = s.meta as unknown as Record<string, (...args: unknown[]) => unknown>;
  let depth = 0;
  const commits: string[] = [];
  let op = '';
  for (const name of ['transaction', 'update', 'create', 'rename', 'unlink', 'link', 'sync']) {
    const fn = meta[name]!.bind(s.meta);
    meta[name] = (...args: unknown[]) => {
      if (depth === 0) commits.push(op);
      depth++;
      try {
        return fn(...args);
      } finally {
        depth--;
      }
    };
  }
  const step = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    op = name;
    return fn();
  };
  // rsync -a's receiver, per file (strace): create the temp file 0600, fchmod, write, close, utimensat, chmod, rename.
  const fh = await step('create', () => s.vfs.create('/.f.XXXXXX', 0o600));
  await step('fchmod', () => s.vfs.chmod('/.f.XXXXXX', 0o600));
  await step('write', () => s.vfs.write(fh, Buffer.alloc(10240, 1), 10240, 0));
  await step('flush', () => s.vfs.flush(fh));
  await step('release', () => s.vfs.release(fh));
  await step('utimens', () => s.vfs.utimens('/.f.XXXXXX', 1_000_000, 2_000_000));
  await step('chmod', () => s.vfs.chmod('/.f.XXXXXX', 0o644));
  await step('rename', () => s.vfs.rename('/.f.XXXXXX', '/f'));
  // The create commits the new file with its content change already counted, so its first write records nothing;
  // the fchmod to the mode it was created with changes nothing; the create, the rename and their directory times
  // and changelog records commit together; the close after the flush has nothing new to record.
  t.same(commits, ['create', 'flush', 'utimens', 'chmod', 'rename']);
  const st = await s.vfs.getattr('/f');
  t.equal(st.size, 10240);
  t.equal(st.mtime, 2_000_000, 'the mtime rsync set');
});
