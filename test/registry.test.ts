// The mount registry: atomic record writes (R6), unreadable records are kept, dead records of gone mounts go.
import t from 'tap';
import { openSync, readFileSync, readdirSync, readSync, closeSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MountRegistry, type MountRecord } from '../src/control/registry.js';

const record = (mountpoint: string, pid = process.pid): MountRecord => ({
  mountpoint,
  container: 'c',
  prefix: '',
  description: 'memory',
  cacheDir: '/tmp/cache',
  socket: '/tmp/s.sock',
  pid,
  startedAt: new Date(0).toISOString(),
});

t.test('R6: a record is replaced atomically: a reader holding the old file still reads the whole old record', async (t) => {
  const dir = t.testdir();
  const reg = new MountRegistry(dir);
  reg.register(record('/mnt/a'));
  const file = join(dir, 'mounts', `${MountRegistry.idOf('/mnt/a')}.json`);
  const old = readFileSync(file, 'utf8');
  const fd = openSync(file, 'r');
  t.teardown(() => closeSync(fd));
  reg.register({ ...record('/mnt/a'), startedAt: new Date(1).toISOString() });
  const buf = Buffer.alloc(old.length + 100);
  const n = readSync(fd, buf, 0, buf.length, 0);
  t.equal(buf.subarray(0, n).toString(), old, 'written elsewhere and renamed over, not truncated in place');
  t.match(JSON.parse(readFileSync(file, 'utf8')), { startedAt: new Date(1).toISOString() }, 'the new record is in place');
  t.same(readdirSync(join(dir, 'mounts')).filter((f) => f.includes('.tmp')), [], 'no temporary file left');
});

t.test('R6: list never deletes a record it cannot read', async (t) => {
  const dir = t.testdir();
  const reg = new MountRegistry(dir);
  reg.register(record('/mnt/live'));
  const broken = join(dir, 'mounts', `${MountRegistry.idOf('/mnt/broken')}.json`);
  writeFileSync(broken, '{"mountpoint": "/mnt/bro');
  t.same(reg.list().map((r) => r.mountpoint), ['/mnt/live'], 'the unreadable record is not listed');
  t.equal(readFileSync(broken, 'utf8'), '{"mountpoint": "/mnt/bro', 'and not deleted');
  t.same(reg.list().map((r) => r.mountpoint), ['/mnt/live'], 'the live one stays listed');
});

t.test('a record of a dead daemon whose mount is gone is removed', async (t) => {
  const dir = t.testdir();
  const reg = new MountRegistry(dir);
  // pid 2^22 + 1 is above Linux's pid_max limit: no such process.
  reg.register(record(join(dir, 'not-mounted'), 4_194_305));
  t.same(reg.list(), []);
  t.same(readdirSync(join(dir, 'mounts')), []);
});
