// What export sends to an HNS account for an inode (src/hsm/hns-export.ts): uids/gids back to identities through
// the id map, permissions with sticky as t/T, a stored ACL with its named ids mapped back (unmapped ones left out,
// logged once), metadata without owner/group/permissions; an existing directory is left as it is.
import t from 'tap';
import type { HierarchicalPaths, HnsAccess } from '../src/blob/blob-store.js';
import { BlobError } from '../src/errors.js';
import { HnsExport } from '../src/hsm/hns-export.js';
import { IdMap } from '../src/namespace/id-map.js';
import { openMetaStore } from '../src/namespace/meta-store.js';
import { ROOT_INO, blankInode } from '../src/namespace/types.js';

const ids = IdMap.parse('user alice-oid 1234\ngroup team-oid 4321\nuser bob@x.example 1500\n');

function setup() {
  const meta = openMetaStore(':memory:');
  const calls: Array<[string, string, HnsAccess, unknown]> = [];
  let exists = false;
  const paths: HierarchicalPaths = {
    async createDirectory(name, access, options) {
      calls.push(['createDirectory', name, access, options]);
      if (exists) throw new BlobError('AlreadyExists', `${name} exists`);
      return { etag: '"d1"', lastModified: new Date() };
    },
    async setAccessControl(name, access, options) {
      calls.push(['setAccessControl', name, access, options]);
      return { etag: '"f2"', lastModified: new Date() };
    },
    async rename() {},
  };
  const log: string[] = [];
  return { meta, calls, log, hns: new HnsExport(paths, ids, meta, (l) => log.push(l)), setExists: (v: boolean) => (exists = v) };
}

t.test('owner, group and permissions', async (t) => {
  const { meta, hns, log } = setup();
  const f = meta.create(ROOT_INO, 'f', blankInode('file', 0o1640, 1234, 4321, 0));
  t.same(hns.access(f, '/f'), { owner: 'alice-oid', group: 'team-oid', permissions: 'rw-r----T' });
  const root = meta.create(ROOT_INO, 'r', blankInode('file', 0o755, 0, 77, 0));
  t.same(hns.access(root, '/r'), { owner: '$superuser', permissions: 'rwxr-xr-x' }, 'gid 77 has no identity: group left as is');
  hns.access(root, '/r');
  t.equal(log.filter((l) => l.includes('gid 77')).length, 1, 'logged once per id');
  t.same(hns.metadata({ kind: 'symlink', mtimeMs: 0 }), { modtime: '1970-01-01 00:00:00 +0000', ftype: 'LNK' });
});

t.test('a stored ACL goes back with identities; mask and other from the mode', async (t) => {
  const { meta, hns } = setup();
  const f = meta.create(ROOT_INO, 'f', blankInode('file', 0o660, 1234, 4321, 0));
  meta.setAccessAcl(f.ino, 'user::rw-,user:1500:rw-,user:999:r--,group::r--,group:4321:rw-,mask::rw-,other::---');
  t.same(hns.access(f, '/f'), {
    owner: 'alice-oid',
    group: 'team-oid',
    acl: 'user::rw-,user:bob@x.example:rw-,group::r--,group:team-oid:rw-,mask::rw-,other::---',
  });
});

t.test('directories and files: the calls sent', async (t) => {
  const { meta, hns, calls, setExists } = setup();
  const d = meta.create(ROOT_INO, 'd', blankInode('dir', 0o750, 1234, 4321, 0));
  t.equal((await hns.createDirectory('p/d', d, '/d'))?.etag, '"d1"');
  t.same(calls[0], ['createDirectory', 'p/d', { owner: 'alice-oid', group: 'team-oid', permissions: 'rwxr-x---' }, { ifNoneMatch: '*' }]);
  setExists(true);
  t.equal(await hns.createDirectory('p/d', d, '/d'), undefined, 'an existing directory: undefined, no error');
  const f = meta.create(ROOT_INO, 'f', blankInode('file', 0o600, 0, 0, 0));
  t.equal(await hns.setAttributes('p/f', f, '/f', '"f1"'), '"f2"', 'the etag the service answers');
  t.same(calls[2], ['setAccessControl', 'p/f', { owner: '$superuser', group: '$superuser', permissions: 'rw-------' }, { ifMatch: '"f1"' }]);
});
