// The BlobStore seam: everything blobhsm asks of a blob container. Implementations: azure-store, memory-store.
import type { FileHandle } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { SourceChangedError } from '../errors.js';

/** One blob as a listing page or a HEAD reports it. Metadata keys are lower-cased. */
export interface BlobInfo {
  name: string;
  size: number;
  etag: string;
  lastModified: Date;
  /** Access tier (Hot, Cool, Cold, Archive) when the service reports it. */
  tier?: string;
  /** The blob's Content-MD5 (base64, see content-md5.ts) when it has one. */
  contentMd5?: string;
  metadata: Record<string, string>;
  /** On an account with a hierarchical namespace: the POSIX attributes the service keeps for the path. */
  hns?: HnsAttributes;
}

/**
 * What an account with a hierarchical namespace (ADLS Gen2) reports for a path: List Blobs with
 * `include=permissions` (`Owner`, `Group`, `Permissions`, `Acl`, `ResourceType`) or a HEAD (`x-ms-owner`, ...).
 * Values are the service's strings: owner/group `$superuser` or an Entra object ID, permissions `rwxr-x---`
 * (sticky `t`/`T`, a trailing `+` when an extended ACL exists), the ACL `user::rwx,user:<id>:r-x,...`.
 */
export interface HnsAttributes {
  owner?: string;
  group?: string;
  permissions?: string;
  acl?: string;
  resourceType?: 'file' | 'directory';
}

/** 'hns': the account has a hierarchical namespace (POSIX attributes in headers, real directories, atomic rename). */
export type NamespaceKind = 'hns' | 'flat';

/** POSIX access control as HNS takes it on create and set-access-control (any field absent: left as is). */
export interface HnsAccess {
  owner?: string;
  group?: string;
  /** Symbolic (`rwxr-x---`, sticky `t`/`T`) or 4-digit octal. */
  permissions?: string;
  /** The access ACL, `user::rwx,user:<id>:r-x,group::r-x,mask::r-x,other::---`; replaces permissions when given. */
  acl?: string;
}

/** The path operations of a hierarchical namespace (the DFS API) that export uses. */
export interface HierarchicalPaths {
  /** Creates a real directory with its access control; `ifNoneMatch: '*'` fails (AlreadyExists) when the path exists. */
  createDirectory(name: string, access: HnsAccess, options?: { ifNoneMatch?: '*'; signal?: AbortSignal }): Promise<WriteResult>;
  setAccessControl(name: string, access: HnsAccess, options?: { ifMatch?: string; signal?: AbortSignal }): Promise<WriteResult>;
  /** Renames a file or a directory with everything under it, atomically; `ifNoneMatch: '*'` refuses to replace. */
  rename(from: string, to: string, options?: { ifNoneMatch?: '*'; signal?: AbortSignal }): Promise<void>;
}

export interface ListOptions {
  prefix?: string;
  /** Maximum results per page (service default 5000). */
  pageSize?: number;
  signal?: AbortSignal;
}

export interface ReadOptions {
  /** Fail with PreconditionFailed when the blob's etag differs. */
  ifMatch?: string;
  signal?: AbortSignal;
}

/**
 * What an upload sends. `{ handle, size }`: bytes [0, size) of a file the caller opened (and closes), read in place
 * into the upload's block buffers; `verify()` runs once they were all read and before the commit (a check that the
 * file did not change meanwhile): a throw fails the upload, and nothing is committed.
 */
export type UploadSource =
  | { path: string }
  | { data: Buffer }
  | { stream: Readable }
  | { handle: FileHandle; size: number; verify?: () => Promise<void> };

export interface UploadOptions {
  metadata: Record<string, string>;
  /** Commit only if the blob's current etag is this one (else PreconditionFailed). */
  ifMatch?: string;
  /** '*': commit only if no blob of that name exists (else AlreadyExists or PreconditionFailed). */
  ifNoneMatch?: '*';
  /** Size of each staged block in bytes. */
  blockSize?: number;
  /** Blocks staged in parallel. */
  concurrency?: number;
  /**
   * The number of bytes the source must hold: a source that ends early or is longer fails the upload with
   * SourceChangedError before anything is committed (a file that shrank or grew while it was read).
   */
  expectedSize?: number;
  /** `{ data }` only: one Put Blob request instead of staged blocks and a commit (small files, stubs). */
  singleRequest?: boolean;
  /** Called with the number of bytes staged so far. */
  onProgress?: (bytesStaged: number) => void;
  signal?: AbortSignal;
}

export interface WriteResult {
  etag: string;
  lastModified: Date;
}

/** What an upload committed: the blob's Content-MD5 is the MD5 of exactly these bytes. */
export interface UploadResult extends WriteResult {
  contentMd5: string;
  size: number;
}

/** Requests made to the service, by operation name (list, head, read, stageBlock, commit, ...). */
export type RequestCounts = Record<string, number>;

export interface BlobStore {
  /** Human-readable location (account/container), never containing a secret. */
  readonly description: string;
  /** Flat listing of every blob under the prefix, one array per service page. */
  listPages(options?: ListOptions): AsyncIterable<BlobInfo[]>;
  head(name: string, options?: { signal?: AbortSignal }): Promise<BlobInfo>;
  /** Bytes [offset, offset+length) as a stream; a range past EOF is clipped (empty at or past EOF). */
  readRange(name: string, offset: number, length: number | undefined, options?: ReadOptions): Promise<Readable>;
  /**
   * Staged blocks, then one commit carrying the metadata and the Content-MD5 of the bytes staged (computed while
   * they were read): readers never see a partial blob.
   */
  upload(name: string, source: UploadSource, options: UploadOptions): Promise<UploadResult>;
  /** Appends to an append blob, created when missing (job logs in a logging container). Not retried once sent. */
  append(name: string, data: Buffer, options?: { signal?: AbortSignal }): Promise<void>;
  setMetadata(name: string, metadata: Record<string, string>, options?: { ifMatch?: string }): Promise<WriteResult>;
  delete(name: string, options?: { ifMatch?: string }): Promise<void>;
  containerExists(): Promise<boolean>;
  /** Creates the container; false when it already existed. */
  createContainer(): Promise<boolean>;
  /** Requests sent so far, by operation (for tests and benchmarks). */
  requestCounts(): RequestCounts;
  /** Asks the service whether the account has a hierarchical namespace (BlobError Unauthorized when refused). */
  detectNamespace(options?: { signal?: AbortSignal }): Promise<NamespaceKind>;
  /** The namespace rules in use ('flat' until set): on 'hns' listings and HEADs carry `hns`. */
  readonly namespace: NamespaceKind;
  /** Chooses the namespace rules (after detection, or forced by the user). */
  useNamespace(kind: NamespaceKind): void;
  /** The DFS path operations, on 'hns' only. */
  hierarchicalPaths(): HierarchicalPaths | undefined;
}

/**
 * Blob metadata keys are case-insensitive (Azure reports `Hdi_isfolder` and `hdi_isfolder` alike): every store
 * lower-cases keys on write and on read. When two keys differ only in case, the one that comes later in the
 * object's key order wins.
 */
export function normalizeMetadata(metadata: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!metadata) return out;
  for (const [key, value] of Object.entries(metadata)) {
    if (value === undefined) continue;
    out[key.toLowerCase()] = String(value);
  }
  return out;
}

/**
 * One spelling for etags: Azure quotes them in headers (`"0x8D…"`) but not in listings (`0x8D…`). Stores return
 * the quoted form so an etag from a listing compares equal to one from a HEAD or an upload.
 */
export function normalizeEtag(etag: string | undefined): string {
  if (!etag) return '';
  if (etag.startsWith('W/')) return etag;
  return etag.startsWith('"') ? etag : `"${etag}"`;
}

/** Fails an upload whose source did not hold `expected` bytes (UploadOptions.expectedSize), before its commit. */
export function checkSourceSize(name: string, size: number, expected: number | undefined): void {
  if (expected === undefined || size === expected) return;
  throw new SourceChangedError(
    `upload ${name}: the source held ${size} bytes, not the ${expected} expected (it changed while it was read); nothing was committed`,
  );
}
