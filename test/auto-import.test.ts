// AutoImporter on the in-memory stack (listing mode) and on the in-memory stack with a change feed served by a
// real Azurite (change-feed mode); the e2e test drives both through a real mount.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { MemoryBlobStore } from '../src/blob/memory-store.js';
import { AutoImporter, checkAutoImportConfig, AUTO_IMPORT_DEFAULTS, type AutoImportConfig, type AutoImporterOptions } from '../src/jobs/auto-import.js';
import { decideDeletion } from '../src/jobs/decide-import.js';
import { HsmFlag } from '../src/namespace/types.js';
import type { LocalEntry } from '../src/namespace/import-entry.js';
import { makeStack, type TestStack } from './helpers/stack.js';
import { startAzurite } from './helpers/azurite.js';
import { ChangeFeedWriter } from './helpers/change-feed-writer.js';
import { createAzureStore } from '../src/blob/azure-store.js';

const { EXISTS, DIRTY, RELEASED, ARCHIVED } = HsmFlag;

function importer(s: TestStack, config: Partial<AutoImportConfig>, extra: Partial<AutoImporterOptions> = {}): AutoImporter {
  // enabled: false, then runOnce() drives the passes (no timers in these tests).
  const a = new AutoImporter({
    ...extra,
    meta: s.meta,
    store: s.store,
    container: 'c',
    prefix: '',
    isBusy: (ino) => s.coordinator.isBusy(ino),
    dropData: (ino, gen) => s.coordinator.dropData(ino, gen),
    jobs: { list: () => [] },
    log: (line) => s.logs.push(line),
    config: { ...config, enabled: false, source: 'listing' },
    schedule: () => ({ cancel: () => undefined }),
  });
  return a;
}

/** Enables the importer's configuration without its timer, then runs steps by hand. */
async function enabled(a: AutoImporter, config: Partial<AutoImportConfig>): Promise<void> {
  await a.configure({ ...config, enabled: true, intervalSeconds: 3600 });
  // The injected scheduler never fires: run the Full Sync by hand.
  await a.runOnce();
}

t.test('configuration is validated', async (t) => {
  t.throws(() => checkAutoImportConfig(AUTO_IMPORT_DEFAULTS, { conflictMode: 'Sometimes' as never }), /use one of Fail, Skip/);
  t.throws(() => checkAutoImportConfig(AUTO_IMPORT_DEFAULTS, { intervalSeconds: 0 }), /interval/);
  t.throws(() => checkAutoImportConfig(AUTO_IMPORT_DEFAULTS, { prefixes: ['/a', '/ab'] }), /overlapping/);
  t.throws(() => checkAutoImportConfig(AUTO_IMPORT_DEFAULTS, { source: 'magic' as never }), /auto, change-feed or listing/);
  t.throws(() => checkAutoImportConfig(AUTO_IMPORT_DEFAULTS, { maximumErrors: -2 }), /invalid maximum errors '-2': an integer, 0 or more, or -1 for unlimited/);
  t.throws(() => checkAutoImportConfig(AUTO_IMPORT_DEFAULTS, { maximumErrors: 1.5 }), /invalid maximum errors/);
  t.equal(checkAutoImportConfig(AUTO_IMPORT_DEFAULTS, {}).maximumErrors, -1, 'unlimited by default');
});

t.test('decideDeletion: the AMLFS table', async (t) => {
  const file = (flags: number, extra: Partial<LocalEntry> = {}): LocalEntry => ({
    kind: 'file', mode: 0o644, uid: 0, gid: 0, mtimeMs: 0, size: 1, target: null, hsmFlags: flags, nlink: 1, blobName: 'f', etag: '"e"', ...extra,
  });
  const clean = file(EXISTS | ARCHIVED);
  const released = file(EXISTS | ARCHIVED | RELEASED);
  const dirty = file(EXISTS | ARCHIVED | DIRTY);
  for (const mode of ['Skip', 'OverwriteIfDirty'] as const) {
    t.equal(decideDeletion(mode, clean).delete, true, `${mode}: unmodified file deleted`);
    t.equal(decideDeletion(mode, released).delete, true, `${mode}: released file deleted`);
    t.equal(decideDeletion(mode, { ...clean, busy: true }).delete, false, `${mode}: open file kept`);
    t.equal(decideDeletion(mode, { ...file(0, { kind: 'dir' }), hasChildren: true }).delete, false, `${mode}: non-empty dir kept`);
    t.equal(decideDeletion(mode, { ...file(0, { kind: 'dir' }), hasChildren: false }).delete, true, `${mode}: empty dir deleted`);
  }
  t.equal(decideDeletion('Skip', dirty).delete, false, 'Skip keeps a modified file');
  t.equal(decideDeletion('OverwriteIfDirty', dirty).delete, true, 'OverwriteIfDirty deletes a modified file');
  t.equal(decideDeletion('OverwriteIfDirty', { ...dirty, busy: true }).delete, false, 'but never an open one');
});

t.test('listing mode: creations, changes and deletions; deletions before enablement are not applied', async (t) => {
  const s = await makeStack({ blobs: { 'keep.txt': 'k', 'gone-before.txt': 'g', 'dir/a.txt': 'a' } });
  t.teardown(() => s.cleanup());
  const a = importer(s, {});
  t.teardown(() => a.close());
  // Deleted after the mount's import but before auto-import was enabled: stays.
  s.store.deleteDirect('gone-before.txt');
  await enabled(a, { enableDeletions: true, conflictMode: 'OverwriteIfDirty' });
  t.equal(a.metrics().state, 'BlobSync');
  t.equal(a.metrics().source, 'listing');
  t.ok(s.meta.resolve('/gone-before.txt'), 'a deletion before enablement is not applied');
  t.equal(a.metrics().fullSync.preexistingFiles, 2);

  s.store.putDirect('new.txt', 'n', { modtime: '2026-01-02 03:04:05 +0000' });
  s.store.putDirect('dir/a.txt', 'a changed');
  s.store.deleteDirect('keep.txt');
  await a.runOnce();
  t.equal(s.inode('/new.txt').hsmFlags, EXISTS | RELEASED | ARCHIVED, 'a new blob appears released');
  t.equal(s.inode('/dir/a.txt').size, 9, 'a changed blob is re-imported (OverwriteIfDirty)');
  t.notOk(s.meta.resolve('/keep.txt'), 'a deleted blob disappears');
  t.ok(s.meta.resolve('/gone-before.txt'), 'still not applied');
  const m = a.metrics();
  t.equal(m.blobSync.deletions, 1);
  t.equal(m.blobSync.importedFiles, 2, 'the new file and the re-imported one');
  t.ok(m.lastTimeFullySynchronized);
  t.equal(m.passesCompleted, 2);
});

t.test('listing mode: a modified file is kept under Skip, deleted under OverwriteIfDirty; an open one never', async (t) => {
  for (const mode of ['Skip', 'OverwriteIfDirty'] as const) {
    const s = await makeStack({ blobs: { 'm.txt': 'original', 'open.txt': 'o' } });
    const a = importer(s, {});
    await enabled(a, { enableDeletions: true, conflictMode: mode });
    await s.writeFile('/m.txt', 'local change');
    t.ok(s.inode('/m.txt').hsmFlags & DIRTY);
    const fh = await s.vfs.open('/open.txt', 0);
    s.store.deleteDirect('m.txt');
    s.store.deleteDirect('open.txt');
    await a.runOnce();
    t.equal(Boolean(s.meta.resolve('/m.txt')), mode === 'Skip', `${mode}: modified file ${mode === 'Skip' ? 'kept' : 'deleted'}`);
    t.ok(s.meta.resolve('/open.txt'), `${mode}: open file kept`);
    await s.vfs.release(fh);
    await s.settle();
    await a.runOnce();
    t.notOk(s.meta.resolve('/open.txt'), `${mode}: deleted on the next pass once closed`);
    await a.close();
    await s.cleanup();
  }
});

t.test('listing mode with deletions: a FIFO or socket has no blob, so no deletion removes it', async (t) => {
  const s = await makeStack({ blobs: { 'p': 'a file at first', 'dir/a.txt': 'a' } });
  t.teardown(() => s.cleanup());
  const a = importer(s, {});
  t.teardown(() => a.close());
  await enabled(a, { enableDeletions: true, conflictMode: 'OverwriteAlways' });
  // The imported file p is replaced locally by a FIFO of the same name; a socket sits beside dir/a.txt.
  await s.vfs.unlink('/p');
  await s.vfs.mknod('/p', 0o010644);
  await s.vfs.mknod('/dir/sock', 0o140644);
  s.store.deleteDirect('p');
  s.store.deleteDirect('dir/a.txt');
  await a.runOnce();
  t.notOk(s.meta.resolve('/dir/a.txt'), 'the deleted file is gone');
  t.equal(s.inode('/p').kind, 'fifo', 'the FIFO at a deleted blob name stays');
  t.equal(s.inode('/dir/sock').kind, 'socket', 'the socket stays, and so does its directory');
  t.equal(a.metrics().blobSync.deletions, 1);
});

t.test('listing mode: our own export is not re-imported, and a blob exported after the listing is not deleted', async (t) => {
  const s = await makeStack({ blobs: { 'a.txt': 'a' } });
  t.teardown(() => s.cleanup());
  const a = importer(s, {});
  t.teardown(() => a.close());
  await enabled(a, { enableDeletions: true, conflictMode: 'OverwriteIfDirty' });
  await s.createFile('/mine.txt', 'mine');
  await s.coordinator.request('ARCHIVE', s.inode('/mine.txt').ino).done;
  const before = s.inode('/mine.txt');
  t.equal(before.hsmFlags, EXISTS | ARCHIVED);
  await a.runOnce();
  const after = s.inode('/mine.txt');
  t.equal(after.ino, before.ino, 'the same file');
  t.equal(after.hsmFlags, EXISTS | ARCHIVED, 'not released or re-imported');
  t.equal(a.metrics().blobSync.totalBlobsImported, 0);
});

t.test('OverwriteIfDirty: a locally modified file whose blob did not change is left for its export', async (t) => {
  const s = await makeStack({ blobs: { 'a.txt': 'a', 'b.txt': 'b' } });
  t.teardown(() => s.cleanup());
  const a = importer(s, {});
  t.teardown(() => a.close());
  await enabled(a, { conflictMode: 'OverwriteIfDirty' });
  await s.writeFile('/a.txt', 'local');
  await s.writeFile('/b.txt', 'local');
  s.store.putDirect('b.txt', 'remote change');
  await a.runOnce();
  t.equal((await s.readFile('/a.txt')).toString(), 'local', 'unchanged blob: the local change stays');
  t.ok(s.inode('/a.txt').hsmFlags & DIRTY, 'still dirty (export will upload it)');
  t.equal((await s.readFile('/b.txt')).toString(), 'remote change', 'changed blob: OverwriteIfDirty replaces the dirty file');
});

t.test('Skip: a changed blob is a conflict passed over; Fail stops auto-import', async (t) => {
  const s = await makeStack({ blobs: { 'a.txt': 'a' } });
  t.teardown(() => s.cleanup());
  const a = importer(s, {});
  t.teardown(() => a.close());
  await enabled(a, { conflictMode: 'Skip' });
  s.store.putDirect('a.txt', 'changed');
  await a.runOnce();
  t.equal(s.inode('/a.txt').size, 1, 'left as it was');
  t.equal(a.metrics().blobSync.totalConflicts, 1);
  await a.configure({ conflictMode: 'Fail' });
  await a.runOnce();
  t.equal(a.metrics().state, 'Failed');
  t.match(a.metrics().lastError, /first conflict/);
});

t.test('a pass is skipped while a manual job runs', async (t) => {
  const s = await makeStack({ blobs: { 'a.txt': 'a' } });
  t.teardown(() => s.cleanup());
  let running = true;
  const a = new AutoImporter({
    meta: s.meta,
    store: s.store,
    container: 'c',
    prefix: '',
    isBusy: () => false,
    dropData: async () => undefined,
    jobs: { list: () => (running ? [{ id: 'import-1', kind: 'import', state: 'InProgress' }] : []) },
    log: (line) => s.logs.push(line),
    config: { source: 'listing' },
    schedule: () => ({ cancel: () => undefined }),
  });
  t.teardown(() => a.close());
  await a.runOnce();
  t.equal(a.metrics().passesSkipped, 1);
  t.equal(a.metrics().fullSync.startTime, null, 'Full Sync did not run');
  running = false;
  await a.runOnce();
  t.equal(a.metrics().state, 'BlobSync', 'Full Sync ran once the job was gone');
});

t.test('maximum errors: each error is one line of the phase log (local and logging container); past the limit auto-import stops as Failed', async (t) => {
  const s = await makeStack({ blobs: { 'a.txt': 'a' } });
  t.teardown(() => s.cleanup());
  const logs = new MemoryBlobStore();
  const a = importer(s, {}, { logDir: join(s.dir, 'jobs'), loggingContainer: { store: logs, folder: 'c' } });
  t.teardown(() => a.close());
  await enabled(a, { maximumErrors: 1 });
  t.equal(a.metrics().maximumErrors, 1);

  // A symlink whose target cannot be read: the importer counts one error and goes on.
  s.store.putDirect('link', 'a.txt', { ftype: 'LNK' });
  s.store.failNext('read', 'Transient');
  await a.runOnce();
  t.equal(a.metrics().blobSync.totalErrors, 1);
  t.equal(a.metrics().state, 'BlobSync', 'one error is within the limit');
  t.equal(a.metrics().enabled, true);

  // A pass whose listing fails is the second error: more than 1, auto-import stops.
  s.store.failNext('list', 'Transient');
  await a.runOnce();
  const m = a.metrics();
  t.equal(m.blobSync.totalErrors, 2);
  t.equal(m.state, 'Failed');
  t.equal(m.enabled, false);
  t.match(m.lastError, /2 errors, more than the 1 allowed \(maximum errors\)/);
  t.ok(s.logs.some((l) => /auto-import stopped \(Failed\): .*2 errors, more than the 1 allowed/.test(l)), 'the daemon log says so');

  const logFile = m.logFile!;
  await a.close();
  const lines = readFileSync(logFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { event: string; reason: string });
  t.equal(lines.filter((l) => l.event === 'error').length, 2, 'one error line per counted error');
  t.match(lines.at(-1), { event: 'failed', reason: /2 errors, more than the 1 allowed/ });
  const parts: Buffer[] = [];
  for await (const p of await logs.readRange(m.logBlob!, 0, undefined)) parts.push(p as Buffer);
  t.equal(Buffer.concat(parts).toString(), readFileSync(logFile, 'utf8'), 'the logging container has the same lines');

  // Enabling again starts over with Full Sync and a fresh count.
  await a.configure({ enabled: true });
  await a.runOnce();
  t.equal(a.metrics().state, 'BlobSync');
  t.equal(a.metrics().fullSync.totalErrors, 0);
});

t.test('maximum errors 0: the importer stops the Full Sync at its first error; -1 (default) never stops', async (t) => {
  const s = await makeStack({ blobs: { 'a.txt': 'a' } });
  t.teardown(() => s.cleanup());
  s.store.putDirect('link', 'a.txt', { ftype: 'LNK' });
  s.store.putDirect('z.txt', 'z');
  const a = importer(s, {});
  t.teardown(() => a.close());
  s.store.failNext('read', 'Transient');
  await enabled(a, { maximumErrors: 0 });
  t.equal(a.metrics().state, 'Failed');
  t.equal(a.metrics().fullSync.totalErrors, 1);
  t.match(a.metrics().lastError, /1 errors, more than the 0 allowed/);

  const b = importer(s, {});
  t.teardown(() => b.close());
  s.store.failNext('list', 'Transient', 3);
  await enabled(b, {});
  await b.runOnce();
  await b.runOnce();
  t.equal(b.metrics().fullSync.totalErrors, 3, 'three failed attempts at Full Sync');
  t.equal(b.metrics().enabled, true, 'still enabled');
  await b.runOnce();
  t.equal(b.metrics().state, 'BlobSync', 'the fourth attempt completed');
});

t.test('change-feed mode: an event whose etag the local entry records (our own export) costs no HEAD', async (t) => {
  const azurite = await startAzurite();
  t.teardown(() => azurite.stop());
  const feed = new ChangeFeedWriter(azurite.connectionString);
  await feed.init();
  const chunk = await feed.openCurrentHour();
  const s = await makeStack({ blobs: { 'a.txt': 'a' } });
  t.teardown(() => s.cleanup());
  const a = importer(s, {}, { changeFeed: createAzureStore({ container: '$blobchangefeed', connectionString: azurite.connectionString, env: {} }) });
  t.teardown(() => a.close());
  await enabled(a, { source: 'change-feed' });
  t.equal(a.metrics().source, 'change-feed');

  // The mount writes mine.txt and exports it: the entry records the etag of the blob it committed.
  await s.createFile('/mine.txt', 'written here');
  await s.coordinator.request('ARCHIVE', s.inode('/mine.txt').ino).done;
  const mine = s.inode('/mine.txt');
  t.ok(mine.etag, 'exported');
  const theirs = s.store.putDirect('theirs.txt', 'written elsewhere').etag;
  // The feed reports both (Azure's etags are unquoted), and a.txt again with the etag it was imported with.
  const unquoted = (e: string) => e.replace(/"/g, '');
  await feed.append(chunk, [
    { eventType: 'BlobCreated', container: 'c', blob: 'mine.txt', etag: unquoted(mine.etag!), contentLength: 12, sequencer: 1n },
    { eventType: 'BlobCreated', container: 'c', blob: 'theirs.txt', etag: unquoted(theirs), contentLength: 17, sequencer: 2n },
    { eventType: 'BlobPropertiesUpdated', container: 'c', blob: 'a.txt', etag: unquoted(s.inode('/a.txt').etag!), sequencer: 3n },
  ]);
  const heads = s.store.requestCounts().head ?? 0;
  await a.runOnce();
  t.equal((s.store.requestCounts().head ?? 0) - heads, 1, 'one HEAD: theirs.txt only');
  t.equal(a.metrics().blobSync.totalBlobsWalked, 1);
  t.equal(a.metrics().blobSync.importedFiles, 1);
  t.equal((await s.readFile('/theirs.txt')).toString(), 'written elsewhere', 'the foreign blob is imported');
  t.equal(s.inode('/mine.txt').ino, mine.ino, 'our own export is left as it is');
  t.equal(s.inode('/mine.txt').hsmFlags, EXISTS | ARCHIVED, 'not released or re-imported');
  t.ok(a.metrics().lastChangeFeedEventConsumedTime, 'the events were consumed');
});
