import t from 'tap';
import type { BlobInfo, BlobStore } from '../src/blob/blob-store.js';
import { MemoryBlobStore } from '../src/blob/memory-store.js';
import { readAhead, importNamespace, type ImportOptions, type ImportStats } from '../src/namespace/importer.js';
import { openMetaStore, type SqliteMetaStore } from '../src/namespace/meta-store.js';
import { ROOT_INO, type Inode } from '../src/namespace/types.js';
import { decideDeletion, decideImport } from '../src/jobs/decide-import.js';

interface Teardown {
  teardown(fn: () => void): void;
}

function mem(t: Teardown): SqliteMetaStore {
  const m = openMetaStore(':memory:');
  t.teardown(() => m.close());
  return m;
}

async function run(
  store: BlobStore,
  meta: SqliteMetaStore,
  opts: Partial<ImportOptions> = {},
): Promise<{ stats: ImportStats; lines: Record<string, string>[] }> {
  const lines: Record<string, string>[] = [];
  const stats = await importNamespace({ store, meta, log: (l) => lines.push(JSON.parse(l)), ...opts });
  return { stats, lines };
}

/** Every inode by path, for before/after comparisons. */
function snapshot(meta: SqliteMetaStore): Record<string, Inode> {
  const out: Record<string, Inode> = {};
  const walk = (ino: number, path: string) => {
    for (const e of meta.readdir(ino)) {
      const p = `${path}/${e.name}`;
      out[p] = e.inode;
      if (e.inode.kind === 'dir') walk(e.inode.ino, p);
    }
  };
  walk(ROOT_INO, '');
  return out;
}

/** A store whose listing yields these exact pages (any order), reading content from `base`. */
function listingStore(base: MemoryBlobStore, pages: string[][]): BlobStore {
  const s = Object.create(base) as MemoryBlobStore;
  s.listPages = async function* () {
    for (const names of pages) {
      const infos: BlobInfo[] = [];
      for (const n of names) infos.push(await base.head(n));
      yield infos;
    }
  };
  return s;
}

const MT = '2021-06-01 12:00:00 +0000';
const MT_MS = Date.UTC(2021, 5, 1, 12);

t.test('a tree with stubs, implicit directories, attributes and symlinks', async (t) => {
  const store = new MemoryBlobStore();
  store.putDirect('docs', '', { hdi_isfolder: 'true', permissions: '0750', owner: '1001', group: '1002', modtime: MT });
  store.putDirect('docs/readme.md', 'hello', { permissions: 'rw-r-----', owner: 'root', group: 'wheel', modtime: MT });
  store.putDirect('docs/deep/er/file.bin', Buffer.alloc(1000));
  store.putDirect('tmp', '', { hdi_isfolder: 'true', permissions: '1777' });
  store.putDirect('tmp/x', 'x', { permissions: 'rwxrwxrwxt', owner: '$superuser', group: 'supergroup' });
  store.putDirect('link-lnk', 'docs/readme.md', { ftype: 'LNK', owner: '5' });
  store.putDirect('link-bf2', '/abs/target', { is_symlink: 'true' });
  store.putDirect('plain', 'p');
  const meta = mem(t);
  store.resetCounts();
  const { stats, lines } = await run(store, meta);

  t.equal(stats.state, 'Completed');
  t.match(stats, {
    totalBlobsWalked: 8,
    totalBlobsImported: 8,
    importedFiles: 4,
    importedDirectories: 4,
    implicitDirectories: 2,
    importedSymlinks: 2,
    preexistingFiles: 0,
    totalConflicts: 0,
    totalErrors: 0,
    totalWarnings: 0,
  });
  t.type(stats.startTime, 'string');
  t.type(stats.finishTime, 'string');
  t.same(lines, []);
  t.same(store.requestCounts(), { list: 1, read: 2 }, 'one listing, one GET per symlink, no HEAD');

  const docs = meta.resolve('/docs')!;
  t.match(docs, { kind: 'dir', mode: 0o750, uid: 1001, gid: 1002, mtimeMs: MT_MS, blobName: 'docs', hsmFlags: 0 });
  const readme = meta.resolve('/docs/readme.md')!;
  const info = await store.head('docs/readme.md');
  t.match(readme, {
    kind: 'file',
    mode: 0o640,
    uid: 0,
    gid: 0,
    size: 5,
    mtimeMs: MT_MS,
    atimeMs: MT_MS,
    ctimeMs: MT_MS,
    hsmFlags: 0x0d,
    archiveId: 1,
    dataVersion: 1,
    archivedVersion: 1,
    blobName: 'docs/readme.md',
    etag: info.etag,
    nlink: 1,
  });
  const deep = meta.resolve('/docs/deep')!;
  t.match(deep, { kind: 'dir', mode: 0o755, uid: 0, gid: 0, blobName: null, etag: null });
  const bin = meta.resolve('/docs/deep/er/file.bin')!;
  t.match(bin, { size: 1000, mode: 0o644, mtimeMs: (await store.head('docs/deep/er/file.bin')).lastModified.getTime() });
  t.match(meta.resolve('/tmp')!, { mode: 0o1777 });
  t.match(meta.resolve('/tmp/x')!, { mode: 0o1777, uid: 0, gid: 0 });
  t.match(meta.resolve('/link-lnk')!, { kind: 'symlink', target: 'docs/readme.md', size: 14, uid: 5, mode: 0o777 });
  t.match(meta.resolve('/link-bf2')!, { kind: 'symlink', target: '/abs/target', hsmFlags: 0x09 });
  t.match(meta.resolve('/plain')!, { kind: 'file', mode: 0o644, hsmFlags: 0x0d });
  t.equal(meta.get(ROOT_INO)!.nlink, 4, 'root: 2 + docs + tmp');
  t.same(meta.exportCandidates(), [], 'nothing imported needs exporting');
});

t.test('collisions and unmappable names', async (t) => {
  const store = new MemoryBlobStore();
  for (const n of ['a', 'a-x', 'a/b', 'a/c', 'x//y', '..', 'p/../q', 'p/./q', 'ok/\0bad', 'm/', 'm/n', 'e/', 'z', 'z/']) {
    store.putDirect(n, n.endsWith('/') ? '' : 'data');
  }
  store.putDirect('long/' + 'y'.repeat(256), 'x');
  const meta = mem(t);
  const { stats, lines } = await run(store, meta);
  t.equal(stats.state, 'Completed');
  t.equal(stats.totalBlobsWalked, 15);
  t.equal(meta.resolve('/a')!.kind, 'dir', 'file a + blobs under a/: the directory wins');
  t.ok(meta.resolve('/a/b'));
  t.ok(meta.resolve('/a/c'));
  t.equal(meta.resolve('/a-x')!.kind, 'file');
  t.equal(meta.resolve('/x'), undefined);
  t.equal(meta.resolve('/p'), undefined, "names with '.' or '..' create nothing");
  t.equal(meta.resolve('/ok'), undefined);
  t.equal(meta.resolve('/long'), undefined);
  t.equal(meta.resolve('/m')!.kind, 'dir');
  t.ok(meta.resolve('/m/n'));
  t.equal(meta.resolve('/e')!.kind, 'dir', "a marker ending in '/' makes its directory");
  t.equal(meta.resolve('/z')!.kind, 'dir', "file z and marker z/: the directory wins");
  t.same(meta.readdir(meta.resolve('/z')!.ino), []);
  // Conflicts: a (hidden), x//y, .., p/../q, p/./q, ok/\0bad, long/..., m/, e/, z (hidden), z/.
  t.equal(stats.totalConflicts, 11);
  t.equal(lines.filter((l) => l.event === 'conflict').length, 11, 'one log line per conflict');
  t.ok(lines.some((l) => l.blob === 'a' && /hidden by the directory/.test(l.reason!)));
  t.ok(lines.some((l) => l.blob === 'x//y' && /empty path component/.test(l.reason!)));
  t.equal(stats.importedFiles, 4, 'a-x, a/b, a/c, m/n (a and z were removed for their directories)');
  t.equal(stats.totalBlobsImported, stats.importedFiles);

  t.test('re-import of the same blobs: all preexisting, nothing changes', async (t) => {
    const before = snapshot(meta);
    const again = await run(store, meta);
    t.same(snapshot(meta), before);
    t.equal(again.stats.importedFiles, 0);
    t.equal(again.stats.importedDirectories, 0);
    t.equal(again.stats.preexistingFiles, stats.importedFiles);
    t.equal(again.stats.totalConflicts, 11, 'the same names conflict again');
  });
});

t.test('the file comes after the directory in the listing (unordered) and stubs after implicit dirs', async (t) => {
  const base = new MemoryBlobStore();
  base.putDirect('d/f', 'x');
  base.putDirect('d', '', { hdi_isfolder: 'true', permissions: '0700', owner: '7', modtime: MT });
  base.putDirect('a/b', 'x');
  base.putDirect('a', 'file a');
  const store = listingStore(base, [['d/f', 'a/b'], ['d', 'a']]);
  const meta = mem(t);
  const { stats } = await run(store, meta);
  t.match(meta.resolve('/d')!, { kind: 'dir', mode: 0o700, uid: 7, mtimeMs: MT_MS, blobName: 'd' }, 'stub updates the implicit dir');
  t.equal(meta.resolve('/a')!.kind, 'dir');
  t.match(stats, {
    importedFiles: 2,
    importedDirectories: 2,
    implicitDirectories: 1,
    totalBlobsImported: 3,
    totalConflicts: 1,
  });
});

t.test('prefix import', async (t) => {
  const store = new MemoryBlobStore();
  store.putDirect('data/a/f', 'f');
  store.putDirect('data/g', 'g');
  store.putDirect('data/sub', '', { hdi_isfolder: 'true', permissions: '0700' });
  store.putDirect('data/', '');
  store.putDirect('data2/h', 'h');
  store.putDirect('other', 'o');
  for (const prefix of ['data', 'data/', '/data/']) {
    const meta = mem(t);
    store.resetCounts();
    const { stats } = await run(store, meta, { prefix });
    t.equal(stats.totalBlobsWalked, 4, `${prefix}: only blobs under data/ are walked`);
    t.equal(stats.totalConflicts, 0, 'the marker of the prefix itself is not a conflict');
    t.same(Object.keys(snapshot(meta)).sort(), ['/a', '/a/f', '/g', '/sub']);
    t.equal(meta.resolve('/a/f')!.blobName, 'data/a/f', 'the blob name keeps the prefix');
    t.equal(meta.resolve('/sub')!.mode, 0o700);
  }
});

t.test('invalid metadata warns, uses defaults and never fails', async (t) => {
  const store = new MemoryBlobStore();
  store.putDirect('f', 'x', { owner: 'alice', group: 'staff', permissions: '9999', modtime: 'later' });
  store.putDirect('d', '', { hdi_isfolder: 'true', ftype: 'LNK', permissions: 'rwx' });
  store.putDirect('g', 'x', { hdi_isfolder: 'maybe' });
  const meta = mem(t);
  const { stats, lines } = await run(store, meta);
  t.equal(stats.state, 'Completed');
  t.equal(stats.totalWarnings, 7);
  t.equal(stats.totalConflicts, 0);
  t.equal(stats.importedFiles, 2);
  t.equal(stats.importedDirectories, 1);
  const f = meta.resolve('/f')!;
  t.match(f, { mode: 0o644, uid: 0, gid: 0, mtimeMs: (await store.head('f')).lastModified.getTime() });
  t.match(meta.resolve('/d')!, { kind: 'dir', mode: 0o755 });
  const warnings = lines.filter((l) => l.event === 'warning');
  t.equal(warnings.length, 7);
  t.same(
    warnings.filter((w) => w.blob === 'f').map((w) => w.key).sort(),
    ['group', 'modtime', 'owner', 'permissions'],
    'each line names the blob and the key',
  );
  t.ok(warnings.some((w) => w.blob === 'd' && w.key === 'ftype'));
});

t.test('metadata keys in any case (listings keep the case)', async (t) => {
  const base = new MemoryBlobStore();
  base.putDirect('D', '');
  base.putDirect('L', 'target');
  const store = Object.create(base) as MemoryBlobStore;
  store.listPages = async function* () {
    const d = await base.head('D');
    const l = await base.head('L');
    const page: BlobInfo[] = [
      { ...d, metadata: { Hdi_isfolder: 'True', Permissions: '0711' } },
      { ...l, metadata: { FTYPE: 'LNK' } },
    ];
    yield page;
  };
  const meta = mem(t);
  const { stats } = await run(store, meta);
  t.equal(stats.totalWarnings, 0);
  t.match(meta.resolve('/D')!, { kind: 'dir', mode: 0o711 });
  t.match(meta.resolve('/L')!, { kind: 'symlink', target: 'target' });
});

t.test('symlinks: empty, too long, unreadable', async (t) => {
  const store = new MemoryBlobStore();
  store.putDirect('empty', '', { ftype: 'LNK' });
  store.putDirect('long', 'x'.repeat(4097), { ftype: 'LNK' });
  store.putDirect('max', 'y'.repeat(4096), { ftype: 'LNK' });
  store.putDirect('nul', 'a\0b', { is_symlink: 'true' });
  store.putDirect('unreadable', 'target', { ftype: 'LNK' });
  store.putDirect('zz', 'file');
  const meta = mem(t);
  store.failNext('read', 'Transient', 100);
  // Reads of every symlink fail now except the ones never requested (empty, long are refused from the listing).
  let r = await run(store, meta);
  t.equal(r.stats.state, 'Completed', 'errors are tolerated by default');
  t.equal(r.stats.totalErrors, 3, 'max, nul and unreadable could not be read');
  t.equal(r.stats.totalConflicts, 2, 'empty and long are refused');
  t.equal(r.lines.filter((l) => l.event === 'error').length, 3);
  t.ok(meta.resolve('/zz'));
  store.clearFaults();

  r = await run(store, meta);
  t.equal(r.stats.totalErrors, 0);
  t.equal(r.stats.totalConflicts, 3, 'empty, long, nul');
  t.equal(meta.resolve('/max')!.target, 'y'.repeat(4096));
  t.equal(meta.resolve('/unreadable')!.target, 'target');
  t.equal(r.stats.preexistingFiles, 1);

  const meta2 = mem(t);
  store.failNext('read', 'Transient', 100);
  r = await run(store, meta2, { maximumErrors: 0 });
  t.equal(r.stats.state, 'Failed', 'maximumErrors 0: the first error fails the import');
  t.match(r.stats.error, /errors/);
  store.clearFaults();
});

t.test('listing failure and cancellation', async (t) => {
  const store = new MemoryBlobStore();
  for (let i = 0; i < 30; i++) store.putDirect(`f${String(i).padStart(2, '0')}`, 'x');
  const meta = mem(t);
  store.failNext('list', 'Unauthorized');
  let r = await run(store, meta, { pageSize: 10 });
  t.equal(r.stats.state, 'Failed');
  t.match(r.stats.error, /Unauthorized/);
  t.ok(r.lines.some((l) => l.event === 'error'));

  const ac = new AbortController();
  r = await run(store, meta, {
    pageSize: 10,
    signal: ac.signal,
    onProgress: (s) => {
      if (s.totalBlobsWalked >= 10) ac.abort();
    },
  });
  t.equal(r.stats.state, 'Canceled');
  t.equal(r.stats.totalBlobsWalked, 10, 'stopped after the first page');
  t.equal(meta.countInodes(), 11, 'whole pages only');

  r = await run(store, meta, { signal: AbortSignal.abort() });
  t.equal(r.stats.state, 'Canceled');
  t.equal(r.stats.totalBlobsWalked, 0);
});

t.test('re-import keeps local changes and counts conflicts', async (t) => {
  const store = new MemoryBlobStore();
  store.putDirect('dir/f', 'one');
  store.putDirect('dir/g', 'two');
  store.putDirect('dir/h', 'three');
  store.putDirect('s', '', { hdi_isfolder: 'true' });
  const meta = mem(t);
  await run(store, meta);
  const f = meta.resolve('/dir/f')!;
  meta.update(f.ino, { hsmFlags: 0x0b, size: 10, dataVersion: 2 }); // restored and written locally
  const g = meta.resolve('/dir/g')!;
  meta.update(g.ino, { mode: 0o600 }); // chmod
  store.putDirect('dir/h', 'changed remotely');
  const local = meta.create(meta.resolve('/dir')!.ino, 'local', { ...f, blobName: null, etag: null, hsmFlags: 0x03 });
  store.putDirect('dir/local', 'remote');
  store.putDirect('dir/local/x', 'under a local file'); // cannot become a directory over local data
  const before = snapshot(meta);
  const { stats, lines } = await run(store, meta);
  t.same(snapshot(meta), before, 'nothing local changed');
  t.equal(stats.preexistingDirectories, 2, 'dir (implicit) and s (stub)');
  t.equal(stats.totalConflicts, 5, 'f (dirty), g (mode), h (etag), local, local/x');
  t.ok(lines.some((l) => l.blob === 'dir/local/x' && /in the way/.test(l.reason!)));
  t.ok(meta.get(local.ino));
});

t.test('10k blobs: timing', async (t) => {
  const store = new MemoryBlobStore();
  for (let i = 0; i < 10_000; i++) {
    store.putDirect(`d${i % 50}/sub${i % 7}/file-${i}.dat`, 'x', i % 3 === 0 ? { permissions: '0600', owner: '1000', modtime: MT } : {});
  }
  // List once up front so the timing is the importer's (the memory store sorts all names for every page).
  const pages: BlobInfo[][] = [];
  for await (const page of store.listPages()) pages.push(page);
  const listed = Object.create(store) as MemoryBlobStore;
  listed.listPages = async function* () {
    yield* pages;
  };
  const meta = mem(t);
  const started = process.hrtime.bigint();
  const { stats } = await run(listed, meta);
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  t.equal(stats.state, 'Completed');
  t.equal(stats.importedFiles, 10_000);
  t.equal(stats.importedDirectories, 50 + 50 * 7);
  t.equal(meta.countInodes(), 1 + 10_000 + 400);
  t.comment(`10k blobs imported in ${ms.toFixed(0)} ms (${stats.blobsImportedPerSecond} blobs/s; listing excluded)`);

  const again = Number(process.hrtime.bigint());
  const r = await run(listed, meta);
  t.equal(r.stats.preexistingFiles, 10_000);
  t.comment(`re-import (all preexisting) in ${((Number(process.hrtime.bigint()) - again) / 1e6).toFixed(0)} ms`);
});

t.test('readAhead: the next page is asked for while the caller still holds this one, and errors arrive in order', async (t) => {
  const asked: number[] = [];
  async function* pages() {
    for (let i = 0; i < 3; i++) {
      asked.push(i);
      yield i;
    }
    throw new Error('listing broke after page 2');
  }
  const seen: Array<[page: number, askedSoFar: number]> = [];
  await t.rejects(
    (async () => {
      for await (const page of readAhead(pages())) seen.push([page, asked.length]);
    })(),
    /listing broke after page 2/,
  );
  t.same(seen, [[0, 2], [1, 3], [2, 3]], 'page 1 was requested before page 0 was processed');
});

t.test('the kernel is told every name and file a page changed, and the import ends only once it was', async (t) => {
  const store = new MemoryBlobStore();
  store.putDirect('dir/kept', 'kept');
  store.putDirect('dir/gone', 'gone');
  store.putDirect('dir/replaced', 'file');
  const meta = mem(t);
  await run(store, meta);
  const dir = meta.resolve('/dir')!.ino;
  const gone = meta.resolve('/dir/gone')!.ino;
  const replaced = meta.resolve('/dir/replaced')!.ino;
  meta.update(replaced, { hsmFlags: 0x0b, dataVersion: 2 }); // written locally: replaced under OverwriteIfDirty

  const told: string[] = [];
  let answer!: () => void;
  const held = new Promise<void>((r) => (answer = r));
  const record = (line: string) => {
    told.push(line);
    return held;
  };
  const kernel = {
    inodeChanged: (ino: number) => record(`inode ${ino}`),
    entryChanged: (parent: number, name: string) => record(`entry ${parent}/${name}`),
    entryDeleted: (parent: number, name: string, child: number) => record(`delete ${parent}/${name} (${child})`),
  };
  store.putDirect('dir/new', 'new');
  store.putDirect('dir/replaced', 'remote');
  let finished = false;
  const done = run(store, meta, {
    kernel,
    source: (async function* () {
      yield { blobs: [await store.head('dir/new'), await store.head('dir/replaced')], deleted: ['dir/gone'] };
    })(),
    decide: (local, remote) => decideImport('OverwriteIfDirty', local, remote),
    decideDeletion: (local) => decideDeletion('OverwriteIfDirty', local),
  }).then((r) => ((finished = true), r));
  while (told.length === 0) await new Promise((r) => setImmediate(r));
  const fresh = meta.resolve('/dir/replaced')!.ino;
  t.not(fresh, replaced, 'the dirty file was replaced by a new inode');
  t.same(told.filter((l) => !l.startsWith('inode')), [
    `entry ${dir}/new`,
    `delete ${dir}/replaced (${replaced})`,
    `entry ${dir}/replaced`,
    `delete ${dir}/gone (${gone})`,
  ], 'names: created, deleted with their inode, deleted and created again in that order');
  t.same(told.filter((l) => l.startsWith('inode')).sort(), [`inode ${dir}`, `inode ${gone}`, `inode ${replaced}`].sort(), 'the directory and the removed files');
  await new Promise((r) => setImmediate(r));
  t.notOk(finished, 'the import waits for the kernel');
  answer();
  const { stats } = await done;
  t.equal(stats.deletions, 1);
});
