import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import Database from 'better-sqlite3';
import { FsError } from '../src/errors.js';
import { DIRTY_FILE, EVICTABLE, RESIDENT, isExportCandidate, matches } from '../src/hsm/flags.js';
import { openMetaStore, type SqliteMetaStore } from '../src/namespace/meta-store.js';
import { ROOT_INO, type InodeKind, type NewInode } from '../src/namespace/types.js';

function fields(kind: InodeKind, over: Partial<NewInode> = {}): NewInode {
  return {
    kind,
    mode: kind === 'file' ? 0o644 : 0o755,
    uid: 1000,
    gid: 1000,
    size: 0,
    atimeMs: 1000,
    mtimeMs: 2000,
    ctimeMs: 3000,
    target: kind === 'symlink' ? 'target' : null,
    hsmFlags: 0,
    archiveId: 0,
    dataVersion: 0,
    archivedVersion: 0,
    blobName: null,
    etag: null,
    contentMd5: null,
    generation: 0,
    lastAccessMs: 0,
    ...over,
  };
}

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (err instanceof FsError) return err.code;
    throw err;
  }
  return 'ok';
}

interface Teardown {
  teardown(fn: () => void): void;
}

function tempDir(t: Teardown): string {
  const dir = mkdtempSync(join(tmpdir(), 'blobhsm-meta-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function mem(t: Teardown): SqliteMetaStore {
  const m = openMetaStore(':memory:');
  t.teardown(() => m.close());
  return m;
}

t.test('root exists and create/get/lookup/resolve/pathOf/readdir', async (t) => {
  const m = mem(t);
  const root = m.get(ROOT_INO)!;
  t.equal(root.kind, 'dir');
  t.equal(root.mode, 0o755);
  t.equal(root.uid, 0);
  t.equal(root.nlink, 2);
  t.equal(m.pathOf(ROOT_INO), '/');
  t.equal(m.resolve('/')!.ino, ROOT_INO);
  t.equal(m.resolve('')!.ino, ROOT_INO);

  const a = m.create(ROOT_INO, 'a', fields('dir'));
  t.equal(a.nlink, 2);
  t.equal(m.get(ROOT_INO)!.nlink, 3, 'root nlink counts subdirectories');
  const f = m.create(a.ino, 'f.txt', fields('file', { size: 42, blobName: 'a/f.txt', etag: '"e1"', hsmFlags: 0x0d }));
  const l = m.create(a.ino, 'link', fields('symlink', { target: '../x' }));
  t.equal(f.nlink, 1);
  t.equal(m.get(a.ino)!.nlink, 2, 'files do not count in a directory nlink');
  t.same(m.get(f.ino), { ...fields('file', { size: 42, blobName: 'a/f.txt', etag: '"e1"', hsmFlags: 0x0d }), ino: f.ino, nlink: 1 });
  t.equal(m.lookup(a.ino, 'f.txt')!.ino, f.ino);
  t.equal(m.lookup(a.ino, 'nope'), undefined);
  t.equal(m.resolve('/a/f.txt')!.ino, f.ino);
  t.equal(m.resolve('a/f.txt')!.ino, f.ino);
  t.equal(m.resolve('/a//f.txt/')!.ino, f.ino);
  t.equal(m.resolve('/a/missing'), undefined);
  t.equal(m.resolve('/a/f.txt/x'), undefined);
  t.equal(m.pathOf(f.ino), '/a/f.txt');
  t.equal(m.get(l.ino)!.target, '../x');
  m.create(a.ino, 'B', fields('file'));
  m.create(a.ino, 'c', fields('file'));
  t.same(
    m.readdir(a.ino).map((e) => e.name),
    ['B', 'c', 'f.txt', 'link'],
    'readdir in name (byte) order',
  );
  t.equal(m.readdir(a.ino)[2]!.inode.size, 42, 'readdir joins the inode');
  t.equal(m.countInodes(), 6);

  t.equal(code(() => m.create(a.ino, 'f.txt', fields('file'))), 'EEXIST');
  t.equal(code(() => m.create(f.ino, 'x', fields('file'))), 'ENOTDIR');
  t.equal(code(() => m.create(9999, 'x', fields('file'))), 'ENOENT');
  t.equal(code(() => m.create(a.ino, 'a/b', fields('file'))), 'EINVAL');
  t.equal(code(() => m.create(a.ino, '', fields('file'))), 'EINVAL');
  t.equal(code(() => m.create(a.ino, 'x'.repeat(256), fields('file'))), 'ENAMETOOLONG');
  t.equal(code(() => m.create(a.ino, 'é'.repeat(127), fields('file'))), 'ok', '254 bytes is fine');
});

t.test('update', async (t) => {
  const m = mem(t);
  const f = m.create(ROOT_INO, 'f', fields('file'));
  const u = m.update(f.ino, { size: 10, mtimeMs: 5, hsmFlags: 0x0b, etag: '"x"', target: undefined });
  t.equal(u.size, 10);
  t.equal(u.mtimeMs, 5);
  t.equal(u.hsmFlags, 0x0b);
  t.equal(u.etag, '"x"');
  t.same(m.get(f.ino), u);
  t.same(m.update(f.ino, {}), u, 'an empty patch returns the inode');
  t.equal(m.update(f.ino, { blobName: null }).blobName, null);
  t.equal(m.update(f.ino, { size: 1 }, { durable: true }).size, 1);
  t.equal(code(() => m.update(9999, { size: 1 })), 'ENOENT');
  t.equal(code(() => m.update(9999, {})), 'ENOENT');
});

t.test('unlink, hard links and nlink', async (t) => {
  const m = mem(t);
  const d = m.create(ROOT_INO, 'd', fields('dir'));
  const f = m.create(ROOT_INO, 'f', fields('file', { size: 5 }));
  m.addRange(f.ino, 0, [0, 5]);
  const l1 = m.link(f.ino, d.ino, 'f2');
  t.equal(l1.nlink, 2);
  t.equal(m.link(f.ino, ROOT_INO, 'f3').nlink, 3);
  t.equal(m.get(f.ino)!.nlink, 3);
  t.equal(m.resolve('/d/f2')!.ino, f.ino);
  t.equal(code(() => m.link(f.ino, ROOT_INO, 'f')), 'EEXIST');
  t.equal(code(() => m.link(d.ino, ROOT_INO, 'dd')), 'EPERM', 'no hard links to directories');
  t.equal(code(() => m.link(9999, ROOT_INO, 'x')), 'ENOENT');

  t.equal(m.unlink(ROOT_INO, 'f').nlink, 2);
  t.equal(m.resolve(m.pathOf(f.ino)!)!.ino, f.ino, 'pathOf finds a remaining name');
  t.not(m.pathOf(f.ino), '/f');
  t.equal(m.unlink(ROOT_INO, 'f3').nlink, 1);
  t.same(m.ranges(f.ino, 0), [[0, 5]], 'ranges kept while a name remains');
  t.equal(code(() => m.unlink(ROOT_INO, 'd')), 'ENOTEMPTY');
  const last = m.unlink(d.ino, 'f2');
  t.equal(last.nlink, 0);
  t.equal(last.ino, f.ino);
  t.equal(last.size, 5, 'the last unlink returns the inode so the caller can drop its data');
  t.equal(m.get(f.ino), undefined, 'inode deleted at nlink 0');
  t.same(m.ranges(f.ino, 0), [], 'its ranges too');
  t.equal(m.pathOf(f.ino), undefined);
  t.equal(m.get(ROOT_INO)!.nlink, 3);
  t.equal(m.unlink(ROOT_INO, 'd').nlink, 0, 'empty directory removed');
  t.equal(m.get(ROOT_INO)!.nlink, 2);
  t.equal(code(() => m.unlink(ROOT_INO, 'd')), 'ENOENT');
  t.equal(m.countInodes(), 1);
});

t.test('rename', async (t) => {
  const m = mem(t);
  const a = m.create(ROOT_INO, 'a', fields('dir'));
  const b = m.create(ROOT_INO, 'b', fields('dir'));
  const f = m.create(a.ino, 'f', fields('file'));
  const g = m.create(a.ino, 'g', fields('file', { size: 3 }));

  t.test('plain move within and across directories', async (t) => {
    t.equal(m.rename(a.ino, 'f', a.ino, 'f1'), undefined);
    t.equal(m.resolve('/a/f1')!.ino, f.ino);
    t.equal(m.lookup(a.ino, 'f'), undefined);
    t.equal(m.rename(a.ino, 'f1', b.ino, 'f'), undefined);
    t.equal(m.pathOf(f.ino), '/b/f');
    t.equal(m.rename(b.ino, 'f', b.ino, 'f'), undefined, 'same name: no-op');
    t.equal(m.resolve('/b/f')!.ino, f.ino);
  });

  t.test('replace a file', async (t) => {
    m.addRange(g.ino, 0, [0, 3]);
    const replaced = m.rename(b.ino, 'f', a.ino, 'g');
    t.equal(replaced!.ino, g.ino);
    t.equal(replaced!.nlink, 0);
    t.equal(m.get(g.ino), undefined);
    t.same(m.ranges(g.ino, 0), []);
    t.equal(m.resolve('/a/g')!.ino, f.ino);
  });

  t.test('replace a hard-linked file keeps the other name', async (t) => {
    const h = m.create(b.ino, 'h', fields('file'));
    m.link(h.ino, b.ino, 'h2');
    const replaced = m.rename(a.ino, 'g', b.ino, 'h');
    t.equal(replaced!.ino, h.ino);
    t.equal(replaced!.nlink, 1);
    t.equal(m.get(h.ino)!.nlink, 1);
    t.equal(m.resolve('/b/h2')!.ino, h.ino);
    t.equal(m.rename(b.ino, 'h2', b.ino, 'h2'), undefined);
    // Two names of one inode: rename does nothing (POSIX).
    m.link(h.ino, b.ino, 'h3');
    t.equal(m.rename(b.ino, 'h2', b.ino, 'h3'), undefined);
    t.ok(m.lookup(b.ino, 'h2'));
    t.ok(m.lookup(b.ino, 'h3'));
  });

  t.test('directories', async (t) => {
    const c = m.create(ROOT_INO, 'c', fields('dir'));
    const c1 = m.create(c.ino, 'c1', fields('dir'));
    m.create(c1.ino, 'x', fields('file'));
    const e = m.create(ROOT_INO, 'e', fields('dir'));
    const full = m.create(ROOT_INO, 'full', fields('dir'));
    m.create(full.ino, 'y', fields('file'));
    const file = m.create(ROOT_INO, 'file', fields('file'));
    const rootLinks = m.get(ROOT_INO)!.nlink;

    t.equal(code(() => m.rename(ROOT_INO, 'c', ROOT_INO, 'full')), 'ENOTEMPTY');
    t.equal(code(() => m.rename(ROOT_INO, 'c', ROOT_INO, 'file')), 'ENOTDIR');
    t.equal(code(() => m.rename(ROOT_INO, 'file', ROOT_INO, 'e')), 'EISDIR');
    t.equal(code(() => m.rename(ROOT_INO, 'c', c1.ino, 'c')), 'EINVAL', 'into its own subdirectory');
    t.equal(code(() => m.rename(ROOT_INO, 'c', c.ino, 'c')), 'EINVAL', 'into itself');
    t.equal(code(() => m.rename(ROOT_INO, 'nope', ROOT_INO, 'x')), 'ENOENT');
    t.equal(code(() => m.rename(ROOT_INO, 'file', file.ino, 'x')), 'ENOTDIR');

    const replaced = m.rename(ROOT_INO, 'c', ROOT_INO, 'e');
    t.equal(replaced!.ino, e.ino, 'a directory replaces an empty directory');
    t.equal(m.get(e.ino), undefined);
    t.equal(m.get(ROOT_INO)!.nlink, rootLinks - 1);
    t.equal(m.resolve('/e/c1/x')!.kind, 'file');

    m.rename(ROOT_INO, 'e', full.ino, 'moved');
    t.equal(m.get(ROOT_INO)!.nlink, rootLinks - 2, 'old parent loses a subdirectory link');
    t.equal(m.get(full.ino)!.nlink, 3, 'new parent gains one');
    t.equal(m.pathOf(c1.ino), '/full/moved/c1');
  });
});

t.test('ranges merge', async (t) => {
  const m = mem(t);
  m.addRange(7, 1, [10, 20]);
  m.addRange(7, 1, [30, 40]);
  t.same(m.ranges(7, 1), [
    [10, 20],
    [30, 40],
  ]);
  m.addRange(7, 1, [20, 25]);
  t.same(m.ranges(7, 1), [
    [10, 25],
    [30, 40],
  ], 'adjacent merges');
  m.addRange(7, 1, [12, 14]);
  t.same(m.ranges(7, 1), [
    [10, 25],
    [30, 40],
  ], 'contained range changes nothing');
  m.addRange(7, 1, [0, 5]);
  m.addRange(7, 1, [24, 31]);
  t.same(m.ranges(7, 1), [
    [0, 5],
    [10, 40],
  ], 'bridging merges both');
  m.addRange(7, 1, [3, 50]);
  t.same(m.ranges(7, 1), [[0, 50]]);
  m.addRange(7, 1, [60, 60]);
  t.same(m.ranges(7, 1), [[0, 50]], 'empty range ignored');
  m.addRange(7, 2, [0, 1]);
  m.addRange(8, 1, [0, 1]);
  t.same(m.ranges(7, 2), [[0, 1]], 'generations are separate');
  t.equal(code(() => m.addRange(7, 1, [-1, 3])), 'EINVAL');
  m.clearRanges(7);
  t.same(m.ranges(7, 1), []);
  t.same(m.ranges(7, 2), []);
  t.same(m.ranges(8, 1), [[0, 1]]);
});

t.test('filesMatching, exportCandidates and evictionCandidates', async (t) => {
  const m = mem(t);
  const mk = (name: string, flags: number, lastAccessMs: number, size = 10, kind: InodeKind = 'file') =>
    m.create(ROOT_INO, name, fields(kind, { hsmFlags: flags, lastAccessMs, size })).ino;
  const clean2 = mk('clean2', 0x09, 200);
  const clean1 = mk('clean1', 0x09, 100);
  mk('released', 0x0d, 50);
  const dirty = mk('dirty', 0x0b, 10);
  mk('norelease', 0x19, 10);
  mk('lost', 0x49, 10);
  mk('empty', 0x09, 10, 0);
  const fresh = mk('new', 0x00, 10);
  const noarchive = mk('noarchive', 0x21, 10);
  const newLink = mk('newlink', 0x00, 10, 3, 'symlink');
  mk('oldlink', 0x09, 10, 3, 'symlink');
  mk('dir', 0x00, 10, 0, 'dir');
  const clean3 = mk('clean3', 0x09, 300);

  t.same(m.evictionCandidates(10).map((i) => i.ino), [clean1, clean2, clean3]);
  t.same(m.evictionCandidates(2).map((i) => i.ino), [clean1, clean2]);
  m.update(clean1, { lastAccessMs: 1000 });
  t.same(m.evictionCandidates(10).map((i) => i.ino), [clean2, clean3, clean1]);

  t.same(m.filesMatching(DIRTY_FILE).map((i) => i.ino), [dirty]);
  t.same(m.filesMatching([{ mask: 0x0a, value: 0x0a }]).map((i) => i.ino), [dirty]);
  t.equal(m.filesMatching([{ mask: 0x04, value: 0x04 }]).length, 1);
  t.same(m.filesMatching([{ mask: 0x20, value: 0x20 }]).map((i) => i.ino), [noarchive]);
  t.equal(m.filesMatching(RESIDENT).length, 9, 'every regular file but the released one');
  t.same(m.exportCandidates().map((i) => i.ino), [dirty, fresh, newLink]);
  // The SQL and the TypeScript predicate are one definition: they agree on every row.
  const all = m.filesMatching([]);
  t.same(all.filter((i) => isExportCandidate(i.hsmFlags)).map((i) => i.ino), [dirty, fresh]);
  t.same(all.filter((i) => matches(i.hsmFlags, EVICTABLE) && i.size > 0).map((i) => i.ino).sort((a, b) => a - b), [clean2, clean1, clean3].sort((a, b) => a - b));
});

t.test('every query answers an inode with all its fields (rows are read by column position)', async (t) => {
  const m = mem(t);
  const dir = m.create(ROOT_INO, 'd', fields('dir')).ino;
  // Every field distinct, so a column read into the wrong field shows.
  const full = fields('file', {
    mode: 0o640, uid: 11, gid: 12, size: 13, atimeMs: 14, mtimeMs: 15, ctimeMs: 16, hsmFlags: 0x0b, archiveId: 17,
    dataVersion: 18, archivedVersion: 19, blobName: 'd/f', etag: '"0x20"', contentMd5: 'md5==', generation: 21, lastAccessMs: 22,
  });
  const ino = m.create(dir, 'f', full).ino;
  const expected = { ...full, ino, nlink: 1 };
  t.same(m.get(ino), expected, 'get');
  t.same(m.lookup(dir, 'f'), expected, 'lookup');
  t.same(m.resolve('/d/f'), expected, 'resolve');
  t.same(m.readdir(dir), [{ name: 'f', inode: expected }], 'readdir');
  t.same(m.readdirPage(dir, undefined, 10), [{ name: 'f', inode: expected }], 'readdirPage');
  t.same(m.filesMatching(DIRTY_FILE), [expected], 'filesMatching');
  t.same(m.exportCandidates(), [expected], 'exportCandidates');
  t.same(m.inodesOfBlob('d/f', 0), [expected], 'inodesOfBlob');
  t.same(m.update(ino, { size: 23 }), { ...expected, size: 23 }, 'update answers the updated inode');
  t.same(m.update(ino, { hsmFlags: 0x09 }), { ...expected, size: 23, hsmFlags: 0x09 }, 'a durable update too');
  t.equal(code(() => m.update(999_999, { size: 1 })), 'ENOENT', 'update of a missing inode');
  const link = m.create(ROOT_INO, 'l', fields('symlink', { target: 'd/f', size: 3 })).ino;
  t.equal(m.get(link)!.target, 'd/f');
});

t.test('settings', async (t) => {
  const m = mem(t);
  t.equal(m.getSetting('x'), undefined);
  m.setSetting('x', '1');
  m.setSetting('x', '2');
  t.equal(m.getSetting('x'), '2');
});

t.test('pathsOf lists every hard link; blob etags of unowned names', async (t) => {
  const m = mem(t);
  const d = m.create(ROOT_INO, 'd', fields('dir'));
  const f = m.create(d.ino, 'f', fields('file'));
  m.link(f.ino, ROOT_INO, 'g');
  m.link(f.ino, d.ino, 'a');
  t.same(m.pathsOf(f.ino), ['/d/a', '/d/f', '/g']);
  t.same(m.pathsOf(d.ino), ['/d']);
  t.same(m.pathsOf(ROOT_INO), ['/']);
  t.same(m.pathsOf(9999), []);
  t.same(m.entriesStartingWith('a'), [{ parentIno: d.ino, name: 'a' }]);
  t.same(m.entriesStartingWith('%'), [], 'no LIKE wildcards');
  t.equal(m.blobEtag('d/f'), undefined);
  m.setBlobEtag('d/f', '"1"');
  m.setBlobEtag('d/f', '"2"');
  t.equal(m.blobEtag('d/f'), '"2"');
  m.setBlobEtag('d/f', null);
  t.equal(m.blobEtag('d/f'), undefined);
  t.same(m.inodesOfBlob('d/f'), []);
  m.update(f.ino, { blobName: 'd/f', etag: '"3"' });
  t.same(m.inodesOfBlob('d/f').map((i) => i.ino), [f.ino]);
  t.same(m.inodesOfBlob('g'), []);
});

t.test('transaction rolls back and nests', async (t) => {
  const m = mem(t);
  t.throws(() =>
    m.transaction(() => {
      m.create(ROOT_INO, 'a', fields('file'));
      m.update(ROOT_INO, { hsmFlags: 0 });
      throw new Error('boom');
    }),
  );
  t.equal(m.lookup(ROOT_INO, 'a'), undefined, 'rolled back');
  const r = m.transaction(() => {
    m.create(ROOT_INO, 'b', fields('file'));
    try {
      m.transaction(() => {
        m.create(ROOT_INO, 'c', fields('file'));
        throw new Error('inner');
      });
    } catch {
      // the inner savepoint rolled back only
    }
    return m.update(m.lookup(ROOT_INO, 'b')!.ino, { hsmFlags: 0x02 }).hsmFlags;
  });
  t.equal(r, 0x02);
  t.ok(m.lookup(ROOT_INO, 'b'));
  t.equal(m.lookup(ROOT_INO, 'c'), undefined);
});

t.test('changelog', async (t) => {
  const m = mem(t);
  const rec = (name: string) => ({ type: 'CREAT', flags: 0, ino: 5, parentIno: 1, name, extra: { a: 1, b: 'x' } });
  t.equal(m.appendChangelog(rec('ignored')), 0, 'nothing recorded without a reader');
  t.same(m.readChangelog(0, 10), []);
  const cl1 = m.registerChangelogReader();
  t.equal(cl1, 'cl1');
  t.equal(m.appendChangelog(rec('r1')), 1);
  t.equal(m.appendChangelog(rec('r2')), 2);
  const cl2 = m.registerChangelogReader();
  t.equal(cl2, 'cl2');
  t.equal(m.appendChangelog(rec('r3')), 3);
  const all = m.readChangelog(0, 10);
  t.same(all.map((r) => [r.index, r.name]), [
    [1, 'r1'],
    [2, 'r2'],
    [3, 'r3'],
  ]);
  t.same(all[0]!.extra, { a: 1, b: 'x' });
  t.type(all[0]!.timeMs, 'number');
  t.same(m.readChangelog(2, 1).map((r) => r.index), [2]);

  m.clearChangelog(cl1, 2);
  t.same(m.readChangelog(0, 10).map((r) => r.index), [3], 'cl2 registered at 2: records 1-2 purged');
  m.clearChangelog(cl1, 0);
  t.same(m.readChangelog(0, 10).map((r) => r.index), [3], 'cl2 still needs 3');
  m.clearChangelog(cl1, 1);
  t.equal(code(() => m.clearChangelog(cl1, 99)), 'EINVAL');
  t.equal(code(() => m.clearChangelog('cl99', 0)), 'ENOENT');
  t.equal(code(() => m.clearChangelog('bogus', 0)), 'ENOENT');
  m.clearChangelog(cl2, 3);
  t.same(m.readChangelog(0, 10), []);
  t.equal(m.appendChangelog(rec('r4')), 4, 'indexes keep increasing after a purge');
  m.deregisterChangelogReader(cl1);
  t.equal(code(() => m.deregisterChangelogReader(cl1)), 'ENOENT');
  t.same(m.readChangelog(0, 10).map((r) => r.index), [4]);
  m.deregisterChangelogReader(cl2);
  t.same(m.readChangelog(0, 10), [], 'last reader gone: all purged');
  t.equal(m.registerChangelogReader(), 'cl3', 'reader ids are never reused');
  t.equal(m.appendChangelog(rec('r5')), 5);
});

t.test('reopen keeps inode numbers, data and changelog indexes', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'sub', 'meta.db');
  let m = openMetaStore(path);
  const a = m.create(ROOT_INO, 'a', fields('dir'));
  const f = m.create(a.ino, 'f', fields('file', { size: 9, etag: '"e"' }));
  const gone = m.create(ROOT_INO, 'gone', fields('file'));
  m.unlink(ROOT_INO, 'gone');
  m.addRange(f.ino, 0, [0, 9]);
  m.setSetting('k', 'v');
  const cl = m.registerChangelogReader();
  m.appendChangelog({ type: 'CREAT', flags: 0, ino: f.ino, parentIno: a.ino, name: 'f', extra: {} });
  m.appendChangelog({ type: 'CREAT', flags: 0, ino: f.ino, parentIno: a.ino, name: 'g', extra: {} });
  m.clearChangelog(cl, 0);
  m.update(f.ino, { hsmFlags: 0x0b });
  m.close();
  m.close(); // idempotent

  m = openMetaStore(path);
  t.teardown(() => m.close());
  t.equal(m.resolve('/a/f')!.ino, f.ino);
  t.equal(m.get(f.ino)!.hsmFlags, 0x0b);
  t.equal(m.get(f.ino)!.etag, '"e"');
  t.same(m.ranges(f.ino, 0), [[0, 9]]);
  t.equal(m.getSetting('k'), 'v');
  t.equal(m.get(ROOT_INO)!.nlink, 3);
  const next = m.create(ROOT_INO, 'next', fields('file'));
  t.ok(next.ino > gone.ino, 'inode numbers are never reused, even after the highest was deleted');
  t.equal(m.changelogLastIndex(), 2);
  t.equal(m.appendChangelog({ type: 'CREAT', flags: 0, ino: next.ino, parentIno: 1, name: 'next', extra: {} }), 3);
  t.equal(m.registerChangelogReader(), 'cl2');
});

t.test('durable updates really fsync (strace)', { skip: hasStrace() ? false : 'strace not available' }, async (t) => {
  const dir = tempDir(t);
  const script = join(dir, 'probe.mjs');
  const storeUrl = new URL('../src/namespace/meta-store.ts', import.meta.url).href;
  const { writeFileSync } = await import('node:fs');
  writeFileSync(
    script,
    `const { openMetaStore } = await import(${JSON.stringify(storeUrl)});
const m = openMetaStore(${JSON.stringify(dir)} + '/' + process.argv[2] + '.db');
const f = m.create(1, 'f', { kind: 'file', mode: 420, uid: 0, gid: 0, size: 0, atimeMs: 0, mtimeMs: 0, ctimeMs: 0, target: null,
  hsmFlags: 0, archiveId: 0, dataVersion: 0, archivedVersion: 0, blobName: null, etag: null, generation: 0, lastAccessMs: 0 });
const mode = process.argv[2];
for (let i = 0; i < 50; i++) {
  if (mode === 'lazy') m.update(f.ino, { size: i });
  else if (mode === 'durable') m.update(f.ino, { hsmFlags: i & 15 });
  else m.transaction(() => { m.update(f.ino, { hsmFlags: i & 15 }); m.update(f.ino, { size: i }); });
}
m.close();
`,
  );
  const count = (mode: string) => {
    const r = spawnSync(
      'strace',
      ['-f', '-c', '-e', 'trace=fsync,fdatasync', process.execPath, ...process.execArgv, script, mode],
      { encoding: 'utf8' },
    );
    if (r.status !== 0) return undefined;
    let n = 0;
    for (const line of r.stderr.split('\n')) {
      const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(fsync|fdatasync)$/.exec(line);
      if (m) n += Number(m[1]);
    }
    return n;
  };
  const lazy = count('lazy');
  if (lazy === undefined) {
    t.pass('skipped: could not run the probe under strace with the TypeScript loader');
    return;
  }
  const durable = count('durable')!;
  const tx = count('tx')!;
  t.comment(`fsync calls for 50 updates: plain ${lazy}, durable ${durable}, durable in transactions ${tx}`);
  t.ok(lazy < 20, 'plain updates do not fsync each commit');
  t.ok(durable >= 50, 'each durable update fsyncs');
  t.ok(tx >= 50, 'each transaction holding a durable update fsyncs');
});

function hasStrace(): boolean {
  return spawnSync('strace', ['-V']).status === 0;
}

t.test('readdirPage: pages in name order from a cursor, changes between pages neither repeat nor skip', async (t) => {
  const m = mem(t);
  const dir = m.create(ROOT_INO, 'big', fields('dir'));
  const names = Array.from({ length: 25 }, (_, i) => `f${String(i).padStart(3, '0')}`);
  for (const n of [...names].reverse()) m.create(dir.ino, n, fields('file', { size: n.length }));
  const seen: string[] = [];
  let after: string | undefined;
  for (let page = 0; ; page++) {
    if (page === 1) {
      m.create(dir.ino, 'f000a', fields('file')); // before the cursor: not listed
      m.create(dir.ino, 'zzz', fields('file')); // after it: listed
      m.unlink(dir.ino, 'f015'); // not yet listed: gone
    }
    const entries = m.readdirPage(dir.ino, after, 10);
    seen.push(...entries.map((e) => e.name));
    if (entries.length < 10) break;
    after = entries[entries.length - 1]!.name;
  }
  t.same(seen, [...names.filter((n) => n !== 'f015'), 'zzz']);
  t.equal(m.readdirPage(dir.ino, undefined, 1)[0]!.inode.size, 4, 'entries carry their inode');
  t.same(m.readdirPage(dir.ino, 'zzz', 10), [], 'nothing after the last name');
  t.same(m.readdirPage(dir.ino, 'f000', 2).map((e) => e.name), ['f000a', 'f001'], 'byte order');
  t.same(
    m.readdirSummaryPage(dir.ino, 'f010', 5),
    m.readdirPage(dir.ino, 'f010', 5).map(({ name, inode }) => ({ name, ino: inode.ino, kind: inode.kind, hsmFlags: inode.hsmFlags, size: inode.size, mtimeMs: inode.mtimeMs })),
    'the summary page is the same page, fewer fields',
  );
  t.equal(m.hasEntries(dir.ino), true);
  t.equal(m.hasEntries(m.create(ROOT_INO, 'empty', fields('dir')).ino), false);
});

t.test('FIFOs and sockets: stored, listed as local only, never export candidates, kept across reopen', async (t) => {
  const path = join(tempDir(t), 'meta.db');
  let m = openMetaStore(path);
  const d = m.create(ROOT_INO, 'd', fields('dir'));
  const p = m.create(ROOT_INO, 'p', fields('fifo', { mode: 0o640 }));
  const s = m.create(d.ino, 's', fields('socket'));
  const f = m.create(ROOT_INO, 'f', fields('file'));
  t.same(m.exportCandidates().map((i) => i.ino), [f.ino], 'only the file is an export candidate (all flags 0)');
  t.same(m.localOnlyInodes().map((i) => i.ino), [p.ino, s.ino]);
  t.same(m.emptyDirectories().map((i) => i.ino), [d.ino], 'a directory holding only a socket still needs its own stub');
  m.close();
  m = openMetaStore(path);
  t.teardown(() => m.close());
  t.match(m.resolve('/p'), { ino: p.ino, kind: 'fifo', mode: 0o640 });
  t.match(m.resolve('/d/s'), { ino: s.ino, kind: 'socket' });
});

t.test('a store made before FIFOs and sockets is rebuilt with every row and its inode sequence', async (t) => {
  const path = join(tempDir(t), 'meta.db');
  // The inode table as the first releases made it: files, directories and symlinks only, no content_md5 column,
  // an export index over every non-directory.
  const old = new Database(path);
  old.exec(`
    CREATE TABLE inodes (
      ino INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL CHECK (kind IN ('file', 'dir', 'symlink')),
      mode INTEGER NOT NULL, uid INTEGER NOT NULL, gid INTEGER NOT NULL, size INTEGER NOT NULL,
      atime_ms INTEGER NOT NULL, mtime_ms INTEGER NOT NULL, ctime_ms INTEGER NOT NULL, nlink INTEGER NOT NULL,
      target TEXT, hsm_flags INTEGER NOT NULL, archive_id INTEGER NOT NULL, data_version INTEGER NOT NULL,
      archived_version INTEGER NOT NULL, blob_name TEXT, etag TEXT, generation INTEGER NOT NULL,
      last_access_ms INTEGER NOT NULL);
    CREATE INDEX inodes_export ON inodes(ino) WHERE kind <> 'dir' AND (hsm_flags & 32) = 0;
    CREATE TABLE dentries (parent INTEGER NOT NULL, name TEXT NOT NULL, ino INTEGER NOT NULL, PRIMARY KEY (parent, name)) WITHOUT ROWID;
    INSERT INTO inodes VALUES (1, 'dir', 493, 0, 0, 0, 1, 1, 1, 2, NULL, 0, 0, 0, 0, NULL, NULL, 0, 1);
    INSERT INTO inodes VALUES (2, 'file', 420, 7, 8, 5, 1, 2, 3, 1, NULL, 13, 1, 1, 1, 'f', '"etag"', 1, 1);
    INSERT INTO inodes VALUES (3, 'file', 420, 7, 8, 0, 1, 2, 3, 1, NULL, 0, 0, 1, 0, NULL, NULL, 1, 1);
    INSERT INTO dentries VALUES (1, 'f', 2);
    DELETE FROM inodes WHERE ino = 3;`);
  old.close();

  const m = openMetaStore(path);
  t.teardown(() => m.close());
  t.match(m.resolve('/f'), { ino: 2, kind: 'file', uid: 7, gid: 8, size: 5, hsmFlags: 13, blobName: 'f', etag: '"etag"', contentMd5: null }, 'the old rows are kept');
  const p = m.create(ROOT_INO, 'p', fields('fifo'));
  t.equal(p.ino, 4, 'the sequence is kept: number 3 (deleted) is not reused');
  t.equal(m.resolve('/p')!.kind, 'fifo', 'a FIFO is accepted now');
  t.same(m.exportCandidates().map((i) => i.ino), [], 'the export index no longer takes FIFOs (and f is archived)');
  m.close(); // the store locks its file while open (exclusive locking)
  const db = new Database(path, { readonly: true });
  t.teardown(() => db.close());
  const sql = (name: string) => db.prepare('SELECT sql FROM sqlite_master WHERE name = ?').pluck().get(name) as string;
  t.match(sql('inodes'), /'fifo', 'socket'/);
  t.notMatch(sql('inodes_export'), /kind <> 'dir'/, 'the export index was rebuilt');
  t.notOk(db.prepare("SELECT 1 FROM sqlite_master WHERE name = 'inodes_before_kinds'").get(), 'no leftover table');
});
