import t from 'tap';
import type { BlobInfo } from '../src/blob/blob-store.js';
import {
  blobAttributes,
  checkBlobName,
  exportMetadata,
  formatModtime,
  formatPermissions,
  normalizePrefix,
  parseGroup,
  parseModtime,
  parseOwner,
  parsePermissions,
} from '../src/namespace/blob-encoding.js';

const LM = Date.UTC(2024, 0, 2, 3, 4, 5);

function blob(metadata: Record<string, string>, over: Partial<BlobInfo> = {}): BlobInfo {
  return { name: 'x', size: 0, etag: '"e"', lastModified: new Date(LM), metadata, ...over };
}

t.test('owner', async (t) => {
  const ok: [string, number][] = [
    ['0', 0],
    ['1000', 1000],
    ['007', 7],
    ['4294967294', 4294967294],
    ['root', 0],
    ['superuser', 0],
    ['$superuser', 0],
    ['hdfs-superuser', 0],
  ];
  for (const [v, want] of ok) t.same(parseOwner(v), { ok: true, value: want }, `owner ${JSON.stringify(v)}`);
  for (const v of ['', 'alice', '-1', '+5', '1.5', ' 12', '4294967295', 'Root', 'ROOT', 'wheel', 'supergroup', '0x10']) {
    const r = parseOwner(v);
    t.equal(r.ok, false, `owner ${JSON.stringify(v)} refused`);
    t.equal(r.value, 0, 'default 0');
  }
});

t.test('group', async (t) => {
  const ok: [string, number][] = [
    ['0', 0],
    ['100', 100],
    ['supergroup', 0],
    ['$supergroup', 0],
    ['root', 0],
    ['wheel', 0],
  ];
  for (const [v, want] of ok) t.same(parseGroup(v), { ok: true, value: want }, `group ${JSON.stringify(v)}`);
  for (const v of ['', 'staff', 'superuser', 'Wheel', '-3', '99999999999']) {
    const r = parseGroup(v);
    t.equal(r.ok, false, `group ${JSON.stringify(v)} refused`);
    t.equal(r.value, 0);
  }
});

t.test('permissions', async (t) => {
  const ok: [string, number][] = [
    ['0644', 0o644],
    ['0755', 0o755],
    ['0000', 0],
    ['0777', 0o777],
    ['1777', 0o1777],
    ['1755', 0o1755],
    ['rwxr-xr-x', 0o755],
    ['rw-r--r--', 0o644],
    ['---------', 0],
    ['rwxrwxrwx', 0o777],
    ['rwxrwxrwxt', 0o1777],
    ['rwxr-x---t', 0o1750],
    ['-w---x-wx', 0o213],
  ];
  for (const [v, want] of ok) {
    t.same(parsePermissions(v, 'file'), { ok: true, value: want }, `permissions ${JSON.stringify(v)}`);
  }
  const bad = ['', '644', '00644', '2755', '4755', '0855', '0x1ff', 'rwxr-xr-', 'rwxr-xr-xT', 'rwsr-xr-x', 'rwxr-xr-t', 'xwrr-xr-x', 'rwxr-xr-xtt', ' 0644'];
  for (const v of bad) {
    const f = parsePermissions(v, 'file');
    t.equal(f.ok, false, `permissions ${JSON.stringify(v)} refused`);
    t.equal(f.value, 0o644, 'file default 0644');
    t.equal(parsePermissions(v, 'dir').value, 0o755, 'dir default 0755 (never world-writable)');
    t.equal(parsePermissions(v, 'dir', { file: 0o600, dir: 0o750, symlink: 0o777 }).value, 0o750, '--dir-mode');
    t.equal(parsePermissions(v, 'symlink').value, 0o777, 'symlink default 0777');
  }
});

t.test('modtime', async (t) => {
  const ok: [string, number][] = [
    ['2024-05-01 13:45:07 +0000', Date.UTC(2024, 4, 1, 13, 45, 7)],
    ['2024-05-01 13:45:07 +0200', Date.UTC(2024, 4, 1, 11, 45, 7)],
    ['2024-05-01 13:45:07 -0530', Date.UTC(2024, 4, 1, 19, 15, 7)],
    ['2024-05-01 13:45:07.250 +0000', Date.UTC(2024, 4, 1, 13, 45, 7, 250)],
    ['2024-05-01 13:45:07 +0000 UTC', Date.UTC(2024, 4, 1, 13, 45, 7)],
    ['2024-02-29 00:00:00 +0000', Date.UTC(2024, 1, 29)],
    ['1970-01-01 00:00:00 +0000', 0],
    ['2024-05-01T13:45:07Z', Date.UTC(2024, 4, 1, 13, 45, 7)],
    ['2024-05-01T13:45:07z', Date.UTC(2024, 4, 1, 13, 45, 7)],
    ['2024-05-01T13:45:07.123456789Z', Date.UTC(2024, 4, 1, 13, 45, 7, 123)],
    ['2024-05-01T13:45:07+02:00', Date.UTC(2024, 4, 1, 11, 45, 7)],
    ['2024-05-01T13:45:07-01:30', Date.UTC(2024, 4, 1, 15, 15, 7)],
    ['2024-05-01 13:45:07Z', Date.UTC(2024, 4, 1, 13, 45, 7)],
  ];
  for (const [v, want] of ok) t.same(parseModtime(v, LM), { ok: true, value: want }, `modtime ${JSON.stringify(v)}`);
  const bad = [
    '',
    'yesterday',
    '2024-05-01',
    '2024-05-01 13:45:07',
    '2024-05-01 13:45 +0000',
    '2024-13-01 00:00:00 +0000',
    '2023-02-29 00:00:00 +0000',
    '2024-04-31 00:00:00 +0000',
    '2024-05-01 24:00:00 +0000',
    '2024-05-01 13:60:00 +0000',
    '2024-05-01 13:45:07 +02:00',
    '2024-05-01T13:45:07',
    '2024-05-01T13:45:07+0200',
    '1714571107',
    'Wed, 01 May 2024 13:45:07 GMT',
  ];
  // Out of the range a file's time can have through FUSE: refused with a warning that says so.
  for (const v of ['1900-01-01 00:00:00 +0000', '1969-12-31 23:59:59 +0000', '2106-02-07 06:28:16 +0000', '9999-12-31T23:59:59Z']) {
    const r = parseModtime(v, LM);
    t.same([r.ok, r.value], [false, LM], `modtime ${JSON.stringify(v)} refused: Last-Modified used`);
    t.match(r, { reason: /outside what the mount can show/ });
  }
  t.same(parseModtime('2106-02-07 06:28:15 +0000', LM), { ok: true, value: (2 ** 32 - 1) * 1000 }, 'the last second allowed');
  for (const v of bad) {
    const r = parseModtime(v, LM);
    t.equal(r.ok, false, `modtime ${JSON.stringify(v)} refused`);
    t.equal(r.value, LM, 'default: Last-Modified');
  }
});

t.test('format', async (t) => {
  t.equal(formatPermissions(0o644), '0644');
  t.equal(formatPermissions(0o1777), '1777', 'sticky kept');
  t.equal(formatPermissions(0o4755), '0755', 'setuid dropped');
  t.equal(formatPermissions(0o2775), '0775', 'setgid dropped');
  t.equal(formatPermissions(0o7777), '1777');
  t.equal(formatPermissions(0), '0000');
  t.equal(formatModtime(Date.UTC(2024, 4, 1, 13, 45, 7, 999)), '2024-05-01 13:45:07 +0000');
  t.equal(formatModtime(0), '1970-01-01 00:00:00 +0000');
  for (const ms of [0, Date.UTC(2001, 8, 9, 1, 46, 40), Date.UTC(2038, 0, 19, 3, 14, 8)]) {
    t.same(parseModtime(formatModtime(ms), -1), { ok: true, value: ms }, 'format/parse round trip');
  }
  for (const mode of [0, 0o644, 0o755, 0o1777, 0o1000, 0o600]) {
    t.same(parsePermissions(formatPermissions(mode), 'file'), { ok: true, value: mode });
  }
});

t.test('blobAttributes', async (t) => {
  const file = blobAttributes(blob({}));
  t.same(file, { kind: 'file', mode: 0o644, uid: 0, gid: 0, mtimeMs: LM, warnings: [] }, 'defaults for a plain blob');

  const full = blobAttributes(
    blob({ owner: '1000', group: 'wheel', permissions: 'rwxr-x---', modtime: '2020-01-01 00:00:00 +0000' }),
  );
  t.same(full, { kind: 'file', mode: 0o750, uid: 1000, gid: 0, mtimeMs: Date.UTC(2020, 0, 1), warnings: [] });

  const dir = blobAttributes(blob({ Hdi_IsFolder: 'TRUE', Permissions: '1777', OWNER: 'superuser' }));
  t.same(dir, { kind: 'dir', mode: 0o1777, uid: 0, gid: 0, mtimeMs: LM, warnings: [] }, 'keys and true case-insensitive');
  t.equal(blobAttributes(blob({ hdi_isfolder: 'true' })).mode, 0o755, 'dir default 0755');
  t.equal(blobAttributes(blob({}), { file: 0o600, dir: 0o700, symlink: 0o777 }).mode, 0o600, '--file-mode for a file without permissions');
  t.equal(blobAttributes(blob({ permissions: '0640' }), { file: 0o600, dir: 0o700, symlink: 0o777 }).mode, 0o640, 'the blob\'s own permissions win');
  t.equal(blobAttributes(blob({ hdi_isfolder: 'false' })).kind, 'file');

  t.same(blobAttributes(blob({ ftype: 'LNK' })), { kind: 'symlink', mode: 0o777, uid: 0, gid: 0, mtimeMs: LM, warnings: [] });
  t.equal(blobAttributes(blob({ is_symlink: 'true' })).kind, 'symlink', "blobfuse2's marker");
  t.equal(blobAttributes(blob({ Is_Symlink: 'True' })).kind, 'symlink');
  t.equal(blobAttributes(blob({ is_symlink: 'false' })).kind, 'file');
  t.equal(blobAttributes(blob({ ftype: 'REG' })).kind, 'file');

  const stubLink = blobAttributes(blob({ hdi_isfolder: 'true', ftype: 'LNK' }));
  t.equal(stubLink.kind, 'dir', 'a stub that is also LNK is a directory');
  t.equal(stubLink.warnings.length, 1);
  t.equal(stubLink.warnings[0]!.key, 'ftype');

  const bad = blobAttributes(
    blob({ owner: 'alice', group: 'staff', permissions: '999', modtime: 'soon', hdi_isfolder: 'yes', is_symlink: 'maybe' }),
  );
  t.equal(bad.kind, 'file');
  t.equal(bad.mode, 0o644);
  t.equal(bad.uid, 0);
  t.equal(bad.gid, 0);
  t.equal(bad.mtimeMs, LM);
  t.same(bad.warnings.map((w) => w.key).sort(), ['group', 'hdi_isfolder', 'is_symlink', 'modtime', 'owner', 'permissions']);
  t.ok(bad.warnings.every((w) => w.reason.length > 0 && typeof w.value === 'string'));

  const badDir = blobAttributes(blob({ hdi_isfolder: 'true', permissions: 'bogus' }));
  t.equal(badDir.mode, 0o755, 'invalid permissions on a directory: the directory default');
  const fullStub = blobAttributes(blob({ hdi_isfolder: 'true' }, { size: 10 }));
  t.equal(fullStub.kind, 'dir');
  t.equal(fullStub.warnings.length, 1, 'a non-empty stub warns');
});

t.test('normalizePrefix', async (t) => {
  for (const [p, want] of [
    [undefined, ''],
    ['', ''],
    ['/', ''],
    ['data', 'data/'],
    ['data/', 'data/'],
    ['/data/', 'data/'],
    ['a/b', 'a/b/'],
  ] as const) {
    t.equal(normalizePrefix(p), want, `prefix ${JSON.stringify(p)}`);
  }
});

t.test('checkBlobName', async (t) => {
  t.same(checkBlobName('a'), { ok: true, components: ['a'], isDirMarker: false });
  t.same(checkBlobName('a/b/c.txt'), { ok: true, components: ['a', 'b', 'c.txt'], isDirMarker: false });
  t.same(checkBlobName('a/b/'), { ok: true, components: ['a', 'b'], isDirMarker: true }, 'trailing / is a directory');
  t.same(checkBlobName('.hidden/..x/...'), { ok: true, components: ['.hidden', '..x', '...'], isDirMarker: false });
  t.same(checkBlobName('data/a/b', 'data'), { ok: true, components: ['a', 'b'], isDirMarker: false });
  t.same(checkBlobName('data/a/b', 'data/'), { ok: true, components: ['a', 'b'], isDirMarker: false });
  t.same(checkBlobName('data/', 'data'), { ok: true, components: [], isDirMarker: true }, 'the prefix marker itself');
  t.same(checkBlobName('é/' + 'x'.repeat(255)), { ok: true, components: ['é', 'x'.repeat(255)], isDirMarker: false });
  t.same(checkBlobName('a'.repeat(1024)).ok, false, 'a 1024-char component is over 255 bytes');
  const long = Array.from({ length: 8 }, () => 'y'.repeat(127)).join('/'); // 1023 chars
  t.equal(checkBlobName(long).ok, true, '1023 characters');
  t.equal(checkBlobName(long + 'z').ok, true, '1024 characters');
  t.equal(checkBlobName(long + 'zz').ok, false, '1025 characters');
  t.equal(checkBlobName('ü'.repeat(127)).ok, true, '254 bytes');
  t.equal(checkBlobName('ü'.repeat(128)).ok, false, '256 bytes');

  const bad: [string, string | undefined, RegExp][] = [
    ['a//b', undefined, /empty/],
    ['/a', undefined, /empty/],
    ['a/./b', undefined, /'\.'/],
    ['a/../b', undefined, /'\.\.'/],
    ['..', undefined, /'\.\.'/],
    ['.', undefined, /'\.'/],
    ['a/..', undefined, /'\.\.'/],
    ['a\0b', undefined, /NUL/],
    ['a//', undefined, /empty/],
    ['', undefined, /empty/],
    ['other/a', 'data', /outside/],
    ['datax/a', 'data', /outside/],
    ['data', 'data', /outside/],
  ];
  for (const [name, prefix, re] of bad) {
    const r = checkBlobName(name, prefix);
    t.equal(r.ok, false, `${JSON.stringify(name)} refused`);
    if (!r.ok) t.match(r.reason, re);
  }
});

t.test('exportMetadata', async (t) => {
  const base = { uid: 1000, gid: 100, mode: 0o4755, mtimeMs: Date.UTC(2024, 4, 1, 13, 45, 7) };
  t.same(exportMetadata({ ...base, kind: 'file' }), {
    owner: '1000',
    group: '100',
    permissions: '0755',
    modtime: '2024-05-01 13:45:07 +0000',
  });
  t.same(exportMetadata({ ...base, kind: 'dir', mode: 0o1777 }), {
    owner: '1000',
    group: '100',
    permissions: '1777',
    modtime: '2024-05-01 13:45:07 +0000',
    hdi_isfolder: 'true',
  });
  t.same(exportMetadata({ ...base, kind: 'symlink', mode: 0o777 }), {
    owner: '1000',
    group: '100',
    permissions: '0777',
    modtime: '2024-05-01 13:45:07 +0000',
    ftype: 'LNK',
  });
  // What export writes, import reads back.
  for (const kind of ['file', 'dir', 'symlink'] as const) {
    const md = exportMetadata({ ...base, kind, mode: 0o1750 });
    const a = blobAttributes(blob(md));
    t.same(
      { kind: a.kind, mode: a.mode, uid: a.uid, gid: a.gid, mtimeMs: a.mtimeMs, warnings: a.warnings },
      { kind, mode: 0o1750, uid: 1000, gid: 100, mtimeMs: base.mtimeMs, warnings: [] },
      `${kind} round trip`,
    );
  }
});
