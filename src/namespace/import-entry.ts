// What a re-import compares: the local entry at a blob's path against what the blob encodes (docs/SEMANTICS.md §3: a conflict
// is the same path with a different type, data or metadata). The import walker (importer.ts) asks an ImportDecider
// what to do with each blob; src/jobs/decide-import.ts implements the AMLFS conflict modes on top of
// compareEntries, and keepLocal here is the policy of the first import (leave every existing local path alone).
import { isDirty } from '../hsm/flags.js';
import type { InodeKind } from './types.js';


/** What the local namespace holds at the blob's path (a subset of an Inode, plus its live state). */
export interface LocalEntry {
  kind: InodeKind;
  mode: number;
  uid: number;
  gid: number;
  mtimeMs: number;
  size: number;
  /** Symlink target, else null. */
  target: string | null;
  hsmFlags: number;
  nlink: number;
  /** Blob name recorded at the last import/archive, else null. */
  blobName: string | null;
  etag: string | null;
  /** Directories: whether it has entries. */
  hasChildren?: boolean;
  /** Open, or an HSM action or a restore is running: it must not be replaced, reimported or released now. */
  busy?: boolean;
}

/** What the blob says the path is. */
export interface RemoteEntry {
  kind: InodeKind;
  /** Absent for an implicit directory (blobs under the name, no stub). */
  blobName?: string;
  etag?: string;
  size: number;
  mode: number;
  uid: number;
  gid: number;
  mtimeMs: number;
  /** Symlinks: the target (the blob's content). */
  target?: string;
  /** A directory that exists only because blobs are under its name: no attributes to compare. */
  implicit?: boolean;
}

export type ImportActionKind = 'create' | 'none' | 'skip' | 'fail' | 'update-attributes' | 'reimport' | 'replace';

export interface ImportDecision {
  action: ImportActionKind;
  /**
   * The existing file ends released and its local data is dropped: always for a file `reimport`, and for
   * `update-attributes` under OverwriteAlways on a resident clean file. (A `replace` makes a new, released entry.)
   */
  release: boolean;
  /** The path conflicts with the blob (counted in totalConflicts, with one log line). */
  conflict: boolean;
  /** Why, for the log line ('' for create and none). */
  reason: string;
}

/** Decides what an import does with one blob given the local entry at its path (undefined: nothing there). */
export type ImportDecider = (local: LocalEntry | undefined, remote: RemoteEntry) => ImportDecision;

export function importDecision(action: ImportActionKind, reason = '', release = false): ImportDecision {
  return { action, release, conflict: action !== 'create' && action !== 'none', reason };
}

export interface EntryComparison {
  /** Nothing differs: the path is preexisting. */
  same: boolean;
  typeDiffers: boolean;
  /** Why the local data is not the blob's data (files and symlinks), or ''. */
  data: string;
  /** Attribute differences, one phrase each. */
  attributes: string[];
  /** A non-empty local directory hides a file or symlink blob of the same name (docs/SEMANTICS.md §1). */
  hiddenByDirectory: boolean;
  /** All of the above in one phrase ('' when same). */
  reason: string;
}

const octal = (mode: number) => mode.toString(8).padStart(4, '0');

/**
 * Compares what survives an export round trip: permissions as `%04o` without setuid/setgid, modtime in whole
 * seconds. Directories compare owner, group and permissions only (their mtime moves whenever an entry is added
 * locally, and a stub's etag is bookkeeping); an implicit directory has nothing to compare.
 */
export function compareEntries(local: LocalEntry, remote: RemoteEntry): EntryComparison {
  const typeDiffers = local.kind !== remote.kind;
  let data = '';
  const attributes: string[] = [];
  if (!typeDiffers) {
    if (local.kind !== 'dir') {
      if (local.blobName === null || local.etag === null || local.blobName !== remote.blobName) {
        data = `the local ${local.kind} was not imported from this blob`;
      } else if (isDirty(local.hsmFlags)) data = `the local ${local.kind} was modified (dirty)`;
      else if (local.etag !== remote.etag) data = `the blob changed (etag ${local.etag} → ${remote.etag})`;
      else if (local.size !== remote.size) data = `the size differs (${local.size} → ${remote.size} bytes)`;
      else if (local.kind === 'symlink' && local.target !== (remote.target ?? null)) data = 'the symlink target differs';
    }
    if (!remote.implicit) {
      const lm = local.mode & 0o1777;
      const rm = remote.mode & 0o1777;
      if (lm !== rm) attributes.push(`permissions ${octal(lm)} → ${octal(rm)}`);
      if (local.uid !== remote.uid) attributes.push(`owner ${local.uid} → ${remote.uid}`);
      if (local.gid !== remote.gid) attributes.push(`group ${local.gid} → ${remote.gid}`);
      if (local.kind !== 'dir' && Math.floor(local.mtimeMs / 1000) !== Math.floor(remote.mtimeMs / 1000)) {
        attributes.push(`modtime ${new Date(local.mtimeMs).toISOString()} → ${new Date(remote.mtimeMs).toISOString()}`);
      }
    }
  }
  const same = !typeDiffers && !data && attributes.length === 0;
  const hiddenByDirectory = typeDiffers && local.kind === 'dir' && local.hasChildren === true;
  const reason = same
    ? ''
    : hiddenByDirectory
      ? `${remote.kind} blob hidden by the directory of the same name`
      : typeDiffers
        ? `type differs (local ${local.kind}, ${remote.kind} in blob)`
        : [data, ...(attributes.length ? [`attributes differ: ${attributes.join(', ')}`] : [])].filter(Boolean).join('; ');
  return { same, typeDiffers, data, attributes, hiddenByDirectory, reason };
}

/** The first import's policy: import what is missing, count what is the same, leave every other local path alone. */
export const keepLocal: ImportDecider = (local, remote) => {
  if (!local) return importDecision('create');
  const c = compareEntries(local, remote);
  if (c.same) return importDecision('none');
  return importDecision('skip', c.hiddenByDirectory ? c.reason : `${c.reason}; left unchanged`);
};
