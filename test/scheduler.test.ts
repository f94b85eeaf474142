// The action scheduler and the per-file state (src/hsm/scheduler.ts) on the real stack: one archive per file at
// a time whoever asks (hsm_archive, an export job, auto-export), cancellable by hsm_cancel; shutdown cancels and
// drains in order; restores of different files do not wait for one file's random reads; the scheduler's own
// ordering and cancel rules.
import t from 'tap';
import { FsError } from '../src/errors.js';
import { ActionScheduler } from '../src/hsm/scheduler.js';
import { HsmFlag } from '../src/hsm/flags.js';
import { JobRunner } from '../src/jobs/job-runner.js';
import { makeStack, O_RDONLY, type TestStack } from './helpers/stack.js';

const { EXISTS, DIRTY, ARCHIVED } = HsmFlag;

/** A gate on the store: requests of `op` on `target` wait until opened (or their signal aborts). */
function gate(s: TestStack, op: string, target: string) {
  const waiting: Array<() => void> = [];
  let open = false;
  let arrived = 0;
  let notify: (() => void) | undefined;
  s.store.beforeOp = (o, name, signal) => {
    if (o !== op || name !== target || open) return;
    arrived++;
    notify?.();
    return new Promise<void>((resolve, reject) => {
      waiting.push(resolve);
      signal?.addEventListener('abort', () => reject(signal.reason), { once: true });
    });
  };
  return {
    get arrived() {
      return arrived;
    },
    /** Resolves once n requests wait at the gate. */
    async reached(n = 1): Promise<void> {
      while (arrived < n) await new Promise<void>((r) => (notify = r));
    },
    open(): void {
      open = true;
      for (const w of waiting.splice(0)) w();
    },
  };
}

async function rejectsCode(t: { equal(a: unknown, b: unknown, m: string): void; fail(m: string): void }, p: Promise<unknown>, code: string, what: string): Promise<void> {
  try {
    await p;
    t.fail(`${what}: expected ${code}, it succeeded`);
  } catch (err) {
    t.equal(err instanceof FsError ? err.code : String(err), code, what);
  }
}

t.test('R5: an export job and hsm_archive archive a file once at a time, and hsm_cancel stops both', async (t) => {
  const s = await makeStack({ blobs: { 'x.txt': 'old' } });
  t.teardown(() => s.cleanup());
  await s.writeFile('/x.txt', 'new content');
  await s.settle();
  const ino = s.inode('/x.txt').ino;
  const g = gate(s, 'stageBlock', 'x.txt');
  const jobs = new JobRunner({ meta: s.meta, store: s.store, coordinator: s.coordinator, log: () => undefined, prefix: '', mountRoot: '/mnt' });
  const job = jobs.startExport(['/']);
  await g.reached();
  const request = s.coordinator.request('ARCHIVE', ino).done;
  t.equal(s.coordinator.action(ino)?.status, 'running', 'hsm_action shows the running archive');
  t.equal(g.arrived, 1, 'the second archive waits for the first instead of uploading too');
  t.ok(s.coordinator.cancel(ino), 'hsm_cancel finds the actions');
  await rejectsCode(t, request, 'ECANCELED', 'the queued hsm_archive is cancelled');
  await job.done;
  g.open();
  t.equal(g.arrived, 1, 'the cancelled request never uploaded');
  t.equal(s.store.getData('x.txt')!.toString(), 'old', 'nothing was committed');
  t.equal(s.inode('/x.txt').hsmFlags, EXISTS | DIRTY | ARCHIVED, 'the file stays dirty');
  t.equal(s.coordinator.action(ino), undefined, 'no action left');
  // Once nothing runs, an archive works as usual.
  await s.coordinator.request('ARCHIVE', ino).done;
  t.equal(s.store.getData('x.txt')!.toString(), 'new content');
});

t.test('R5: hsm_archive of a file an export job is archiving runs after it, and finds nothing left to do', async (t) => {
  const s = await makeStack({ blobs: { 'x.txt': 'old' } });
  t.teardown(() => s.cleanup());
  await s.writeFile('/x.txt', 'new content');
  await s.settle();
  const ino = s.inode('/x.txt').ino;
  const g = gate(s, 'stageBlock', 'x.txt');
  const jobs = new JobRunner({ meta: s.meta, store: s.store, coordinator: s.coordinator, log: () => undefined, prefix: '', mountRoot: '/mnt' });
  const job = jobs.startExport(['/']);
  await g.reached();
  const request = s.coordinator.request('ARCHIVE', ino).done;
  g.open();
  await job.done;
  await request;
  t.equal(s.store.requestCounts().commitBlockList, 1, 'one commit: the second archive saw a clean file');
  t.match(job.summary(), { state: 'Succeeded', stats: { filesExported: 1 } });
  t.equal(s.inode('/x.txt').hsmFlags, EXISTS | ARCHIVED);
});

t.test('R7: shutdown cancels waiting actions, aborts running ones and restores, and waits for them', async (t) => {
  const s = await makeStack({ blobs: { 'a.txt': 'aaaa', 'b.txt': 'bbbb', 'c.txt': 'cccc' }, concurrency: 1 });
  t.teardown(() => s.cleanup());
  await s.writeFile('/a.txt', 'AAAA');
  await s.readFile('/b.txt');
  await s.settle();
  const g = gate(s, 'stageBlock', 'a.txt');
  const archiving = s.coordinator.request('ARCHIVE', s.inode('/a.txt').ino).done;
  await g.reached();
  // Queued behind the only slot.
  const releasing = s.coordinator.request('RELEASE', s.inode('/b.txt').ino).done;
  // A reader's restore, hanging in the service.
  const fh = await s.vfs.open('/c.txt', O_RDONLY);
  s.store.delay('read', Infinity);
  const reading = s.vfs.read(fh, Buffer.alloc(4), 4, 0);
  while (!s.hydrator.running().includes(s.inode('/c.txt').ino)) await new Promise((res) => setImmediate(res));
  await s.coordinator.shutdown();
  await rejectsCode(t, archiving, 'ECANCELED', 'the running archive was aborted');
  await rejectsCode(t, releasing, 'ECANCELED', 'the waiting release never ran');
  await rejectsCode(t, reading, 'EIO', 'the restore was cancelled (the reader gets EIO)');
  t.equal(s.hydrator.running().length, 0, 'no restore left');
  t.same(s.coordinator.stats(), { concurrency: 1, running: 0, waiting: 0, maxRunning: 1 }, 'nothing runs or waits');
  t.equal(s.inode('/a.txt').hsmFlags, EXISTS | DIRTY | ARCHIVED, 'the aborted archive left the file dirty');
  t.equal(s.inode('/b.txt').hsmFlags, EXISTS | ARCHIVED, 'the cancelled release left the file resident');
  await rejectsCode(t, s.coordinator.request('ARCHIVE', s.inode('/a.txt').ino).done, 'ECANCELED', 'a request after shutdown is refused');
  s.store.clearFaults();
  await s.vfs.release(fh);
});

t.test('R8: a reader waiting for a demanded piece of one file does not hold another file\'s restore', async (t) => {
  // A hold as long as the test: before the hold was per file, the other restore waited for all of it.
  const s = await makeStack({
    blobs: { 'big.bin': Buffer.alloc(256 * 1024, 1), 'other.bin': Buffer.alloc(64 * 1024, 2) },
    hydrator: { chunkSize: 16 * 1024, firstChunkSize: 4 * 1024, backgroundHoldMs: 600_000, syncPieces: false },
  });
  t.teardown(() => s.cleanup());
  const g = gate(s, 'read', 'big.bin');
  const fh = await s.vfs.open('/big.bin', O_RDONLY);
  const reading = s.vfs.read(fh, Buffer.alloc(4096), 4096, 200 * 1024);
  await g.reached();
  // The random read's piece hangs in the service; another file's restore must run meanwhile.
  await s.coordinator.request('RESTORE', s.inode('/other.bin').ino).done;
  t.equal(s.inode('/other.bin').hsmFlags, EXISTS | ARCHIVED, 'the other file was restored while the reader waited');
  g.open();
  t.equal(await reading, 4096, 'and the reader got its bytes once the service answered');
  await s.vfs.release(fh);
});

t.test('the scheduler: one action per file in order, bounded slots, cancel of waiting and running actions', async (t) => {
  const sched = new ActionScheduler(2);
  const order: string[] = [];
  const hold = () => {
    let go!: () => void;
    return { p: new Promise<void>((r) => (go = r)), go: () => go() };
  };
  const h1 = hold();
  const a1 = sched.schedule(1, 'ARCHIVE', 'request', async () => {
    order.push('a1 start');
    await h1.p;
    order.push('a1 end');
  });
  const a2 = sched.schedule(1, 'RELEASE', 'request', async () => void order.push('a2'));
  const b1 = sched.schedule(2, 'ARCHIVE', 'request', async () => void order.push('b1'));
  t.ok(sched.busy(1) && sched.busy(2), 'both files are busy at once (registered synchronously)');
  t.equal(sched.current(1)?.kind, 'ARCHIVE');
  await b1;
  t.same(order, ['a1 start', 'b1'], 'another file does not wait for file 1');
  h1.go();
  await Promise.all([a1, a2]);
  t.same(order, ['a1 start', 'b1', 'a1 end', 'a2'], 'file 1 ran its actions in order, one at a time');
  t.notOk(sched.busy(1), 'idle again');

  const running = sched.schedule(3, 'ARCHIVE', 'request', (a) => new Promise((_, reject) => a.abort.signal.addEventListener('abort', () => reject(a.abort.signal.reason))));
  let ran = false;
  const waiting = sched.schedule(3, 'RESTORE', 'request', async () => void (ran = true));
  await new Promise((r) => setImmediate(r));
  t.ok(sched.cancel(3));
  await rejectsCode(t, running, 'ECANCELED', 'the running action is aborted');
  await rejectsCode(t, waiting, 'ECANCELED', 'the waiting one is cancelled');
  t.notOk(ran, 'and never ran');
  const controller = new AbortController();
  const bySignal = sched.schedule(4, 'ARCHIVE', 'export job', (a) => new Promise((_, reject) => a.abort.signal.addEventListener('abort', () => reject(a.abort.signal.reason))), controller.signal);
  controller.abort();
  await rejectsCode(t, bySignal, 'ECANCELED', "the caller's signal cancels too");
  await sched.close();
  await rejectsCode(t, sched.schedule(5, 'ARCHIVE', 'request', async () => undefined), 'ECANCELED', 'closed: refused');
});
