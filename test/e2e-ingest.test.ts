// End to end: `blobhsm ingest` of a generated tree into a real Azurite container (through a loopback counting
// proxy), killed with SIGKILL after a known number of committed blobs and rerun; then a real kernel FUSE mount of
// the container with an empty cache shows every entry with the source's type, mode (sticky included), owner,
// mtime, size, symlink target and md5. Also: --dry-run writes nothing, a non-empty destination is refused, and
// with --allow-existing a foreign blob is reported as a conflict by name and left untouched.
import t from 'tap';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, chownSync, linkSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, readdirSync, rmSync, symlinkSync, utimesSync, writeFileSync, lutimesSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import type { Stats } from 'node:fs';
import { ContainerClient } from '@azure/storage-blob';
import { startAzurite, withContainer } from './helpers/azurite.js';
import { BIN, mountContainer } from './helpers/mount.js';
import { startCountingProxy } from './helpers/counting-proxy.js';
import type { IngestSummary } from '../src/ingest/ingester.js';

const azurite = await startAzurite();
t.teardown(() => azurite.stop());
const proxy = await startCountingProxy(azurite.port, azurite.connectionString);
t.teardown(() => proxy.close());

const base = mkdtempSync(join(tmpdir(), 'blobhsm-ingest-'));
t.teardown(() => rmSync(base, { recursive: true, force: true }));
const src = join(base, 'src');
const { NODE_OPTIONS: _tapLoader, ...inherited } = process.env;
const env: NodeJS.ProcessEnv = { ...inherited, BLOBHSM_STATE_DIR: join(base, 'state'), AZURE_STORAGE_CONNECTION_STRING: proxy.connectionString };

// ---- the source tree ----
const BLOCK = 64 * 1024;
function makeTree(): void {
  const p = (rel: string) => join(src, rel);
  mkdirSync(p('top/nested/deeper'), { recursive: true });
  mkdirSync(p('top/empty'), { recursive: true });
  mkdirSync(p('sticky'));
  mkdirSync(p('private'));
  mkdirSync(p('many'));
  writeFileSync(p('top/hello.txt'), 'hello world\n');
  writeFileSync(p('top/nested/deeper/deep.txt'), 'deep\n');
  writeFileSync(p('zero'), '');
  // 5 blocks and a bit at --block-size 64K: staged blocks and one commit.
  writeFileSync(p('top/multi.bin'), Buffer.from(Array.from({ length: 5 * BLOCK + 1234 }, (_, i) => (i * 7 + (i >> 9)) & 0xff)));
  writeFileSync(p('private/secret'), 'owned by someone else\n');
  writeFileSync(p('sticky/tmpfile'), 'in a sticky dir\n');
  for (let i = 0; i < 120; i++) writeFileSync(p(`many/f${String(i).padStart(3, '0')}.txt`), `small file ${i}\n`.repeat(1 + (i % 5)));
  symlinkSync('hello.txt', p('top/link-to-hello'));
  symlinkSync('../nowhere/at-all', p('top/dangling'));
  linkSync(p('top/hello.txt'), p('top/nested/hardlink'));
  execFileSync('mkfifo', [p('top/fifo')]);
  chmodSync(p('sticky'), 0o1777);
  chmodSync(p('private'), 0o700);
  chmodSync(p('private/secret'), 0o640);
  chmodSync(p('top/nested/deeper/deep.txt'), 0o755);
  chownSync(p('private'), 1234, 5678);
  chownSync(p('private/secret'), 1234, 5678);
  const when = (s: string) => new Date(s);
  lutimesSync(p('top/link-to-hello'), when('2019-03-04T05:06:07Z'), when('2019-03-04T05:06:07Z'));
  utimesSync(p('top/hello.txt'), when('2020-01-02T03:04:05Z'), when('2020-01-02T03:04:05Z'));
  utimesSync(p('zero'), when('2001-09-09T01:46:40Z'), when('2001-09-09T01:46:40Z'));
  // Directory times last: writing into a directory changes its mtime.
  for (const d of ['top/empty', 'top/nested/deeper', 'top/nested', 'sticky', 'private', 'many', 'top']) {
    utimesSync(p(d), when('2022-06-07T08:09:10Z'), when('2022-06-07T08:09:10Z'));
  }
}
makeTree();

/** Every entry under src (relative path → lstat), FIFOs left out (ingest skips them). */
function sourceEntries(): Map<string, Stats> {
  const out = new Map<string, Stats>();
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      const st = lstatSync(path);
      if (st.isFIFO()) continue;
      out.set(relative(src, path), st);
      if (st.isDirectory()) walk(path);
    }
  };
  walk(src);
  return out;
}
const entries = sourceEntries();
const PREFIX = 'ingested';
const expectedBlobs = [...entries.keys()].map((rel) => `${PREFIX}/${rel}`).sort();

function runIngest(args: string[]): { child: ReturnType<typeof spawn>; done: Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }> } {
  const child = spawn(process.execPath, [BIN, 'ingest', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const done = new Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal, stdout, stderr })),
  );
  return { child, done };
}

const store = await withContainer(t, azurite);
const container = store.container;
const common = [`${src}/`, '--container', container, '--prefix', PREFIX, '--block-size', '64K', '--single-request-max', '64K', '--concurrency', '4', '--json'];
const ingestJson = async (args: string[]) => {
  const r = await runIngest(args).done;
  if (!r.stdout.trim()) throw new Error(`ingest printed nothing (${r.code}): ${r.stderr}`);
  return { ...r, summary: JSON.parse(r.stdout) as IngestSummary };
};
const listNames = async () => {
  const names: string[] = [];
  for await (const page of store.listPages({ prefix: `${PREFIX}/` })) names.push(...page.map((b) => b.name));
  return names.sort();
};

t.test('--dry-run counts what it would write and writes nothing', async (t) => {
  proxy.reset();
  const r = await ingestJson([...common, '--dry-run']);
  t.equal(r.code, 0, r.stderr);
  t.match(r.summary, { state: 'Completed', dryRun: true });
  const kinds = [...entries.values()];
  t.equal(r.summary.stats.files, kinds.filter((s) => s.isFile()).length);
  t.equal(r.summary.stats.directories, kinds.filter((s) => s.isDirectory()).length);
  t.equal(r.summary.stats.symlinks, kinds.filter((s) => s.isSymbolicLink()).length);
  t.equal(r.summary.stats.skipped, 1, 'the FIFO');
  t.same(proxy.requests.filter((q) => q.method !== 'GET' && q.method !== 'HEAD'), [], 'no write request');
  t.same(await listNames(), []);
});

t.test('killed with SIGKILL after 40 commits, a rerun uploads only the rest', async (t) => {
  proxy.reset();
  const reached = proxy.holdAfterCommits(40);
  const first = runIngest(common);
  await Promise.race([reached, first.done.then((r) => Promise.reject(new Error(`ingest ended before the hold (${r.code}): ${r.stderr}`)))]);
  first.child.kill('SIGKILL');
  const killed = await first.done;
  t.equal(killed.signal, 'SIGKILL');
  await proxy.idle(); // commits the service performed for the dead client are answered (to nobody) and counted
  const committedFirst = proxy.committed();
  // Requests already forwarded when the 40th commit answered still complete: at most --concurrency more.
  t.ok(committedFirst.length >= 40 && committedFirst.length <= 44, `${committedFirst.length} blobs committed before the kill`);
  t.same(await listNames(), [...committedFirst].sort(), 'the container holds exactly what the proxy saw committed');

  proxy.reset();
  const second = await ingestJson(common);
  t.equal(second.code, 0, second.stderr);
  t.match(second.summary, { state: 'Completed', stats: { conflicts: 0, errors: 0, skipped: 1 } });
  const committedSecond = proxy.committed();
  t.same(committedSecond.filter((n) => committedFirst.includes(n)), [], 'nothing committed by the first run is written again');
  t.same([...committedFirst, ...committedSecond].sort(), expectedBlobs, 'together: every entry, once');
  // Only blobs whose answer was still in flight when the first run died (at most --concurrency of them) are even
  // tried again; the journal answers for the rest with no request at all.
  const retried = new Set(proxy.requests.filter((q) => committedFirst.includes(q.blob)).map((q) => q.blob));
  t.ok(retried.size <= 4, `at most 4 committed blobs asked about again (${retried.size})`);
  const { alreadyIngested } = second.summary.stats;
  t.ok(alreadyIngested >= committedFirst.length - 4 && alreadyIngested <= committedFirst.length, `${alreadyIngested} entries found done`);
  t.same(await listNames(), expectedBlobs);

  proxy.reset();
  const third = await ingestJson(common);
  t.equal(third.code, 0, third.stderr);
  t.equal(third.summary.stats.alreadyIngested, expectedBlobs.length, 'a third run finds everything done');
  t.same(proxy.requests.filter((q) => q.blob !== ''), [], 'and sends no blob request');
});

t.test('blobs carry Content-MD5 and the export encoding', async (t) => {
  const client = new ContainerClient(azurite.connectionString, container);
  for (const rel of ['top/hello.txt', 'top/multi.bin', 'zero']) {
    const props = await client.getBlobClient(`${PREFIX}/${rel}`).getProperties();
    t.same(Buffer.from(props.contentMD5 ?? []).toString('hex'), createHash('md5').update(readFileSync(join(src, rel))).digest('hex'), `${rel} Content-MD5`);
  }
  const secret = await store.head(`${PREFIX}/private/secret`);
  t.match(secret.metadata, { owner: '1234', group: '5678', permissions: '0640' });
  t.match(secret.metadata.modtime, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+0000$/);
  t.match((await store.head(`${PREFIX}/sticky`)).metadata, { hdi_isfolder: 'true', permissions: '1777' });
  t.match((await store.head(`${PREFIX}/top/link-to-hello`)).metadata, { ftype: 'LNK' });
});

t.test('a mount with an empty cache shows the source tree', async (t) => {
  // mountContainer makes (and cleans up) its own empty container; the later --container names ours instead.
  const m = await mountContainer(t, azurite, [], ['--container', container, '--prefix', PREFIX]);
  const md5 = (path: string) => createHash('md5').update(readFileSync(path)).digest('hex');
  const mounted = new Set<string>();
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      mounted.add(relative(m.mountpoint, path));
      if (lstatSync(path).isDirectory()) walk(path);
    }
  };
  walk(m.mountpoint);
  t.same([...mounted].sort(), [...entries.keys()].sort(), 'the same names (the FIFO skipped)');
  for (const [rel, s] of entries) {
    const path = join(m.mountpoint, rel);
    const got = lstatSync(path);
    const want = {
      type: s.mode & 0o170000,
      perm: s.isSymbolicLink() ? 0o777 : s.mode & 0o7777,
      uid: s.uid,
      gid: s.gid,
      mtime: Math.floor(s.mtimeMs / 1000),
      ...(s.isDirectory() ? {} : { size: s.size }),
    };
    t.same(
      { type: got.mode & 0o170000, perm: got.mode & 0o7777, uid: got.uid, gid: got.gid, mtime: Math.floor(got.mtimeMs / 1000), ...(got.isDirectory() ? {} : { size: got.size }) },
      want,
      rel,
    );
    if (s.isSymbolicLink()) t.equal(readlinkSync(path), readlinkSync(join(src, rel)), `${rel} target`);
    if (s.isFile()) t.equal(md5(path), md5(join(src, rel)), `${rel} md5`);
  }
  t.equal(lstatSync(join(m.mountpoint, 'top/nested/hardlink')).nlink, 1, 'a hard link arrives as a copy');
});

t.test('a non-empty destination is refused; --allow-existing never overwrites a foreign blob', async (t) => {
  const other = await withContainer(t, azurite);
  await other.upload('one/top/hello.txt', { data: Buffer.from('theirs\n') }, { metadata: {} });
  const small = join(base, 'one');
  mkdirSync(join(small, 'top'), { recursive: true });
  writeFileSync(join(small, 'top/hello.txt'), 'mine\n');
  writeFileSync(join(small, 'top/new.txt'), 'new\n');
  const args = [small, '--container', other.container, '--json'];
  const refused = await runIngest(args).done;
  t.equal(refused.code, 4);
  t.match(refused.stderr, /is not empty \(it has 'one\/top\/hello.txt'\): pass --allow-existing/);
  const r = await ingestJson([...args, '--allow-existing']);
  t.equal(r.code, 1, 'conflicts make the exit status 1');
  t.match(r.summary, { state: 'Completed', conflictNames: ['one/top/hello.txt'], stats: { conflicts: 1, files: 1, directories: 2 } });
  const chunks: Buffer[] = [];
  for await (const c of await other.readRange('one/top/hello.txt', 0, undefined)) chunks.push(c as Buffer);
  t.equal(Buffer.concat(chunks).toString(), 'theirs\n', 'left untouched');
  const log = readFileSync((r.summary as IngestSummary & { logFile: string }).logFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { kind: string; blob?: string });
  t.match(log, [{ kind: 'conflict', blob: 'one/top/hello.txt' }]);
});
