// Auto-export on the real stack without FUSE (MemoryBlobStore, SQLite meta, DataCache, Coordinator, Vfs), with
// intervals of about 100 ms: new and modified files older than the minimum age are archived; files open for
// writing, NOARCHIVE files and `.fuse_hidden*` names never are; iterations are skipped while a manual job runs;
// conflicts are reported once and leave the file dirty; disable and close stop it (cancelling an upload in
// flight); bad configurations are refused; the metrics.
import t from 'tap';
import { UsageError } from '../src/errors.js';
import { HsmFlag } from '../src/hsm/flags.js';
import { AutoExporter, checkAutoExportConfig, parseSeconds, AUTO_EXPORT_DEFAULTS, type AutoExportConfig } from '../src/jobs/auto-export.js';
import { JobRunner } from '../src/jobs/job-runner.js';
import { makeStack, O_WRONLY, type TestStack, type TestStackOptions } from './helpers/stack.js';

const ARCHIVED_CLEAN = HsmFlag.EXISTS | HsmFlag.ARCHIVED;

async function until(what: string, cond: () => boolean, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}


async function fixture(
  t: { teardown(fn: () => void | Promise<void>): void },
  config: Partial<AutoExportConfig>,
  blobs: TestStackOptions['blobs'] = { 'a.txt': 'alpha' },
  now?: () => number,
): Promise<{ s: TestStack; jobs: JobRunner; ae: AutoExporter }> {
  const s = await makeStack({ blobs });
  const log = (line: string) => void s.logs.push(line);
  const jobs = new JobRunner({ meta: s.meta, store: s.store, coordinator: s.coordinator, log, prefix: '', mountRoot: '/mnt' });
  const ae = new AutoExporter({
    meta: s.meta,
    coordinator: s.coordinator,
    hasWriter: (ino) => s.inodes.hasWriter(ino),
    jobs,
    log,
    config,
    ...(now ? { now } : {}),
  });
  t.teardown(async () => {
    await ae.close();
    await jobs.cancelAll();
    s.store.clearFaults();
    s.store.beforeOp = undefined;
    await s.cleanup();
  });
  return { s, jobs, ae };
}

const flags = (s: TestStack, path: string) => s.inode(path).hsmFlags;

t.test('new and modified files are archived once they are older than the minimum age', async (t) => {
  // The exporter's clock runs `ahead` ms ahead of the one that stamps the files' mtimes.
  let ahead = 0;
  const { s, ae } = await fixture(t, { enabled: true, minAgeSeconds: 60, intervalSeconds: 0.1 }, undefined, () => Date.now() + ahead);
  t.match(ae.metrics(), { enabled: true, minAgeSeconds: 60, intervalSeconds: 0.1, state: 'Idle', totalFilesExported: 0, lastSuccessfulIteration: null });
  await s.readFile('/a.txt');
  await s.writeFile('/a.txt', 'ALPHA, modified');
  await s.createFile('/new.txt', 'a new file');
  await s.vfs.mkdir('/dir', 0o755);
  await s.vfs.symlink('../a.txt', '/dir/link');
  const first = ae.metrics().iterationsCompleted;
  await until('two iterations after the changes', () => ae.metrics().iterationsCompleted >= first + 2);
  t.ok(flags(s, '/a.txt') & HsmFlag.DIRTY, 'not exported before the minimum age');
  t.notOk(flags(s, '/new.txt') & HsmFlag.ARCHIVED, 'a new file neither');
  ahead = 61_000;
  await until('the files are archived', () => ['/a.txt', '/new.txt', '/dir/link'].every((p) => flags(s, p) === ARCHIVED_CLEAN));
  t.equal(s.store.getData('a.txt')?.toString(), 'ALPHA, modified');
  t.equal(s.store.getData('new.txt')?.toString(), 'a new file');
  t.equal(s.store.getData('dir/link')?.toString(), '../a.txt', 'symlinks too');
  t.ok(s.store.names().includes('dir'), 'with the directory stub it needs');
  await until('the metrics', () => ae.metrics().totalFilesExported === 3);
  const m = ae.metrics();
  const bytes = 'ALPHA, modified'.length + 'a new file'.length + '../a.txt'.length;
  t.equal(m.totalMiBExported, Math.round((bytes / 1048576) * 1e6) / 1e6);
  t.match(m, { totalConflicts: 0, totalFailures: 0, iterationsSkipped: 0 });
  t.ok(m.lastSuccessfulIteration && !Number.isNaN(Date.parse(m.lastSuccessfulIteration)), 'lastSuccessfulIteration is an ISO time');
  t.equal(new Date(m.lastSuccessfulIteration!).toISOString(), m.lastSuccessfulIteration);
  for (const k of ['totalFilesExported', 'totalMiBExported', 'iterationsCompleted', 'lastSuccessfulIteration']) t.ok(k in m, k);
  // Clean files are not uploaded again.
  const uploads = s.store.requestCounts().commitBlockList ?? 0;
  const n = ae.metrics().iterationsCompleted;
  await until('two more iterations', () => ae.metrics().iterationsCompleted >= n + 2);
  t.equal(s.store.requestCounts().commitBlockList ?? 0, uploads, 'nothing uploaded again');
  t.equal(ae.metrics().totalFilesExported, 3);
});

t.test('never a file open for writing, a NOARCHIVE file or a .fuse_hidden name', async (t) => {
  const { s, ae } = await fixture(t, { enabled: true, minAgeSeconds: 0, intervalSeconds: 0.1 });
  const fh = await s.vfs.open('/a.txt', O_WRONLY);
  await s.vfs.write(fh, Buffer.from('ALPHA'), 5, 0);
  await s.createFile('/.fuse_hidden0000000a00000001', 'unlinked but open');
  await s.createFile('/never.txt', 'never archive');
  s.coordinator.setFlags(s.inode('/never.txt').ino, HsmFlag.NOARCHIVE, 0, true);
  await s.createFile('/plain.txt', 'plain');
  await until('plain.txt is archived', () => flags(s, '/plain.txt') === ARCHIVED_CLEAN);
  const n = ae.metrics().iterationsCompleted;
  await until('three more iterations', () => ae.metrics().iterationsCompleted >= n + 3);
  t.ok(flags(s, '/a.txt') & HsmFlag.DIRTY, 'the file open for writing stays dirty');
  t.equal(s.store.getData('a.txt')?.toString(), 'alpha');
  t.notOk(flags(s, '/never.txt') & HsmFlag.ARCHIVED, 'NOARCHIVE');
  t.notOk(s.store.names().includes('never.txt'));
  t.notOk(s.store.names().some((n) => n.includes('fuse_hidden')), 'no .fuse_hidden blob');
  await s.vfs.release(fh);
  await until('a.txt is archived after its close', () => flags(s, '/a.txt') === ARCHIVED_CLEAN);
  t.equal(s.store.getData('a.txt')?.toString(), 'ALPHA');
  t.equal(ae.metrics().totalFilesExported, 2);
});

t.test('never a FIFO or a socket (local only): no upload, no failure', async (t) => {
  const { s, ae } = await fixture(t, { enabled: true, minAgeSeconds: 0, intervalSeconds: 0.1 });
  const caller = { uid: 1000, gid: 1000 };
  await s.inodes.mknod(s.inode('/').ino, 'pipe', 0o010644, caller);
  await s.inodes.mknod(s.inode('/').ino, 'sock', 0o140644, caller);
  await s.createFile('/plain.txt', 'plain');
  await until('plain.txt is archived', () => flags(s, '/plain.txt') === ARCHIVED_CLEAN);
  const n = ae.metrics().iterationsCompleted;
  await until('two more iterations', () => ae.metrics().iterationsCompleted >= n + 2);
  t.same(s.store.names().sort(), ['a.txt', 'plain.txt']);
  t.match(ae.metrics(), { totalFilesExported: 1, totalFailures: 0, totalConflicts: 0 });
  t.equal(flags(s, '/pipe'), 0);
});

t.test('iterations are skipped (and logged) while a manual job runs', async (t) => {
  const { s, jobs, ae } = await fixture(t, { enabled: true, minAgeSeconds: 0, intervalSeconds: 0.1 });
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  s.store.beforeOp = async (op) => {
    if (op === 'list') await gate;
  };
  const job = jobs.startImport({ conflictMode: 'Skip' });
  await s.createFile('/new.txt', 'while importing');
  await until('two skipped iterations', () => ae.metrics().iterationsSkipped >= 2);
  t.ok(s.logs.some((l) => l.includes(`auto-export: iteration skipped: import job ${job.id} is running`)), 'logged');
  t.notOk(flags(s, '/new.txt') & HsmFlag.ARCHIVED, 'nothing exported meanwhile');
  release();
  await job.done;
  s.store.beforeOp = undefined;
  await until('new.txt is archived after the job', () => flags(s, '/new.txt') === ARCHIVED_CLEAN);
  t.equal(s.store.getData('new.txt')?.toString(), 'while importing');
});

t.test('a conflict is reported once, the file stays dirty, and is tried again after it changes', async (t) => {
  const { s, ae } = await fixture(t, { enabled: true, minAgeSeconds: 0, intervalSeconds: 0.1 }, { 'c.txt': 'v1', 'ok.txt': 'ok' });
  await s.readFile('/c.txt');
  s.store.putDirect('c.txt', 'changed elsewhere');
  await s.writeFile('/c.txt', 'local');
  await until('the conflict', () => ae.metrics().totalConflicts === 1);
  let m = ae.metrics();
  t.same(m.conflictPaths, ['/c.txt']);
  t.ok(s.logs.some((l) => l.startsWith('auto-export conflict: /c.txt')), 'logged');
  const n = m.iterationsCompleted;
  await until('three more iterations', () => ae.metrics().iterationsCompleted >= n + 3);
  m = ae.metrics();
  t.equal(m.totalConflicts, 1, 'not tried again while unchanged');
  t.ok(m.lastSuccessfulIteration, 'later iterations succeed');
  t.ok(flags(s, '/c.txt') & HsmFlag.DIRTY, 'the file stays dirty');
  t.equal(s.store.getData('c.txt')?.toString(), 'changed elsewhere', 'the blob is not overwritten');
  await s.writeFile('/c.txt', 'local 2');
  await until('tried again after a change', () => ae.metrics().totalConflicts === 2);
  t.equal(ae.metrics().totalFilesExported, 0);
});

t.test('disable and close stop it; an upload in flight is cancelled and the file stays dirty', async (t) => {
  const { s, ae } = await fixture(t, { enabled: true, minAgeSeconds: 0, intervalSeconds: 0.1 });
  await until('an iteration', () => ae.metrics().iterationsCompleted >= 1);
  t.match(await ae.configure({ enabled: false }), { enabled: false, state: 'Disabled' });
  t.equal(ae.metrics().nextIterationTime, null, 'no iteration is scheduled while disabled');
  await s.createFile('/new.txt', 'not while disabled');
  t.notOk(flags(s, '/new.txt') & HsmFlag.ARCHIVED);

  await ae.configure({ enabled: true, intervalSeconds: 0.05 });
  await until('archived once enabled again', () => flags(s, '/new.txt') === ARCHIVED_CLEAN);

  s.store.delay('stageBlock', 60_000);
  await s.createFile('/slow.txt', 'a slow upload');
  const ino = s.inode('/slow.txt').ino;
  await until('the upload is running', () => s.coordinator.action(ino)?.status === 'running');
  t.match(ae.metrics(), { state: 'Exporting' });
  // The upload is delayed for a minute: close returning at all proves it cancelled the upload.
  await ae.close();
  t.match(ae.metrics(), { enabled: false, state: 'Disabled' });
  t.notOk(flags(s, '/slow.txt') & HsmFlag.ARCHIVED, `the file is not archived (flags ${flags(s, '/slow.txt')})`);
  t.ok(s.meta.exportCandidates().some((i) => i.ino === ino), 'and still to be exported');
  t.equal(s.coordinator.action(ino), undefined, 'no action left');
  t.equal(ae.metrics().totalFailures, 0, 'a cancel is no failure');
});

t.test('configuration: defaults, validation, parseSeconds', async (t) => {
  t.same(AUTO_EXPORT_DEFAULTS, { enabled: false, minAgeSeconds: 60, intervalSeconds: 30 });
  t.throws(() => checkAutoExportConfig(AUTO_EXPORT_DEFAULTS, { intervalSeconds: 0 }), UsageError);
  t.throws(() => checkAutoExportConfig(AUTO_EXPORT_DEFAULTS, { intervalSeconds: 1e9 }), UsageError);
  t.throws(() => checkAutoExportConfig(AUTO_EXPORT_DEFAULTS, { minAgeSeconds: -1 }), UsageError);
  t.throws(() => checkAutoExportConfig(AUTO_EXPORT_DEFAULTS, { minAgeSeconds: Number.NaN }), UsageError);
  t.throws(() => checkAutoExportConfig(AUTO_EXPORT_DEFAULTS, { minAgeSeconds: '5' as unknown as number }), UsageError);
  t.same(checkAutoExportConfig(AUTO_EXPORT_DEFAULTS, { minAgeSeconds: 0, intervalSeconds: 0.5 }), { enabled: false, minAgeSeconds: 0, intervalSeconds: 0.5 });
  t.equal(parseSeconds('90', '--min-age'), 90);
  t.equal(parseSeconds('0.5', '--interval'), 0.5);
  for (const bad of ['', '-1', 'abc', '1e3', '10s']) t.throws(() => parseSeconds(bad, '--interval'), UsageError, bad);

  const { ae } = await fixture(t, {});
  t.match(ae.metrics(), { enabled: false, state: 'Disabled', minAgeSeconds: 60, intervalSeconds: 30 });
  await t.rejects(ae.configure({ enabled: true, intervalSeconds: -5 }), UsageError);
  t.match(ae.metrics(), { enabled: false, intervalSeconds: 30 }, 'nothing changed by a refused configuration');
});
