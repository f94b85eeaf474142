// reconcileCache: what a mount after a crash makes of the metadata store and the cache directory.
import t from 'tap';
import { existsSync } from 'node:fs';
import { DataCache } from '../src/cache/data-cache.js';
import { reconcileCache } from '../src/daemon/reconcile.js';
import { HsmFlag } from '../src/hsm/flags.js';
import { openMetaStore } from '../src/namespace/meta-store.js';
import { ROOT_INO, type NewInode } from '../src/namespace/types.js';
import { makeStack } from './helpers/stack.js';

const { EXISTS, DIRTY, ARCHIVED, RELEASED } = HsmFlag;

function file(over: Partial<NewInode>): NewInode {
  return {
    kind: 'file',
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: 0,
    atimeMs: 0,
    mtimeMs: 0,
    ctimeMs: 0,
    target: null,
    hsmFlags: 0,
    archiveId: 0,
    dataVersion: 1,
    archivedVersion: 0,
    blobName: null,
    etag: null,
    contentMd5: null,
    generation: 1,
    lastAccessMs: 0,
    ...over,
  };
}

t.test('sizes, missing data, empty files and orphans', async (t) => {
  const dir = t.testdir();
  const meta = openMetaStore(':memory:');
  t.teardown(() => meta.close());
  const cache = new DataCache({ dir });
  t.teardown(() => cache.close());
  await cache.scan();
  const mk = (name: string, over: Partial<NewInode>) => meta.create(ROOT_INO, name, file(over));

  const grown = mk('grown', { size: 3, hsmFlags: 0 });
  await cache.write(grown.ino, 1, Buffer.from('written before the crash'), 24, 0, { create: true });
  const cleanGone = mk('clean-gone', { size: 10, hsmFlags: EXISTS | ARCHIVED, blobName: 'clean-gone', etag: '"1"' });
  const dirtyGone = mk('dirty-gone', { size: 10, hsmFlags: EXISTS | ARCHIVED | DIRTY, blobName: 'dirty-gone', etag: '"2"' });
  const newGone = mk('new-gone', { size: 10 });
  const empty = mk('empty', { size: 0 });
  const released = mk('released', { size: 10, hsmFlags: RELEASED | EXISTS | ARCHIVED });
  await cache.write(9999, 1, Buffer.from('orphan'), 6, 0, { create: true });
  const hidden = mk('.fuse_hidden0000002a00000001', { size: 4, hsmFlags: EXISTS | ARCHIVED, blobName: 'was-here', etag: '"7"' });
  await cache.write(hidden.ino, 1, Buffer.from('open'), 4, 0, { create: true });
  mk('.fuse_hiddenish', { size: 0 });

  const report = await reconcileCache(meta, cache, await cache.scan());
  t.equal(meta.get(grown.ino)!.size, 24, 'the cache file is the truth for a size that outran the record');
  t.equal(meta.get(cleanGone.ino)!.hsmFlags, RELEASED | EXISTS | ARCHIVED, 'clean archived, data missing: released');
  t.equal(meta.get(cleanGone.ino)!.generation, 2);
  t.equal(meta.get(dirtyGone.ino)!.hsmFlags, EXISTS | ARCHIVED | DIRTY, 'dirty, data missing: not LOST (the archive copy is there), reported loudly');
  t.equal(meta.get(newGone.ino)!.hsmFlags, 0, 'never archived, data missing: reported');
  t.equal(meta.get(released.ino)!.hsmFlags, RELEASED | EXISTS | ARCHIVED, 'released files are left alone');
  t.ok(existsSync(cache.pathFor(empty.ino, 1)), 'an empty file gets its (empty) cache file back');
  t.equal(await cache.write(empty.ino, 1, Buffer.from('x'), 1, 0), 1, 'so it can be written');
  t.notOk(existsSync(cache.pathFor(9999, 1)), 'a cache file no inode owns is deleted');
  t.equal(meta.lookup(ROOT_INO, '.fuse_hidden0000002a00000001'), undefined, 'a .fuse_hidden file is removed');
  t.notOk(existsSync(cache.pathFor(hidden.ino, 1)), 'with its cache data');
  t.equal(meta.blobEtag('was-here'), '"7"', 'its blob etag is remembered');
  t.ok(meta.lookup(ROOT_INO, '.fuse_hiddenish'), 'other names are not');
  t.equal(report.filter((l) => l.startsWith('WARNING')).length, 2, report.join('\n'));
  t.match(report.join('\n'), /recovered size of inode \d+ \(\/grown\): 3 → 24/);
});

t.test('blobs named like our own names are imported, shown and reported, never dropped', async (t) => {
  const s = await makeStack({
    blobs: { '.fuse_hidden0000000100000001': 'a real file', 'IMPORT_InProgress.x': 'not a marker', 'd/.fuse_hidden00a1': 'deep' },
  });
  t.teardown(() => s.cleanup());
  const names = (await s.vfs.readdir('/')).names;
  t.ok(names.includes('.fuse_hidden0000000100000001'), 'the .fuse_hidden blob survived the mount-time reconcile');
  t.ok(names.includes('IMPORT_InProgress.x'), 'the marker look-alike is shown');
  t.equal((await s.readFile('/d/.fuse_hidden00a1')).toString(), 'deep');
  t.ok(s.logs.some((l) => l.includes('kept /.fuse_hidden0000000100000001: imported from blob')), 'the reconcile says why it kept it');
  t.ok(s.logs.some((l) => l.includes('IMPORT_InProgress.x') && l.includes('looks like the marker of an import job')), 'the import warns about the look-alike');
  t.ok(s.logs.some((l) => l.includes('.fuse_hidden00a1') && l.includes("libfuse's stand-in")), 'and about the .fuse_hidden name');
  // It is a real file: a change to it is exported under its name.
  await s.writeFile('/.fuse_hidden0000000100000001', 'changed');
  await s.coordinator.request('ARCHIVE', s.inode('/.fuse_hidden0000000100000001').ino).done;
  t.equal(s.store.getData('.fuse_hidden0000000100000001')!.toString(), 'changedfile', 'exported under its own name');
});
