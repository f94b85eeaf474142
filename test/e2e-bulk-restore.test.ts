// End to end: a bulk `hsm_restore` of 1,000 small files through a real mount on Azurite runs with bounded
// parallelism (the daemon's own count of actions running at once), reports the one file that fails, and exits
// with that failure's errno. Then a bulk release and a queued (not --wait) bulk restore seen through hsm_action.
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import PQueue from 'p-queue';
import { startAzurite } from './helpers/azurite.js';
import { mountContainer, type MountFixture } from './helpers/mount.js';

const COUNT = 1000;
const azurite = await startAzurite();
t.teardown(() => azurite.stop());

const names = Array.from({ length: COUNT }, (_, i) => `bulk/d${String(i % 10)}/f${String(i).padStart(4, '0')}.txt`);
const content = (name: string) => `content of ${name}\n`;

// mountContainer seeds one blob at a time: mount the empty container, then seed it concurrently (bounded) and
// mount it again on a fresh cache directory, which imports the seeded namespace.
const m = await mountContainer(t, azurite);
let seeded = '';
if ((await m.unmount()).code !== 0) throw new Error('unmount failed');
{
  const seeding = new PQueue({ concurrency: 32 });
  const started = Date.now();
  await Promise.all(names.map((name) => seeding.add(() => m.store.upload(name, { data: Buffer.from(content(name)) }, { metadata: {} }))));
  seeded = `seeded ${COUNT} blobs in ${Date.now() - started} ms`;
}
rmSync(m.cacheDir, { recursive: true, force: true });
{
  const r = await m.remount();
  if (r.code !== 0) throw new Error(`blobhsm mount failed (${r.code}): ${r.stderr}`);
}

interface Status {
  requests: Record<string, number>;
  hsm: { concurrency: number; running: number; waiting: number; maxRunning: number };
}

async function status(fx: MountFixture): Promise<Status> {
  const r = await fx.cli(['status', '--json', fx.mountpoint]);
  if (r.code !== 0) throw new Error(`blobhsm status failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as Status;
}

const work = mkdtempSync(join(tmpdir(), 'blobhsm-bulk-'));
t.teardown(() => rmSync(work, { recursive: true, force: true }));

t.test('bulk restore of 1,000 files: bounded parallelism, the failure reported, errno exit', async (t) => {
  t.comment(seeded);
  const paths = names.map((n) => join(m.mountpoint, n));
  const list = join(work, 'all.list');
  writeFileSync(list, paths.join('\n') + '\n');

  const state = await m.cli(['hsm_state', ...paths.slice(0, 3)]);
  t.equal(state.stdout, paths.slice(0, 3).map((p) => `${p}: (0x0000000d) released exists archived, archive_id:1\n`).join(''));

  // One blob disappears behind the mount's back: its restore fails.
  const lost = names[617]!;
  await m.store.delete(lost);
  const lostPath = join(m.mountpoint, lost);

  const before = await status(m);
  const started = Date.now();
  const r = await m.cli(['hsm_restore', '--wait', '--filelist', list]);
  const ms = Date.now() - started;
  const after = await status(m);
  t.comment(`hsm_restore --wait of ${COUNT} files: ${ms} ms; at most ${after.hsm.maxRunning} of ${after.hsm.concurrency} actions at once`);
  t.equal(r.code, 5, 'exit status: EIO, the errno of the failure');
  t.equal(r.stdout, '');
  const lines = r.stderr.split('\n').filter(Boolean);
  t.equal(lines.length, 1, 'one line, for the one failure');
  t.match(lines[0], `lfs hsm_restore: restore of '${lostPath}' failed: Input/output error (`);
  // Azurite answers the read's If-Match on a deleted blob with 412, which the hydrator reports as a changed blob.
  t.match(lines[0], /is gone: the file is lost_from_hsm/, 'says why: the archived copy is gone');
  t.ok(after.hsm.maxRunning > 1, 'restores ran in parallel');
  t.ok(after.hsm.maxRunning <= after.hsm.concurrency, 'never more than the configured concurrency');
  t.equal(after.hsm.running, 0);
  t.equal(after.hsm.waiting, 0);
  t.equal((after.requests.read ?? 0) - (before.requests.read ?? 0), COUNT, 'one GET per file (the lost one tried once)');

  const states = await m.cli(['hsm_state', ...paths]);
  t.equal(states.code, 0);
  const stateLines = states.stdout.split('\n').filter(Boolean);
  t.equal(stateLines.length, COUNT);
  t.equal(stateLines.filter((l) => l.endsWith(': (0x00000009) exists archived, archive_id:1')).length, COUNT - 1, 'every other file restored');
  t.ok(
    stateLines.includes(`${lostPath}: (0x0000004d) released exists archived lost_from_hsm, archive_id:1`),
    'the failed one stays released and is lost_from_hsm (its blob is gone)',
  );
  for (const i of [0, 1, 499, 998, 999]) t.equal(await readFile(paths[i]!, 'utf8'), content(names[i]!));
  t.equal((await status(m)).requests.read, after.requests.read, 'reading restored files makes no request');
});

t.test('bulk release, then a queued bulk restore seen through hsm_action', async (t) => {
  const paths = names.map((n) => join(m.mountpoint, n)).filter((_, i) => i !== 617);
  const list = join(work, 'ok.list');
  writeFileSync(list, paths.join('\n') + '\n');
  const started = Date.now();
  const released = await m.cli(['hsm_release', '--filelist', list]);
  t.comment(`hsm_release of ${paths.length} files: ${Date.now() - started} ms`);
  t.equal(released.code, 0, released.stderr);
  const states = await m.cli(['hsm_state', ...paths]);
  t.equal(states.stdout.split('\n').filter((l) => l.includes('(0x0000000d) released exists archived')).length, paths.length, 'all released');

  // Lustre's way: the request returns once queued; hsm_action shows what runs and what waits.
  const queued = await m.cli(['hsm_restore', '--filelist', list]);
  t.equal(queued.code, 0, queued.stderr);
  t.equal(queued.stdout, '');
  const actions = await m.cli(['hsm_action', ...paths]);
  t.equal(actions.code, 0);
  const lines = actions.stdout.split('\n').filter(Boolean);
  const running = lines.filter((l) => /: RESTORE running \(\d+ bytes moved\)$/.test(l)).length;
  const waiting = lines.filter((l) => l.endsWith(': RESTORE waiting (from 0 to EOF)')).length;
  const noop = lines.filter((l) => l.endsWith(': NOOP')).length;
  t.comment(`right after queueing: ${running} running, ${waiting} waiting, ${noop} done`);
  t.equal(running + waiting + noop, paths.length, 'every line is one of the three');
  t.ok(running <= 8, 'at most the concurrency is running');

  const waited = Date.now();
  const done = await m.cli(['hsm_restore', '--wait', '--filelist', list]);
  t.comment(`then hsm_restore --wait of the same files: ${Date.now() - waited} ms`);
  t.equal(done.code, 0, done.stderr);
  const final = await m.cli(['hsm_state', ...paths]);
  t.equal(final.stdout.split('\n').filter((l) => l.includes('(0x00000009) exists archived')).length, paths.length, 'all restored');
  const st = await status(m);
  t.ok(st.hsm.maxRunning <= st.hsm.concurrency);
});
