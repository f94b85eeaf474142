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
