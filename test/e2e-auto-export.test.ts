// End to end: auto-export on a real kernel FUSE mount of a real Azurite container, mounted with
// `--auto-export --auto-export-min-age 1 --auto-export-interval 1`. Files written through the mount become
// `exists archived` with their blob holding the content (the minimum age itself is proven with an injected clock
// in auto-export.test.ts); a file held open for writing is not exported until it is
// closed; the metrics from `blobhsm auto-export MNT --json`; disable and enable at runtime; bad values (exit 4);
// a clean unmount with auto-export running.
import t from 'tap';
import { appendFile, writeFile } from 'node:fs/promises';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isAlive } from '../src/control/registry.js';
import { startAzurite } from './helpers/azurite.js';
import { mountContainer, type MountFixture } from './helpers/mount.js';
import type { AutoExportMetrics } from '../src/jobs/auto-export.js';

const azurite = await startAzurite();
t.teardown(() => azurite.stop());

const m = await mountContainer(t, azurite, [{ name: 'old.txt', data: 'old v1\n' }], [
  '--auto-export',
  '--auto-export-min-age',
  '1',
  '--auto-export-interval',
  '1',
]);
const mnt = (p: string) => join(m.mountpoint, p);
const state = async (p: string) => (await m.cli(['hsm_state', mnt(p)])).stdout.trim();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function readBlob(fx: MountFixture, name: string): Promise<string> {
  const stream = await fx.store.readRange(name, 0, undefined);
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Uint8Array));
  return Buffer.concat(chunks).toString();
}

async function metrics(args: string[] = []): Promise<AutoExportMetrics> {
  const r = await m.cli(['auto-export', m.mountpoint, '--json', ...args]);
  if (r.code !== 0) throw new Error(`blobhsm auto-export failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as AutoExportMetrics;
}

async function untilArchived(path: string, timeoutMs = 20_000): Promise<string> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const s = await state(path);
    if (/\(0x00000009\) exists archived/.test(s)) return s;
    if (Date.now() > end) throw new Error(`${path} not archived in time: ${s}`);
    await sleep(200);
  }
}

t.test('written files become `exists archived` with the right blob; metrics', async (t) => {
  const before = await metrics();
  t.match(before, { enabled: true, minAgeSeconds: 1, intervalSeconds: 1, totalFilesExported: 0 });
  await writeFile(mnt('new.txt'), 'a new file\n');
  await appendFile(mnt('old.txt'), 'old v2\n');
  await untilArchived('new.txt');
  await untilArchived('old.txt');
  t.equal(await readBlob(m, 'new.txt'), 'a new file\n');
  t.equal(await readBlob(m, 'old.txt'), 'old v1\nold v2\n');

  const after = await metrics();
  t.equal(after.totalFilesExported, 2);
  t.equal(after.totalMiBExported, Math.round(((11 + 14) / 1048576) * 1e6) / 1e6);
  t.ok(after.iterationsCompleted >= 1);
  t.ok(after.lastSuccessfulIteration && new Date(after.lastSuccessfulIteration).toISOString() === after.lastSuccessfulIteration, 'ISO time');
  t.match(after, { totalConflicts: 0, totalFailures: 0 });

  const text = await m.cli(['auto-export', m.mountpoint]);
  t.equal(text.code, 0);
  t.match(text.stdout, /auto-export enabled .*files unchanged for 1 s, every 1 s/);
  t.match(text.stdout, /totalFilesExported 2, totalMiBExported [\d.e-]+, iterationsCompleted \d+, lastSuccessfulIteration \d{4}-/);
});

t.test('a file open for writing is exported only after its close', async (t) => {
  // The shell holds the file open for writing until the test writes a line to a fifo: after three iterations that
  // began once its first bytes were in (the third more than the minimum age later), it is still not exported.
  const dir = mkdtempSync(join(tmpdir(), 'blobhsm-ae-fifo-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const fifo = join(dir, 'go');
  const writer = m.sh(`mkfifo "${fifo}" && exec 3>"$MNT/open.txt" && echo first >&3 && read line <"${fifo}" && echo second >&3 && exec 3>&-`);
  for (let i = 0; i < 200 && (await m.sh('cat "$MNT/open.txt" 2>/dev/null')).stdout !== 'first\n'; i++) await sleep(100);
  const n = (await metrics()).iterationsCompleted;
  for (let i = 0; i < 300 && (await metrics()).iterationsCompleted < n + 3; i++) await sleep(100);
  t.ok((await metrics()).iterationsCompleted >= n + 3, 'three iterations ran while it was open');
  t.match(await state('open.txt'), /\(0x00000000\)/, 'not exported while open for writing');
  await m.sh(`echo go >"${fifo}"`);
  t.equal((await writer).code, 0);
  await untilArchived('open.txt');
  t.equal(await readBlob(m, 'open.txt'), 'first\nsecond\n');
});

t.test('disable and enable at runtime; bad values exit 4', async (t) => {
  const off = await metrics(['--disable']);
  t.match(off, { enabled: false, state: 'Disabled' });
  t.equal(off.nextIterationTime, null, 'no iteration is scheduled while disabled');
  await writeFile(mnt('later.txt'), 'written while disabled\n');
  const still = await metrics();
  t.match(still, { state: 'Disabled', nextIterationTime: null, iterationsCompleted: off.iterationsCompleted });
  t.match(await state('later.txt'), /\(0x00000000\)/, 'not exported while disabled');
  const on = await metrics(['--enable', '--min-age', '0', '--interval', '0.5']);
  t.match(on, { enabled: true, minAgeSeconds: 0, intervalSeconds: 0.5 });
  await untilArchived('later.txt');
  t.equal(await readBlob(m, 'later.txt'), 'written while disabled\n');

  for (const args of [['--interval', '0'], ['--min-age', 'abc'], ['--interval', '-1'], ['--enable', '--disable']]) {
    const r = await m.cli(['auto-export', m.mountpoint, ...args]);
    t.equal(r.code, 4, `${args.join(' ')}: exit 4`);
    t.match(r.stderr, /^blobhsm auto-export: (invalid|give --enable)/, args.join(' '));
  }
  t.match(await metrics(), { enabled: true, minAgeSeconds: 0, intervalSeconds: 0.5 }, 'refused values changed nothing');

  const base = mkdtempSync(join(tmpdir(), 'blobhsm-ae-'));
  t.teardown(() => rmSync(base, { recursive: true, force: true }));
  for (const flag of ['--auto-export-min-age', '--auto-export-interval']) {
    const r = await m.cli(['mount', base, '--container', m.container, '--cache-dir', join(base, 'c'), '--auto-export', flag, '10x']);
    t.equal(r.code, 4, `mount ${flag} 10x: exit 4`);
    t.match(r.stderr, new RegExp(`invalid ${flag} '10x'`));
  }
});

t.test('unmount stops auto-export cleanly', async (t) => {
  await writeFile(mnt('last.txt'), 'last\n');
  const pid = m.daemonPid();
  const r = await m.unmount();
  t.equal(r.code, 0, r.stderr);
  t.equal(m.daemonPid(), undefined, 'the daemon released its cache directory');
  // A zombie has exited too (its parent may reap it later): isAlive reads the process state.
  if (pid) t.notOk(isAlive(pid), 'the daemon exited');
});
