// Inode and directory-entry records, and the MetaStore seam that persists them (SQLite in meta-store.ts).
import type { FlagPredicate } from '../hsm/flags.js';

/** The kinds of inode (file-types.ts: their type bits, and which stay local only). */
export type InodeKind = 'file' | 'dir' | 'symlink' | 'fifo' | 'socket';

export const ROOT_INO = 1;

/** Lustre's HSM flag bits (lustre_user.h); the rules over them live in src/hsm/flags.ts. */
export const HsmFlag = {
  EXISTS: 0x01,
  DIRTY: 0x02,
  RELEASED: 0x04,
  ARCHIVED: 0x08,
  NORELEASE: 0x10,
  NOARCHIVE: 0x20,
  LOST: 0x40,
} as const;

/** One file, directory, symlink, FIFO or socket. Hard links share an inode; names live in dentries. */
export interface Inode {
  ino: number;
  kind: InodeKind;
  /** Permission bits only (07777), no file-type bits. */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  atimeMs: number;
  mtimeMs: number;
  ctimeMs: number;
  nlink: number;
  /** Symlink target, else null. */
  target: string | null;
  /** Lustre HSM flag bitmask (see src/hsm/flags.ts). */
  hsmFlags: number;
  archiveId: number;
  /** Bumped on every content change. */
  dataVersion: number;
  /** dataVersion at the last successful archive (or import). */
  archivedVersion: number;
  /** Blob name this inode was imported from or last archived to, else null. */
  blobName: string | null;
  /** Blob etag at the last import/archive, else null. */
  etag: string | null;
  /** That blob's Content-MD5 (base64) when it has one, else null: what a restore verifies against. */
  contentMd5: string | null;
  /** Bumped when the cache data is dropped, so a stale cache file is never reused. */
  generation: number;
  /** Last time the data was read or written (for LRU eviction). */
  lastAccessMs: number;
}

export type NewInode = Omit<Inode, 'ino' | 'nlink'>;

/** A record with no data, no HSM state and no blob, all times set to timeMs; callers override what differs. */
export function blankInode(kind: InodeKind, mode: number, uid: number, gid: number, timeMs: number): NewInode {
  return {
    kind,
    mode,
    uid,
    gid,
    size: 0,
    atimeMs: timeMs,
    mtimeMs: timeMs,
    ctimeMs: timeMs,
    target: null,
    hsmFlags: 0,
    archiveId: 0,
    dataVersion: 0,
    archivedVersion: 0,
    blobName: null,
    etag: null,
    contentMd5: null,
    generation: 0,
    lastAccessMs: timeMs,
  };
}
export type InodePatch = Partial<Omit<Inode, 'ino' | 'kind'>>;

/** What `lfs find` tests of a directory entry (a narrow row: four times cheaper to read than a whole inode). */
export interface EntrySummary {
  name: string;
  ino: number;
  kind: InodeKind;
  hsmFlags: number;
  size: number;
  mtimeMs: number;
}

export interface DirEntry {
  name: string;
  inode: Inode;
}

/** A byte range [start, end) of a file's data present in the local cache. */
export type ByteRange = [start: number, end: number];

/** Persisted record of which ranges of each file's cache data are present. */
export interface RangeStore {
  ranges(ino: number, generation: number): ByteRange[];
  /** Records a present range (merging with neighbours). */
  addRange(ino: number, generation: number, range: ByteRange): void;
  clearRanges(ino: number): void;
}

/**
 * The kernel's caches of the mount (the libfuse3 binding keeps pages and entries until told): whoever changes a
 * file or a name behind the kernel's back (release, eviction, import jobs) says so here, and may await the kernel
 * having forgotten (a job that ends after its notifications ends with the kernel coherent). fuse-native: no-op.
 */
export interface KernelCache {
  /** A file's data or attributes changed: the kernel drops its pages and attributes. */
  inodeChanged(ino: number): Promise<void>;
  /** A name appeared in a directory: the kernel drops its dentry (a negative one too). */
  entryChanged(parent: number, name: string): Promise<void>;
  /** parent/name, the name of inode `child`, was deleted: the kernel drops the dentry and the link. */
  entryDeleted(parent: number, name: string, child: number): Promise<void>;
}

export const NO_KERNEL_CACHE: KernelCache = {
  inodeChanged: async () => undefined,
  entryChanged: async () => undefined,
  entryDeleted: async () => undefined,
};

export interface ChangelogRecord {
  index: number;
  type: string;
  timeMs: number;
  /** Flags as Lustre prints them (e.g. 0x0, or the HSM event flags). */
  flags: number;
  ino: number;
  parentIno: number;
  name: string;
  /** Extra fields: target parent/name for RENAME, hsm event details. */
  extra: Record<string, string | number>;
}

export interface MetaStore extends RangeStore {
  get(ino: number): Inode | undefined;
  lookup(parentIno: number, name: string): Inode | undefined;
  /** Path components from the root resolved to an inode, or undefined. */
  resolve(path: string): Inode | undefined;
  /** Some path of an inode ('/' for the root), or undefined if it has no name. */
  pathOf(ino: number): string | undefined;
  /** Every path of an inode (one per hard link), sorted; empty if it has no name. */
  pathsOf(ino: number): string[];
  readdir(parentIno: number): DirEntry[];
  /**
   * One page of a directory: at most `limit` entries whose names sort after `after` (byte order; undefined = from
   * the start). The cursor is the last name of the previous page, so each page costs the same however deep into
   * the directory it is, and entries added or removed between pages are neither repeated nor skipped otherwise.
   */
  readdirPage(parentIno: number, after: string | undefined, limit: number): DirEntry[];
  /** readdirPage with only the fields of EntrySummary (for walks over many entries, such as `lfs find`). */
  readdirSummaryPage(parentIno: number, after: string | undefined, limit: number): EntrySummary[];
  /** Whether a directory has any entry. */
  hasEntries(parentIno: number): boolean;
  /** Every directory entry whose name starts with `prefix` (a full scan, for startup checks). */
  entriesStartingWith(prefix: string): Array<{ parentIno: number; name: string }>;
  /** Creates an inode and its first name. Throws FsError EEXIST if the name exists. */
  create(parentIno: number, name: string, fields: NewInode): Inode;
  /** Adds a name for an existing inode (hard link). */
  link(ino: number, parentIno: number, name: string): Inode;
  /**
   * Removes a name; returns the inode with its remaining nlink. The record is deleted when that reaches 0, unless
   * `keepInode` (a file still open or known to the kernel: deleteInode() ends it, a restart's reconcile otherwise).
   */
  unlink(parentIno: number, name: string, options?: { keepInode?: boolean }): Inode;
  /** Moves a name, replacing an existing target name; returns the replaced inode if any (kept as by unlink). */
  rename(oldParentIno: number, oldName: string, newParentIno: number, newName: string, options?: { keepReplaced?: boolean }): Inode | undefined;
  /** Swaps what two names point to (renameat2 RENAME_EXCHANGE). */
  exchange(parentA: number, nameA: string, parentB: number, nameB: string): void;
  /** Files whose last name is gone but whose record was kept (nlink 0). */
  orphans(): Inode[];
  /** Deletes an inode record kept with nlink 0, and its ranges. */
  deleteInode(ino: number): void;
  /**
   * Changes fields of an inode. Durable (fsync'ed before returning) by default when the patch changes HSM state
   * (hsmFlags, archiveId, archivedVersion, blobName, etag, generation); `durable` overrides that either way.
   * Inside transaction(), durability applies when the outermost transaction commits.
   */
  update(ino: number, patch: InodePatch, options?: { durable?: boolean }): Inode;
  /** Runs fn in one SQLite transaction. */
  transaction<T>(fn: () => T): T;
  /** Durability barrier: every change made so far survives a power loss once this returns. */
  sync(): void;
  /** Regular files whose flags satisfy a predicate of src/hsm/flags.ts (RESIDENT, DIRTY_FILE, ...). */
  filesMatching(predicate: FlagPredicate): Inode[];
  /**
   * Files and symlinks (never a local-only kind) an export job must upload: not NOARCHIVE, and DIRTY or never ARCHIVED (the new and the
   * content-modified ones), in inode order.
   */
  exportCandidates(): Inode[];
  /** FIFOs and sockets (file-types.ts: local only), in inode order: an export job counts those it meets as skipped. */
  localOnlyInodes(): Inode[];
  /**
   * Directories (but the root) with no entries, or only local-only ones, in inode order: an export gives each its
   * directory stub.
   */
  emptyDirectories(): Inode[];
  /** Resident (not released) clean archived files, least recently accessed first. */
  evictionCandidates(limit: number): Inode[];
  countInodes(): number;
  /** Regular files by their exact HSM flags (flags → count), for metrics. */
  countFilesByHsmFlags(): Map<number, number>;
  /** Small persistent key/value settings (import done, mount options, ...). */
  /**
   * The etag last seen for a blob name that no inode records as its own blob (a name whose file was unlinked,
   * renamed away or replaced, or an extra hard-link name): export sends If-Match with it instead of If-None-Match.
   */
  blobEtag(name: string): string | undefined;
  /** Records (or, with null, forgets) the etag last seen for a blob name. */
  setBlobEtag(name: string, etag: string | null): void;
  /**
   * Inode `ino` no longer records blob `name` (its last name was unlinked, or its archive went to another name):
   * remembers `etag` for the name, unless one is remembered already or another inode records the name (its etag
   * is the newer one the mount saw, e.g. a file an import made of that blob).
   */
  rememberBlobEtag(name: string, etag: string, ino: number): void;
  /**
   * The inodes (other than `except`, in inode order) whose own blob (blobName) is this name: e.g. a file renamed
   * away from that path, or one still recording it after an import made a new file of that name.
   */
  inodesOfBlob(name: string, except?: number): Inode[];
  /** The extended access ACL of an inode (HNS imports; numeric ids, `user::rwx,user:1001:r-x,...`), else null. */
  accessAcl(ino: number): string | null;
  /** Records (or, with null, removes) an inode's extended access ACL; it goes with the inode. */
  setAccessAcl(ino: number, acl: string | null): void;
  /**
   * Auto-import's listing passes: records that these blob names were listed by pass `pass` (names missing from a
   * later pass are deletion candidates, names never listed since enablement never are).
   */
  markListed(names: readonly string[], pass: number): void;
  /** Up to `limit` names last listed before pass `pass`, in name order. */
  listedBefore(pass: number, limit: number): string[];
  forgetListed(names: readonly string[]): void;
  clearListed(): void;
  getSetting(key: string): string | undefined;
  setSetting(key: string, value: string): void;
  /** Appends a record, returning its index; like Lustre, records nothing (returns 0) while no reader is registered. */
  appendChangelog(record: Omit<ChangelogRecord, 'index' | 'timeMs'>): number;
  readChangelog(fromIndex: number, limit: number): ChangelogRecord[];
  /** Index of the last record ever appended (0 if none). */
  changelogLastIndex(): number;
  /** A new reader id ('cl1', 'cl2', ...): it sees records appended from now on. */
  registerChangelogReader(): string;
  /** Records `reader` consumed records up to `index` (0 = all); purges records every reader cleared. */
  clearChangelog(reader: string, index: number): void;
  deregisterChangelogReader(reader: string): void;
  close(): void;
}
