// End to end: Lustre's sanity-hsm scenarios that apply to blobhsm, replayed through a real kernel mount on a real
// Azurite with the real CLI (docs/SEMANTICS.md §2): the states of new, imported, read, released, archived and removed files,
// the silent no-ops and the EPERM/EINVAL refusals with lfs's exit statuses and lines, user flags, usage errors,
// the `hsm <sub>` and `lfs` spellings, a running restore in hsm_action, hsm_cancel, --json, the AMLFS prefetch
// recipe, and the changelog.
import t, { type Test } from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { appendFile, mkdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../src/cli/main.js';
import { startAzurite } from './helpers/azurite.js';
import { BIN, mountContainer, type CliResult, type MountFixture } from './helpers/mount.js';

const azurite = await startAzurite();
t.teardown(() => azurite.stop());

const BIG = 96 * 1024 * 1024;
const big = randomBytes(BIG);
const md5 = (b: Buffer) => createHash('md5').update(b).digest('hex');

const prefetch = Array.from({ length: 12 }, (_, i) => `prefetch/${i % 3 === 0 ? 'sub dir/' : ''}file ${i}.dat`);

const m = await mountContainer(t, azurite, [
  { name: 'imported.txt', data: 'imported\n' },
  { name: 'read.txt', data: 'read me\n' },
  { name: 'release.txt', data: 'release me\n' },
  { name: 'noop.txt', data: 'no-op\n' },
  { name: 'remove-released.txt', data: 'stays\n' },
  { name: 'flags.txt', data: 'flags\n' },
  { name: 'norelease.txt', data: 'norelease\n' },
  { name: 'dirty.txt', data: 'before\n', metadata: { owner: '1001', group: '1002', permissions: '0640' } },
  { name: 'archived-remove.txt', data: 'to be removed\n' },
  { name: 'json.txt', data: 'json\n' },
  { name: 'spell.txt', data: 'spell\n' },
  { name: 'dir/inside.txt', data: 'inside\n' },
  { name: 'big.bin', data: big },
  ...prefetch.map((name) => ({ name, data: `data of ${name}\n` })),
]);

const p = (name: string) => join(m.mountpoint, name);
const stateLine = (name: string, rest: string) => `${p(name)}: ${rest}\n`;
const IMPORTED = '(0x0000000d) released exists archived, archive_id:1';
const RESIDENT = '(0x00000009) exists archived, archive_id:1';

/**
 * Runs `blobhsm ARGS...` in this process (main() with captured output and the fixture's environment): the same
 * code as the executable without a node start per command, which keeps this file fast on a loaded machine. The
 * executable itself (fx.cli) runs where its argv handling or its process matter.
 */
function inProcess(fx: MountFixture): (args: string[]) => Promise<CliResult> {
  return async (args) => {
    let stdout = '';
    let stderr = '';
    const io = { stdout: { write: (s: string) => (stdout += s) }, stderr: { write: (s: string) => (stderr += s) }, env: fx.env };
    const code = await main(args, io);
    return { code, stdout, stderr };
  };
}
const run = inProcess(m);

/** Blob GETs the daemon has made (`blobhsm status`). */
async function blobReads(fx: MountFixture): Promise<number> {
  const r = await inProcess(fx)(['status', '--json', fx.mountpoint]);
  return (JSON.parse(r.stdout) as { requests: Record<string, number> }).requests.read ?? 0;
}

async function state(fx: MountFixture, path: string): Promise<string> {
  const r = await inProcess(fx)(['hsm_state', path]);
  if (r.code !== 0) throw new Error(`hsm_state ${path}: ${r.code} ${r.stderr}`);
  return r.stdout;
}

/** Expects exit status `code` and exactly these stdout/stderr texts. */
function expectResult(t: Test, r: CliResult, code: number, stdout: string, stderr: string, what: string): void {
  t.same({ code: r.code, stdout: r.stdout, stderr: r.stderr }, { code, stdout, stderr }, what);
}

t.test('a new file is 0x0, an imported one 0x0d, a read restores it to 0x09', async (t) => {
  await writeFile(p('new.txt'), 'new\n');
  expectResult(t, await m.cli(['hsm_state', p('new.txt')]), 0, stateLine('new.txt', '(0x00000000)'), '', 'new file');
  expectResult(t, await m.cli(['hsm_state', p('imported.txt')]), 0, stateLine('imported.txt', IMPORTED), '', 'imported file');
  t.equal((await stat(p('imported.txt'))).blocks, 1, 'a released file shows one block');
  const reads = await blobReads(m);
  t.equal(await readFile(p('read.txt'), 'utf8'), 'read me\n');
  t.equal(await state(m, p('read.txt')), stateLine('read.txt', RESIDENT), 'a read restores');
  t.equal((await blobReads(m)) - reads, 1, 'one GET');
  // lfs prints every file's state and keeps going after an error; the exit status is the first failure's errno.
  expectResult(
    t,
    await m.cli(['hsm_state', p('missing'), p('new.txt')]),
    2,
    stateLine('new.txt', '(0x00000000)'),
    `lfs hsm_state: get HSM state for '${p('missing')}' failed: No such file or directory\n`,
    'a missing file',
  );
  expectResult(t, await run(['hsm_state', p('dir')]), 0, stateLine('dir', '(0x00000000)'), '', 'a directory has a state');
});

t.test('release, re-read, release twice', async (t) => {
  const f = p('release.txt');
  t.equal(await readFile(f, 'utf8'), 'release me\n');
  t.equal(await state(m, f), stateLine('release.txt', RESIDENT));
  expectResult(t, await m.cli(['hsm_release', f]), 0, '', '', 'release');
  t.equal(await state(m, f), stateLine('release.txt', IMPORTED), 'released at once (Lustre releases synchronously)');
  t.equal((await stat(f)).blocks, 1, 'st_blocks is 1 for a released file');
  expectResult(t, await run(['hsm_release', f]), 0, '', '', 'releasing a released file succeeds silently');
  const reads = await blobReads(m);
  t.equal(await readFile(f, 'utf8'), 'release me\n', 'the same content after a re-read');
  t.equal(await state(m, f), stateLine('release.txt', RESIDENT));
  t.equal((await blobReads(m)) - reads, 1, 'the re-read fetched the blob again, once');
  const again = await blobReads(m);
  t.equal(await readFile(f, 'utf8'), 'release me\n');
  t.equal(await blobReads(m), again, 'a resident file is read locally');
});

t.test('restore of a non-released file is a no-op', async (t) => {
  const f = p('noop.txt');
  t.equal(await readFile(f, 'utf8'), 'no-op\n');
  const reads = await blobReads(m);
  expectResult(t, await run(['hsm_restore', f]), 0, '', '', 'restore of a resident file');
  expectResult(t, await run(['hsm_restore', '--wait', f]), 0, '', '', 'with --wait');
  expectResult(t, await run(['hsm_restore', '--wait', p('new.txt')]), 0, '', '', 'restore of a never archived file');
  expectResult(t, await run(['hsm_action', f]), 0, `${f}: NOOP\n`, '', 'no action');
  t.equal(await blobReads(m), reads, 'no request');
  t.equal(await state(m, f), stateLine('noop.txt', RESIDENT));
});

t.test('remove of a released file fails with EPERM', async (t) => {
  const f = p('remove-released.txt');
  expectResult(t, await m.cli(['hsm_remove', f]), 1, '', `Cannot send HSM request (use of ${f}): Operation not permitted\n`, 'EPERM');
  t.equal(await state(m, f), stateLine('remove-released.txt', IMPORTED), 'unchanged');
  t.equal((await m.store.head('remove-released.txt')).size, 6, 'the blob is still there');
  const withWait = await run(['hsm_remove', '--wait', f]);
  t.equal(withWait.code, 1);
  t.match(withWait.stderr, `Cannot send HSM request (use of ${f}): Operation not permitted (`, '--wait adds the reason');
  // Every file is processed; the status is the first failure's errno.
  const both = await m.cli(['hsm_remove', p('missing'), f]);
  expectResult(
    t,
    both,
    2,
    '',
    `Cannot stat ${p('missing')}: No such file or directory\nCannot send HSM request (use of ${f}): Operation not permitted\n`,
    'ENOENT first, then EPERM: exit 2',
  );
});

t.test('hsm_set and hsm_clear of the user flags, and the invariant refusals', async (t) => {
  const f = p('flags.txt');
  t.equal(await readFile(f, 'utf8'), 'flags\n');
  const set = async (args: string[], expected: string) => {
    expectResult(t, await run([...args, f]), 0, '', '', args.join(' '));
    t.equal(await state(m, f), stateLine('flags.txt', expected), `${args.join(' ')} → ${expected}`);
  };
  await set(['hsm_set', '--norelease'], '(0x00000019) exists archived never_release, archive_id:1');
  await set(['hsm_set', '--noarchive'], '(0x00000039) exists archived never_release never_archive, archive_id:1');
  await set(['hsm_clear', '--norelease', '--noarchive'], RESIDENT);
  await set(['hsm_set', '--dirty'], '(0x0000000b) exists dirty archived, archive_id:1');
  await set(['hsm_clear', '--dirty'], RESIDENT);
  await set(['hsm', 'set', '-r', '-a'], '(0x00000039) exists archived never_release never_archive, archive_id:1');
  await set(['hsm', 'clear', '--norel', '--noarch'], RESIDENT);

  const refused = async (args: string[], file: string, what: string) => {
    const cmd = args[0] === 'hsm' ? args[1]! : args[0]!;
    expectResult(t, await run([...args, file]), 22, '', `lfs ${cmd}: change hsm flags for '${file}' failed: Invalid argument\n`, what);
  };
  const n = p('new.txt');
  await refused(['hsm_set', '--dirty'], n, 'dirty without exists');
  await refused(['hsm_set', '--lost'], n, 'lost without archived (as root)');
  await refused(['hsm_set', '--archived', '--lost', '--dirty'], n, 'dirty without exists, with archived and lost');
  await refused(['hsm_set', '--dirty'], p('imported.txt'), 'released and dirty');
  await refused(['hsm_clear', '--archived'], p('imported.txt'), 'released without archived');
  await refused(['hsm', 'set', '--dirty'], n, 'the `hsm set` spelling names `set`');
  t.equal(await state(m, n), stateLine('new.txt', '(0x00000000)'), 'refusals change nothing');
  t.equal(await state(m, p('imported.txt')), stateLine('imported.txt', IMPORTED));

  // Root may set the other flags, within the invariants; --archive-id needs exists.
  const x = p('flags-root.txt');
  await writeFile(x, 'x');
  expectResult(t, await run(['hsm_set', '--exists', '--archive-id', '3', x]), 0, '', '', 'exists with an archive id');
  t.equal(await state(m, x), `${x}: (0x00000001) exists, archive_id:3\n`);
  expectResult(t, await run(['hsm_set', '--dirty', x]), 0, '', '', 'dirty once exists');
  t.equal(await state(m, x), `${x}: (0x00000003) exists dirty, archive_id:3\n`);
  const bad = await run(['hsm_clear', '--exists', x]);
  t.equal(bad.code, 22, 'clearing exists of a dirty file breaks an invariant');
  expectResult(t, await run(['hsm_clear', '--exists', '--dirty', x]), 0, '', '', 'both at once is fine');
  t.equal(await state(m, x), `${x}: (0x00000000), archive_id:3\n`, 'the archive id stays, as in Lustre');

  // No flag: usage on stdout, exit 4.
  const usage = await m.cli(['hsm_set', f]);
  t.equal(usage.code, 4);
  t.equal(usage.stderr, '');
  t.match(usage.stdout, /^Set HSM user flag on specified files\.\nusage: hsm_set \[--norelease\]/);
  t.equal((await run(['hsm_clear', f])).code, 4);
  t.equal((await run(['hsm_state'])).code, 4, 'hsm_state without a file');
  t.equal((await run(['hsm_restore'])).code, 4, 'a request without a file');
  const unknown = await run(['hsm_set', '--bogus', f]);
  t.equal(unknown.code, 4);
  t.equal(unknown.stderr, "lfs: unrecognized option '--bogus'\n");
});

t.test('EPERM refusals: release of never_release, dirty and unarchived files, restore of a dirty one, archive of never_archive', async (t) => {
  const f = p('norelease.txt');
  t.equal(await readFile(f, 'utf8'), 'norelease\n');
  expectResult(t, await run(['hsm_set', '--norelease', f]), 0, '', '', 'set never_release');
  const eperm = (file: string) => `Cannot send HSM request (use of ${file}): Operation not permitted\n`;
  expectResult(t, await run(['hsm_release', f]), 1, '', eperm(f), 'release of a never_release file');
  t.equal(await state(m, f), stateLine('norelease.txt', '(0x00000019) exists archived never_release, archive_id:1'), 'still resident');
  expectResult(t, await run(['hsm_release', p('new.txt')]), 1, '', eperm(p('new.txt')), 'release of an unarchived file');
  expectResult(t, await run(['hsm_set', '--noarchive', '--dirty', f]), 0, '', '', 'dirty and never_archive');
  expectResult(t, await run(['hsm_release', f]), 1, '', eperm(f), 'release of a dirty file');
  expectResult(t, await run(['hsm_restore', f]), 1, '', eperm(f), 'restore of a dirty file');
  expectResult(t, await run(['hsm_archive', f]), 1, '', eperm(f), 'archive of a never_archive file');
  expectResult(t, await run(['hsm_clear', '--noarchive', '--norelease', '--dirty', f]), 0, '', '', 'cleared');
  expectResult(t, await run(['hsm_archive', f]), 0, '', '', 'archive of a clean archived file: a no-op');
  expectResult(t, await run(['hsm_archive', '--archive', '2', f]), 0, '', '', '… whatever archive is asked for');
  const n = p('new-archive2.txt');
  await writeFile(n, 'two');
  expectResult(t, await run(['hsm_set', '--exists', '--archive-id', '2', n]), 0, '', '', 'a copy in archive 2');
  expectResult(t, await run(['hsm_archive', '--archive', '1', n]), 1, '', eperm(n), 'archive to another archive than the copy');
});

t.test('a directory is not a regular file: usage and exit 4', async (t) => {
  const d = p('dir');
  for (const cmd of ['hsm_restore', 'hsm_release', 'hsm_archive', 'hsm_remove', 'hsm_cancel']) {
    const r = await (cmd === 'hsm_restore' ? m.cli : run)([cmd, d]);
    t.equal(r.code, 4, cmd);
    t.equal(r.stderr, `error: "${d}" is not a regular file\n`, cmd);
    t.match(r.stdout, new RegExp(`^[^\\n]+\\nusage: ${cmd} `), `${cmd} prints its usage`);
  }
  const hsm = await run(['hsm', 'restore', d]);
  t.equal(hsm.code, 4);
  t.match(hsm.stdout, /\nusage: hsm restore /);
  const set = await run(['hsm_set', '--norelease', d]);
  t.equal(set.code, 4);
  t.equal(set.stderr, `error: "${d}" is not a regular file\n`);
});

t.test('the `hsm <sub>` and `lfs` spellings', async (t) => {
  const f = p('spell.txt');
  for (const argv of [['hsm_state'], ['hsm', 'state'], ['lfs', 'hsm_state'], ['lfs', 'hsm', 'state']]) {
    expectResult(t, await m.cli([...argv, f]), 0, stateLine('spell.txt', IMPORTED), '', argv.join(' '));
  }
  expectResult(t, await m.cli(['lfs', 'hsm', 'restore', '--wait', f]), 0, '', '', 'lfs hsm restore');
  t.equal(await state(m, f), stateLine('spell.txt', RESIDENT));
  expectResult(t, await run(['hsm', 'release', f]), 0, '', '', 'hsm release');
  t.equal(await state(m, f), stateLine('spell.txt', IMPORTED));
  expectResult(
    t,
    await run(['hsm', 'state', p('missing')]),
    2,
    '',
    `lfs state: get HSM state for '${p('missing')}' failed: No such file or directory\n`,
    'errors name the sub-command as lfs does',
  );
  const unknown = await run(['hsm', 'frobnicate', f]);
  t.equal(unknown.code, 4);
  t.match(unknown.stderr, /'frobnicate' is not a valid command/);
});

t.test('hsm_action shows a running restore of a large file with bytes moved; --wait completes it', async (t) => {
  const f = p('big.bin');
  const seen: number[] = [];
  const lines: string[] = [];
  const midway = () => new Set(seen.filter((n) => n > 0 && n < BIG)).size;
  // Azurite is fast: release and restore again until polls catch the restore half way (a few tries at most).
  for (let attempt = 0; attempt < 4 && midway() === 0; attempt++) {
    if (attempt > 0) expectResult(t, await run(['hsm_release', f]), 0, '', '', 'release for another try');
    expectResult(t, await run(['hsm_restore', f]), 0, '', '', 'the request returns once queued');
    for (let i = 0; i < 400 && midway() < 2; i++) {
      const r = await run(['hsm_action', f]);
      t.equal(r.code, 0);
      if (lines[lines.length - 1] !== r.stdout) lines.push(r.stdout);
      const running = new RegExp(`^${escape(f)}: RESTORE running \\((\\d+) bytes moved\\)\\n$`).exec(r.stdout);
      if (!running) break;
      seen.push(Number(running[1]));
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
  t.comment(`hsm_action polls (changes only): ${lines.map((l) => l.slice(f.length + 2).trim()).join(' | ')}`);
  t.ok(seen.some((n) => n > 0 && n < BIG), `a poll saw RESTORE running with 0 < bytes moved < ${BIG}`);
  for (let i = 1; i < seen.length; i++) t.ok(seen[i]! >= seen[i - 1]!, 'bytes moved never go back');
  t.ok(lines.every((l) => /: (RESTORE running \(\d+ bytes moved\)|NOOP)\n$/.test(l)), 'every poll is a running restore or NOOP');
  expectResult(t, await run(['hsm_restore', '--wait', f]), 0, '', '', '--wait returns when it is done');
  expectResult(t, await run(['hsm_action', f]), 0, `${f}: NOOP\n`, '', 'no action left');
  t.equal(await state(m, f), stateLine('big.bin', RESIDENT));
  const reads = await blobReads(m);
  t.equal(md5(await readFile(f)), md5(big), 'the content');
  t.equal(await blobReads(m), reads, 'read locally');
});

t.test('hsm_cancel stops a running restore: the waiter gets ECANCELED, the file stays released', async (t) => {
  const f = p('big.bin');
  expectResult(t, await run(['hsm_release', f]), 0, '', '', 'release');
  let outcome: CliResult | undefined;
  for (let attempt = 0; attempt < 4; attempt++) {
    if (attempt > 0) await run(['hsm_release', f]);
    const waiting = run(['hsm_restore', '--wait', f]);
    let running = false;
    for (let i = 0; i < 40 && !running; i++) {
      running = (await run(['hsm_action', f])).stdout.includes('RESTORE running');
    }
    const cancel = await run(['hsm_cancel', f]);
    t.equal(cancel.code, 0, 'hsm_cancel exits 0');
    outcome = await waiting;
    if (outcome.code !== 0) break; // else the restore won the race: try again
  }
  expectResult(
    t,
    outcome!,
    125,
    '',
    `lfs hsm_restore: restore of '${f}' failed: Operation canceled (cancelled by hsm_cancel)\n`,
    'the waiting request reports the cancel',
  );
  t.equal(await state(m, f), stateLine('big.bin', IMPORTED), 'still released');
  t.equal((await run(['hsm_action', f])).stdout, `${f}: NOOP\n`);
  t.equal(md5(await readFile(f)), md5(big), 'a read restores it after all');
  t.equal(await state(m, f), stateLine('big.bin', RESIDENT));
  expectResult(t, await run(['hsm_cancel', f]), 0, '', '', 'cancel without an action: nothing to do');
});

t.test('hsm_archive of a dirty file uploads its data and metadata; archive of a new file; archive to the same blob twice', async (t) => {
  const f = p('dirty.txt');
  t.equal(await readFile(f, 'utf8'), 'before\n');
  const etag = (await m.store.head('dirty.txt')).etag;
  await appendFile(f, 'after\n');
  t.equal(await state(m, f), stateLine('dirty.txt', '(0x0000000b) exists dirty archived, archive_id:1'), 'a write dirties it');
  expectResult(t, await run(['hsm_archive', '--wait', f]), 0, '', '', 'archive --wait');
  t.equal(await state(m, f), stateLine('dirty.txt', RESIDENT), 'clean again');
  const head = await m.store.head('dirty.txt');
  t.not(head.etag, etag, 'a new version of the blob');
  t.equal((await readBlob(m, 'dirty.txt')).toString(), 'before\nafter\n', 'the blob holds the new content');
  t.match(head.metadata, { owner: '1001', group: '1002', permissions: '0640' }, 'owner, group and permissions kept');
  t.match(head.metadata.modtime, /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}$/, 'modtime in lemur format');
  t.ok(head.metadata.blobhsm_version, 'our version stamp');
  t.equal((await m.sh(`getfattr -n user.hsm.etag --only-values "${f}"`)).stdout, head.etag, 'the new etag is recorded');
  expectResult(t, await run(['hsm_archive', '--wait', f]), 0, '', '', 'archive of a clean archived file');
  t.equal((await m.store.head('dirty.txt')).etag, head.etag, 'is a no-op: no upload');

  // A file created in the mount, in a new directory: archived with If-None-Match, its directory gets a stub.
  await mkdir(p('made'));
  const n = p('made/new.txt');
  await writeFile(n, 'brand new\n');
  expectResult(t, await run(['hsm_archive', '--wait', n]), 0, '', '', 'archive of a new file');
  t.equal(await state(m, n), `${n}: ${RESIDENT}\n`);
  t.equal((await readBlob(m, 'made/new.txt')).toString(), 'brand new\n');
  t.equal((await m.store.head('made')).metadata.hdi_isfolder, 'true', 'a directory stub for its parent');
  expectResult(t, await run(['hsm_release', n]), 0, '', '', 'now it can be released');
  t.equal(await readFile(n, 'utf8'), 'brand new\n', 'and read back from the blob');

  // Someone else changed the blob: the archive is a conflict, the file stays dirty, nothing is overwritten.
  await appendFile(f, 'mine\n');
  await m.store.upload('dirty.txt', { data: Buffer.from('theirs\n') }, { metadata: {} });
  const conflict = await run(['hsm_archive', '--wait', f]);
  t.not(conflict.code, 0, 'a conflict fails');
  t.match(conflict.stderr, `lfs hsm_archive: archive of '${f}' failed: `);
  t.match(conflict.stderr, /conflict/);
  t.equal(await state(m, f), stateLine('dirty.txt', '(0x0000000b) exists dirty archived, archive_id:1'), 'stays dirty');
  t.equal((await readBlob(m, 'dirty.txt')).toString(), 'theirs\n', 'their blob is not overwritten');
});

t.test('hsm_remove of an archived resident file deletes the blob and clears the state', async (t) => {
  const f = p('archived-remove.txt');
  t.equal(await readFile(f, 'utf8'), 'to be removed\n');
  expectResult(t, await run(['hsm_set', '--norelease', f]), 0, '', '', 'never_release first');
  expectResult(t, await run(['hsm_remove', '--wait', f]), 0, '', '', 'remove --wait');
  t.equal(await m.store.head('archived-remove.txt').then(() => 'found', (err: { kind?: string }) => err.kind), 'NotFound', 'the blob is gone');
  // 0x0 except the policy flag, which a remove keeps (as Lustre does, with the archive id).
  t.equal(await state(m, f), stateLine('archived-remove.txt', '(0x00000010) never_release, archive_id:1'));
  expectResult(t, await run(['hsm_clear', '--norelease', f]), 0, '', '', 'clear it');
  t.equal(await state(m, f), stateLine('archived-remove.txt', '(0x00000000), archive_id:1'));
  t.equal(await readFile(f, 'utf8'), 'to be removed\n', 'the local data is still there');
  expectResult(t, await run(['hsm_remove', '--wait', f]), 0, '', '', 'a second remove is a no-op');
  expectResult(t, await run(['hsm_remove', '--wait', p('new.txt')]), 0, '', '', 'remove of a never archived file is a no-op');
  const rel = await run(['hsm_release', f]);
  t.equal(rel.code, 1, 'no copy, no release');
});

t.test('--json output', async (t) => {
  const f = p('json.txt');
  const one = async (args: string[], how = run) => {
    const r = await how(args);
    return { code: r.code, json: r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as unknown), stderr: r.stderr };
  };
  t.same(await one(['hsm_state', '--json', f]), {
    code: 0,
    json: [{ path: f, flags: 13, flagsHex: '0x0000000d', states: ['released', 'exists', 'archived'], archiveId: 1 }],
    stderr: '',
  });
  t.same(await one(['--json', 'hsm_state', f, p('missing')], m.cli), {
    code: 2,
    json: [
      { path: f, flags: 13, flagsHex: '0x0000000d', states: ['released', 'exists', 'archived'], archiveId: 1 },
      { path: p('missing'), error: 'ENOENT', message: 'No such file or directory' },
    ],
    stderr: '',
  }, 'a leading --json, and an error as a JSON line');
  t.same(await one(['hsm_action', '--json', f]), { code: 0, json: [{ path: f, action: 'NOOP', status: null, bytesMoved: null, extent: null }], stderr: '' });
  t.same(await one(['hsm_restore', '--wait', '--json', f]), {
    code: 0,
    json: [{ ok: true, path: f, flags: 9, flagsHex: '0x00000009', states: ['exists', 'archived'], archiveId: 1 }],
    stderr: '',
  });
  t.same(await one(['hsm_set', '--json', '--norelease', f]), {
    code: 0,
    json: [{ path: f, flags: 25, flagsHex: '0x00000019', states: ['exists', 'archived', 'never_release'], archiveId: 1 }],
    stderr: '',
  });
  const refused = await one(['hsm_release', '--json', f]);
  t.equal(refused.code, 1);
  t.match(refused.json, [{ path: f, error: 'EPERM', message: 'Operation not permitted', detail: /never_release/ }]);
});

t.test('the AMLFS prefetch recipe runs unchanged with `lfs` as blobhsm lfs', async (t) => {
  const bin = mkdtempSync(join(tmpdir(), 'blobhsm-lfs-'));
  t.teardown(() => rmSync(bin, { recursive: true, force: true }));
  writeFileSync(join(bin, 'lfs'), `#!/bin/sh\nexec "${process.execPath}" "${BIN}" lfs "$@"\n`);
  chmodSync(join(bin, 'lfs'), 0o755);
  const reads = await blobReads(m);
  const r = await m.sh(`PATH="${bin}:$PATH"; find "$MNT/prefetch" -type f -print0 | xargs -0 -n 1 lfs hsm_restore`);
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, '');
  const files = prefetch.map((n) => p(n));
  let states = '';
  for (let i = 0; i < 100; i++) {
    states = (await run(['hsm_state', ...files])).stdout;
    if (states.split('\n').filter((l) => l.endsWith(RESIDENT)).length === files.length) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  t.equal(states, files.map((f) => `${f}: ${RESIDENT}\n`).join(''), 'every file restored');
  t.equal((await blobReads(m)) - reads, files.length, 'one GET each');
  for (const [i, f] of files.entries()) t.equal(await readFile(f, 'utf8'), `data of ${prefetch[i]}\n`);
});

t.test('the changelog: records with increasing indexes, readers, clear, --json, persisted across a remount', async (t) => {
  const c = await mountContainer(t, azurite, [{ name: 'old.txt', data: 'old\n' }]);
  const mnt = c.mountpoint;
  const runC = inProcess(c);
  expectResult(t, await runC(['changelog', mnt]), 0, '', '', 'nothing is recorded without a reader (as in Lustre)');
  expectResult(t, await c.cli(['changelog_register', mnt]), 0, `${mnt}: Registered changelog userid 'cl1'\n`, '', 'register');
  expectResult(t, await runC(['changelog_register', mnt]), 0, `${mnt}: Registered changelog userid 'cl2'\n`, '', 'a second reader');

  const a = join(mnt, 'a.txt');
  await writeFile(a, 'a\n'); // CREAT, CLOSE
  await rename(a, join(mnt, 'b.txt')); // RENME
  const b = join(mnt, 'b.txt');
  t.equal((await runC(['hsm_archive', '--wait', b])).code, 0); // HSM ARCHIVE
  t.equal((await runC(['hsm_release', b])).code, 0); // HSM RELEASE
  t.equal(await readFile(b, 'utf8'), 'a\n'); // HSM RESTORE
  t.equal((await runC(['hsm_set', '--dirty', b])).code, 0); // HSM STATE (dirty)
  await unlink(b); // UNLNK: last link, had an archive
  await writeFile(join(mnt, 'c.txt'), 'c'); // CREAT, CLOSE
  await rename(join(mnt, 'c.txt'), join(mnt, 'old.txt')); // RENME over an existing file

  const log = await c.cli(['changelog', mnt]);
  t.equal(log.code, 0, log.stderr);
  const lines = log.stdout.split('\n').filter(Boolean);
  const re = /^(\d+) (\d\d)(\S+)\s* \d\d:\d\d:\d\d\.\d{9} \d{4}\.\d\d\.\d\d (0x[0-9a-f]+) t=\[([^\]]+)\](.*)$/;
  const recs = lines.map((l) => {
    const x = re.exec(l);
    if (!x) throw new Error(`not a changelog line: ${l}`);
    return { index: Number(x[1]), num: x[2], type: x[3], flags: x[4], target: x[5], rest: x[6]!, line: l };
  });
  t.same(
    recs.map((r) => (r.type === 'HSM' ? `HSM ${r.flags}${r.rest}` : `${r.num}${r.type} ${r.flags}`)),
    [
      '01CREAT 0x0',
      '11CLOSE 0x0',
      '08RENME 0x0',
      'HSM 0x0 ARCHIVE',
      'HSM 0x180 RELEASE',
      'HSM 0x80 RESTORE',
      'HSM 0x680 STATE',
      '06UNLNK 0x3',
      '01CREAT 0x0',
      '11CLOSE 0x0',
      '08RENME 0x0',
    ],
    'the records, with Lustre type numbers and HSM event bits',
  );
  for (let i = 1; i < recs.length; i++) t.ok(recs[i]!.index > recs[i - 1]!.index, 'indexes increase');
  t.equal(recs[0]!.index, 1);
  const fileFid = recs[0]!.target;
  t.match(recs[0]!.rest, / p=\[0x200000400:0x1:0x0\] a\.txt$/, 'CREAT names the parent and the name');
  t.match(recs[2]!.line, ` t=[0:0x0:0x0] p=[0x200000400:0x1:0x0] b.txt s=[${fileFid}] sp=[0x200000400:0x1:0x0] a.txt`, 'RENME as lfs prints it');
  t.match(recs[10]!.line, / t=\[0x200000400:0x[0-9a-f]+:0x0\] p=\[0x200000400:0x1:0x0\] old\.txt s=\[/, 'a rename over a file names it as the target');
  t.not(recs[10]!.target, '0:0x0:0x0');
  t.equal(recs[7]!.target, fileFid, 'UNLNK of the same file');

  const json = await runC(['changelog', '--json', mnt]);
  const objs = json.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
  t.same(objs.map((o) => o.index), recs.map((r) => r.index), '--json: the same records');
  t.match(objs[4], { type: 'HSM', event: 'RELEASE', error: 0, dirty: 0, flags: 0x180 });
  t.match(objs[7], { type: 'UNLNK', name: 'b.txt', flags: 3 });
  const from = await runC(['changelog', mnt, String(recs[8]!.index)]);
  t.equal(from.stdout.split('\n').filter(Boolean).length, 3, 'from a start index');

  // Records are purged once every reader has cleared them.
  const mid = recs[5]!.index;
  expectResult(t, await runC(['changelog_clear', mnt, 'cl1', String(mid)]), 0, '', '', 'cl1 clears up to a record');
  t.equal((await runC(['changelog', mnt])).stdout.split('\n').filter(Boolean).length, recs.length, 'cl2 still needs them all');
  expectResult(t, await runC(['changelog_clear', mnt, 'cl2', String(mid)]), 0, '', '', 'cl2 too');
  const left = (await runC(['changelog', mnt])).stdout.split('\n').filter(Boolean);
  t.same(left.map((l) => Number(l.split(' ')[0])), recs.slice(6).map((r) => r.index), 'purged up to the index both cleared');
  const unknownReader = await runC(['changelog_clear', mnt, 'cl9', '0']);
  t.not(unknownReader.code, 0, 'an unknown reader fails');
  t.match(unknownReader.stderr, /cl9/);
  t.equal((await runC(['changelog_clear', mnt, 'cl1', 'x'])).code, 4, 'a bad index is a usage error');

  // Persisted: the records, the readers and the index survive a remount.
  t.equal((await c.unmount()).code, 0);
  t.equal((await c.remount()).code, 0);
  const after = (await runC(['changelog', mnt])).stdout.split('\n').filter(Boolean);
  t.same(after, left, 'the same records after a remount');
  await writeFile(join(mnt, 'd.txt'), 'd');
  const more = (await runC(['changelog', mnt])).stdout.split('\n').filter(Boolean);
  t.ok(Number(more[more.length - 1]!.split(' ')[0]) > recs[recs.length - 1]!.index, 'new records continue the indexes');
  expectResult(t, await runC(['changelog_clear', mnt, 'cl1', '0']), 0, '', '', 'cl1 clears everything');
  expectResult(t, await runC(['changelog_clear', mnt, 'cl2', '0']), 0, '', '', 'cl2 clears everything');
  expectResult(t, await runC(['changelog', mnt]), 0, '', '', 'all purged');
  // A reader that goes away (`| head`): the command ends quietly. `true` exits long before node has started.
  await writeFile(join(mnt, 'e.txt'), 'e');
  const closed = await c.sh('$BLOBHSM changelog "$MNT" | true; echo "status ${PIPESTATUS:-0}"');
  t.equal(closed.stderr, '', 'a closed pipe ends the command quietly');
});

async function readBlob(fx: MountFixture, name: string): Promise<Buffer> {
  const stream = await fx.store.readRange(name, 0, undefined);
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Uint8Array));
  return Buffer.concat(chunks);
}

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
