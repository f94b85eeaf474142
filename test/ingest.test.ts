// The ingest engine on the in-memory store: a file changing while it is read is never committed torn (read again,
// or reported after the retries), a blob this journal wrote but did not record (a crash between commit and journal)
// is recognised by its stamp, a changed source overwrites only our own blob (If-Match), the error limit stops the
// run, and the names and metadata follow the export encoding; small local files are read with blocking calls only
// on local filesystems, and such a read refuses a file changed since the walk. (e2e-ingest.test.ts: the command on Azurite.)
import t from 'tap';
import { appendFileSync, lstatSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryBlobStore } from '../src/blob/memory-store.js';
import { BlobError, SourceChangedError } from '../src/errors.js';
import { IngestJournal } from '../src/ingest/journal.js';
import { Ingester, readSmallFile, type IngestLogRecord, type IngestOptions } from '../src/ingest/ingester.js';
import { LocalFilesystems, isLocalFilesystemType } from '../src/ingest/local-fs.js';
import { walkSources } from '../src/ingest/source-walk.js';

function setup(t: { teardown(fn: () => unknown): void }) {
  const dir = mkdtempSync(join(tmpdir(), 'blobhsm-ingest-unit-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const src = join(dir, 'src');
  mkdirSync(src);
  const store = new MemoryBlobStore();
  const journalPath = join(dir, 'journal.sqlite');
  const logs: IngestLogRecord[] = [];
  const run = (o: Partial<IngestOptions> = {}) => {
    const journal = IngestJournal.open(journalPath, 'memory/c/', { create: true });
    const ingester = new Ingester({
      store,
      journal,
      sources: [`${src}/`],
      prefix: 'p/',
      fileConcurrency: 4,
      blockConcurrency: 2,
      largeFileConcurrency: 1,
      blockSize: 1024,
      singleRequestMaxBytes: 1024,
      maximumErrors: 0,
      changeRetries: 2,
      dryRun: false,
      allowExisting: false,
      log: (r) => logs.push(r),
      ...o,
    });
    return ingester.run().finally(() => journal.close());
  };
  return { src, store, run, logs };
}

t.test('encoding: names under the prefix, export metadata, one request per small file or stub', async (t) => {
  const { src, store, run } = setup(t);
  mkdirSync(join(src, 'd/empty'), { recursive: true });
  writeFileSync(join(src, 'd/a.txt'), 'a\n');
  symlinkSync('a.txt', join(src, 'd/l'));
  utimesSync(join(src, 'd/a.txt'), new Date('2020-01-02T03:04:05Z'), new Date('2020-01-02T03:04:05Z'));
  const s = await run();
  t.match(s, { state: 'Completed', stats: { files: 1, directories: 2, symlinks: 1, errors: 0 } });
  t.same(store.names(), ['p/d', 'p/d/a.txt', 'p/d/empty', 'p/d/l']);
  t.equal(store.requestCounts().upload, 4, 'one Put Blob each');
  t.equal(store.requestCounts().stageBlock, undefined);
  const info = await store.head('p/d/a.txt');
  t.match(info.metadata, { permissions: '0644', modtime: '2020-01-02 03:04:05 +0000' });
  t.match((await store.head('p/d/l')).metadata, { ftype: 'LNK' });
  t.equal(store.getData('p/d/l')?.toString(), 'a.txt');
  t.match((await store.head('p/d/empty')).metadata, { hdi_isfolder: 'true' });
});

t.test('a large file changing while it is read is read again, never committed torn', async (t) => {
  const { src, store, run, logs } = setup(t);
  writeFileSync(join(src, 'big'), Buffer.alloc(10 * 1024, 1));
  let changes = 1;
  store.beforeOp = (op) => {
    if (op === 'stageBlock' && changes > 0) {
      changes--;
      appendFileSync(join(src, 'big'), 'more');
    }
  };
  const s = await run();
  t.match(s, { state: 'Completed', stats: { files: 1, bytes: 10 * 1024 + 4, changedRetries: 1, errors: 0 } });
  t.equal(store.requestCounts().commitBlockList, 1, 'only the whole second read was committed');
  t.equal(store.getData('p/big')?.length, 10 * 1024 + 4);
  t.match(logs, [{ kind: 'changed', blob: 'p/big' }]);
});

t.test('a file that keeps changing is reported after the retries and not committed', async (t) => {
  const { src, store, run, logs } = setup(t);
  writeFileSync(join(src, 'busy'), Buffer.alloc(4 * 1024, 2));
  store.beforeOp = (op) => {
    if (op === 'stageBlock') appendFileSync(join(src, 'busy'), 'x');
  };
  const s = await run({ maximumErrors: -1 });
  t.match(s, { state: 'Completed', stats: { files: 0, errors: 1, changedRetries: 2 } });
  t.equal(store.getData('p/busy'), undefined);
  t.equal(store.requestCounts().commitBlockList, undefined);
  t.match(logs.at(-1), { kind: 'error', blob: 'p/busy', message: /changed while it was read.*read 3 times, not committed/ });
});

t.test('rerun: the journal skips committed blobs; the stamp recognises an unrecorded one; a changed file overwrites our own blob', async (t) => {
  const { src, store, run } = setup(t);
  writeFileSync(join(src, 'one'), '1');
  writeFileSync(join(src, 'two'), '2');
  await run();
  store.resetCounts();
  t.match(await run(), { stats: { alreadyIngested: 2, files: 0 } });
  t.same(store.requestCounts(), { containerExists: 1 }, 'no blob request');

  // A crash between the commit of 'three' and its journal row: the commit's answer never arrives.
  writeFileSync(join(src, 'three'), '3');
  const answerLost = new Proxy(store, {
    get(target, prop) {
      if (prop === 'upload') {
        return async (...args: Parameters<MemoryBlobStore['upload']>) => {
          await target.upload(...args);
          throw new BlobError('Transient', 'the answer was lost');
        };
      }
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  t.match(await run({ store: answerLost, maximumErrors: -1 }), { stats: { errors: 1 } });
  t.ok(store.getData('p/three'), 'committed, but not in the journal');
  store.resetCounts();
  const s = await run();
  t.match(s, { stats: { alreadyIngested: 3, files: 0, conflicts: 0 } });
  t.match(store.requestCounts(), { upload: 1, head: 1 }, 'one refused upload and one HEAD find our own blob');

  // The source changes: our own blob is overwritten (If-Match on its etag), and no conflict is reported.
  writeFileSync(join(src, 'one'), 'one, changed');
  utimesSync(join(src, 'one'), new Date('2030-01-01T00:00:00Z'), new Date('2030-01-01T00:00:00Z'));
  const changed = await run();
  t.match(changed, { stats: { files: 1, conflicts: 0, alreadyIngested: 2 } });
  t.equal(store.getData('p/one')?.toString(), 'one, changed');
});

t.test('a foreign blob is a conflict; maximum errors 0 stops at the first error', async (t) => {
  const { src, store, run } = setup(t);
  writeFileSync(join(src, 'mine'), 'mine');
  store.putDirect('p/mine', 'theirs');
  await t.rejects(run(), /is not empty \(it has 'p\/mine'\)/);
  const s = await run({ allowExisting: true });
  t.match(s, { state: 'Completed', conflictNames: ['p/mine'], stats: { conflicts: 1, files: 0 } });
  t.equal(store.getData('p/mine')?.toString(), 'theirs');

  writeFileSync(join(src, 'other'), 'x');
  store.failNext('upload', 'Unauthorized', 1);
  const failed = await run({ allowExisting: true, fileConcurrency: 1 });
  t.match(failed, { state: 'Failed', stats: { errors: 1 }, error: /1 error \(maximum 0\)/ });
});

t.test('without survey, no counting walk: progress never has a total', async (t) => {
  const { src, run } = setup(t);
  for (let i = 0; i < 20; i++) writeFileSync(join(src, `f${i}`), `${i}\n`);
  const totals: unknown[] = [];
  const s = await run({ survey: false, onProgress: (p) => totals.push(p.total) });
  t.match(s, { state: 'Completed', stats: { files: 20 } });
  t.equal(totals.length, 20, 'progress after every entry');
  t.ok(totals.every((total) => total === undefined), 'the sources were walked once');
});

t.test('a journal in use by another run is refused, saying so', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'blobhsm-ingest-journal-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'j.sqlite');
  const first = IngestJournal.open(path, 'memory/c/', { create: true });
  first.record('a', 'stamp', 'etag');
  t.throws(() => IngestJournal.open(path, 'memory/c/', { create: true }), { name: 'UsageError', message: /in use by another ingest/ });
  first.close();
  const again = IngestJournal.open(path, 'memory/c/', { create: true });
  t.equal(again.get('a')?.etag, 'etag', 'free again once the first run closed it');
  again.close();
});

t.test('journal rows recorded in one turn are committed together, at its end; close commits what is pending', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'blobhsm-ingest-journal-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'j.sqlite');
  const journal = IngestJournal.open(path, 'memory/c/', { create: true });
  const recorded = [journal.record('a', 'stamp-a', 'etag-a'), journal.record('b', 'stamp-b', 'etag-b')];
  t.equal(journal.get('a'), undefined, 'not committed before the turn ends');
  await Promise.all(recorded);
  t.same([journal.get('a'), journal.get('b')], [{ stamp: 'stamp-a', etag: 'etag-a' }, { stamp: 'stamp-b', etag: 'etag-b' }], 'committed once record() resolved');
  void journal.record('c', 'stamp-c', 'etag-c');
  journal.close();
  const again = IngestJournal.open(path, 'memory/c/', { create: true });
  t.same(again.get('c'), { stamp: 'stamp-c', etag: 'etag-c' }, 'a row still pending at close is committed by it');
  t.equal(again.count(), 3);
  again.close();
});

t.test('a small local file is read whole, and a change since the walk is refused, reading nothing', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'blobhsm-ingest-small-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'f');
  writeFileSync(path, 'version one\n');
  const walked = lstatSync(path, { bigint: true });
  t.equal(readSmallFile(path, walked).toString(), 'version one\n');
  appendFileSync(path, 'and more\n');
  const changed = (() => {
    try {
      readSmallFile(path, walked);
    } catch (err) {
      return err;
    }
  })();
  t.ok(changed instanceof SourceChangedError, 'a SourceChangedError (the ingester reads it again)');
  t.match(changed, { message: /changed while it was read \(size 12 → 21\)/ });
  t.throws(() => readSmallFile(join(dir, 'gone'), walked), { code: 'ENOENT' });
});

t.test('blocking reads only on local filesystems, asked once per device', async (t) => {
  t.ok(isLocalFilesystemType(0xef53), 'ext4');
  t.ok(isLocalFilesystemType(0x01021994), 'tmpfs');
  t.notOk(isLocalFilesystemType(0x6969), 'NFS');
  t.notOk(isLocalFilesystemType(0x0bd00bd0), 'Lustre');
  t.notOk(isLocalFilesystemType(0x65735546), 'FUSE');
  const asked: string[] = [];
  const types: Record<string, number> = { '/local/a': 0xef53, '/nfs/a': 0x6969 };
  const fs = new LocalFilesystems((path) => {
    asked.push(path);
    if (!(path in types)) throw Object.assign(new Error('EACCES'), { code: 'EACCES' });
    return types[path]!;
  });
  t.equal(fs.isLocal(1n, '/local/a'), true);
  t.equal(fs.isLocal(1n, '/local/b'), true, 'the same device: not asked again');
  t.equal(fs.isLocal(2n, '/nfs/a'), false);
  t.equal(fs.isLocal(3n, '/unreadable'), false, 'statfs failing: not local');
  t.same(asked, ['/local/a', '/nfs/a', '/unreadable']);
});

t.test('the walk yields the same entries whether it stats with blocking calls (local) or on the thread pool', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'blobhsm-ingest-walk-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'a/b'), { recursive: true });
  writeFileSync(join(dir, 'a/b/f'), 'f');
  writeFileSync(join(dir, 'g'), 'gg');
  symlinkSync('g', join(dir, 'l'));
  const walk = async (type: number) => {
    const asked: string[] = [];
    const out: string[] = [];
    const fs = new LocalFilesystems((path) => (asked.push(path), type));
    for await (const e of walkSources([`${dir}/`], fs)) out.push('error' in e ? `error ${e.path}` : `${e.components.join('/')} ${e.kind} ${e.stat.size}`);
    return { out: out.sort(), asked };
  };
  const local = await walk(0xef53);
  const nfs = await walk(0x6969);
  const size = (rel: string) => lstatSync(join(dir, rel)).size;
  t.same(local.out, [`a dir ${size('a')}`, `a/b dir ${size('a/b')}`, 'a/b/f file 1', 'g file 2', 'l symlink 1']);
  t.same(nfs.out, local.out);
  t.equal(local.asked.length, 1, 'one device: statfs asked once');
});
