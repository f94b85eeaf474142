// End to end, on the default (libfuse3) binding with the default 60 s entry and attribute timeouts: when a job
// changes the namespace behind the kernel's back, the kernel forgets what it cached as soon as the job (or the
// auto-import pass) is done, not a timeout later. A name looked up as missing and then imported is there at once;
// a name an import replaces names the new inode at once; the IMPORT_<state> marker of a failed job is gone once
// the next import succeeds; a name whose blob auto-import (--enable-deletions) deleted vanishes once that pass
// ends, and a new blob's name (looked up as missing before) appears. Each kernel check is made once, after the
// daemon said the change was applied.
import t from 'tap';
import { readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AutoImportMetrics } from '../src/jobs/auto-import.js';
import type { ImportJobSummary } from '../src/jobs/job-runner.js';
import { startAzurite } from './helpers/azurite.js';
import { mountContainer, seed, type MountFixture } from './helpers/mount.js';

const azurite = await startAzurite();
t.teardown(() => azurite.stop());

const missing = (p: string) => stat(p).then(() => false, (err: NodeJS.ErrnoException) => err.code === 'ENOENT');
const inodeOf = async (p: string) => (await stat(p)).ino;

async function importJob(m: MountFixture, args: string[]): Promise<ImportJobSummary> {
  const r = await m.cli(['import', m.mountpoint, '--json', ...args]);
  if (!r.stdout.trim()) throw new Error(`blobhsm import printed nothing (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as ImportJobSummary;
}

t.test('import jobs: a missing name imported, a replaced name, a failed job marker', async (t) => {
  const m = await mountContainer(t, azurite, [{ name: 'dirty.txt', data: 'remote v1\n' }]);
  const mnt = (p: string) => join(m.mountpoint, p);
  t.match(await m.sh('mount | grep " $MNT "'), { stdout: /max_read=1048576/ }, 'the libfuse3 binding serves it');

  t.ok(await missing(mnt('later.txt')), 'looked up before its blob exists (a negative entry, cached 60 s)');
  await writeFile(mnt('dirty.txt'), 'local edit\n');
  const before = await inodeOf(mnt('dirty.txt'));
  await seed(m.store, [
    { name: 'later.txt', data: 'imported\n' },
    { name: 'dirty.txt', data: 'remote v2\n' },
  ]);
  const job = await importJob(m, ['--conflict-mode', 'OverwriteIfDirty']);
  t.equal(job.state, 'Succeeded');
  t.equal(await readFile(mnt('later.txt'), 'utf8'), 'imported\n', 'the imported name is there at once');
  t.not(await inodeOf(mnt('dirty.txt')), before, 'the replaced name names the new inode at once');
  t.equal(await readFile(mnt('dirty.txt'), 'utf8'), 'remote v2\n');

  await writeFile(mnt('later.txt'), 'edited here\n');
  await seed(m.store, [{ name: 'later.txt', data: 'changed remotely\n' }]);
  const failed = await importJob(m, ['--conflict-mode', 'Fail']);
  t.equal(failed.state, 'Failed');
  const marker = (await readdir(m.mountpoint)).find((n) => n.startsWith('IMPORT_Failed.'));
  t.ok(marker, 'the failed job left its marker');
  t.equal((await stat(mnt(marker!))).size, 0, 'looked up through the kernel (a positive entry, cached 60 s)');
  const next = await importJob(m, ['--conflict-mode', 'Skip']);
  t.equal(next.state, 'Succeeded');
  t.ok(await missing(mnt(marker!)), 'the marker is gone at once after the next import succeeded');
});

t.test('auto-import with --enable-deletions: deleted names vanish and new ones appear once the pass ends', async (t) => {
  const m = await mountContainer(
    t,
    azurite,
    [
      { name: 'gone.txt', data: 'bye\n' },
      { name: 'dir/gone-too.txt', data: 'bye too\n' },
      { name: 'dir/kept.txt', data: 'kept\n' },
    ],
    ['--auto-import', '--auto-import-source', 'listing', '--auto-import-interval', '1', '--enable-deletions'],
  );
  const mnt = (p: string) => join(m.mountpoint, p);
  const metrics = async (): Promise<AutoImportMetrics> => JSON.parse((await m.cli(['auto-import', m.mountpoint, '--json'])).stdout) as AutoImportMetrics;
  /** Polls the daemon (not the mount) until `check` holds: the bound is the failure mode, not a speed target. */
  const daemonSays = async (what: string, check: (x: AutoImportMetrics) => boolean): Promise<AutoImportMetrics> => {
    for (let i = 0; i < 300; i++) {
      const x = await metrics();
      if (check(x)) return x;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`the daemon never said: ${what}`);
  };
  await daemonSays('Full Sync done', (x) => x.state === 'BlobSync');

  t.equal(await readFile(mnt('gone.txt'), 'utf8'), 'bye\n', 'read through the kernel (entry, attributes and pages cached)');
  t.equal(await readFile(mnt('dir/gone-too.txt'), 'utf8'), 'bye too\n');
  t.ok(await missing(mnt('dir/new.txt')), 'looked up before its blob exists');
  await m.store.delete('gone.txt');
  await m.store.delete('dir/gone-too.txt');
  await seed(m.store, [{ name: 'dir/new.txt', data: 'new\n' }]);
  // The pass that applied the changes has ended once a later pass completes (the pass told the kernel first).
  const applied = await daemonSays('two deletions and one import', (x) => x.blobSync.deletions >= 2 && x.blobSync.importedFiles >= 1);
  await daemonSays('the pass that applied them ended', (x) => x.passesCompleted > applied.passesCompleted);
  t.ok(await missing(mnt('gone.txt')), 'a deleted name vanishes at once');
  t.ok(await missing(mnt('dir/gone-too.txt')), 'in a subdirectory too');
  t.equal(await readFile(mnt('dir/new.txt'), 'utf8'), 'new\n', 'a new name looked up as missing before is there');
  t.same((await readdir(mnt('dir'))).sort(), ['kept.txt', 'new.txt']);
});
