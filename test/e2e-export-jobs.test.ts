// End to end: export jobs on a real kernel FUSE mount and a real Azurite (docs/SEMANTICS.md §3, issue 5): --prefix limits the
// scope, overlapping prefixes are refused, `jobs cancel` stops a running export at once leaving every file either
// archived whole or dirty with no blob at all, a retry sends only what is missing, and while it runs a second
// export is refused naming it and `jobs` shows it. The daemon talks to Azurite through the fault proxy, which holds
// the big files' block uploads while a job must still be running (an upload is too fast to race a CLI against).
import t from 'tap';
import { startAzurite } from './helpers/azurite.js';
import { startFaultProxy } from './helpers/fault-proxy.js';
import { mountContainer } from './helpers/mount.js';
import { S, blobNames, exportJson, jobsJson, states, waitJobDone } from './helpers/write-checks.js';

const azurite = await startAzurite();
t.teardown(() => azurite.stop());
const proxy = await startFaultProxy(azurite.port, azurite.connectionString);
t.teardown(() => proxy.close());
const viaProxy = { ...azurite, connectionString: proxy.connectionString };

t.test('export jobs: --prefix scope, overlapping prefixes, one job at a time, jobs and jobs cancel', async (t) => {
  const m = await mountContainer(t, viaProxy, []);
  const mb = 32;
  const bigs = ['b1', 'b2', 'b3', 'b4', 'b5', 'b6'];
  const w = await m.sh(
    `cd "$MNT" && mkdir -p a b ab big && echo x > a/x && echo y > b/y && echo z > ab/z && ` +
      bigs.map((n) => `dd if=/dev/zero of=big/${n} bs=1M count=${mb} status=none`).join(' && '),
  );
  t.equal(w.code, 0, w.stderr);

  const overlap = await m.cli(['export', m.mountpoint, '--prefix', '/a', '--prefix', '/ab']);
  t.not(overlap.code, 0, 'overlapping prefixes are refused');
  t.match(overlap.stderr, /overlapping prefixes '\/a' and '\/ab'/);
  const nested = await m.cli(['export', m.mountpoint, '--prefix', '/a', '--prefix', '/a/x']);
  t.not(nested.code, 0);
  t.match(nested.stderr, /overlapping prefixes/);
  const relative = await m.cli(['export', m.mountpoint, '--prefix', 'a']);
  t.not(relative.code, 0);
  t.match(relative.stderr, /start with '\/'/);

  const scoped = await exportJson(m, ['--prefix', '/a']);
  t.equal(scoped.code, 0);
  t.equal(scoped.job.stats.filesDiscovered, 1, '/a only (not /ab)');
  t.same(await states(m, ['a/x', 'b/y', 'ab/z']), { 'a/x': S.CLEAN, 'b/y': S.NEW, 'ab/z': S.NEW });
  t.same(await blobNames(m.store), ['a', 'a/x']);

  // A long export, cancelled while its block uploads are held: it stops and leaves every file consistent.
  proxy.inject({ op: 'stageBlock', blob: /^big\//, fault: { kind: 'hang' } });
  const started = await exportJson(m, ['--prefix', '/big', '--no-wait']);
  t.equal(started.code, 0);
  t.equal(started.job.state, 'InProgress');
  const cancel = await m.cli(['jobs', 'cancel', m.mountpoint]);
  t.equal(cancel.code, 0, cancel.stderr);
  t.equal(cancel.stdout, `cancelling ${started.job.id}\n`);
  const cancelStart = Date.now();
  const done = await waitJobDone(m);
  t.equal(done.id, started.job.id);
  t.equal(done.state, 'Canceled');
  // Promptness is proven by what it left undone (below), not by the clock; the time is for information.
  t.comment(`the job stopped ${Date.now() - cancelStart} ms after the cancel`);
  t.equal((await m.cli(['jobs', 'cancel', m.mountpoint])).stdout, 'no job is running\n');
  // Each file is either archived with its whole content in blob, or not archived and not in blob at all.
  const st = await states(m, bigs.map((n) => `big/${n}`));
  let pending = 0;
  for (const n of bigs) {
    const blob = await m.store.head(`big/${n}`).catch(() => undefined);
    if (st[`big/${n}`] === S.CLEAN) t.equal(blob?.size, mb * 1048576, `big/${n} archived whole`);
    else {
      pending++;
      t.match(st[`big/${n}`], /^\(0x0000000[01]\)/, `big/${n} not archived`);
      t.equal(blob, undefined, `no partial blob for big/${n}`);
    }
  }
  t.equal(pending, bigs.length, 'the cancel stopped every upload');

  // The retry exports only what is still missing; while it runs, a second export is refused naming it, and
  // `jobs` shows it.
  const retry = await exportJson(m, ['--no-wait']);
  t.equal(retry.code, 0);
  t.equal(retry.job.stats.filesDiscovered, pending + 2, 'only what is still missing');
  const second = await m.cli(['export', m.mountpoint]);
  t.not(second.code, 0, 'a second export is refused');
  t.match(second.stderr, new RegExp(`job ${retry.job.id} is running`), 'naming the running job');
  const listed = await m.cli(['jobs', m.mountpoint]);
  t.match(listed.stdout, new RegExp(`^${retry.job.id} InProgress: discovered ${pending + 2} files`, 'm'));
  proxy.clear(); // the held uploads fail as connection resets; the daemon sends them again
  t.equal((await waitJobDone(m)).state, 'Succeeded');
  t.same(await states(m, [...bigs.map((n) => `big/${n}`), 'b/y', 'ab/z']), Object.fromEntries([...bigs.map((n) => `big/${n}`), 'b/y', 'ab/z'].map((p) => [p, S.CLEAN])));
  const history = await jobsJson(m);
  t.same(history.map((j) => j.state), ['Succeeded', 'Canceled', 'Succeeded'], 'jobs lists the finished jobs');
});
