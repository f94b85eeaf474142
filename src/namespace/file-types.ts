// File types: the kernel's type bits (S_IFMT) of each inode kind, and the one definition of which file types are
// local only. The blob encoding (docs/SEMANTICS.md §1) has a form for regular files, directories and symlinks
// only; FIFOs and sockets made in a mount live in the metadata store alone (never uploaded, never deleted by an
// import: they have no blob), and devices are refused. `blobhsm ingest` skips every local-only type the same way.
import { constants } from 'node:fs';
import type { InodeKind } from './types.js';

const { S_IFMT, S_IFREG, S_IFDIR, S_IFLNK, S_IFIFO, S_IFSOCK, S_IFCHR, S_IFBLK } = constants;

const TYPE_BITS: Record<InodeKind, number> = {
  file: S_IFREG,
  dir: S_IFDIR,
  symlink: S_IFLNK,
  fifo: S_IFIFO,
  socket: S_IFSOCK,
};

/** The kinds a blob can hold (regular files, directories as stubs, symlinks as ftype=LNK). */
export const BLOB_KINDS = ['file', 'dir', 'symlink'] as const satisfies readonly InodeKind[];
export type BlobKind = (typeof BLOB_KINDS)[number];

/** The kinds archived as a blob of their own (directories get stubs as their files need them). */
export const ARCHIVABLE_KINDS: readonly InodeKind[] = ['file', 'symlink'];

/** The kinds kept in the mount only (FIFOs, sockets): never exported, archived, or deleted by an import. */
export const LOCAL_ONLY_KINDS: readonly InodeKind[] = (Object.keys(TYPE_BITS) as InodeKind[]).filter((k) => isLocalOnly(k));

/** What export jobs and ingest log for a local-only entry they skip. */
export const LOCAL_ONLY_REASON = 'not a regular file, directory or symlink: local only';

/** A file type as the kernel or lstat gives it: an inode kind, a device (which blobhsm refuses), or unknown. */
export type FileType = InodeKind | 'device' | 'unknown';

/** The file type of a mode's S_IFMT bits. */
export function fileTypeOf(mode: number): FileType {
  const bits = mode & S_IFMT;
  if (bits === S_IFCHR || bits === S_IFBLK) return 'device';
  const kind = (Object.keys(TYPE_BITS) as InodeKind[]).find((k) => TYPE_BITS[k] === bits);
  return kind ?? 'unknown';
}

/** The S_IFMT bits stat reports for a kind. */
export function typeBits(kind: InodeKind): number {
  return TYPE_BITS[kind];
}

/** Whether export, auto-export and hsm_archive may upload an inode of this kind. */
export function isArchivable(kind: InodeKind): boolean {
  return ARCHIVABLE_KINDS.includes(kind);
}

/** The blob form of a file type, or undefined for a local-only one (FIFOs, sockets, devices, unknown types). */
export function blobKindOf(type: FileType): BlobKind | undefined {
  return BLOB_KINDS.find((k) => k === type);
}

/** Whether a file type stays local only (FIFOs, sockets, and devices, which ingest meets in a source tree). */
export function isLocalOnly(type: FileType): boolean {
  return blobKindOf(type) === undefined;
}
