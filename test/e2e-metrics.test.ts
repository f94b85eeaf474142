// End to end (issue 9): `--metrics HOST:PORT` on a real mount of Azurite serves Prometheus text at /metrics with
// the named series, and /healthz, while a restore runs. The restore is held running by stopping this test's own
// Azurite (SIGSTOP) before it is asked for, so the scrape sees it in flight, then Azurite continues.
import t from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EMULATOR_KEY } from './helpers/azurite.js';
import { startAzurite } from './helpers/azurite.js';
import { mountContainer } from './helpers/mount.js';

const azurite = await startAzurite();
t.teardown(() => azurite.stop());

/** One sample's value from Prometheus text, or undefined. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

t.test('/metrics names every series while a restore runs; /healthz answers; --log-file has the events', async (t) => {
  const logDir = mkdtempSync(join(tmpdir(), 'blobhsm-log-'));
  t.teardown(() => rmSync(logDir, { recursive: true, force: true }));
  const logFile = join(logDir, 'daemon.jsonl');
  const big = Buffer.alloc(24 * 1024 * 1024, 5);
  const m = await mountContainer(
    t,
    azurite,
    [
      { name: 'data/big.bin', data: big },
      { name: 'small.txt', data: 'small\n' },
    ],
    ['--metrics', '127.0.0.1:0', '--log-level', 'debug', '--log-file', logFile],
  );
  const status = JSON.parse((await m.cli(['status', '--json', m.mountpoint])).stdout) as { metrics: string };
  t.match(status.metrics, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/, 'status says where metrics are served');
  t.match((await m.cli(['status', m.mountpoint])).stdout, `metrics:       ${status.metrics}\n`);
  const scrape = async (path = '/metrics') => {
    const r = await fetch(new URL(path, status.metrics));
    return { status: r.status, type: r.headers.get('content-type'), text: await r.text() };
  };

  const read = await m.sh('cat "$MNT/small.txt" && ls -l "$MNT" >/dev/null');
  t.equal(read.stdout, 'small\n');
  const w = await m.sh('echo new > "$MNT/new.txt"');
  t.equal(w.code, 0);

  // Hold the restore in flight: Azurite stops answering before the restore is requested.
  process.kill(azurite.pid, 'SIGSTOP');
  let continued = false;
  const resume = () => {
    if (!continued) process.kill(azurite.pid, 'SIGCONT');
    continued = true;
  };
  t.teardown(resume);
  const requested = await m.cli(['hsm_restore', `${m.mountpoint}/data/big.bin`]);
  t.equal(requested.code, 0, requested.stderr);
  let during = await scrape();
  for (let i = 0; i < 100 && sample(during.text, 'blobhsm_hsm_actions{state="running"}') !== 1; i++) during = await scrape();
  t.equal(during.status, 200);
  t.match(during.type, /^text\/plain; version=0\.0\.4/);
  const text = during.text;
  t.equal(sample(text, 'blobhsm_hsm_actions{state="running"}'), 1, 'the restore is running while scraped');
  t.equal(sample(text, 'blobhsm_hsm_action_concurrency') !== undefined, true);
  t.ok(sample(text, 'blobhsm_blob_requests_total{operation="list"}')! >= 1, 'blob requests by operation');
  for (const series of [
    'blobhsm_files{state="released"}',
    'blobhsm_files{state="archived"}',
    'blobhsm_files{state="none"}',
    'blobhsm_cache_bytes',
    'blobhsm_cache_files',
    'blobhsm_inodes',
    'blobhsm_open_files',
    'blobhsm_hsm_actions{state="waiting"}',
    'blobhsm_fuse_op_duration_seconds_count{op="read"}',
    'blobhsm_fuse_op_duration_seconds_count{op="getattr"}',
    'blobhsm_fuse_op_duration_seconds_count{op="create"}',
    'blobhsm_status{field="integrity.mismatches"}',
    'blobhsm_auto_export{stat="enabled"}',
  ]) {
    t.not(sample(text, series), undefined, series);
  }
  t.equal(sample(text, 'blobhsm_files{state="released"}'), 1, 'big.bin is still released');
  t.equal(sample(text, 'blobhsm_files{state="none"}'), 1, 'new.txt has no HSM flags');
  t.ok(sample(text, 'blobhsm_fuse_op_duration_seconds_count{op="read"}')! >= 1);
  t.match(text, /# TYPE blobhsm_fuse_op_duration_seconds histogram/);
  t.match(text, /blobhsm_fuse_op_duration_seconds_bucket\{le="0\.001",op="getattr"\} \d+/);
  t.match(text, /# HELP blobhsm_blob_errors_total /);
  t.match(text, /# HELP blobhsm_fuse_errors_total /);
  t.match(text, /# HELP blobhsm_blob_bytes_total /);

  const health = await scrape('/healthz');
  t.equal(health.status, 200);
  t.match(JSON.parse(health.text), { status: 'ok', mountpoint: m.mountpoint });
  t.equal((await scrape('/nothing')).status, 404);

  resume();
  const done = await m.cli(['hsm_restore', '--wait', `${m.mountpoint}/data/big.bin`]);
  t.equal(done.code, 0, done.stderr);
  const after = (await scrape()).text;
  t.equal(sample(after, 'blobhsm_blob_bytes_total{operation="read"}'), big.length + 'small\n'.length, 'bytes read: the restore and small.txt');
  t.equal(sample(after, 'blobhsm_files{state="released"}'), 0);
  t.equal(sample(after, 'blobhsm_hsm_actions{state="running"}'), 0);
  const e = await m.cli(['export', m.mountpoint]);
  t.equal(e.code, 0, e.stderr);
  const exported = (await scrape()).text;
  t.equal(sample(exported, 'blobhsm_blob_bytes_total{operation="upload"}'), 'new\n'.length);
  t.equal(sample(exported, 'blobhsm_jobs{kind="export",state="Succeeded"}'), 1);
  t.equal(sample(exported, 'blobhsm_job_stat{kind="export",stat="filesExported"}'), 1);

  // The JSON-lines log: every record parses; the restore, the export job and its file are events with their path.
  const logText = readFileSync(logFile, 'utf8');
  t.notMatch(logText, EMULATOR_KEY, 'the account key of the connection string is never written');
  const records = logText.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  t.ok(records.some((r) => /^mounted /.test(String(r.msg))), 'the mount');
  t.match(records.find((r) => r.event === 'hsm_action' && r.action === 'RESTORE'), { path: '/data/big.bin', outcome: 'succeeded', origin: 'request' });
  t.match(records.find((r) => r.event === 'export' && r.outcome === 'exported'), { path: '/new.txt', blob: 'new.txt', level: 20 });
  t.match(records.find((r) => r.event === 'job' && r.state === 'Succeeded'), { kind: 'export', stats: { filesExported: 1 } });
});
