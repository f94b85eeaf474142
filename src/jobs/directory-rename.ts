// Export of locally renamed directories on a hierarchical-namespace account: one server-side rename (atomic on
// HNS) instead of uploading every file again under its new name.
//
// A candidate is a directory whose recorded blob name (from the import, or its creation by export) is not the
// name its path exports to now, and whose whole tree is clean: every file and symlink archived, not dirty, not
// busy, one link, recorded under the old directory's name + its relative path; every subdirectory recorded there
// too (or never recorded). Anything else is left to the per-file export (a dirty file is uploaded as usual).
// The conditional-write rules hold: one listing of the old prefix right before the rename must show exactly the
// blobs and etags recorded (a blob changed or added behind the mount's back → a conflict, nothing renamed); the
// rename refuses to replace an existing destination (If-None-Match: *). After the rename, one listing of the new
// prefix records the etags under the new names (the service may or may not keep etags across a rename).
// Requests per renamed directory: list, rename, list, and a HEAD of the directory (plus parent directories created).
import type { BlobStore } from '../blob/blob-store.js';
import { BlobError, describeError } from '../errors.js';
import type { Coordinator } from '../hsm/coordinator.js';
import * as flags from '../hsm/flags.js';
import { isLocalOnly } from '../namespace/file-types.js';
import { ROOT_INO, type Inode, type MetaStore } from '../namespace/types.js';

export interface DirectoryRenameOptions {
  meta: MetaStore;
  store: BlobStore;
  coordinator: Coordinator;
  /** Whether a path (e.g. '/a/b') is under the job's prefixes. */
  under: (path: string) => boolean;
  log: (line: string) => void;
  signal?: AbortSignal;
}

export interface DirectoryRenameResult {
  /** Directories renamed on the service: [old blob name, new blob name, entries moved]. */
  renamed: Array<{ from: string; to: string; entries: number }>;
  /** Paths of renamed directories not renamed on the service because of a conflict (logged). */
  conflicts: string[];
}

interface TreeEntry {
  inode: Inode;
  /** Relative path under the directory ('a/b.txt'). */
  rel: string;
}

/** Every entry under a directory that has a blob form (depth first), with its path relative to it. */
function tree(meta: MetaStore, ino: number, rel = ''): TreeEntry[] {
  const out: TreeEntry[] = [];
  for (const e of meta.readdir(ino)) {
    if (isLocalOnly(e.inode.kind)) continue; // no blob: it moves with the directory, nothing to rename
    const r = rel ? `${rel}/${e.name}` : e.name;
    out.push({ inode: e.inode, rel: r });
    if (e.inode.kind === 'dir') out.push(...tree(meta, e.inode.ino, r));
  }
  return out;
}

/** Directories whose recorded blob name differs from where their path exports now (topmost ones only). */
function renamedDirectories(o: DirectoryRenameOptions): Array<{ dir: Inode; path: string }> {
  const out: Array<{ dir: Inode; path: string }> = [];
  const walk = (ino: number, path: string) => {
    for (const e of o.meta.readdir(ino)) {
      if (e.inode.kind !== 'dir') continue;
      const p = `${path}/${e.name}`;
      if (e.inode.blobName !== null && e.inode.blobName !== o.coordinator.blobNameFor(p)) {
        if (o.under(p)) out.push({ dir: e.inode, path: p });
      } else walk(e.inode.ino, p);
    }
  };
  walk(ROOT_INO, '');
  return out;
}

/** Why a renamed tree cannot move as one rename, or '' when it can. */
function notMovable(o: DirectoryRenameOptions, from: string, entries: TreeEntry[]): string {
  for (const { inode, rel } of entries) {
    const want = `${from}/${rel}`;
    if (inode.kind === 'dir') {
      if (inode.blobName !== null && inode.blobName !== want) return `directory ${rel} was recorded as ${inode.blobName}`;
      continue;
    }
    if (inode.blobName !== want) return `${rel} was not archived under ${want}`;
    if (!flags.matches(inode.hsmFlags, flags.CLEAN_ARCHIVED)) return `${rel} is not clean and archived`;
    if (inode.nlink !== 1) return `${rel} has ${inode.nlink} links`;
    if (o.coordinator.isBusy(inode.ino)) return `${rel} has an HSM action running`;
  }
  return '';
}

async function listEtags(store: BlobStore, prefix: string, signal: AbortSignal | undefined): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for await (const page of store.listPages({ prefix, ...(signal ? { signal } : {}) })) for (const b of page) out.set(b.name, b.etag);
  return out;
}

export async function exportDirectoryRenames(o: DirectoryRenameOptions): Promise<DirectoryRenameResult> {
  const result: DirectoryRenameResult = { renamed: [], conflicts: [] };
  const paths = o.store.hierarchicalPaths();
  if (!paths) return result;
  for (const { dir, path } of renamedDirectories(o)) {
    o.signal?.throwIfAborted();
    const from = dir.blobName!;
    const to = o.coordinator.blobNameFor(path);
    const entries = tree(o.meta, dir.ino);
    const why = notMovable(o, from, entries);
    if (why) {
      o.log(`export: ${path} (renamed from ${from}) is not renamed on the service: ${why}; its files export one by one`);
      continue;
    }
    const conflict = (reason: string) => {
      result.conflicts.push(path);
      o.log(`export conflict: ${path} (renamed from ${from}) was not renamed on the service: ${reason}`);
    };
    const before = await listEtags(o.store, `${from}/`, o.signal);
    const files = entries.filter((e) => e.inode.kind !== 'dir');
    const changed = files.find((e) => before.get(`${from}/${e.rel}`) !== e.inode.etag);
    const known = new Set(entries.map((e) => `${from}/${e.rel}`));
    const extra = [...before.keys()].find((name) => !known.has(name));
    if (changed || extra) {
      conflict(changed ? `${from}/${changed.rel} changed on the service (or is gone)` : `${extra} exists on the service but not here`);
      continue;
    }
    await o.coordinator.ensureParentStubs(path);
    try {
      await paths.rename(from, to, { ifNoneMatch: '*', ...(o.signal ? { signal: o.signal } : {}) });
    } catch (err) {
      if (err instanceof BlobError && (err.kind === 'AlreadyExists' || err.kind === 'PreconditionFailed' || err.kind === 'NotFound')) {
        conflict(describeError(err));
        continue;
      }
      throw err;
    }
    const after = await listEtags(o.store, `${to}/`, o.signal);
    const dirEtag = (await o.store.head(to, o.signal ? { signal: o.signal } : {})).etag;
    o.meta.transaction(() => {
      o.meta.update(dir.ino, { blobName: to, etag: dirEtag });
      for (const { inode, rel } of entries) {
        if (inode.kind === 'dir' && inode.blobName === null) continue;
        const name = `${to}/${rel}`;
        o.meta.update(inode.ino, { blobName: name, etag: after.get(name) ?? inode.etag });
      }
    });
    result.renamed.push({ from, to, entries: entries.length });
    o.log(`export: renamed ${from} → ${to} on the service (${entries.length} entries, one rename call)`);
  }
  return result;
}
