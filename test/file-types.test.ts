// The one definition of file types and of which ones stay local only, checked against real lstat results of a
// FIFO, a socket and a device made on the local filesystem, and against what ingest's walk makes of them.
import { spawnSync } from 'node:child_process';
import { constants, lstatSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { LOCAL_ONLY_KINDS, LOCAL_ONLY_REASON, blobKindOf, fileTypeOf, isArchivable, isLocalOnly, typeBits } from '../src/namespace/file-types.js';
import { kindOf } from '../src/ingest/source-walk.js';
import type { InodeKind } from '../src/namespace/types.js';

t.test('type bits of each kind, and the kind of each type bits', async (t) => {
  const kinds: Array<[InodeKind, number]> = [
    ['file', constants.S_IFREG],
    ['dir', constants.S_IFDIR],
    ['symlink', constants.S_IFLNK],
    ['fifo', constants.S_IFIFO],
    ['socket', constants.S_IFSOCK],
  ];
  for (const [kind, bits] of kinds) {
    t.equal(typeBits(kind), bits, `${kind}: 0${bits.toString(8)}`);
    t.equal(fileTypeOf(bits | 0o644), kind, `0${(bits | 0o644).toString(8)} is a ${kind}`);
  }
  t.equal(fileTypeOf(constants.S_IFCHR | 0o600), 'device', 'a character device');
  t.equal(fileTypeOf(constants.S_IFBLK | 0o600), 'device', 'a block device');
  t.equal(fileTypeOf(0o644), 'unknown', 'no type bits');
});

t.test('local only: FIFOs and sockets (and, for ingest, devices); archived: files and symlinks', async (t) => {
  t.same([...LOCAL_ONLY_KINDS], ['fifo', 'socket']);
  for (const type of ['fifo', 'socket', 'device', 'unknown'] as const) t.ok(isLocalOnly(type), `${type} is local only`);
  for (const type of ['file', 'dir', 'symlink'] as const) {
    t.notOk(isLocalOnly(type), `${type} has a blob form`);
    t.equal(blobKindOf(type), type);
  }
  t.same((['file', 'dir', 'symlink', 'fifo', 'socket'] as const).filter(isArchivable), ['file', 'symlink'], 'a directory gets stubs, not an archive');
  t.equal(LOCAL_ONLY_REASON, 'not a regular file, directory or symlink: local only');
});

t.test("lstat of real files gives the same types, and ingest's walk skips the local-only ones", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'blobhsm-types-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'f'), 'x');
  mkdirSync(join(dir, 'd'));
  symlinkSync('f', join(dir, 'l'));
  t.equal(spawnSync('mkfifo', [join(dir, 'p')]).status, 0, 'mkfifo');
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(join(dir, 's'), resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const expect: Record<string, [string, string]> = { f: ['file', 'file'], d: ['dir', 'dir'], l: ['symlink', 'symlink'], p: ['fifo', 'special'], s: ['socket', 'special'] };
  for (const [name, [type, ingest]] of Object.entries(expect)) {
    const st = lstatSync(join(dir, name), { bigint: true });
    t.equal(fileTypeOf(Number(st.mode)), type, `${name}: ${type}`);
    t.equal(kindOf(st), ingest, `ingest: ${name} is ${ingest}`);
  }
  const devNull = lstatSync('/dev/null', { bigint: true });
  t.equal(fileTypeOf(Number(devNull.mode)), 'device', '/dev/null is a device');
  t.equal(kindOf(devNull), 'special', 'ingest skips it');
});
