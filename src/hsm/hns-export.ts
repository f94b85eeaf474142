// Export to a hierarchical-namespace account (docs/SEMANTICS.md §1 "Export writes", HNS): what the coordinator does differently
// there. Directories are real (DFS create directory with owner, group and permissions, no `hdi_isfolder` stub);
// files and symlinks are uploaded as on flat accounts (staged blocks, one conditional commit) and then get their
// owner, group and permissions (or their access ACL) with one DFS set-access-control call, conditional on the etag
// the commit returned. The Blob API's Put Block List takes no x-ms-owner/-group/-permissions, and DFS create takes
// them only for an empty path, so a file needs that second call (REST: datalakestoragegen2/path/create, /update).
// Metadata keeps `modtime`, the symlink marker and the version stamp; owner/group/permissions are not written to
// metadata on HNS (the service's attributes win on import anyway).
// uids/gids become identities through the id map (0 → `$superuser`); an id with no identity is left as the service
// has it (the caller is told, once per id, in the log).
import type { HierarchicalPaths, HnsAccess, WriteResult } from '../blob/blob-store.js';
import { formatModtime } from '../namespace/blob-encoding.js';
import { formatHnsPermissions, parseAclText, permString } from '../namespace/hns-encoding.js';
import type { IdKind, IdMap } from '../namespace/id-map.js';
import type { Inode, MetaStore } from '../namespace/types.js';

export class HnsExport {
  private readonly warned = new Set<string>();

  constructor(
    readonly paths: HierarchicalPaths,
    private readonly ids: IdMap,
    private readonly meta: MetaStore,
    private readonly log: (line: string) => void,
  ) {}

  /** Metadata of an uploaded file or symlink on HNS (no owner/group/permissions: those go as access control). */
  metadata(inode: Pick<Inode, 'kind' | 'mtimeMs'>): Record<string, string> {
    return { modtime: formatModtime(inode.mtimeMs), ...(inode.kind === 'symlink' ? { ftype: 'LNK' } : {}) };
  }

  private identity(kind: IdKind, id: number, path: string): string | undefined {
    const who = this.ids.identityOf(kind, id);
    if (who === undefined && !this.warned.has(`${kind}:${id}`)) {
      this.warned.add(`${kind}:${id}`);
      this.log(`export: ${kind === 'user' ? 'uid' : 'gid'} ${id} (first on ${path}) has no identity in the id map (--id-map); its ${kind === 'user' ? 'owner' : 'group'} is left as the service sets it`);
    }
    return who;
  }

  /** Owner, group and permissions (or the access ACL, named ids mapped back) of an inode, as HNS takes them. */
  access(inode: Inode, path: string): HnsAccess {
    const owner = this.identity('user', inode.uid, path);
    const group = this.identity('group', inode.gid, path);
    const out: HnsAccess = { ...(owner ? { owner } : {}), ...(group ? { group } : {}) };
    const stored = this.meta.accessAcl(inode.ino);
    if (stored === null) return { ...out, permissions: formatHnsPermissions(inode.mode & 0o1777) };
    const entries: string[] = [`user::${permString((inode.mode >> 6) & 7)}`];
    const named = (tag: IdKind) =>
      parseAclText(stored)
        .filter((e) => e.tag === tag && e.id !== undefined)
        .flatMap((e) => {
          const who = this.identity(tag, e.id!, path);
          return who ? [`${tag}:${who}:${permString(e.perm)}`] : [];
        });
    entries.push(...named('user'));
    const ownGroup = parseAclText(stored).find((e) => e.tag === 'group' && e.id === undefined)?.perm ?? (inode.mode >> 3) & 7;
    entries.push(`group::${permString(ownGroup)}`, ...named('group'));
    entries.push(`mask::${permString((inode.mode >> 3) & 7)}`, `other::${permString(inode.mode & 7)}`);
    // The sticky bit is not part of an ACL: it needs the permissions form.
    if (inode.mode & 0o1000) return { ...out, permissions: formatHnsPermissions(inode.mode & 0o1777) };
    return { ...out, acl: entries.join(',') };
  }

  /** A real directory with the inode's access control; undefined when the path already exists (left as it is). */
  async createDirectory(blobName: string, dir: Inode, path: string): Promise<WriteResult | undefined> {
    try {
      return await this.paths.createDirectory(blobName, this.access(dir, path), { ifNoneMatch: '*' });
    } catch (err) {
      if (err instanceof Error && 'kind' in err && (err.kind === 'AlreadyExists' || err.kind === 'PreconditionFailed')) return undefined;
      throw err;
    }
  }

  /** Sets an uploaded file's access control, only while its blob is still the one we committed; the new etag. */
  async setAttributes(blobName: string, inode: Inode, path: string, etag: string, signal?: AbortSignal): Promise<string> {
    const r = await this.paths.setAccessControl(blobName, this.access(inode, path), { ifMatch: etag, ...(signal ? { signal } : {}) });
    return r.etag || etag;
  }
}
