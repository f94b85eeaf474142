// Import jobs on the real stack without FUSE (MemoryBlobStore, SQLite meta, DataCache, Hydrator, Coordinator, Vfs):
// conflict modes applied to files that are released, restored, dirty, open or being restored; prefixes; one job
// at a time; cancel; the IMPORT_<state> marker in the root; statistics; the JSON-lines log.
import t from 'tap';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FsError, UsageError } from '../src/errors.js';
import { JobRunner, type ImportJobSummary } from '../src/jobs/job-runner.js';
import { makeStack, O_RDONLY, O_WRONLY, type TestStack, type TestStackOptions } from './helpers/stack.js';

const MT = '2024-01-02 03:04:05 +0000';
const MT_MS = Date.UTC(2024, 0, 2, 3, 4, 5);

const BLOBS: TestStackOptions['blobs'] = {
  'a.txt': 'alpha',
  'b.txt': 'bravo',
  'dir/c.txt': { data: 'charlie', metadata: { owner: '10', group: '20', permissions: '0640', modtime: MT } },
  'dir/d.txt': 'delta',
  stub: { metadata: { hdi_isfolder: 'true', permissions: '0750' } },
  link: { data: 'a.txt', metadata: { ftype: 'LNK' } },
};

interface Fixture {
  s: TestStack;
  jobs: JobRunner;
  logDir: string;
  /** Runs an import to the end and returns its summary. */
  run(options?: Parameters<JobRunner['startImport']>[0]): Promise<ImportJobSummary>;
  /** The job's log lines. */
  lines(job: ImportJobSummary): Array<Record<string, string>>;
}

async function fixture(t: { teardown(fn: () => void | Promise<void>): void }, blobs = BLOBS): Promise<Fixture> {
  const s = await makeStack({ blobs });
  const logDir = mkdtempSync(join(tmpdir(), 'blobhsm-jobs-'));
  const jobs = new JobRunner({ meta: s.meta, store: s.store, coordinator: s.coordinator, log: (line: string) => s.logs.push(line), prefix: '', mountRoot: '/mnt', logDir });
  s.inodes.setRootMarkers(() => jobs.markers());
  t.teardown(async () => {
    await jobs.cancelAll();
    await s.cleanup();
    rmSync(logDir, { recursive: true, force: true });
  });
  return {
    s,
    jobs,
    logDir,
    run: async (options = {}) => {
      const job = jobs.startImport(options);
      await job.done;
      return job.summary();
    },
    lines: (job) =>
      readFileSync(job.logFile!, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, string>),
  };
}

const SPEC_STATS = [
  'totalBlobsWalked',
  'blobsWalkedPerSecond',
  'totalBlobsImported',
  'blobsImportedPerSecond',
  'importedFiles',
  'importedDirectories',
  'importedSymlinks',
  'preexistingFiles',
  'preexistingDirectories',
  'preexistingSymlinks',
  'totalConflicts',
  'totalErrors',
  'state',
  'startTime',
  'finishTime',
];

t.test('new blobs appear released; an unchanged namespace is all preexisting', async (t) => {
  const { s, run } = await fixture(t);
  s.store.putDirect('new/e.txt', 'echo');
  s.store.putDirect('new/link2', 'dir', { ftype: 'LNK' });
  const job = await run();
  t.equal(job.state, 'Succeeded');
  t.equal(job.conflictMode, 'Fail', 'AMLFS default');
  for (const k of SPEC_STATS) t.ok(k in job.stats, `statistic ${k}`);
  t.match(job.stats, {
    state: 'Succeeded',
    totalBlobsWalked: 8,
    totalBlobsImported: 2,
    importedFiles: 1,
    importedSymlinks: 1,
    importedDirectories: 1,
    preexistingFiles: 4,
    preexistingSymlinks: 1,
    totalConflicts: 0,
    totalErrors: 0,
  });
  t.equal(s.inode('/new/e.txt').hsmFlags, 0x0d, 'released exists archived');
  t.equal((await s.readFile('/new/e.txt')).toString(), 'echo');
  t.equal(await s.vfs.readlink('/new/link2'), 'dir');

  const again = await run();
  t.match(again.stats, { totalBlobsImported: 0, preexistingFiles: 5, preexistingSymlinks: 2, totalConflicts: 0 });
});

t.test('OverwriteIfDirty', async (t) => {
  const { s, run, lines } = await fixture(t);
  // a.txt: restored and clean; its blob changes. b.txt: released; its blob changes.
  t.equal((await s.readFile('/a.txt')).toString(), 'alpha');
  await s.settle();
  const a = s.inode('/a.txt');
  t.equal(a.hsmFlags, 0x09);
  const aCache = s.cache.pathFor(a.ino, a.generation);
  t.ok(existsSync(aCache));
  s.store.putDirect('a.txt', 'ALPHA, version 2');
  s.store.putDirect('b.txt', 'BRAVO 2');
  // dir/c.txt: dirty (written locally), blob unchanged. dir/d.txt: chmod'ed locally (metadata only), restored.
  await s.writeFile('/dir/c.txt', 'CHARLIE');
  t.equal(s.inode('/dir/c.txt').hsmFlags, 0x0b);
  await s.readFile('/dir/d.txt');
  await s.settle();
  await s.vfs.chmod('/dir/d.txt', 0o600);
  // A local file where the blob is now a directory stub; a local file never imported where a blob appears.
  await s.createFile('/local.txt', 'mine');
  s.store.putDirect('local.txt', 'theirs');
  await s.createFile('/x', 'file here');
  s.store.putDirect('x', '', { hdi_isfolder: 'true', permissions: '0700' });

  const job = await run({ conflictMode: 'OverwriteIfDirty' });
  t.equal(job.state, 'Succeeded', job.error ?? 'no error');
  const a2 = s.inode('/a.txt');
  t.equal(a2.ino, a.ino, 'reimported in place');
  t.equal(a2.hsmFlags, 0x0d, 'the changed clean file is released');
  t.equal(a2.size, 16);
  t.equal(a2.etag, (await s.store.head('a.txt')).etag);
  t.notOk(existsSync(aCache), 'its old cache data is gone');
  t.equal((await s.readFile('/a.txt')).toString(), 'ALPHA, version 2', 'the next read fetches the new blob');
  t.equal((await s.readFile('/b.txt')).toString(), 'BRAVO 2');
  const c = s.inode('/dir/c.txt');
  t.equal(c.hsmFlags, 0x0d, 'the dirty file was deleted and re-imported');
  t.equal((await s.readFile('/dir/c.txt')).toString(), 'charlie');
  t.match(c, { uid: 10, gid: 20, mode: 0o640, mtimeMs: MT_MS });
  const d = s.inode('/dir/d.txt');
  t.equal(d.mode, 0o644, 'attributes updated');
  t.equal(d.hsmFlags, 0x09, 'not released by OverwriteIfDirty');
  t.equal((await s.readFile('/local.txt')).toString(), 'theirs', 'a path never imported is replaced');
  t.equal(s.inode('/x').kind, 'dir', 'a conflicting type is replaced');
  t.equal(s.inode('/x').mode, 0o700);
  t.match(job.stats, {
    totalConflicts: 6,
    replacedEntries: 5,
    updatedAttributes: 1,
    releasedFiles: 1,
    importedFiles: 4,
    importedDirectories: 1,
    totalBlobsImported: 5,
  });
  const conflicts = lines(job).filter((l) => l.event === 'conflict');
  t.equal(conflicts.length, 6, 'one log line per conflict');
  t.ok(conflicts.some((l) => l.path === '/dir/c.txt' && l.action === 'replace' && /dirty/.test(l.reason!)));
  t.ok(conflicts.some((l) => l.path === '/a.txt' && l.action === 'reimport' && /etag/.test(l.reason!)));
  t.ok(conflicts.every((l) => typeof l.time === 'string' && typeof l.blob === 'string'));
});

t.test('OverwriteAlways releases a clean restored file whose attributes changed; never_release is kept', async (t) => {
  const { s, run } = await fixture(t);
  await s.readFile('/a.txt');
  await s.readFile('/b.txt');
  await s.settle();
  s.coordinator.setFlags(s.inode('/b.txt').ino, 0x10, 0, true);
  s.store.putDirect('a.txt', 'alpha', { permissions: '0600' });
  const aEtag = (await s.store.head('a.txt')).etag;
  s.store.putDirect('b.txt', 'bravo', { permissions: '0600' });
  const job = await run({ conflictMode: 'OverwriteAlways' });
  t.equal(job.state, 'Succeeded');
  // A re-put blob has a new etag: both are reimported (released); never_release survives on b.
  t.match(s.inode('/a.txt'), { hsmFlags: 0x0d, mode: 0o600, etag: aEtag });
  t.match(s.inode('/b.txt'), { hsmFlags: 0x1d, mode: 0o600 });

  // Metadata-only: a local chmod on a restored clean file.
  await s.readFile('/a.txt');
  await s.readFile('/dir/d.txt');
  await s.settle();
  await s.vfs.chmod('/a.txt', 0o666);
  await s.vfs.chmod('/dir/d.txt', 0o666);
  const always = await run({ conflictMode: 'OverwriteAlways', prefixes: ['/a.txt'] });
  t.match(always.stats, { updatedAttributes: 1, releasedFiles: 1, totalConflicts: 1 });
  t.match(s.inode('/a.txt'), { hsmFlags: 0x0d, mode: 0o600 });
  const ifDirty = await run({ conflictMode: 'OverwriteIfDirty', prefixes: ['/dir/'] });
  t.match(ifDirty.stats, { updatedAttributes: 1, releasedFiles: 0 });
  t.match(s.inode('/dir/d.txt'), { hsmFlags: 0x09, mode: 0o644 });
});

t.test('Skip leaves local paths; Fail stops at the first conflict', async (t) => {
  const { s, run, jobs, lines } = await fixture(t);
  await s.writeFile('/a.txt', 'local edit');
  s.store.putDirect('b.txt', 'bravo 2');
  s.store.putDirect('zzz', 'after the conflicts');
  const skip = await run({ conflictMode: 'Skip' });
  t.equal(skip.state, 'Succeeded');
  t.equal(skip.stats.totalConflicts, 2);
  t.equal((await s.readFile('/a.txt')).toString(), 'local edit');
  t.equal(s.inode('/b.txt').size, 5, 'b.txt keeps the old record');
  t.ok(lines(skip).some((l) => l.path === '/a.txt' && l.action === 'skip'));
  t.same(jobs.markers(), [], 'no marker after a success');

  s.store.putDirect('zzz2', 'never reached');
  const fail = await run({ conflictMode: 'Fail' });
  t.equal(fail.state, 'Failed');
  t.match(fail.error, /first conflict: \/a\.txt/);
  t.equal(fail.stats.totalConflicts, 1);
  t.equal(s.meta.resolve('/zzz2'), undefined, 'nothing after the conflict is imported');
  t.match(jobs.markers(), [/^IMPORT_Failed\.\d{8}T\d{6}Z$/]);
  t.equal((await s.readFile('/a.txt')).toString(), 'local edit');
});

t.test('open files and files being restored are left alone, then handled by the next import', async (t) => {
  const { s, run, lines } = await fixture(t);
  await s.readFile('/a.txt');
  await s.settle();
  s.store.putDirect('a.txt', 'alpha 2');
  s.store.putDirect('b.txt', 'bravo 2');
  const fh = await s.vfs.open('/a.txt', O_RDONLY);
  // b.txt: a restore that is running (its reads are held).
  let letRead!: () => void;
  let readWaits!: () => void;
  const gate = new Promise<void>((r) => (letRead = r));
  const readReached = new Promise<void>((r) => (readWaits = r));
  s.store.beforeOp = async (op, target) => {
    if (op === 'read' && target === 'b.txt') {
      readWaits();
      await gate;
    }
  };
  const bRead = s.readFile('/b.txt').catch((err: unknown) => err);
  await readReached;
  t.ok(s.coordinator.isBusy(s.inode('/b.txt').ino), 'b.txt is being restored');

  const job = await run({ conflictMode: 'OverwriteIfDirty' });
  t.equal(job.state, 'Succeeded');
  t.equal(job.stats.totalConflicts, 2);
  t.equal(job.stats.replacedEntries, 0);
  const busy = lines(job).filter((l) => /open or has an HSM action/.test(l.reason!));
  t.same(busy.map((l) => l.path).sort(), ['/a.txt', '/b.txt']);
  const buf = Buffer.alloc(64);
  t.equal(buf.subarray(0, await s.vfs.read(fh, buf, 64, 0)).toString(), 'alpha', 'the open file still reads its data');
  await s.vfs.release(fh);
  letRead();
  s.store.beforeOp = undefined;
  await bRead;
  await s.settle();

  const next = await run({ conflictMode: 'OverwriteIfDirty' });
  t.equal(next.stats.replacedEntries, 2);
  t.equal((await s.readFile('/a.txt')).toString(), 'alpha 2');
  t.equal((await s.readFile('/b.txt')).toString(), 'bravo 2');
});

t.test('prefixes: string prefixes, validated before anything runs', async (t) => {
  const { s, jobs, run } = await fixture(t);
  s.store.putDirect('dir2/e.txt', 'e');
  s.store.putDirect('other/f.txt', 'f');
  const job = await run({ prefixes: ['/dir'] });
  t.same(job.prefixes, ['/dir']);
  t.equal(job.stats.totalBlobsWalked, 3, 'dir/c.txt, dir/d.txt, dir2/e.txt (a string prefix)');
  t.ok(s.meta.resolve('/dir2/e.txt'));
  t.equal(s.meta.resolve('/other'), undefined);
  const before = jobs.list().length;
  t.throws(() => jobs.startImport({ prefixes: ['/data', '/data2'] }), UsageError, 'overlapping');
  t.throws(() => jobs.startImport({ prefixes: ['/', '/x'] }), /overlapping/);
  t.throws(() => jobs.startImport({ prefixes: ['data'] }), /start with '\/'/);
  t.throws(() => jobs.startImport({ prefixes: Array.from({ length: 101 }, (_, i) => `/p${i}/`) }), /at most 100/);
  t.throws(() => jobs.startImport({ conflictMode: 'Overwrite' }), /unknown conflict mode 'Overwrite'/);
  t.throws(() => jobs.startImport({ maximumErrors: -2 }), /maximum errors/);
  t.equal(jobs.list().length, before, 'no job was started');
  const two = await run({ prefixes: ['/other/', '/a.txt'] });
  t.equal(two.stats.totalBlobsWalked, 2);
});

t.test('one job at a time; cancel; the IMPORT_<state> marker in the root', async (t) => {
  const blobs: TestStackOptions['blobs'] = {};
  for (let i = 0; i < 50; i++) blobs[`f${String(i).padStart(2, '0')}`] = `data ${i}`;
  const { s, jobs } = await fixture(t, blobs);
  for (let i = 50; i < 100; i++) s.store.putDirect(`f${i}`, `data ${i}`);
  let lists = 0;
  let letList!: () => void;
  let listWaits!: () => void;
  let gate = new Promise<void>((r) => (letList = r));
  const thirdPage = new Promise<void>((r) => (listWaits = r));
  s.store.beforeOp = async (op) => {
    if (op === 'list' && ++lists === 3) {
      listWaits();
      await gate;
    }
  };
  const job = jobs.startImport({ pageSize: 10 });
  await thirdPage;
  const marker = jobs.markers()[0]!;
  t.match(marker, /^IMPORT_InProgress\.\d{8}T\d{6}Z$/);
  const root = await s.vfs.readdir('/');
  t.ok(root.names.includes(marker), 'readdir of the root shows the marker');
  const st = await s.vfs.getattr('/' + marker);
  t.equal(st.size, 0);
  t.equal(st.mode, 0o100444, 'a read-only regular file');
  const fh = await s.vfs.open('/' + marker, O_RDONLY);
  t.equal(await s.vfs.read(fh, Buffer.alloc(10), 10, 0), 0);
  await s.vfs.release(fh);
  await t.rejects(s.vfs.open('/' + marker, O_WRONLY), { code: 'EACCES' });

  t.throws(() => jobs.startExport(['/']), FsError);
  t.throws(() => jobs.startImport(), new RegExp(`import job ${job.id} is running`));

  const canceling = jobs.cancelRunning()!;
  t.equal(canceling.state, 'Canceling');
  t.match(jobs.markers(), [/^IMPORT_Canceling\./]);
  letList();
  await job.done;
  t.equal(job.summary().state, 'Canceled');
  t.equal(job.summary().stats.state, 'Canceled');
  t.ok(job.summary().finishTime);
  t.equal(job.summary().stats.totalBlobsWalked, 20, 'stopped after the pages it had');
  t.match(jobs.markers(), [/^IMPORT_Canceled\./]);
  t.ok((await s.vfs.readdir('/')).names.some((n) => n.startsWith('IMPORT_Canceled.')));

  // The next import finishes the work; success removes the marker.
  s.store.beforeOp = undefined;
  gate = Promise.resolve();
  const again = jobs.startImport({ pageSize: 10 });
  await again.done;
  t.equal(again.summary().state, 'Succeeded');
  t.match(again.summary().stats, { importedFiles: 50, preexistingFiles: 50 });
  t.same(jobs.markers(), []);
  t.notOk((await s.vfs.readdir('/')).names.some((n) => n.startsWith('IMPORT_')));
  await t.rejects(s.vfs.getattr('/' + marker), { code: 'ENOENT' });
  t.same(
    jobs.list().map((j) => [j.kind, j.state]),
    [
      ['import', 'Canceled'],
      ['import', 'Succeeded'],
    ],
  );
});

t.test('maximumErrors: 0 fails on the first error, -1 tolerates them', async (t) => {
  const { s, run, lines } = await fixture(t);
  s.store.putDirect('new-link', 'a.txt', { ftype: 'LNK' });
  s.store.resetCounts();
  s.store.failNext('read', 'Transient', 1);
  const strict = await run();
  t.equal(s.store.requestCounts().read, 1, 'the unchanged symlink is not read again');
  t.equal(strict.state, 'Failed');
  t.equal(strict.stats.totalErrors, 1);
  t.match(strict.error, /1 errors, more than the 0 allowed/);
  t.ok(lines(strict).some((l) => l.event === 'error' && l.blob === 'new-link'));
  s.store.failNext('read', 'Transient', 1);
  const lenient = await run({ maximumErrors: -1 });
  t.equal(lenient.state, 'Succeeded');
  t.equal(lenient.stats.totalErrors, 1);
  const ok = await run();
  t.equal(ok.stats.importedSymlinks, 1);
});

t.test('a FIFO where a blob appears is a type conflict: kept under Skip, replaced under OverwriteIfDirty', async (t) => {
  const { s, run } = await fixture(t);
  await s.vfs.mknod('/p', 0o010644);
  await s.vfs.mknod('/dir/sock', 0o140644);
  s.store.putDirect('p', 'a blob named like the FIFO');
  const skipped = await run({ conflictMode: 'Skip' });
  t.match(skipped, { state: 'Succeeded', stats: { totalConflicts: 1 } });
  t.equal(s.inode('/p').kind, 'fifo', 'Skip leaves the FIFO');
  const replaced = await run({ conflictMode: 'OverwriteIfDirty' });
  t.match(replaced, { state: 'Succeeded', stats: { importedFiles: 1 } });
  t.equal(s.inode('/p').kind, 'file', 'OverwriteIfDirty replaces it with the blob');
  t.equal((await s.readFile('/p')).toString(), 'a blob named like the FIFO');
  t.equal(s.inode('/dir/sock').kind, 'socket', 'a socket no blob names is never touched');
});

t.test('each IMPORT_<state> marker that appears or goes is told to the kernel before the job is done', async (t) => {
  const s = await makeStack({ blobs: BLOBS });
  const told: string[] = [];
  const markersTold = () => told.filter((n) => n.startsWith('IMPORT_'));
  const kernel = {
    inodeChanged: async () => undefined,
    entryDeleted: async () => undefined,
    entryChanged: async (parent: number, name: string) => void told.push(parent === 1 ? name : `${parent}/${name}`),
  };
  const jobs = new JobRunner({ meta: s.meta, store: s.store, coordinator: s.coordinator, log: (line: string) => s.logs.push(line), prefix: '', mountRoot: '/mnt', kernel });
  s.inodes.setRootMarkers(() => jobs.markers());
  t.teardown(async () => {
    await jobs.cancelAll();
    await s.cleanup();
  });
  await s.writeFile('/a.txt', 'local edit');
  s.store.putDirect('a.txt', 'changed remotely');
  const failing = jobs.startImport({ conflictMode: 'Fail' });
  const running = jobs.markers()[0]!;
  t.match(running, /^IMPORT_InProgress\./);
  t.same(markersTold(), [running], 'the new marker at the start (a negative dentry of it goes)');
  await failing.done;
  const failed = jobs.markers()[0]!;
  t.match(failed, /^IMPORT_Failed\./);
  t.same(markersTold(), [running, running, failed], 'at the end, before done: the running marker went, the failed one came');

  told.length = 0;
  const next = jobs.startImport({ conflictMode: 'Skip' });
  const again = jobs.markers()[0]!;
  await next.done;
  t.same(jobs.markers(), [], 'no marker after a success');
  t.same(markersTold(), [failed, again, again], 'the failed marker went at the start, the running one at the end');
});
