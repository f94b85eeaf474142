// Export byte progress (issue 9): an export job reports the bytes staged of a large file while it uploads (not 0
// until the file completes), and moves them to bytesExported when the commit lands.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryBlobStore } from '../src/blob/memory-store.js';
import { JobRunner } from '../src/jobs/job-runner.js';
import { makeStack } from './helpers/stack.js';

t.test('bytesUploading counts staged blocks of the file in flight', async (t) => {
  const block = 1024 * 1024;
  const store = new MemoryBlobStore({ blockSize: block });
  const s = await makeStack({ store });
  const logDir = mkdtempSync(join(tmpdir(), 'blobhsm-export-progress-'));
  const jobs = new JobRunner({ meta: s.meta, store: s.store, coordinator: s.coordinator, log: (line: string) => s.logs.push(line), prefix: '', mountRoot: '/mnt', logDir });
  t.teardown(async () => {
    await jobs.cancelAll();
    await s.cleanup();
    rmSync(logDir, { recursive: true, force: true });
  });
  const size = 5 * block;
  await s.createFile('/big', Buffer.alloc(size, 7));

  // Hold the upload after its third block is staged: the stageBlock of block 4 waits for the gate.
  let staged = 0;
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let reached!: () => void;
  const atGate = new Promise<void>((r) => (reached = r));
  store.beforeOp = async (op) => {
    if (op !== 'stageBlock') return;
    if (++staged === 4) {
      reached();
      await gate;
    }
  };
  const job = jobs.startExport(['/']);
  await atGate;
  const during = job.summary().stats;
  t.equal(during.bytesDiscovered, size);
  t.equal(during.bytesExported, 0, 'nothing committed yet');
  t.equal(during.bytesUploading, 3 * block, 'the three staged blocks show while the file uploads');
  release();
  await job.done;
  const after = job.summary().stats;
  t.equal(job.summary().state, 'Succeeded');
  t.equal(after.bytesExported, size);
  t.equal(after.bytesUploading, 0);
});
