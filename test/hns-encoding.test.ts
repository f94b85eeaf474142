// The HNS blob encoding (src/namespace/hns-encoding.ts) and the id map (src/namespace/id-map.ts): permissions
// strings with sticky t/T and the ACL marker, the precedence of the service's attributes over metadata (and the
// fallbacks), identities through the map, ACL text and its system.posix_acl_access bytes.
import t from 'tap';
import type { BlobInfo, HnsAttributes } from '../src/blob/blob-store.js';
import { formatHnsPermissions, hnsBlobAttributes, parseHnsPermissions, posixAclXattr } from '../src/namespace/hns-encoding.js';
import { IdMap } from '../src/namespace/id-map.js';
import { UsageError } from '../src/errors.js';

const info = (hns: HnsAttributes, metadata: Record<string, string> = {}): BlobInfo & { hns: HnsAttributes } => ({
  name: 'f',
  size: 1,
  etag: '"e"',
  lastModified: new Date(1_700_000_000_000),
  metadata,
  hns,
});

t.test('permissions strings', async (t) => {
  t.equal(parseHnsPermissions('rwxr-x---'), 0o750);
  t.equal(parseHnsPermissions('rwxrwxrwt'), 0o1777, 't: sticky and x');
  t.equal(parseHnsPermissions('rwxrwxrwT'), 0o1776, 'T: sticky without x');
  t.equal(parseHnsPermissions('rw-r-----+'), 0o640, '+ marks an extended ACL');
  for (const bad of ['0755', 'rwxr-x--', 'rwtr-x---', 'rwxr-x---x', '']) t.equal(parseHnsPermissions(bad), undefined, bad);
  for (const mode of [0o750, 0o1777, 0o1776, 0o640, 0]) t.equal(parseHnsPermissions(formatHnsPermissions(mode)), mode);
});

t.test('id map: parse, resolve, reverse, errors', async (t) => {
  const m = IdMap.parse('# c\nuser ABC-1 1000  # alice\nuser alice@x.example 1000\ngroup g1 50\nuser * 65534\n');
  t.same(m.resolve('user', 'abc-1'), { id: 1000, known: true }, 'case-insensitive');
  t.same(m.resolve('user', '$superuser'), { id: 0, known: true });
  t.same(m.resolve('group', '42'), { id: 42, known: true }, 'decimal ids as themselves');
  t.same(m.resolve('user', 'nobody-known'), { id: 65534, known: false });
  t.same(m.resolve('group', 'nobody-known'), { id: 0, known: false }, 'group default stays 0');
  t.equal(m.identityOf('user', 1000), 'ABC-1', 'the first identity mapped to the id');
  t.equal(m.identityOf('user', 0), '$superuser');
  t.equal(m.identityOf('group', 7), undefined);
  t.throws(() => IdMap.parse('owner x 1'), UsageError);
  t.throws(() => IdMap.parse('user x 1\nuser X 2', 'm'), /m line 2: user 'X' is mapped twice/);
  t.throws(() => IdMap.parse('user $superuser 5'), /always 0/);
  t.throws(() => IdMap.parse('group g -1'), /'-1' is not a gid/);
});

t.test('precedence: the service wins over metadata; fallbacks counted', async (t) => {
  const ids = IdMap.parse('user alice 1234\ngroup team 4321\n');
  const a = hnsBlobAttributes(info({ owner: 'alice', group: 'team', permissions: 'rw-r-----' }, { owner: '7', group: '8', permissions: '0777', modtime: '2024-05-01 13:45:07 +0000' }), ids);
  t.same([a.kind, a.uid, a.gid, a.mode], ['file', 1234, 4321, 0o640]);
  t.equal(a.mtimeMs, Date.UTC(2024, 4, 1, 13, 45, 7), 'modtime still from metadata');
  t.same(a.metadataIgnored, ['owner', 'group', 'permissions']);
  t.same(a.fallbacks, []);
  const b = hnsBlobAttributes(info({ owner: 'alice', permissions: 'bogus' }, { group: '8', permissions: '0600' }), ids);
  t.same([b.uid, b.gid, b.mode], [1234, 8, 0o600], 'group and permissions fall back to metadata');
  t.same(b.fallbacks, ['group', 'permissions']);
  t.match(b.warnings, [{ key: 'x-ms-permissions', value: 'bogus' }]);
  const c = hnsBlobAttributes(info({ owner: 'who', group: 'team', permissions: 'rwxr-x---', resourceType: 'directory' }), ids);
  t.same([c.kind, c.uid, c.mode], ['dir', 0, 0o750], 'ResourceType=directory without a stub; unknown owner → default');
  t.same(c.unknownIdentities, [['user', 'who']]);
  const d = hnsBlobAttributes(info({ owner: '$superuser', group: '$superuser', permissions: 'rwxr-x---' }, { ftype: 'LNK' }), ids);
  t.equal(d.kind, 'symlink', 'symlink markers as on flat accounts');
});

t.test('ACLs: mapped named entries, the mask bounds the group bits, xattr bytes', async (t) => {
  const ids = IdMap.parse('user alice 1234\ngroup team 4321\n');
  const a = hnsBlobAttributes(
    info({
      owner: 'alice',
      group: 'team',
      permissions: 'rwxrwx---+',
      acl: 'user::rwx,user:alice:r-x,user:stranger:rwx,group::r--,group:team:rw-,mask::r-x,other::---,default:user::rwx',
    }),
    ids,
  );
  t.equal(a.mode, 0o750, 'the mask (r-x) replaces the group bits');
  t.equal(a.acl, 'user::rwx,user:1234:r-x,group::r--,group:4321:rw-,mask::r-x,other::---', 'default entries and unknown ids dropped');
  t.same(a.unknownIdentities, [['user', 'stranger']]);
  t.equal(hnsBlobAttributes(info({ permissions: 'rw-r-----', acl: 'user::rw-,group::r--,other::---' }), ids).acl, null, 'a minimal ACL is just the mode');
  const x = posixAclXattr(0o750, a.acl!);
  t.equal(x.readUInt32LE(0), 2, 'version 2');
  const entries = [];
  for (let off = 4; off < x.length; off += 8) entries.push([x.readUInt16LE(off), x.readUInt16LE(off + 2), x.readUInt32LE(off + 4)]);
  const U = 0xffffffff;
  t.same(entries, [
    [0x01, 7, U],
    [0x02, 5, 1234],
    [0x04, 4, U],
    [0x08, 6, 4321],
    [0x10, 5, U],
    [0x20, 0, U],
  ], 'USER_OBJ, USER, GROUP_OBJ, GROUP, MASK (from the mode), OTHER, sorted by tag');
  t.equal(posixAclXattr(0o700, a.acl!).readUInt16LE(4 + 4 * 8 + 2), 0, 'a chmod of the group bits shows as the mask');
});
