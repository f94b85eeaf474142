// End to end: auto-import on real kernel FUSE mounts of a real Azurite, in both Blob Sync modes.
// - Listing: blobs created, overwritten and deleted with the SDK behind the mount appear, change (new content on
//   the next read of a hydrated file) and disappear; a name looked up before its blob existed is found with the
//   default 60 s kernel timeouts (the libfuse3 binding invalidates the kernel's entries); the deletion table case by case (unmodified, modified under
//   OverwriteIfDirty and Skip, open).
// - Change feed: Azurite never writes one, so the test writes `$blobchangefeed` itself (segment manifest, Avro
//   chunk appended per change) next to the SDK's changes; creations, metadata changes and deletions apply; after a
//   kill -9 of the daemon the remount resumes from the persisted cursor: the events before the kill are not applied
//   again (Blob Sync walks only the new ones) and none after it is missed.
import t, { type Test } from 'tap';
import { openSync, closeSync, readFileSync } from 'node:fs';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { AutoImportMetrics } from '../src/jobs/auto-import.js';
import { createAzureStore } from '../src/blob/azure-store.js';
import { isAlive } from '../src/control/registry.js';
import { startAzurite, uniqueContainerName } from './helpers/azurite.js';
import { ChangeFeedWriter, type FeedEvent } from './helpers/change-feed-writer.js';
import { startFaultProxy } from './helpers/fault-proxy.js';
import { breakMount, mountContainer, seed, type MountFixture } from './helpers/mount.js';

const azurite = await startAzurite();
t.teardown(() => azurite.stop());
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function metrics(m: MountFixture, args: string[] = []): Promise<AutoImportMetrics> {
  const r = await m.cli(['auto-import', m.mountpoint, '--json', ...args]);
  if (r.code !== 0) throw new Error(`blobhsm auto-import failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as AutoImportMetrics;
}

/** Polls until `check` holds; the bound is this test's failure mode (a change never applied), not a speed target. */
async function until(what: string, check: () => Promise<boolean>, boundMs = 30_000): Promise<void> {
  const end = Date.now() + boundMs;
  while (!(await check().catch(() => false))) {
    if (Date.now() > end) throw new Error(`not seen in ${boundMs} ms: ${what}`);
    await sleep(200);
  }
}
const content = (p: string) => readFile(p, 'utf8');

/** The mount's Prometheus text (`--metrics 127.0.0.1:0`: the URL is in `blobhsm status --json`). */
async function scrape(m: MountFixture): Promise<(series: string) => number | undefined> {
  const { metrics: url } = JSON.parse((await m.cli(['status', '--json', m.mountpoint])).stdout) as { metrics: string };
  const text = await (await fetch(url)).text();
  return (series) => {
    const line = text.split('\n').find((l) => l.startsWith(series + ' '));
    return line === undefined ? undefined : Number(line.slice(series.length + 1));
  };
}
const PHASE_SERIES: Array<[keyof AutoImportMetrics['fullSync'], string]> = [
  ['importedFiles', 'imported_files_total'],
  ['preexistingFiles', 'preexisting_files_total'],
  ['preexistingDirectories', 'preexisting_directories_total'],
  ['totalBlobsWalked', 'blobs_walked_total'],
  ['totalBlobsImported', 'blobs_imported_total'],
  ['totalConflicts', 'conflicts_total'],
  ['totalErrors', 'errors_total'],
  ['deletions', 'deletions_total'],
];
/** Every phase series of /metrics equals the AMLFS statistic of `blobhsm auto-import --json` (read while stopped). */
async function metricsAgree(t: Test, m: MountFixture, stopped: AutoImportMetrics): Promise<void> {
  const sample = await scrape(m);
  for (const [phase, key] of [['full_sync', 'fullSync'], ['blob_sync', 'blobSync']] as const) {
    for (const [stat, suffix] of PHASE_SERIES) {
      t.equal(sample(`blobhsm_auto_import_${suffix}{phase="${phase}"}`), stopped[key][stat], `/metrics ${suffix} ${phase} = ${stat}`);
    }
  }
  const seconds = (iso: string | null) => (iso === null ? 0 : Date.parse(iso) / 1000);
  t.equal(sample('blobhsm_auto_import_last_time_fully_synchronized_timestamp_seconds'), seconds(stopped.lastTimeFullySynchronized));
  t.equal(sample('blobhsm_auto_import_last_change_feed_event_consumed_timestamp_seconds'), seconds(stopped.lastChangeFeedEventConsumedTime));
  t.equal(sample('blobhsm_auto_import_passes_total{outcome="completed"}'), stopped.passesCompleted);
  t.equal(sample(`blobhsm_auto_import_source{source="${stopped.source}"}`), 1, `source ${stopped.source}`);
}
const exists = (p: string) => stat(p).then(() => true, () => false);

t.test('listing mode: creations, overwrites and deletions behind the mount', async (t) => {
  const logs = uniqueContainerName('logs');
  const m = await mountContainer(
    t,
    azurite,
    [
      { name: 'hydrated.txt', data: 'v1\n' },
      { name: 'gone.txt', data: 'bye\n' },
      { name: 'dirty.txt', data: 'remote\n' },
      { name: 'open.txt', data: 'open\n' },
      { name: 'dir/inner.txt', data: 'inner\n' },
      { name: 'dir/unmodified.txt', data: 'unmodified\n' },
    ],
    [
      '--auto-import', '--auto-import-source', 'listing', '--auto-import-interval', '1', '--enable-deletions', '--conflict-mode', 'OverwriteIfDirty',
      '--logging-container', logs, '--metrics', '127.0.0.1:0',
    ],
  );
  const mnt = (p: string) => join(m.mountpoint, p);
  await until('Full Sync done', async () => (await metrics(m)).state === 'BlobSync');
  const first = await metrics(m);
  t.equal(first.source, 'listing');
  t.equal(first.fullSync.preexistingFiles, 6, 'Full Sync found the mounted files preexisting');
  const running = await scrape(m);
  t.equal(running('blobhsm_auto_import_state{state="BlobSync"}'), 1, '/metrics: in Blob Sync');
  t.equal(running('blobhsm_auto_import_enabled'), 1);
  t.equal(running('blobhsm_auto_import_preexisting_files_total{phase="full_sync"}'), 6, '/metrics: Full Sync preexisting files');
  t.ok(running('blobhsm_auto_import_last_time_fully_synchronized_timestamp_seconds')! > 0, '/metrics: lastTimeFullySynchronized');
  t.equal(running('blobhsm_auto_import_last_change_feed_event_consumed_timestamp_seconds'), 0, 'no change-feed event in listing mode: 0');

  t.equal(await content(mnt('hydrated.txt')), 'v1\n', 'hydrated');
  t.notOk(await exists(mnt('later.txt')), 'a name looked up before its blob exists');
  await writeFile(mnt('dirty.txt'), 'local change\n');
  let fd: number | undefined = openSync(mnt('open.txt'), 'r');
  t.teardown(() => fd !== undefined && closeSync(fd));

  await seed(m.store, [
    { name: 'later.txt', data: 'created behind the mount\n' },
    { name: 'hydrated.txt', data: 'v2, longer than v1\n' },
  ]);
  for (const name of ['gone.txt', 'dirty.txt', 'open.txt']) await m.store.delete(name);

  await until('later.txt appears', async () => (await content(mnt('later.txt'))) === 'created behind the mount\n');
  await until('hydrated.txt shows the new content', async () => (await content(mnt('hydrated.txt'))) === 'v2, longer than v1\n');
  await until('gone.txt disappears', async () => !(await exists(mnt('gone.txt'))));
  await until('dirty.txt (modified locally) is deleted under OverwriteIfDirty', async () => !(await exists(mnt('dirty.txt'))));
  t.ok(await exists(mnt('open.txt')), 'an open file is not deleted');
  t.equal(await content(mnt('dir/inner.txt')), 'inner\n', 'untouched blobs stay');
  closeSync(fd);
  fd = undefined;
  await until('open.txt is deleted once closed', async () => !(await exists(mnt('open.txt'))));

  // Skip keeps a locally modified file whose blob was deleted, and deletes an unmodified one.
  await m.cli(['auto-import', m.mountpoint, '--conflict-mode', 'Skip']);
  await writeFile(mnt('dir/inner.txt'), 'changed here\n');
  await m.store.delete('dir/inner.txt');
  await m.store.delete('dir/unmodified.txt');
  await until('Skip: the unmodified file is deleted', async () => !(await exists(mnt('dir/unmodified.txt'))));
  const passes = (await metrics(m)).passesCompleted;
  await until('two more passes', async () => (await metrics(m)).passesCompleted >= passes + 2);
  t.equal(await content(mnt('dir/inner.txt')), 'changed here\n', 'Skip: the modified file is kept');

  const after = await metrics(m);
  t.ok(after.blobSync.deletions >= 4, `deletions counted (${after.blobSync.deletions})`);
  t.ok(after.blobSync.importedFiles >= 2, 'imports counted');
  t.ok(after.lastTimeFullySynchronized, 'lastTimeFullySynchronized');
  t.equal(after.lastError, null);

  // The Blob Sync log reached the logging container (appended as it runs): one JSON line per deletion.
  const logStore = createAzureStore({ container: logs, connectionString: azurite.connectionString, env: {} });
  t.teardown(() => logStore.deleteContainer().catch(() => undefined));
  t.match(after.logBlob, new RegExp(`^${m.container}/auto-import-BlobSync-`));
  await until('the logging container has the deletions', async () => {
    const parts: Buffer[] = [];
    for await (const p of await logStore.readRange(after.logBlob!, 0, undefined)) parts.push(p as Buffer);
    const lines = Buffer.concat(parts).toString().trim().split('\n').map((l) => JSON.parse(l) as { event: string; blob?: string });
    return lines.filter((l) => l.event === 'deletion').length >= 3;
  });

  const bad = await m.cli(['auto-import', m.mountpoint, '--conflict-mode', 'Sometimes']);
  t.equal(bad.code, 4, 'a bad value is a usage error');
  t.match(bad.stderr, /conflict mode/);
  const badMax = await m.cli(['auto-import', m.mountpoint, '--maximum-errors', 'many']);
  t.equal(badMax.code, 4);
  t.match(badMax.stderr, /invalid --maximum-errors 'many': an integer, 0 or more, or -1 for unlimited/);

  // Stopped, the numbers hold still: /metrics says what `blobhsm auto-import --json` says.
  const stopped = await metrics(m, ['--disable']);
  t.equal(stopped.state, 'Disabled');
  await metricsAgree(t, m, stopped);
  t.equal((await scrape(m))('blobhsm_auto_import_state{state="Disabled"}'), 1);
});

t.test('--maximum-errors: failed passes count; past the limit auto-import stops as Failed (status, log, /metrics)', async (t) => {
  const proxy = await startFaultProxy(azurite.port, azurite.connectionString);
  t.teardown(() => proxy.close());
  const m = await mountContainer(t, { ...azurite, connectionString: proxy.connectionString }, [{ name: 'a.txt', data: 'a\n' }], [
    '--auto-import', '--auto-import-source', 'listing', '--auto-import-interval', '1', '--maximum-errors', '1', '--metrics', '127.0.0.1:0',
  ]);
  await until('Full Sync done', async () => (await metrics(m)).state === 'BlobSync');
  t.equal((await metrics(m)).maximumErrors, 1);
  // Every listing answers 503 (after the store's retries): each pass fails, one error each.
  const fault = proxy.inject({ op: 'list', fault: { kind: 'status', status: 503 } });
  await until('auto-import stopped', async () => (await metrics(m)).state === 'Failed', 90_000);
  proxy.clear();
  t.ok(fault.applied >= 2, `listings refused (${fault.applied})`);
  const failed = await metrics(m);
  t.equal(failed.enabled, false, 'disabled');
  t.equal(failed.blobSync.totalErrors, 2, 'the second error passed the limit of 1');
  t.match(failed.lastError, /2 errors, more than the 1 allowed \(maximum errors\)/);
  t.match((await m.cli(['auto-import', m.mountpoint])).stdout, /auto-import disabled \(Failed, from the listing\).*maximum errors 1/);
  const sample = await scrape(m);
  t.equal(sample('blobhsm_auto_import_state{state="Failed"}'), 1, '/metrics: Failed');
  t.equal(sample('blobhsm_auto_import_errors_total{phase="blob_sync"}'), 2, '/metrics: the errors');
  await until('the phase log has two error lines and the failure', async () => {
    const lines = readFileSync(failed.logFile!, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { event: string });
    return lines.filter((l) => l.event === 'error').length === 2 && lines.at(-1)!.event === 'failed';
  });
  const passes = failed.passesCompleted;
  await m.cli(['auto-import', m.mountpoint, '--enable']);
  await until('enabled again: Full Sync, then Blob Sync', async () => {
    const x = await metrics(m);
    return x.state === 'BlobSync' && x.passesCompleted > passes;
  });
  t.equal((await metrics(m)).blobSync.totalErrors, 0, 'a fresh count');
});

t.test('change-feed mode: events apply; a kill -9 resumes from the cursor without repeating or missing one', async (t) => {
  const feed = new ChangeFeedWriter(azurite.connectionString);
  await feed.init();
  const chunk = await feed.openCurrentHour();

  const m = await mountContainer(t, azurite, [{ name: 'base.txt', data: 'base\n' }], [
    '--auto-import', '--auto-import-source', 'change-feed', '--auto-import-interval', '1', '--enable-deletions', '--conflict-mode', 'OverwriteIfDirty', '--attr-timeout', '1',
    '--metrics', '127.0.0.1:0',
  ]);
  const mnt = (p: string) => join(m.mountpoint, p);
  await until('Full Sync done', async () => (await metrics(m)).state === 'BlobSync');
  t.equal((await metrics(m)).source, 'change-feed');

  let seq = 1n;
  const put = async (name: string, data: string, metadata: Record<string, string> = {}) => {
    const w = await m.store.upload(name, { data: Buffer.from(data) }, { metadata });
    return { eventType: 'BlobCreated', container: m.container, blob: name, etag: w.etag, contentLength: data.length, sequencer: seq++ } satisfies FeedEvent;
  };
  const del = async (name: string) => {
    await m.store.delete(name);
    return { eventType: 'BlobDeleted', container: m.container, blob: name, sequencer: seq++ } satisfies FeedEvent;
  };

  await feed.append(chunk, [await put('one.txt', 'one\n'), await put('two.txt', 'two\n')]);
  await until('one.txt appears', async () => (await content(mnt('one.txt'))) === 'one\n');
  await until('two.txt appears', async () => (await content(mnt('two.txt'))) === 'two\n');

  const props = await m.store.setMetadata('one.txt', { permissions: '0600' });
  await feed.append(chunk, [
    { eventType: 'BlobPropertiesUpdated', container: m.container, blob: 'one.txt', etag: props.etag, sequencer: seq++ },
    await del('base.txt'),
  ]);
  await until('one.txt gets mode 0600', async () => ((await stat(mnt('one.txt'))).mode & 0o777) === 0o600);
  await until('base.txt disappears', async () => !(await exists(mnt('base.txt'))));
  const before = await metrics(m);
  t.ok(before.lastChangeFeedEventConsumedTime, 'lastChangeFeedEventConsumedTime');
  t.equal(before.blobSync.deletions, 1);

  // kill -9, then changes while no daemon runs, then the remount.
  const pid = m.daemonPid()!;
  process.kill(pid, 'SIGKILL');
  await until('the daemon is gone', async () => !isAlive(pid));
  breakMount(m.mountpoint);
  await feed.append(chunk, [await put('three.txt', 'three\n'), await del('two.txt')]);
  const again = await m.remount();
  t.equal(again.code, 0, `remounted: ${again.stderr}`);
  await until('three.txt appears after the restart', async () => (await content(mnt('three.txt'))) === 'three\n');
  await until('two.txt disappears after the restart', async () => !(await exists(mnt('two.txt'))));
  const resumed = await metrics(m);
  t.equal(resumed.state, 'BlobSync', 'Blob Sync resumed (no second Full Sync)');
  t.equal(resumed.fullSync.startTime, null, 'no Full Sync in this daemon run');
  t.equal(resumed.blobSync.totalBlobsWalked, 1, 'only the new creation was applied: nothing before the kill again');
  t.equal(resumed.blobSync.deletions, 1, 'and the new deletion');
  t.equal(await content(mnt('one.txt')), 'one\n');
  const stopped = await metrics(m, ['--disable']);
  t.ok(stopped.lastChangeFeedEventConsumedTime, 'an event time after the restart');
  await metricsAgree(t, m, stopped);
});

t.test('two mounts of one container converge both ways (auto-import and auto-export on both)', async (t) => {
  const args = [
    '--auto-import', '--auto-import-source', 'listing', '--auto-import-interval', '1', '--enable-deletions', '--conflict-mode', 'OverwriteIfDirty',
    '--auto-export', '--auto-export-min-age', '0', '--auto-export-interval', '1', '--attr-timeout', '1',
  ];
  const a = await mountContainer(t, azurite, [{ name: 'shared.txt', data: 'from the container\n' }], args);
  const b = await mountContainer(t, azurite, [], args, undefined, {}, a.store);
  const inA = (p: string) => join(a.mountpoint, p);
  const inB = (p: string) => join(b.mountpoint, p);
  await until('both in Blob Sync', async () => (await metrics(a)).state === 'BlobSync' && (await metrics(b)).state === 'BlobSync');

  await writeFile(inA('from-a.txt'), 'written in A\n');
  await until('A exported it', async () => /exists archived/.test((await a.cli(['hsm_state', inA('from-a.txt')])).stdout));
  await until('B sees it', async () => (await content(inB('from-a.txt'))) === 'written in A\n');
  t.match((await b.cli(['hsm_state', inB('from-a.txt')])).stdout, /\(0x00000009\) exists archived/, 'B imported it archived and clean (restored by the read)');

  await writeFile(inB('from-a.txt'), 'changed in B\n');
  await until('B exported its change', async () => /\(0x00000009\) exists archived/.test((await b.cli(['hsm_state', inB('from-a.txt')])).stdout));
  await until('A sees B\'s change', async () => (await content(inA('from-a.txt'))) === 'changed in B\n');

  // Nothing was exported twice, nor re-imported as foreign by the mount that wrote it.
  const exportsA = async () => (await a.cli(['auto-export', a.mountpoint, '--json'])).stdout;
  const ea = JSON.parse(await exportsA()) as { totalFilesExported: number };
  const eb = JSON.parse((await b.cli(['auto-export', b.mountpoint, '--json'])).stdout) as { totalFilesExported: number };
  t.equal(ea.totalFilesExported, 1, 'A exported its file once');
  t.equal(eb.totalFilesExported, 1, 'B exported its change once');
  const passes = (await metrics(a)).passesCompleted;
  await until('A ran two more passes', async () => (await metrics(a)).passesCompleted >= passes + 2).catch(async (err) => {
    throw new Error(`${(err as Error).message}; metrics ${JSON.stringify(await metrics(a))}`);
  });
  t.equal((JSON.parse(await exportsA()) as { totalFilesExported: number }).totalFilesExported, 1, 'still once: B\'s version was not re-exported by A');
  t.match((await a.cli(['hsm_state', inA('from-a.txt')])).stdout, /\(0x0000000[9d]\)/, 'clean in A');
  t.equal((await metrics(b)).blobSync.totalConflicts, 0, 'no conflicts in B');
});
