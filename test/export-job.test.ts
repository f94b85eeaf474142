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
