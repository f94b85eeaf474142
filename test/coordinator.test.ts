// Coordinator semantics on the real stack: release, archive (conditional uploads, stamps, conflicts, racing
// writes, crash-retry), remove, restore failures, eviction, per-file serialisation and bounded parallelism.
import t from 'tap';
import { randomBytes } from 'node:crypto';
import type { UploadOptions, UploadResult, UploadSource } from '../src/blob/blob-store.js';
import { BlobError, ConflictError, FsError, type FsErrorCode } from '../src/errors.js';
import { VERSION_KEY, type ActionKind } from '../src/hsm/coordinator.js';
import { HsmFlag, checkInvariants } from '../src/hsm/flags.js';
import { formatModtime } from '../src/namespace/blob-encoding.js';
import { md5Of } from '../src/blob/content-md5.js';
import { MemoryBlobStore } from '../src/blob/memory-store.js';
import { makeStack, O_RDONLY, O_WRONLY, type TestStack, type TestStackOptions } from './helpers/stack.js';

const KiB = 1024;
const { EXISTS, DIRTY, RELEASED, ARCHIVED, NORELEASE, NOARCHIVE } = HsmFlag;
const IMPORTED = RELEASED | EXISTS | ARCHIVED; // 0x0d
const RESTORED = EXISTS | ARCHIVED; // 0x09
const MODIFIED = EXISTS | DIRTY | ARCHIVED; // 0x0b

interface Tap {
  teardown(fn: () => void | Promise<void>): void;
  fail(m: string): void;
  pass(m: string): void;
}

async function stack(t: Tap, extra: TestStackOptions = {}): Promise<TestStack> {
  const s = await makeStack({
    blobs: { 'top.txt': 'hello world', dir: { metadata: { hdi_isfolder: 'true' } }, 'dir/a.txt': 'aaaa', 'implicit/x': 'x' },
    ...extra,
  });
  t.teardown(() => s.cleanup());
  return s;
}

async function rejectsCode(t: Tap, p: Promise<unknown> | (() => unknown), code: FsErrorCode, what: string) {
  try {
    await (typeof p === 'function' ? p() : p);
    t.fail(`${what}: expected ${code}, it succeeded`);
  } catch (err) {
    if (err instanceof FsError && err.code === code) t.pass(`${what}: ${code}`);
    else t.fail(`${what}: expected FsError ${code}, got ${err instanceof FsError ? `FsError ${err.code}: ${err.message}` : String(err)}`);
  }
}

const req = (s: TestStack, kind: ActionKind, path: string, archiveId?: number) =>
  s.coordinator.request(kind, s.inode(path).ino, archiveId).done;

/** Records the options of every upload. */
function spyUploads(s: TestStack): Array<{ name: string; options: UploadOptions }> {
  const calls: Array<{ name: string; options: UploadOptions }> = [];
  const orig = s.store.upload.bind(s.store);
  s.store.upload = async (name: string, source: UploadSource, options: UploadOptions): Promise<UploadResult> => {
    calls.push({ name, options });
    return orig(name, source, options);
  };
  return calls;
}

/** A gate: `wait()` blocks until `open()`. */
function gate(): { wait: () => Promise<void>; open: () => void; reached: Promise<void> } {
  let open!: () => void;
  let reach!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  const reached = new Promise<void>((r) => (reach = r));
  return {
    wait: () => {
      reach();
      return opened;
    },
    open,
    reached,
  };
}

function checkAll(t: Tap, s: TestStack): void {
  for (const ino of allInodes(s)) {
    const i = s.meta.get(ino)!;
    const broken = checkInvariants(i.hsmFlags);
    if (broken) t.fail(`inode ${ino} (${s.meta.pathOf(ino)}): flags 0x${i.hsmFlags.toString(16)}: ${broken}`);
  }
}

function allInodes(s: TestStack): number[] {
  const out: number[] = [];
  const walk = (ino: number) => {
    for (const e of s.meta.readdir(ino)) {
      out.push(e.inode.ino);
      if (e.inode.kind === 'dir') walk(e.inode.ino);
    }
  };
  walk(1);
  return out;
}

// ---- release -------------------------------------------------------------------------------------------------

t.test('release: checks, RELEASED recorded, cache dropped, generation bumped', async (t) => {
  const s = await stack(t);
  s.meta.registerChangelogReader();
  await s.readFile('/top.txt');
  await s.settle();
  const before = s.inode('/top.txt');
  t.equal(before.hsmFlags, RESTORED);
  t.ok(await s.cache.exists(before.ino, before.generation));

  await req(s, 'RELEASE', '/top.txt');
  const after = s.inode('/top.txt');
  t.equal(after.hsmFlags, IMPORTED, 'released exists archived');
  t.equal(after.generation, before.generation + 1, 'generation bumped');
  t.notOk(await s.cache.exists(before.ino, before.generation), 'cache file dropped');
  t.same(s.meta.ranges(after.ino, after.generation), [], 'no ranges recorded');
  t.equal((await s.vfs.getattr('/top.txt')).blocks, 1, 'st_blocks = 1');
  t.equal(s.cache.bytesUsed(), 0, 'bytes accounting back to 0');
  const hsm = s.meta.readChangelog(0, 100).filter((r) => r.type === 'HSM').map((r) => r.extra.event);
  t.same(hsm, ['RESTORE', 'RELEASE']);

  await req(s, 'RELEASE', '/top.txt');
  t.equal(s.inode('/top.txt').generation, after.generation, 'release of a released file is a silent no-op');
  s.store.resetCounts();
  t.equal((await s.readFile('/top.txt')).toString(), 'hello world', 'the next read restores again');
  t.ok((s.store.requestCounts().read ?? 0) >= 1);

  // Refusals, validated before anything is queued.
  await s.createFile('/new', 'n');
  await rejectsCode(t, () => req(s, 'RELEASE', '/new'), 'EPERM', 'release of a never archived file');
  await s.writeFile('/top.txt', 'H');
  await rejectsCode(t, () => req(s, 'RELEASE', '/top.txt'), 'EPERM', 'release of a dirty file');
  await s.readFile('/dir/a.txt');
  await s.settle();
  s.coordinator.setFlags(s.inode('/dir/a.txt').ino, NORELEASE, 0, false);
  await rejectsCode(t, () => req(s, 'RELEASE', '/dir/a.txt'), 'EPERM', 'release of a never_release file');
  s.coordinator.setFlags(s.inode('/dir/a.txt').ino, 0, NORELEASE, false);
  const fh = await s.vfs.open('/dir/a.txt', O_WRONLY);
  await rejectsCode(t, () => req(s, 'RELEASE', '/dir/a.txt'), 'EBUSY', 'release with a writer open');
  await s.vfs.release(fh);
  const rfh = await s.vfs.open('/dir/a.txt', O_RDONLY);
  await req(s, 'RELEASE', '/dir/a.txt');
  t.equal(s.inode('/dir/a.txt').hsmFlags, IMPORTED, 'a reader does not block a release');
  const buf = Buffer.alloc(4);
  t.equal(await s.vfs.read(rfh, buf, 4, 0), 4, 'and its next read restores');
  t.equal(buf.toString(), 'aaaa');
  await s.vfs.release(rfh);
  await s.settle();
  await rejectsCode(t, () => req(s, 'RELEASE', '/dir'), 'EINVAL', 'release of a directory');

  // Data-version check: archived, not dirty, but the data changed since the archive.
  await s.writeFile('/dir/a.txt', 'b');
  s.coordinator.setFlags(s.inode('/dir/a.txt').ino, 0, DIRTY, true);
  t.equal(s.inode('/dir/a.txt').hsmFlags, RESTORED);
  await rejectsCode(t, () => req(s, 'RELEASE', '/dir/a.txt'), 'EPERM', 'release with a data version newer than the archive');
  t.equal((await s.readFile('/dir/a.txt')).toString(), 'baaa', 'data kept');
  checkAll(t, s);
});

t.test('a read racing the release of the file it reads restores it again instead of failing', async (t) => {
  const s = await stack(t);
  await s.readFile('/top.txt');
  await s.settle();
  const fh = await s.vfs.open('/top.txt', O_RDONLY);
  s.cache.close(); // the read must open the cache file again: the release drops it meanwhile
  const buf = Buffer.alloc(11);
  const release = req(s, 'RELEASE', '/top.txt');
  const read = s.vfs.read(fh, buf, 11, 0);
  t.equal(await read, 11);
  t.equal(buf.toString(), 'hello world');
  await release;
  await s.vfs.release(fh);
  await s.settle();
});

// ---- archive -------------------------------------------------------------------------------------------------

t.test('archive of a new file: If-None-Match, exact metadata, parent stubs', async (t) => {
  const s = await stack(t);
  const uploads = spyUploads(s);
  await s.vfs.mkdir('/p', 0o750);
  await s.vfs.mkdir('/p/q', 0o700);
  await s.createFile('/p/q/f.txt', 'fresh data', 0o1640);
  await s.vfs.utimens('/p/q/f.txt', Date.UTC(2023, 4, 6, 7, 8, 9), Date.UTC(2023, 4, 6, 7, 8, 9));
  const ino = s.inode('/p/q/f.txt');
  s.meta.registerChangelogReader();
  await req(s, 'ARCHIVE', '/p/q/f.txt');

  const f = s.inode('/p/q/f.txt');
  t.equal(f.hsmFlags, RESTORED, 'exists archived');
  t.equal(f.archiveId, 1);
  t.equal(f.archivedVersion, f.dataVersion);
  t.equal(f.blobName, 'p/q/f.txt');
  const head = await s.store.head('p/q/f.txt');
  t.equal(f.etag, head.etag, 'the etag of our upload is recorded');
  t.equal(s.store.getData('p/q/f.txt')!.toString(), 'fresh data');
  t.same(Object.keys(head.metadata).sort(), ['blobhsm_version', 'group', 'modtime', 'owner', 'permissions']);
  t.same(head.metadata, {
    owner: '1000',
    group: '1000',
    permissions: '1640',
    modtime: formatModtime(Date.UTC(2023, 4, 6, 7, 8, 9)),
    [VERSION_KEY]: `test-ns:${ino.ino}:${f.dataVersion}`,
  });

  const fileUpload = uploads.find((u) => u.name === 'p/q/f.txt')!;
  t.equal(fileUpload.options.ifNoneMatch, '*', 'a blob never seen is created with If-None-Match: *');
  t.equal(fileUpload.options.ifMatch, undefined);

  // Parent stubs: one per directory that has none, before the file.
  t.same(uploads.map((u) => u.name), ['p', 'p/q', 'p/q/f.txt']);
  for (const [name, perm] of [['p', '0750'], ['p/q', '0700']] as const) {
    const stub = await s.store.head(name);
    t.equal(stub.size, 0);
    t.match(stub.metadata, { hdi_isfolder: 'true', permissions: perm, owner: '1000', group: '1000' });
    t.equal(s.inode('/' + name).etag, stub.etag, `the stub etag of /${name} is recorded`);
  }
  t.same(s.meta.readChangelog(0, 10).map((r) => [r.type, r.extra.event, r.extra.error]), [['HSM', 'ARCHIVE', 0]]);

  // A second file in the same directories uploads no stub; an implicit directory gets one; a stub dir none.
  uploads.length = 0;
  await s.createFile('/p/q/g', 'g');
  await s.createFile('/implicit/y', 'y');
  await s.createFile('/dir/z', 'z');
  await req(s, 'ARCHIVE', '/p/q/g');
  await req(s, 'ARCHIVE', '/implicit/y');
  await req(s, 'ARCHIVE', '/dir/z');
  t.same(uploads.map((u) => u.name), ['p/q/g', 'implicit', 'implicit/y', 'dir/z']);

  // Archive of a clean archived file is a silent no-op; NOARCHIVE refuses.
  uploads.length = 0;
  await req(s, 'ARCHIVE', '/p/q/g');
  t.equal(uploads.length, 0, 'no upload for a clean archived file');
  await s.createFile('/na', 'x');
  s.coordinator.setFlags(s.inode('/na').ino, NOARCHIVE, 0, false);
  await rejectsCode(t, () => req(s, 'ARCHIVE', '/na'), 'EPERM', 'archive of a never_archive file');
  await req(s, 'ARCHIVE', '/top.txt');
  t.equal(s.inode('/top.txt').hsmFlags, IMPORTED, 'archive of a released file is a no-op');
  checkAll(t, s);
});

t.test('archive of a modified imported file uses If-Match with the import etag', async (t) => {
  const s = await stack(t);
  const uploads = spyUploads(s);
  const importEtag = s.inode('/top.txt').etag!;
  await s.writeFile('/top.txt', 'J');
  t.equal(s.inode('/top.txt').hsmFlags, MODIFIED);
  await req(s, 'ARCHIVE', '/top.txt');
  t.equal(uploads.length, 1, 'the parent is the root: no stub');
  t.equal(uploads[0]!.options.ifMatch, importEtag);
  t.equal(uploads[0]!.options.ifNoneMatch, undefined);
  t.equal(s.store.getData('top.txt')!.toString(), 'Jello world');
  const f = s.inode('/top.txt');
  t.equal(f.hsmFlags, RESTORED);
  t.not(f.etag, importEtag, 'the new etag is recorded');
  t.equal(f.etag, (await s.store.head('top.txt')).etag);

  // Released after archiving, the file restores the new content.
  await req(s, 'RELEASE', '/top.txt');
  t.equal((await s.readFile('/top.txt')).toString(), 'Jello world');

  // A renamed file is archived to its new name as a new blob; the old blob is left alone.
  await s.vfs.rename('/dir/a.txt', '/dir/b.txt');
  await s.writeFile('/dir/b.txt', 'B');
  await req(s, 'ARCHIVE', '/dir/b.txt');
  t.equal(uploads.at(-1)!.options.ifNoneMatch, '*');
  t.equal(s.store.getData('dir/b.txt')!.toString(), 'Baaa');
  t.equal(s.store.getData('dir/a.txt')!.toString(), 'aaaa');
  checkAll(t, s);
});

t.test('a blob changed behind our back is a conflict: the file stays dirty, nothing is overwritten', async (t) => {
  const s = await stack(t);
  await s.writeFile('/top.txt', 'mine');
  s.store.putDirect('top.txt', 'theirs');
  await rejectsCode(t, req(s, 'ARCHIVE', '/top.txt'), 'EBUSY', 'archive over a changed blob');
  t.equal(s.store.getData('top.txt')!.toString(), 'theirs', 'their blob is intact');
  t.equal(s.inode('/top.txt').hsmFlags, MODIFIED, 'still dirty');
  t.equal((await s.readFile('/top.txt')).toString(), 'mineo world', 'our data is intact');
  t.ok(s.logs.some((l) => /archive conflict.*\btop\.txt\b/.test(l)), 'the conflict is logged');
  await rejectsCode(t, () => req(s, 'RELEASE', '/top.txt'), 'EPERM', 'a conflicted file cannot be released');

  // A blob deleted behind our back: If-Match fails too.
  await s.writeFile('/dir/a.txt', 'A');
  s.store.deleteDirect('dir/a.txt');
  await rejectsCode(t, req(s, 'ARCHIVE', '/dir/a.txt'), 'EBUSY', 'archive over a deleted blob');
  t.equal(s.inode('/dir/a.txt').hsmFlags, MODIFIED);
  t.equal(s.store.getData('dir/a.txt'), undefined);

  // A new file whose name another client took meanwhile.
  await s.createFile('/new', 'local');
  s.store.putDirect('new', 'remote');
  await rejectsCode(t, req(s, 'ARCHIVE', '/new'), 'EBUSY', 'archive of a new file over an existing blob');
  t.equal(s.store.getData('new')!.toString(), 'remote');
  t.equal(s.inode('/new').hsmFlags & ARCHIVED, 0, 'not archived');
  t.equal((await s.readFile('/new')).toString(), 'local');
  checkAll(t, s);
});

/**
 * Issue 10 R2, the torn blob: the file goes AAAABBBBCCCC -> XXXXYYYYZZZZ (or shrinks) while its 4-byte blocks are
 * staged. Whatever the archive does, the blob it leaves holds one of the versions the file really had, and its
 * Content-MD5 is the MD5 of exactly those bytes. (Before the fix: AAAABBBBZZZZ was committed, or a 4-byte blob.)
 */
for (const change of ['rewrite', 'shrink'] as const) {
  t.test(`a ${change} during an archive never commits a torn or short blob; the file stays dirty`, async (t) => {
    const s = await stack(t, { store: new MemoryBlobStore({ blockSize: 4 }) });
    const versions = ['AAAABBBBCCCC', change === 'rewrite' ? 'XXXXYYYYZZZZ' : 'AAAA'];
    await s.createFile('/torn.txt', versions[0]!);
    const held = gate();
    let staged = 0;
    s.store.beforeOp = async (op, target) => {
      if (op === 'stageBlock' && target === 'torn.txt' && ++staged === 2) await held.wait();
    };
    const done = req(s, 'ARCHIVE', '/torn.txt');
    await held.reached;
    t.equal(s.coordinator.action(s.inode('/torn.txt').ino)?.kind, 'ARCHIVE', 'hsm_action shows the archive');
    if (change === 'rewrite') await s.writeFile('/torn.txt', versions[1]!);
    else await s.vfs.truncate('/torn.txt', 4);
    held.open();
    const err = await done.then(() => undefined, (e: unknown) => e);
    t.ok(err instanceof FsError && err.code === 'EBUSY', 'the archive stops with EBUSY');
    t.match(String((err as Error)?.message), /torn\.txt changed while it was archived; it stays dirty/, 'saying why');
    s.store.beforeOp = undefined;
    const committed = s.store.getData('torn.txt');
    if (committed) {
      t.ok(versions.map((v) => md5Of(Buffer.from(v))).includes(md5Of(committed)), `the blob is one real version (${committed})`);
      t.equal((await s.store.head('torn.txt')).contentMd5, md5Of(committed), 'its Content-MD5 is of exactly its bytes');
    } else t.pass('nothing committed');
    const f = s.inode('/torn.txt');
    t.not(f.hsmFlags & (DIRTY | ARCHIVED), ARCHIVED, `not archived clean (flags 0x${f.hsmFlags.toString(16)})`);
    await req(s, 'ARCHIVE', '/torn.txt');
    t.equal(s.inode('/torn.txt').hsmFlags, RESTORED, 'the next archive succeeds');
    t.equal(s.store.getData('torn.txt')!.toString(), versions[1], 'with the new content');
    t.equal(s.inode('/torn.txt').contentMd5, md5Of(Buffer.from(versions[1]!)), 'and records its digest');
    t.equal((await s.store.head('torn.txt')).contentMd5, md5Of(Buffer.from(versions[1]!)));
  });
}

t.test('a write in flight when an archive starts: the archive does not start, the file stays dirty', async (t) => {
  const s = await stack(t);
  await s.writeFile('/top.txt', 'v1');
  await req(s, 'ARCHIVE', '/top.txt');
  const before = await s.store.head('top.txt');
  // The write records its change, then its bytes reach the cache file only after the archive started.
  const held = gate();
  const cacheWrite = s.cache.write.bind(s.cache);
  s.cache.write = async (...args: Parameters<typeof cacheWrite>) => {
    await held.wait();
    return cacheWrite(...args);
  };
  const writing = s.writeFile('/top.txt', 'v2');
  await held.reached;
  s.cache.write = cacheWrite;
  await rejectsCode(t, () => req(s, 'ARCHIVE', '/top.txt'), 'EBUSY', 'the archive refuses to read a file being written');
  held.open();
  await writing;
  t.equal((await s.store.head('top.txt')).etag, before.etag, 'the blob is untouched');
  const f = s.inode('/top.txt');
  t.equal(f.hsmFlags & DIRTY, DIRTY, `dirty after the write landed (flags 0x${f.hsmFlags.toString(16)})`);
  await rejectsCode(t, () => req(s, 'RELEASE', '/top.txt'), 'EPERM', 'so it cannot be released with stale data');
  await req(s, 'ARCHIVE', '/top.txt');
  t.equal(s.store.getData('top.txt')!.toString(), 'v2llo world');
});

t.test('archive crash-retry is recognised by the blobhsm_version stamp', async (t) => {
  const s = await stack(t);
  // 1. The upload committed, the local commit was lost (a crash): the record still has the old etag.
  await s.writeFile('/top.txt', 'crash');
  const before = s.inode('/top.txt');
  await req(s, 'ARCHIVE', '/top.txt');
  const uploaded = (await s.store.head('top.txt')).etag;
  s.meta.update(before.ino, { hsmFlags: before.hsmFlags, etag: before.etag, archivedVersion: before.archivedVersion });
  s.store.resetCounts();
  await req(s, 'ARCHIVE', '/top.txt');
  const f = s.inode('/top.txt');
  t.equal(f.hsmFlags, RESTORED, 'the retry recognises its own upload');
  t.equal(f.etag, uploaded, 'and records the blob etag');
  t.equal(f.archivedVersion, f.dataVersion);
  t.equal(s.store.getData('top.txt')!.toString(), 'crash world');
  t.equal(s.store.requestCounts().head, 1, 'one HEAD to read the stamp');

  // 1b. The same, but the file changed again before the retry: our older upload is overwritten, not a conflict.
  await s.writeFile('/top.txt', 'AGAIN');
  const committed = s.inode('/top.txt');
  await req(s, 'ARCHIVE', '/top.txt');
  s.meta.update(committed.ino, { hsmFlags: MODIFIED, etag: committed.etag, archivedVersion: committed.archivedVersion });
  await s.writeFile('/top.txt', 'third');
  await req(s, 'ARCHIVE', '/top.txt');
  t.equal(s.inode('/top.txt').hsmFlags, RESTORED, 'an older upload of ours is replaced');
  t.equal(s.store.getData('top.txt')!.toString(), 'third world');

  // 2. The commit's response was lost: the upload failed for us but the blob is there.
  await s.createFile('/lost', 'response lost');
  const orig = s.store.upload.bind(s.store);
  let failOnce = true;
  s.store.upload = async (name, source, options) => {
    const r = await orig(name, source, options);
    if (failOnce && name === 'lost') {
      failOnce = false;
      throw new BlobError('Transient', 'connection reset after commit');
    }
    return r;
  };
  await rejectsCode(t, req(s, 'ARCHIVE', '/lost'), 'EIO', 'the first attempt fails');
  t.equal(s.inode('/lost').hsmFlags & ARCHIVED, 0, 'not archived yet');
  await req(s, 'ARCHIVE', '/lost');
  t.equal(s.inode('/lost').hsmFlags, RESTORED, 'the retry recognises the committed upload');
  t.equal(s.inode('/lost').etag, (await s.store.head('lost')).etag);

  // 3. Another namespace's (or another inode's) stamp is a conflict.
  await s.createFile('/other', 'ours');
  s.store.putDirect('other', 'theirs', { [VERSION_KEY]: `other-ns:${s.inode('/other').ino}:${s.inode('/other').dataVersion}` });
  await rejectsCode(t, req(s, 'ARCHIVE', '/other'), 'EBUSY', 'a foreign stamp is a conflict');
  t.equal(s.store.getData('other')!.toString(), 'theirs');
  checkAll(t, s);
});

t.test('archive failure of a clean archived file marks it dirty only when allowed', async (t) => {
  const s = await stack(t);
  await s.writeFile('/top.txt', 'x');
  s.store.failNext('commitBlockList', 'Transient');
  await rejectsCode(t, req(s, 'ARCHIVE', '/top.txt'), 'EIO', 'a transient upload failure');
  t.equal(s.inode('/top.txt').hsmFlags, MODIFIED, 'still dirty');
  await s.createFile('/n', 'n');
  s.store.failNext('stageBlock', 'Unauthorized');
  await rejectsCode(t, req(s, 'ARCHIVE', '/n'), 'EIO', 'an unauthorized upload');
  t.equal(s.inode('/n').hsmFlags, EXISTS, 'dispatched: exists, never dirty without archived');
  await req(s, 'ARCHIVE', '/n');
  t.equal(s.inode('/n').hsmFlags, RESTORED);
  checkAll(t, s);
});

// ---- remove --------------------------------------------------------------------------------------------------

t.test('remove deletes the blob and clears the HSM state, keeping the policy flags', async (t) => {
  const s = await stack(t);
  await rejectsCode(t, () => req(s, 'REMOVE', '/top.txt'), 'EPERM', 'remove of a released file');
  await s.readFile('/top.txt');
  await s.settle();
  s.coordinator.setFlags(s.inode('/top.txt').ino, NORELEASE, 0, false);
  await req(s, 'REMOVE', '/top.txt');
  t.equal(s.store.getData('top.txt'), undefined, 'blob deleted');
  const f = s.inode('/top.txt');
  t.equal(f.hsmFlags, NORELEASE, 'flags 0 but never_release kept');
  t.equal(f.etag, null);
  t.equal(f.blobName, null, 'no blob any more');
  t.equal(f.archivedVersion, 0);
  t.equal((await s.readFile('/top.txt')).toString(), 'hello world', 'local data kept');

  // Remove of a never-archived file is a no-op; archive after remove recreates the blob.
  await s.createFile('/n', 'n');
  s.store.resetCounts();
  await req(s, 'REMOVE', '/n');
  t.equal(s.store.requestCounts().delete ?? 0, 0);
  await req(s, 'ARCHIVE', '/top.txt');
  t.equal(s.inode('/top.txt').hsmFlags, RESTORED | NORELEASE);
  t.equal(s.store.getData('top.txt')!.toString(), 'hello world');

  // A blob already gone is fine.
  await s.readFile('/dir/a.txt');
  await s.settle();
  s.store.deleteDirect('dir/a.txt');
  await req(s, 'REMOVE', '/dir/a.txt');
  t.equal(s.inode('/dir/a.txt').hsmFlags, 0);
  checkAll(t, s);
});

t.test('R1: remove deletes with If-Match: another client\'s newer blob is kept and the conflict reported', async (t) => {
  const s = await stack(t);
  await s.readFile('/top.txt');
  await s.settle();
  const before = s.inode('/top.txt');
  t.equal(before.hsmFlags, RESTORED);
  s.store.putDirect('top.txt', 'the other client wrote this');
  const found = (await s.store.head('top.txt')).etag;
  try {
    await req(s, 'REMOVE', '/top.txt');
    t.fail('the remove succeeded');
  } catch (err) {
    t.ok(err instanceof ConflictError, 'a ConflictError');
    const c = err as ConflictError;
    t.equal(c.code, 'EBUSY', 'errno EBUSY, chosen where the error is built');
    t.match(c, { blob: 'top.txt', expected: before.etag, found });
  }
  t.equal(s.store.getData('top.txt')!.toString(), 'the other client wrote this', 'the newer blob was not deleted');
  const after = s.inode('/top.txt');
  t.match(after, { hsmFlags: RESTORED, blobName: 'top.txt', etag: before.etag }, 'the file keeps its HSM state');
  checkAll(t, s);
});

t.test('a removed file exported again to its old name over another file\'s blob takes the name over', async (t) => {
  const s = await stack(t);
  await s.readFile('/top.txt');
  await s.settle();
  await req(s, 'REMOVE', '/top.txt');
  await s.vfs.rename('/top.txt', '/moved');
  await s.createFile('/top.txt', 'other file');
  await req(s, 'ARCHIVE', '/top.txt');
  await s.vfs.rename('/top.txt', '/other');
  await s.vfs.rename('/moved', '/top.txt');
  await s.writeFile('/top.txt', 'H');
  await req(s, 'ARCHIVE', '/top.txt');
  t.equal(s.store.getData('top.txt')!.toString(), 'Hello world', 'no false conflict: the blob is ours to replace');
  t.equal(s.inode('/top.txt').hsmFlags, RESTORED);
  t.equal(s.inode('/other').hsmFlags, MODIFIED, 'the file that owned the name must be archived again');
  checkAll(t, s);
});

// ---- restore -------------------------------------------------------------------------------------------------

t.test('restore: failures are EIO and leave the file released; the next read retries', async (t) => {
  const s = await stack(t);
  s.store.failNext('read', 'Transient', 1000);
  await rejectsCode(t, req(s, 'RESTORE', '/top.txt'), 'EIO', 'hsm_restore with the service failing');
  t.equal(s.inode('/top.txt').hsmFlags, IMPORTED, 'still released');
  await rejectsCode(t, s.readFile('/top.txt'), 'EIO', 'a read gets EIO');
  t.equal(s.inode('/top.txt').hsmFlags, IMPORTED);
  s.store.clearFaults();
  t.equal((await s.readFile('/top.txt')).toString(), 'hello world', 'the next read retries and succeeds');
  await s.settle();
  t.equal(s.inode('/top.txt').hsmFlags, RESTORED);

  // A blob changed since import fails the restore instead of mixing versions.
  s.store.putDirect('dir/a.txt', 'changed');
  await rejectsCode(t, req(s, 'RESTORE', '/dir/a.txt'), 'EIO', 'restore of a blob changed since import');
  t.equal(s.inode('/dir/a.txt').hsmFlags, IMPORTED);
  s.store.deleteDirect('implicit/x');
  await rejectsCode(t, s.readFile('/implicit/x'), 'EIO', 'read of a blob deleted since import');

  // Requests that are not needed succeed silently; incompatible ones fail with EPERM.
  await req(s, 'RESTORE', '/top.txt');
  await s.writeFile('/top.txt', 'd');
  await rejectsCode(t, () => req(s, 'RESTORE', '/top.txt'), 'EPERM', 'restore of a dirty file');
  await s.createFile('/n', 'n');
  await req(s, 'RESTORE', '/n');
  checkAll(t, s);
});

// ---- eviction -------------------------------------------------------------------------------------------------

t.test('eviction releases least recently used clean files, never an open or dirty one', async (t) => {
  const size = 64 * KiB;
  const blobs: Record<string, Buffer> = {};
  for (const n of ['f1', 'f2', 'f3', 'f4', 'f5']) blobs[n] = randomBytes(size);
  // Access times from a clock the test moves: the LRU order is set by the test, not by how fast it runs.
  let clock = 1_000_000;
  const s = await makeStack({ blobs, cacheSizeLimit: 3 * size + size / 2, now: () => clock });
  t.teardown(() => s.cleanup());
  const resident = () => ['f1', 'f2', 'f3', 'f4', 'f5'].filter((n) => !(s.inode('/' + n).hsmFlags & RELEASED));

  const open = await s.vfs.open('/f1', O_RDONLY);
  await s.vfs.read(open, Buffer.alloc(size), size, 0);
  await s.settle();
  clock += 10;
  await s.readFile('/f2');
  await s.settle();
  clock += 10;
  await s.writeFile('/f3', 'dirty');
  await s.settle();
  clock += 10;
  t.same(resident(), ['f1', 'f2', 'f3']);
  await s.readFile('/f4');
  await s.settle();
  t.same(resident(), ['f1', 'f3', 'f4'], 'the LRU clean closed file (f2) was released, not the open f1');
  t.ok(s.cache.bytesUsed() <= 3 * size + size / 2, `cache under its limit (${s.cache.bytesUsed()})`);
  clock += 10;
  await s.readFile('/f5');
  await s.settle();
  t.same(resident(), ['f1', 'f3', 'f5'], 'then f4; the dirty f3 is never evicted');
  t.equal(s.inode('/f3').hsmFlags, MODIFIED);
  await s.vfs.release(open);
  clock += 10;
  await s.readFile('/f2');
  await s.settle();
  t.same(resident(), ['f2', 'f3', 'f5'], 'closed, f1 is evictable again');
  t.ok((await s.readFile('/f1')).equals(blobs.f1!), 'evicted data restores intact');
  checkAll(t, s);
});

// ---- scheduling ----------------------------------------------------------------------------------------------

t.test('per-file serialisation and bounded parallelism of request()', async (t) => {
  const names = Array.from({ length: 6 }, (_, i) => `r${i}`);
  const s = await makeStack({ blobs: Object.fromEntries(names.map((n) => [n, `data of ${n}`])), concurrency: 2 });
  t.teardown(() => s.cleanup());
  // Each restore's read waits at the store until two are in flight; then the scheduler must show the other
  // requests waiting for a slot, not running (and the reads in flight never exceed two).
  let inFlight = 0;
  let maxInFlight = 0;
  let pair = gate();
  const seen: Array<{ running: number; waiting: number }> = [];
  s.store.beforeOp = async (op) => {
    if (op !== 'read') return;
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    const mine = pair;
    if (inFlight === 2) {
      const { running, waiting } = s.coordinator.stats();
      seen.push({ running, waiting });
      pair = gate();
      mine.open();
    }
    await mine.wait();
    inFlight--;
  };
  await Promise.all(names.map((n) => req(s, 'RESTORE', '/' + n)));
  t.equal(maxInFlight, 2, 'at most `concurrency` actions run at once');
  t.same(seen, [
    { running: 2, waiting: 4 },
    { running: 2, waiting: 2 },
    { running: 2, waiting: 0 },
  ], 'the others wait for a slot while two run');
  for (const n of names) t.equal(s.inode('/' + n).hsmFlags, RESTORED);
  s.store.beforeOp = undefined;

  // Two archives of the same file: the second waits for the first (and then has nothing to do).
  await s.writeFile('/r0', 'X');
  const held = gate();
  const order: string[] = [];
  s.store.beforeOp = async (op, target) => {
    if (op === 'commitBlockList' && target === 'r0') {
      order.push('commit');
      await held.wait();
    }
  };
  const first = req(s, 'ARCHIVE', '/r0').then(() => order.push('first done'));
  const second = req(s, 'ARCHIVE', '/r0').then(() => order.push('second done'));
  const remove = req(s, 'REMOVE', '/r0').then(() => order.push('remove done'));
  await held.reached;
  t.same(order, ['commit'], 'the others wait while the first runs');
  t.same(s.coordinator.stats().running, 1, 'one action runs');
  held.open();
  await Promise.all([first, second, remove]);
  t.same(order, ['commit', 'first done', 'second done', 'remove done'], 'in request order, one at a time');
  t.equal(s.store.getData('r0'), undefined, 'the remove ran last');
  t.equal(s.inode('/r0').hsmFlags, 0);
  s.store.beforeOp = undefined;
  checkAll(t, s);
});

// ---- export bookkeeping of blob names --------------------------------------------------------------------------

t.test('archive: crash, then more writes: our older upload is overwritten, not a conflict', async (t) => {
  const s = await stack(t);
  await s.writeFile('/top.txt', 'v2');
  const before = s.inode('/top.txt');
  await req(s, 'ARCHIVE', '/top.txt');
  // The local commit was lost (a crash), then the file changed again: the stamp names an older data version.
  s.meta.update(before.ino, { hsmFlags: before.hsmFlags, etag: before.etag, archivedVersion: before.archivedVersion });
  await s.writeFile('/top.txt', 'v3');
  await req(s, 'ARCHIVE', '/top.txt');
  t.equal(s.inode('/top.txt').hsmFlags, RESTORED);
  t.equal(s.store.getData('top.txt')!.toString(), 'v3llo world');
  checkAll(t, s);
});

t.test('archive of a file unlinked while it uploads: the blob stays and a new file of that name uses If-Match', async (t) => {
  const s = await stack(t);
  const uploads = spyUploads(s);
  await s.createFile('/gone', 'first');
  const held = gate();
  s.store.beforeOp = async (op, target) => {
    if (op === 'commitBlockList' && target === 'gone') await held.wait();
  };
  const done = req(s, 'ARCHIVE', '/gone');
  await held.reached;
  await s.vfs.unlink('/gone');
  held.open();
  await done;
  s.store.beforeOp = undefined;
  const etag = (await s.store.head('gone')).etag;
  t.equal(s.meta.blobEtag('gone'), etag, 'the uploaded etag is remembered by name');
  await s.createFile('/gone', 'second');
  await req(s, 'ARCHIVE', '/gone');
  t.equal(uploads.at(-1)!.options.ifMatch, etag, 'If-Match, not If-None-Match');
  t.equal(s.store.getData('gone')!.toString(), 'second');
  t.equal(s.meta.blobEtag('gone'), undefined, 'owned by the new file now');
  checkAll(t, s);
});

t.test('a restore that finds its blob deleted marks the file lost_from_hsm and says so', async (t) => {
  const s = await stack(t);
  s.store.deleteDirect('top.txt');
  try {
    await s.readFile('/top.txt');
    t.fail('the read succeeded');
  } catch (err) {
    t.equal((err as FsError).code, 'EIO');
    t.match((err as Error).message, /archived copy of \/top\.txt \(blob top\.txt\) is gone: the file is lost_from_hsm/);
  }
  t.equal(s.inode('/top.txt').hsmFlags, IMPORTED | HsmFlag.LOST, 'released exists archived lost_from_hsm');
  t.ok(s.logs.some((l) => l.includes('lost_from_hsm')), 'logged');
  s.store.resetCounts();
  await rejectsCode(t, () => s.readFile('/top.txt'), 'EIO', 'a later read');
  t.equal(s.store.requestCounts().read ?? 0, 0, 'fails at once, without asking the service again');
  await rejectsCode(t, () => req(s, 'RESTORE', '/top.txt'), 'EPERM', 'hsm_restore of a lost file');
  // A transient failure is not a loss.
  s.store.failNext('read', 'Transient');
  await rejectsCode(t, () => s.readFile('/dir/a.txt'), 'EIO', 'a flaky read');
  t.equal(s.inode('/dir/a.txt').hsmFlags, IMPORTED, 'still just released');
  checkAll(t, s);
});
