// End to end (issue 10 "Faults"): hydration and export on a real kernel FUSE mount whose daemon talks to Azurite
// through the fault proxy (test/helpers/fault-proxy.ts): 503s, connection resets, hangs, bodies cut off mid-
// transfer, slow bodies, a byte flipped in an uploaded block. Whatever the fault: never a wrong byte read, never a partial blob, never a file marked
// archived with stale data; a fault that persists gives a clear error naming its cause and leaves the file as it
// was (released, or dirty with no blob); once the fault ends the same request succeeds.
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createAzureStore } from '../src/blob/azure-store.js';
import { startAzurite } from './helpers/azurite.js';
import { startFaultProxy, type FaultRule } from './helpers/fault-proxy.js';
import { mountContainer } from './helpers/mount.js';
import { S, exportJson, readBlob, states } from './helpers/write-checks.js';

const azurite = await startAzurite();
t.teardown(() => azurite.stop());
const proxy = await startFaultProxy(azurite.port, azurite.connectionString);
t.teardown(() => proxy.close());
const viaProxy = { ...azurite, connectionString: proxy.connectionString };

const KiB = 1024;
const MiB = 1024 * KiB;
const md5 = (b: Buffer) => createHash('md5').update(b).digest('base64');
/** A short client timeout so a hang costs seconds, not the default 30. */
const MOUNT_ARGS = ['--timeout', '2'];

t.test('hydration through 503s, resets, hangs, cut-off and slow bodies: every byte right', async (t) => {
  const faults: Record<string, Omit<FaultRule, 'blob' | 'op'>> = {
    'busy.bin': { fault: { kind: 'status', status: 503 }, times: 2 },
    'reset.bin': { fault: { kind: 'reset' }, times: 2 },
    'hang.bin': { fault: { kind: 'hang' }, times: 1 },
    'cut.bin': { fault: { kind: 'truncate', after: 200 * KiB }, every: 2 },
    'slow.bin': { fault: { kind: 'slow', bytesPerSecond: 8 * MiB } },
  };
  const data = Object.fromEntries(Object.keys(faults).map((n) => [n, randomBytes(3 * MiB + 1234)]));
  // 20 % of all bodies cut off, over 10 more files.
  for (let i = 0; i < 10; i++) data[`many/${i}.bin`] = randomBytes(MiB + i);
  const m = await mountContainer(t, viaProxy, Object.entries(data).map(([name, d]) => ({ name, data: d })), MOUNT_ARGS);
  const applied = Object.entries(faults).map(([blob, rule]) => [blob, proxy.inject({ op: 'read', blob, ...rule })] as const);
  const many = proxy.inject({ op: 'read', blob: /^many\//, fault: { kind: 'truncate', after: 64 * KiB }, every: 5 });
  t.teardown(() => proxy.clear());

  const names = Object.keys(data);
  const got = await Promise.all(names.map((n) => readFile(join(m.mountpoint, n))));
  names.forEach((n, i) => t.equal(md5(got[i]!), md5(data[n]!), `${n}: every byte right`));
  for (const [blob, stats] of applied) t.ok(stats.applied >= 1, `${blob}: the fault happened (${stats.applied})`);
  t.ok(many.applied >= 1, `many/: ${many.applied} bodies cut off`);
  await m.cli(['hsm_restore', '--wait', ...names.map((n) => join(m.mountpoint, n))]);
  t.same(await states(m, names), Object.fromEntries(names.map((n) => [n, S.CLEAN])), 'every file restored');
  const log = (await m.sh('cat "$BLOBHSM_STATE_DIR"/logs/*.log')).stdout;
  t.match(log, /resuming from there/, 'a cut-off body was resumed from its last byte');
});

t.test('a fault that persists: a clear error, the file stays released; when it ends the read succeeds', async (t) => {
  const busy = randomBytes(2 * MiB);
  const cut = randomBytes(2 * MiB);
  const m = await mountContainer(t, viaProxy, [
    { name: 'busy.bin', data: busy },
    { name: 'cut.bin', data: cut },
  ], MOUNT_ARGS);
  proxy.inject({ op: 'read', blob: 'busy.bin', fault: { kind: 'status', status: 503 } });
  proxy.inject({ op: 'read', blob: 'cut.bin', fault: { kind: 'truncate', after: 300 * KiB } });
  t.teardown(() => proxy.clear());
  for (const [name, why] of [['busy.bin', /ServerBusy/], ['cut.bin', /socket hang up|aborted|ECONNRESET|stalled|no answer/]] as const) {
    const r = await m.sh(`cat "$MNT/${name}" > /dev/null`);
    t.not(r.code, 0, `${name}: the read fails`);
    // EIO, or ETIMEDOUT when the cut-off connection stalled until the client timeout (SEMANTICS §2, the read errno).
    t.match(r.stderr, /Input\/output error|Connection timed out/, `${name}: EIO (or ETIMEDOUT)`);
    const restore = await m.cli(['hsm_restore', '--wait', join(m.mountpoint, name)]);
    t.not(restore.code, 0);
    t.same(await states(m, [name]), { [name]: S.RELEASED }, `${name}: still released`);
    const log = (await m.sh('cat "$BLOBHSM_STATE_DIR"/logs/*.log')).stdout;
    t.match(log, new RegExp(`restore of ino \\d+ from blob ${name.replace('.', '\\.')} failed: .*`), `${name}: logged`);
    t.match(log, why, `${name}: the error names the cause`);
  }
  proxy.clear();
  t.equal(md5(await readFile(join(m.mountpoint, 'busy.bin'))), md5(busy), 'busy.bin reads right once the fault ends');
  t.equal(md5(await readFile(join(m.mountpoint, 'cut.bin'))), md5(cut), 'cut.bin too');
});

t.test('export through 503s, resets, hangs and a block flipped in flight: whole blobs with their digest, or none and the file stays dirty', async (t) => {
  const m = await mountContainer(t, viaProxy, [], MOUNT_ARGS);
  const files: Record<string, Buffer> = {
    'big.bin': randomBytes(20 * MiB + 5), // three staged blocks
    'a.txt': Buffer.from('a\n'),
    'b.txt': Buffer.from('b\n'),
  };
  for (const [n, d] of Object.entries(files)) await writeFile(join(m.mountpoint, n), d);
  proxy.inject({ op: 'stageBlock', fault: { kind: 'status', status: 503 }, times: 2 });
  proxy.inject({ op: 'stageBlock', fault: { kind: 'reset' }, times: 1 });
  proxy.inject({ op: 'stageBlock', fault: { kind: 'hang' }, times: 1 });
  proxy.inject({ op: 'stageBlock', fault: { kind: 'flipRequest', at: 1000 }, times: 1 }); // refused by its MD5, sent again
  proxy.inject({ op: 'commitBlockList', fault: { kind: 'reset' }, times: 2 });
  proxy.inject({ op: 'commitBlockList', fault: { kind: 'status', status: 500 }, times: 1 });
  t.teardown(() => proxy.clear());
  const job = await exportJson(m);
  t.equal(job.job.state, 'Succeeded', JSON.stringify(job.job.failures));
  const direct = createAzureStore({ container: m.container, connectionString: azurite.connectionString, env: {} });
  for (const [n, d] of Object.entries(files)) {
    t.equal(md5((await readBlob(direct, n))!.data), md5(d), `${n}: the blob is the file`);
    t.equal((await direct.head(n)).contentMd5, md5(d), `${n}: with its Content-MD5`);
  }
  t.same(await states(m, Object.keys(files)), Object.fromEntries(Object.keys(files).map((n) => [n, S.CLEAN])));

  // A commit that keeps failing: nothing partial in blob, the file is not archived, the job says why.
  proxy.clear();
  await writeFile(join(m.mountpoint, 'late.bin'), randomBytes(MiB));
  await writeFile(join(m.mountpoint, 'a.txt'), 'a2\n');
  proxy.inject({ op: 'commitBlockList', fault: { kind: 'status', status: 503 } });
  const failed = await exportJson(m);
  t.equal(failed.job.state, 'Failed');
  t.equal(failed.job.failures.length, 2);
  for (const f of failed.job.failures) t.match(f.error, /ServerBusy/, `${f.path}: the error names the cause`);
  t.equal(await direct.head('late.bin').catch(() => undefined), undefined, 'no blob for the new file (never a partial one)');
  t.equal((await readBlob(direct, 'a.txt'))!.data.toString(), 'a\n', 'the old blob is untouched');
  t.same(await states(m, ['late.bin', 'a.txt']), { 'late.bin': S.EXISTS, 'a.txt': S.DIRTY }, 'neither is archived');
  proxy.clear();
  const again = await exportJson(m);
  t.equal(again.job.state, 'Succeeded', 'the export succeeds once the fault ends');
  t.equal((await readBlob(direct, 'a.txt'))!.data.toString(), 'a2\n');
  t.equal((await direct.head('a.txt')).contentMd5, md5(Buffer.from('a2\n')));
  t.same(await states(m, ['late.bin', 'a.txt']), { 'late.bin': S.CLEAN, 'a.txt': S.CLEAN });
});
