// The export job on the in-memory stack: empty directories get their hdi_isfolder stub, so a mount from an
// empty cache still has them.
import t from 'tap';
import { JobRunner } from '../src/jobs/job-runner.js';
import { makeStack } from './helpers/stack.js';

t.test('empty directories are exported as hdi_isfolder stubs and survive a mount from an empty cache', async (t) => {
  const s = await makeStack({ blobs: { 'kept/file.txt': 'x' } });
  t.teardown(() => s.cleanup());
  await s.vfs.mkdir('/empty', 0o750);
  await s.vfs.mkdir('/a', 0o755);
  await s.vfs.mkdir('/a/b', 0o700);
  await s.vfs.mkdir('/.fuse_hidden00ff', 0o755);
  const jobs = new JobRunner({ meta: s.meta, store: s.store, coordinator: s.coordinator, log: () => undefined, prefix: '', mountRoot: '/mnt' });
  const job = jobs.startExport(['/']);
  await job.done;
  t.match(job.summary(), { state: 'Succeeded', stats: { directoriesExported: 2 } }, '/empty and /a/b (and /a as their parent)');
  for (const name of ['empty', 'a', 'a/b']) {
    t.equal(s.store.getData(name)?.length, 0, `${name}: an empty blob`);
    t.match((await s.store.head(name)).metadata, { hdi_isfolder: 'true' }, `${name}: hdi_isfolder=true`);
  }
  t.match((await s.store.head('empty')).metadata, { permissions: '0750' }, 'with the directory attributes');
  t.notOk(s.store.names().includes('.fuse_hidden00ff'), 'never a .fuse_hidden name');
  const again = jobs.startExport(['/']);
  await again.done;
  t.match(again.summary(), { stats: { directoriesExported: 0 } }, 'a second export uploads nothing');

  const fresh = await makeStack({ store: s.store });
  t.teardown(() => fresh.cleanup());
  t.same((await fresh.vfs.readdir('/a')).names, ['.', '..', 'b'], 'a mount from an empty cache has them');
  t.equal((await fresh.vfs.getattr('/empty')).mode, 0o040750);
});

t.test('FIFOs and sockets are never uploaded: the job counts and logs each name as skipped, local only', async (t) => {
  const s = await makeStack({ blobs: { 'kept/file.txt': 'x' } });
  t.teardown(() => s.cleanup());
  const caller = { uid: 1000, gid: 1000 };
  const root = s.inode('/').ino;
  await s.vfs.mkdir('/only-local', 0o755);
  await s.inodes.mknod(root, 'pipe', 0o010644, caller);
  await s.vfs.link('/pipe', '/kept/pipe-too');
  await s.inodes.mknod(s.inode('/only-local').ino, 'sock', 0o140755, caller);
  await s.createFile('/new.txt', 'new');
  const lines: Array<{ line: string; fields?: Record<string, unknown> }> = [];
  const jobs = new JobRunner({ meta: s.meta, store: s.store, coordinator: s.coordinator, log: (line, fields) => void lines.push({ line, ...(fields ? { fields } : {}) }), prefix: '', mountRoot: '/mnt' });
  const job = jobs.startExport(['/']);
  await job.done;
  t.match(job.summary(), { state: 'Succeeded', stats: { filesExported: 1, skippedLocalOnly: 3, filesFailed: 0 } }, 'two names of the FIFO and the socket');
  const skipped = lines.filter((l) => l.fields?.outcome === 'skipped');
  t.same(skipped.map((l) => l.fields!.path).sort(), ['/kept/pipe-too', '/only-local/sock', '/pipe']);
  for (const l of skipped) {
    t.equal(l.fields!.reason, 'not a regular file, directory or symlink: local only');
    t.match(l.line, /^export skipped: \/\S+: not a regular file, directory or symlink: local only$/);
  }
  t.same(s.store.names().sort(), ['kept/file.txt', 'new.txt', 'only-local'], 'no blob for them; the directory holding only a socket gets its stub');
  t.equal(s.inode('/pipe').hsmFlags, 0, 'no HSM state');

  const under = jobs.startExport(['/kept']);
  await under.done;
  t.match(under.summary(), { stats: { skippedLocalOnly: 1 } }, 'only the names under the prefixes count');
});
