// decideImport: every conflict mode × every local/remote case (docs/SEMANTICS.md §3).
import t from 'tap';
import { CONFLICT_MODES, decideDeletion, decideImport, type ConflictMode, type LocalEntry, type RemoteEntry } from '../src/jobs/decide-import.js';
import { keepLocal } from '../src/namespace/import-entry.js';

const T = Date.UTC(2024, 0, 2, 3, 4, 5);

const remoteFile: RemoteEntry = { kind: 'file', blobName: 'd/f', etag: '"e1"', size: 10, mode: 0o644, uid: 1, gid: 2, mtimeMs: T };
const remoteDir: RemoteEntry = { kind: 'dir', blobName: 'd/f', etag: '"s1"', size: 0, mode: 0o750, uid: 1, gid: 2, mtimeMs: T };
const implicitDir: RemoteEntry = { kind: 'dir', size: 0, mode: 0o777, uid: 0, gid: 0, mtimeMs: 0, implicit: true };
const remoteLink: RemoteEntry = { kind: 'symlink', blobName: 'd/f', etag: '"l1"', size: 6, mode: 0o777, uid: 1, gid: 2, mtimeMs: T, target: 'target' };

/** A clean released file imported from remoteFile. */
const released: LocalEntry = {
  kind: 'file',
  mode: 0o644,
  uid: 1,
  gid: 2,
  mtimeMs: T,
  size: 10,
  target: null,
  hsmFlags: 0x0d,
  nlink: 1,
  blobName: 'd/f',
  etag: '"e1"',
};
const resident: LocalEntry = { ...released, hsmFlags: 0x09 };
const dir: LocalEntry = { ...released, kind: 'dir', mode: 0o750, size: 0, hsmFlags: 0, etag: '"s1"', hasChildren: false };
const link: LocalEntry = { ...released, kind: 'symlink', mode: 0o777, size: 6, target: 'target', hsmFlags: 0x09, etag: '"l1"' };

/** Expected outcome per mode: the action, with '+release' when the file is released. */
type Row = [name: string, local: LocalEntry | undefined, remote: RemoteEntry, expect: Record<ConflictMode, string>];

const all = (s: string): Record<ConflictMode, string> => ({ Fail: s, Skip: s, OverwriteIfDirty: s, OverwriteAlways: s });
const conflict = (ifDirty: string, always = ifDirty): Record<ConflictMode, string> => ({
  Fail: 'fail',
  Skip: 'skip',
  OverwriteIfDirty: ifDirty,
  OverwriteAlways: always,
});

const rows: Row[] = [
  ['nothing local', undefined, remoteFile, all('create')],
  ['nothing local (symlink blob)', undefined, remoteLink, all('create')],
  ['nothing local (stub)', undefined, remoteDir, all('create')],
  ['preexisting released file', released, remoteFile, all('none')],
  ['preexisting restored file (not released by OverwriteAlways)', resident, remoteFile, all('none')],
  ['preexisting: modtime differs below a second', { ...released, mtimeMs: T + 999 }, remoteFile, all('none')],
  ['preexisting: setuid bit (export drops it)', { ...released, mode: 0o4644 }, remoteFile, all('none')],
  ['preexisting file with policy flags', { ...resident, hsmFlags: 0x39 }, remoteFile, all('none')],
  ['preexisting directory', dir, remoteDir, all('none')],
  ['preexisting directory: mtime and stub etag are not compared', { ...dir, mtimeMs: T + 60_000, etag: null, blobName: null }, remoteDir, all('none')],
  ['preexisting directory, implicit in blob', { ...dir, mode: 0o700, uid: 5, hasChildren: true }, implicitDir, all('none')],
  ['preexisting symlink', link, remoteLink, all('none')],

  ['released file: permissions changed', { ...released, mode: 0o600 }, remoteFile, conflict('update-attributes')],
  ['released file: owner changed', { ...released, uid: 7 }, remoteFile, conflict('update-attributes')],
  ['released file: modtime changed', { ...released, mtimeMs: T - 5000 }, remoteFile, conflict('update-attributes')],
  ['restored file: group changed', { ...resident, gid: 9 }, remoteFile, conflict('update-attributes', 'update-attributes+release')],
  ['restored never_release file: attributes changed', { ...resident, hsmFlags: 0x19, mode: 0o600 }, remoteFile, conflict('update-attributes')],
  ['restored open file: attributes changed', { ...resident, mode: 0o600, busy: true }, remoteFile, conflict('update-attributes')],
  ['released file: blob changed (etag)', released, { ...remoteFile, etag: '"e2"' }, conflict('reimport+release')],
  ['released file: blob changed (size)', released, { ...remoteFile, size: 11 }, conflict('reimport+release')],
  ['restored file: blob changed', resident, { ...remoteFile, etag: '"e2"', size: 3 }, conflict('reimport+release')],
  ['restored file: blob and attributes changed', { ...resident, uid: 3 }, { ...remoteFile, etag: '"e2"' }, conflict('reimport+release')],
  ['restored file being read (busy): blob changed', { ...resident, busy: true }, { ...remoteFile, etag: '"e2"' }, conflict('skip')],
  ['dirty file (blob unchanged)', { ...resident, hsmFlags: 0x0b }, remoteFile, conflict('replace')],
  ['dirty file, blob changed', { ...resident, hsmFlags: 0x0b }, { ...remoteFile, etag: '"e2"' }, conflict('replace')],
  ['dirty file open for writing', { ...resident, hsmFlags: 0x0b, busy: true }, remoteFile, conflict('skip')],
  ['new local file (never imported)', { ...resident, hsmFlags: 0, blobName: null, etag: null }, remoteFile, conflict('replace')],
  ['new local file, exists dirty', { ...resident, hsmFlags: 0x03, blobName: null, etag: null }, remoteFile, conflict('replace')],
  ['file imported from another blob (renamed here)', { ...released, blobName: 'd/other' }, remoteFile, conflict('replace')],
  ['file after hsm_remove (no etag)', { ...resident, hsmFlags: 0x01, etag: null }, remoteFile, conflict('replace')],
  ['lost file, attributes changed', { ...released, hsmFlags: 0x4d, mode: 0o600 }, remoteFile, conflict('replace')],
  ['file with two hard links, blob changed', { ...resident, nlink: 2 }, { ...remoteFile, etag: '"e2"' }, conflict('replace')],

  ['local file, blob is a directory stub', resident, remoteDir, conflict('replace')],
  ['local dirty file, blobs under its name', { ...resident, hsmFlags: 0x0b }, implicitDir, conflict('replace')],
  ['local open file, blob is a directory', { ...resident, busy: true }, remoteDir, conflict('skip')],
  ['local file, blob is a symlink', resident, remoteLink, conflict('replace')],
  ['local symlink, blob is a file', link, remoteFile, conflict('replace')],
  ['local empty directory, blob is a file', dir, remoteFile, conflict('replace')],
  ['local non-empty directory hides a file blob (docs/SEMANTICS.md §1)', { ...dir, hasChildren: true }, remoteFile, all('skip')],
  ['local non-empty directory hides a symlink blob', { ...dir, hasChildren: true }, remoteLink, all('skip')],

  ['directory: permissions changed', { ...dir, mode: 0o700 }, remoteDir, conflict('update-attributes')],
  ['directory created locally, stub has other owner', { ...dir, uid: 1000, blobName: null, etag: null }, remoteDir, conflict('update-attributes')],

  ['symlink: blob changed (new target)', link, { ...remoteLink, etag: '"l2"', target: 'elsewhere', size: 9 }, conflict('reimport')],
  ['symlink: same etag, other target', link, { ...remoteLink, target: 'tarxxx' }, conflict('reimport')],
  ['symlink: owner changed', { ...link, uid: 0 }, remoteLink, conflict('update-attributes')],
  ['symlink created locally', { ...link, hsmFlags: 0, blobName: null, etag: null }, remoteLink, conflict('replace')],
];

t.test('every mode × every case', async (t) => {
  for (const [name, local, remote, expect] of rows) {
    for (const mode of CONFLICT_MODES) {
      const d = decideImport(mode, local, remote);
      const got = d.action + (d.release ? '+release' : '');
      t.equal(got, expect[mode], `${mode}: ${name}${d.reason ? ` (${d.reason})` : ''}`);
      t.equal(d.conflict, d.action !== 'create' && d.action !== 'none', `${mode}: ${name}: conflict flag`);
      if (d.conflict) t.ok(d.reason.length > 0, `${mode}: ${name}: a reason for the log line`);
    }
  }
});

t.test('reasons say what differs and what was done', async (t) => {
  t.match(decideImport('Skip', { ...released, mode: 0o600 }, remoteFile).reason, /permissions 0600 → 0644; left unchanged/);
  t.match(decideImport('OverwriteIfDirty', released, { ...remoteFile, etag: '"e2"' }).reason, /etag "e1" → "e2".*reimported/);
  t.match(decideImport('OverwriteIfDirty', { ...resident, hsmFlags: 0x0b }, remoteFile).reason, /dirty.*replaced/);
  t.match(decideImport('OverwriteAlways', { ...resident, busy: true }, { ...remoteFile, etag: '"e2"' }).reason, /open or has an HSM action/);
  t.match(decideImport('Fail', resident, remoteDir).reason, /type differs \(local file, dir in blob\)/);
  t.match(decideImport('OverwriteAlways', { ...resident, uid: 4 }, remoteFile).reason, /owner 4 → 1; attributes updated, released/);
});

t.test("the first import's policy (keepLocal) is the Skip mode", async (t) => {
  for (const [name, local, remote] of rows) {
    const busyAgnostic = local ? { ...local, busy: false } : undefined;
    t.equal(keepLocal(busyAgnostic, remote).action, decideImport('Skip', busyAgnostic, remote).action, name);
  }
});

t.test('a lost_from_hsm file whose blob is deleted is cleaned up by auto-import deletions in every mode', async (t) => {
  const lost: LocalEntry = { ...released, hsmFlags: 0x4d };
  for (const mode of CONFLICT_MODES) t.equal(decideDeletion(mode, lost).delete, true, `${mode}: deleted`);
});
