// JobLog: the local file and the logging container's append blob get the same lines; a failing container keeps
// the lines and sends them once it accepts appends again; close flushes.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { MemoryBlobStore } from '../src/blob/memory-store.js';
import { BlobError } from '../src/errors.js';
import { JobLog } from '../src/jobs/job-log.js';

async function blobText(store: MemoryBlobStore, name: string): Promise<string> {
  const parts: Buffer[] = [];
  for await (const p of await store.readRange(name, 0, undefined)) parts.push(p as Buffer);
  return Buffer.concat(parts).toString();
}

t.test('lines reach the local file and the logging container; close flushes', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'blobhsm-joblog-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const store = new MemoryBlobStore();
  const daemon: string[] = [];
  const log = new JobLog({ dir, name: 'import-1', container: { store, folder: 'data' }, log: (l) => daemon.push(l), flushMs: 60_000 });
  t.equal(log.blob, 'data/import-1.jsonl');
  log.write('{"event":"conflict"}');
  log.write('{"event":"deletion"}');
  await log.close();
  const expected = '{"event":"conflict"}\n{"event":"deletion"}\n';
  t.equal(readFileSync(log.file!, 'utf8'), expected);
  t.equal(await blobText(store, 'data/import-1.jsonl'), expected);
  t.same(daemon, []);
});

t.test('a failing logging container keeps the lines and catches up; said once in the daemon log', async (t) => {
  const store = new MemoryBlobStore();
  const daemon: string[] = [];
  const log = new JobLog({ name: 'auto-import-BlobSync-x', container: { store, folder: 'c' }, log: (l) => daemon.push(l), flushMs: 60_000 });
  let failures = 2;
  store.beforeOp = (op) => {
    if (op === 'append' && failures-- > 0) throw new BlobError('Transient', 'append failed (injected)');
  };
  log.write('one');
  await log.flush();
  log.write('two');
  await log.flush();
  t.equal(daemon.filter((l) => /failed/.test(l)).length, 1, 'one line for the failure streak');
  await log.flush();
  t.equal(await blobText(store, 'c/auto-import-BlobSync-x.jsonl'), 'one\ntwo\n', 'nothing lost, in order');
  t.match(daemon.at(-1), /accepts lines again/);
  await log.close();
});
