// End to end: `blobhsm import` on a real kernel FUSE mount of a real Azurite container. Blobs added and changed
// behind the mount, Skip then OverwriteIfDirty, new files released, changed clean files reading their new content,
// a dirty local file per mode, the statistics JSON, the job log, the IMPORT_InProgress marker during a slow import,
// a second job refused, and bad flags (exit 4).
import t from 'tap';
import { readdir, readFile, readlink } from 'node:fs/promises';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startAzurite } from './helpers/azurite.js';
import { mountContainer, seed } from './helpers/mount.js';
import type { ImportJobSummary, JobSummary } from '../src/jobs/job-runner.js';

const azurite = await startAzurite();
t.teardown(() => azurite.stop());

const m = await mountContainer(t, azurite, [
  { name: 'keep.txt', data: 'unchanged\n' },
  { name: 'clean.txt', data: 'clean v1\n' },
  { name: 'released.txt', data: 'released v1\n' },
  { name: 'dirty.txt', data: 'dirty v1\n' },
  { name: 'cached.txt', data: 'cached v1\n' },
  { name: 'dir', metadata: { hdi_isfolder: 'true', permissions: '0755' } },
  { name: 'dir/inner.txt', data: 'inner\n' },
]);
const mnt = (p: string) => join(m.mountpoint, p);
const state = async (p: string) => (await m.cli(['hsm_state', mnt(p)])).stdout.trim();

async function importJob(args: string[]): Promise<{ code: number; job: ImportJobSummary; stderr: string }> {
  const r = await m.cli(['import', m.mountpoint, '--json', ...args]);
  if (!r.stdout.trim()) throw new Error(`blobhsm import printed nothing (${r.code}): ${r.stderr}`);
  return { code: r.code, job: JSON.parse(r.stdout) as ImportJobSummary, stderr: r.stderr };
}

t.test('changes behind the mount: Skip leaves local paths, OverwriteIfDirty applies the blobs', async (t) => {
  // clean.txt restored without the kernel reading it; cached.txt read through the mount (kernel page cache).
  t.equal((await m.cli(['hsm_restore', '--wait', mnt('clean.txt')])).code, 0);
  t.equal(await readFile(mnt('cached.txt'), 'utf8'), 'cached v1\n');
  t.equal((await m.sh('printf "local edit\\n" > "$MNT/dirty.txt"')).code, 0);
  t.match(await state('clean.txt'), /\(0x00000009\) exists archived/);
  t.match(await state('dirty.txt'), /\(0x0000000b\) exists dirty archived/);

  await seed(m.store, [
    { name: 'new/a.txt', data: 'new file\n', metadata: { permissions: '0600', owner: '1234' } },
    { name: 'new/link', data: 'a.txt', metadata: { ftype: 'LNK' } },
    { name: 'clean.txt', data: 'clean v2, longer\n' },
    { name: 'released.txt', data: 'released v2\n' },
    { name: 'cached.txt', data: 'CACHED V2\n' },
  ]);

  const skip = await importJob(['--conflict-mode', 'Skip']);
  t.equal(skip.code, 0, skip.stderr);
  t.match(skip.job, { kind: 'import', state: 'Succeeded', conflictMode: 'Skip', prefixes: ['/'] });
  t.match(skip.job.stats, { importedFiles: 1, importedSymlinks: 1, importedDirectories: 1, totalConflicts: 4, totalErrors: 0 });
  t.match(await state('clean.txt'), /\(0x00000009\)/, 'Skip: the changed clean file is left as it was');
  t.equal(await readFile(mnt('dirty.txt'), 'utf8'), 'local edit\n', 'Skip: the dirty file keeps its local data');
  t.equal(await readFile(mnt('new/a.txt'), 'utf8'), 'new file\n', 'new blobs appear');

  const over = await importJob(['--conflict-mode', 'OverwriteIfDirty']);
  t.equal(over.code, 0, over.stderr);
  const s = over.job.stats;
  for (const k of ['totalBlobsWalked', 'blobsWalkedPerSecond', 'totalBlobsImported', 'blobsImportedPerSecond', 'importedFiles',
    'importedDirectories', 'importedSymlinks', 'preexistingFiles', 'preexistingDirectories', 'preexistingSymlinks',
    'totalConflicts', 'totalErrors', 'state', 'startTime', 'finishTime']) {
    t.ok(k in s, `statistic ${k}`);
  }
  t.match(s, { state: 'Succeeded', totalBlobsWalked: 9, totalConflicts: 4, replacedEntries: 4, totalErrors: 0, preexistingSymlinks: 1 });
  t.equal(s.preexistingFiles, 3, 'keep.txt, dir/inner.txt, new/a.txt');

  t.match(await state('clean.txt'), /\(0x0000000d\) released exists archived/, 'the changed clean file is released');
  t.equal(await readFile(mnt('clean.txt'), 'utf8'), 'clean v2, longer\n', 'its next read fetches the new blob');
  t.equal(await readFile(mnt('released.txt'), 'utf8'), 'released v2\n');
  t.match(await state('dirty.txt'), /\(0x0000000d\)/, 'the dirty file was deleted and re-imported');
  t.equal(await readFile(mnt('dirty.txt'), 'utf8'), 'dirty v1\n');
  t.match(await state('cached.txt'), /\(0x0000000d\)/);
  // The mount's auto_cache drops the pages of a file read before the import once its mtime changed.
  t.equal(await readFile(mnt('cached.txt'), 'utf8'), 'CACHED V2\n', 'a file read through the mount before the import');
  t.equal(await readlink(mnt('new/link')), 'a.txt');
  const ls = await m.sh('ls -ln "$MNT/new/a.txt"');
  t.match(ls.stdout, /^-rw------- 1 1234 0 9 /);

  t.ok(over.job.logFile?.startsWith(join(m.cacheDir, 'jobs')), 'the log is in the cache directory');
  const lines = readFileSync(over.job.logFile!, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, string>);
  t.equal(lines.filter((l) => l.event === 'conflict').length, 4, 'one JSON line per conflict');
  t.ok(lines.some((l) => l.path === '/dirty.txt' && l.action === 'replace'));
  t.ok(lines.some((l) => l.path === '/clean.txt' && l.action === 'reimport'));

  const human = await m.cli(['import', m.mountpoint]);
  t.equal(human.code, 0, human.stderr);
  t.match(human.stdout, /^import-\S+ Succeeded: walked 9 blobs, imported 0 .* conflicts 0, errors 0\n$/);
  const jobs = await m.cli(['jobs', m.mountpoint]);
  t.equal(jobs.stdout.match(/import-\S+ Succeeded: walked 9 blobs/g)?.length, 3, 'blobhsm jobs lists the three imports');
});

t.test('a slow import shows IMPORT_InProgress in the root, refuses a second job, and removes it on success', async (t) => {
  // 1200 pages (one blob each): the walk must outlast three CLI start-ups (the readAhead import walks 400 in ~2 s).
  const many = Array.from({ length: 1200 }, (_, i) => ({ name: `bulk/f${String(i).padStart(4, '0')}`, data: `${i}` }));
  for (let i = 0; i < many.length; i += 25) await Promise.all(many.slice(i, i + 25).map((b) => seed(m.store, [b])));
  const started = await m.cli(['import', m.mountpoint, '--no-wait', '--page-size', '1', '--json']);
  t.equal(started.code, 0, started.stderr);
  const job = JSON.parse(started.stdout) as ImportJobSummary;
  t.equal(job.state, 'InProgress');

  const pollMarker = async () => {
    for (let i = 0; i < 300; i++) {
      const found = (await readdir(m.mountpoint)).find((n) => n.startsWith('IMPORT_'));
      if (found) return { found, stat: (await m.sh(`stat -c '%s %A' "$MNT/${found}"`)).stdout.trim() };
      await new Promise((r) => setTimeout(r, 10));
    }
    return undefined;
  };
  // All at once while the walk (one listing request per blob) runs.
  const [marker, second, exp] = await Promise.all([
    pollMarker(),
    m.cli(['import', m.mountpoint]),
    m.cli(['export', m.mountpoint]),
  ]);
  t.match(marker?.found, /^IMPORT_InProgress\.\d{8}T\d{6}Z$/, 'the marker is in the root while the import runs');
  t.equal(marker?.stat, '0 -r--r--r--');
  t.equal(second.code, 1);
  t.match(second.stderr, new RegExp(`import job ${job.id} is running`));
  t.match(exp.stderr, /import job .* is running/, 'an export is refused too');

  let last: JobSummary | undefined;
  for (let i = 0; i < 600; i++) {
    const all = JSON.parse((await m.cli(['jobs', m.mountpoint, '--json'])).stdout) as JobSummary[];
    last = all.find((j) => j.id === job.id);
    if (last && last.state !== 'InProgress') break;
    await new Promise((r) => setTimeout(r, 100));
  }
  t.equal(last?.state, 'Succeeded');
  t.equal((last as ImportJobSummary).stats.importedFiles, 1200);
  t.comment(`1200 blobs at one per listing page: ${Date.parse(last!.finishTime!) - Date.parse(last!.startTime)} ms`);
  t.notOk(readdirSync(m.mountpoint).some((n) => n.startsWith('IMPORT_')), 'the marker is gone after a success');
});

t.test('bad flags: a clear message and exit 4', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [['--conflict-mode', 'Overwrite'], /unknown conflict mode 'Overwrite'/],
    [['--prefix', '/data', '--prefix', '/data2'], /overlapping prefixes '\/data' and '\/data2'/],
    [['--prefix', 'data'], /start with '\/'/],
    [['--maximum-errors', 'lots'], /invalid maximum errors 'lots'/],
    [['--maximum-errors', '-2'], /invalid maximum errors/],
    [['--bogus'], /unknown option '--bogus'/],
  ];
  for (const [args, message] of cases) {
    const r = await m.cli(['import', m.mountpoint, ...args]);
    t.equal(r.code, 4, args.join(' '));
    t.match(r.stderr, message, args.join(' '));
  }
  const unlimited = await m.cli(['import', m.mountpoint, '--maximum-errors', '-1', '--conflict-mode', 'OverwriteAlways', '--json']);
  t.equal(unlimited.code, 0, unlimited.stderr);
  t.match(JSON.parse(unlimited.stdout), { maximumErrors: -1, conflictMode: 'OverwriteAlways', state: 'Succeeded' });
});
