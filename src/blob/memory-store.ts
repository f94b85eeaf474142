// An in-memory BlobStore with Azure's semantics, request counters and fault hooks, for fast unit and model tests.
// Semantics kept equal to AzureBlobStore on Azurite (test/blob-contract.test.ts runs one suite on both):
// quoted etags that change on every write, conditional writes, lower-cased metadata keys, listing in UTF-8 byte
// order with continuation across pages, Archive-tier blobs unreadable, 1 s Last-Modified resolution.
import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { BlobError, type BlobErrorKind } from '../errors.js';
import { md5Of } from './content-md5.js';
import {
  checkSourceSize,
  type NamespaceKind,
  normalizeEtag,
  normalizeMetadata,
  type BlobInfo,
  type BlobStore,
  type ListOptions,
  type ReadOptions,
  type RequestCounts,
  type UploadOptions,
  type UploadResult,
  type UploadSource,
  type WriteResult,
} from './blob-store.js';

/** Operation names, the same as AzureBlobStore's request counters. */
export type MemoryOp =
  | 'list'
  | 'head'
  | 'read'
  | 'stageBlock'
  | 'commitBlockList'
  | 'upload'
  | 'setMetadata'
  | 'delete'
  | 'containerExists'
  | 'createContainer'
  | 'setTier'
  | 'append'
  | 'getAccountInfo';

export type BlobTier = 'Hot' | 'Cool' | 'Cold' | 'Archive';

/** Called before every request (after it is counted); throw to fail it, await to delay it. */
export type BeforeOpHook = (op: MemoryOp, target: string, signal: AbortSignal | undefined) => void | Promise<void>;

interface StoredBlob {
  data: Buffer;
  etag: string;
  lastModified: Date;
  metadata: Record<string, string>;
  tier: BlobTier;
  /** Content-MD5 (base64), absent for a blob committed without one. */
  contentMd5?: string;
}

export interface MemoryStoreOptions {
  /** Default 'memory'. */
  description?: string;
  /** Whether the container exists at the start (default true). */
  containerExists?: boolean;
  /** Default page size for listings (5000, as Azure). */
  pageSize?: number;
  /** Default staged block size for uploads (8 MiB). */
  blockSize?: number;
}

const utf8Compare = (a: string, b: string) => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('The operation was aborted', 'AbortError');
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortReason(signal));
    const onAbort = () => {
      if (timer) clearTimeout(timer);
      reject(abortReason(signal!));
    };
    // An infinite delay is a hang that only the caller's signal ends.
    const timer = Number.isFinite(ms)
      ? setTimeout(() => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        }, ms)
      : undefined;
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

async function* chunksOf(source: UploadSource, blockSize: number): AsyncGenerator<Buffer> {
  if ('data' in source) {
    for (let off = 0; off < source.data.length; off += blockSize) {
      yield Buffer.from(source.data.subarray(off, Math.min(off + blockSize, source.data.length)));
    }
    return;
  }
  if ('handle' in source) {
    for (let off = 0; off < source.size; ) {
      const buf = Buffer.alloc(Math.min(blockSize, source.size - off));
      const { bytesRead } = await source.handle.read(buf, 0, buf.length, off);
      if (bytesRead === 0) break;
      off += bytesRead;
      yield buf.subarray(0, bytesRead);
    }
    await source.verify?.();
    return;
  }
  if ('path' in source) {
    const fh = await open(source.path, 'r');
    try {
      for (;;) {
        const buf = Buffer.alloc(blockSize);
        const { bytesRead } = await fh.read(buf, 0, blockSize, null);
        if (bytesRead === 0) return;
        yield buf.subarray(0, bytesRead);
      }
    } finally {
      await fh.close();
    }
  }
  let parts: Buffer[] = [];
  let have = 0;
  for await (const chunk of source.stream) {
    let buf: Buffer = typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk as Uint8Array);
    while (buf.length > 0) {
      const take = Math.min(blockSize - have, buf.length);
      parts.push(buf.subarray(0, take));
      have += take;
      buf = buf.subarray(take);
      if (have === blockSize) {
        yield Buffer.concat(parts, have);
        parts = [];
        have = 0;
      }
    }
  }
  if (have > 0) yield Buffer.concat(parts, have);
}

export class MemoryBlobStore implements BlobStore {
  readonly description: string;
  /** A generic hook run before every request: throw to fail it, await to delay or hang it. */
  beforeOp: BeforeOpHook | undefined;
  private readonly blobs = new Map<string, StoredBlob>();
  private counts: RequestCounts = {};
  private readonly failures = new Map<MemoryOp, { error: BlobError | (() => BlobError); remaining: number }[]>();
  private readonly delays = new Map<MemoryOp, number>();
  private exists: boolean;
  private seq = 0;
  private readonly pageSize: number;
  private readonly blockSize: number;

  constructor(options: MemoryStoreOptions = {}) {
    this.description = options.description ?? 'memory';
    this.exists = options.containerExists ?? true;
    this.pageSize = options.pageSize ?? 5000;
    this.blockSize = options.blockSize ?? 8 * 1024 * 1024;
  }

  // ---- fault hooks and test helpers -----------------------------------------------------------------------

  /** The next `count` requests of `op` fail with this error (or a BlobError of this kind). */
  failNext(op: MemoryOp, error: BlobError | BlobErrorKind, count = 1): this {
    const list = this.failures.get(op) ?? [];
    const make = typeof error === 'string' ? () => new BlobError(error, `injected ${error} on ${op}`) : error;
    list.push({ error: make, remaining: count });
    this.failures.set(op, list);
    return this;
  }

  /** Every request of `op` waits `ms` first (Infinity: hangs until the caller's signal aborts); 0 clears. */
  delay(op: MemoryOp, ms: number): this {
    if (ms > 0) this.delays.set(op, ms);
    else this.delays.delete(op);
    return this;
  }

  /** Clears injected failures and delays (not beforeOp). */
  clearFaults(): void {
    this.failures.clear();
    this.delays.clear();
  }

  resetCounts(): void {
    this.counts = {};
  }

  /** Sets a blob's access tier (Archive: reads fail with Archived until set back). Counted as 'setTier'. */
  async setTier(name: string, tier: BlobTier): Promise<void> {
    await this.begin('setTier', name);
    const blob = this.blobs.get(name);
    if (!blob) throw this.notFound('setTier', name);
    blob.tier = tier;
  }

  /**
   * Another client's write: stores a blob directly, not counted, no hooks. Returns its etag. It carries the MD5 of
   * its data, as a single-request Put Blob does; `contentMd5: null` stores none (a multi-block upload by a tool that
   * sets no digest), a string stores that one.
   */
  putDirect(
    name: string,
    data: Buffer | string,
    metadata: Record<string, string> = {},
    options: { contentMd5?: string | null } = {},
  ): WriteResult {
    const bytes = Buffer.from(data);
    const md5 = options.contentMd5 === undefined ? md5Of(bytes) : options.contentMd5;
    return this.commit(name, bytes, normalizeMetadata(metadata), md5 ?? undefined);
  }

  /** Bit rot behind the service's back: flips the byte at `offset` of a stored blob, keeping etag and digest. */
  corruptDirect(name: string, offset: number): void {
    const blob = this.blobs.get(name);
    if (!blob || offset >= blob.data.length) throw new Error(`corruptDirect: no byte ${offset} in ${name}`);
    const data = Buffer.from(blob.data);
    data[offset] = data[offset]! ^ 0xff;
    blob.data = data;
  }

  /** Another client's delete: removes a blob directly, not counted, no hooks. */
  deleteDirect(name: string): boolean {
    return this.blobs.delete(name);
  }

  /** The blob's current bytes (a copy), or undefined. */
  getData(name: string): Buffer | undefined {
    const b = this.blobs.get(name);
    return b ? Buffer.from(b.data) : undefined;
  }

  /** Names of all blobs, in listing order. */
  names(): string[] {
    return [...this.blobs.keys()].sort(utf8Compare);
  }

  // ---- BlobStore ----------------------------------------------------------------------------------------

  requestCounts(): RequestCounts {
    return { ...this.counts };
  }

  /** The in-memory store models a flat namespace only. */
  readonly namespace = 'flat' as const;

  async detectNamespace(options: { signal?: AbortSignal } = {}): Promise<NamespaceKind> {
    await this.begin('getAccountInfo', '', options.signal);
    return 'flat';
  }

  useNamespace(kind: NamespaceKind): void {
    if (kind !== 'flat') throw new BlobError('Invalid', 'the in-memory store has no hierarchical namespace');
  }

  hierarchicalPaths(): undefined {
    return undefined;
  }

  async *listPages(options: ListOptions = {}): AsyncIterable<BlobInfo[]> {
    const prefix = options.prefix ?? '';
    const pageSize = Math.max(1, options.pageSize ?? this.pageSize);
    let after: string | undefined;
    for (;;) {
      await this.begin('list', `${prefix}*`, options.signal);
      this.requireContainer('list');
      const names = [...this.blobs.keys()]
        .filter((n) => n.startsWith(prefix) && (after === undefined || utf8Compare(n, after) > 0))
        .sort(utf8Compare);
      const page = names.slice(0, pageSize).map((n) => this.info(n, this.blobs.get(n)!));
      if (page.length > 0) yield page;
      if (names.length <= pageSize) return;
      after = page[page.length - 1]!.name;
    }
  }

  async head(name: string, options: { signal?: AbortSignal } = {}): Promise<BlobInfo> {
    await this.begin('head', name, options.signal);
    const blob = this.blobs.get(name);
    if (!blob) throw this.notFound('head', name);
    return this.info(name, blob);
  }

  async readRange(name: string, offset: number, length: number | undefined, options: ReadOptions = {}): Promise<Readable> {
    if (!Number.isSafeInteger(offset) || offset < 0) throw new BlobError('Invalid', `read ${name}: bad offset ${offset}`);
    if (length !== undefined && (!Number.isSafeInteger(length) || length < 0)) {
      throw new BlobError('Invalid', `read ${name}: bad length ${length}`);
    }
    if (length === 0) {
      // As AzureBlobStore: an empty read is answered by a HEAD.
      await this.head(name, { signal: options.signal });
      return Readable.from([]);
    }
    await this.begin('read', name, options.signal);
    const blob = this.blobs.get(name);
    if (!blob) throw this.notFound('read', name);
    if (options.ifMatch && normalizeEtag(options.ifMatch) !== blob.etag) {
      throw new BlobError('PreconditionFailed', `read ${name}: HTTP 412 ConditionNotMet`, { status: 412 });
    }
    // Azurite refuses any read of an archived blob, even one starting past its end.
    if (blob.tier === 'Archive') {
      throw new BlobError('Archived', `read ${name}: HTTP 409 BlobArchived`, { status: 409 });
    }
    if (offset >= blob.data.length) return Readable.from([]);
    const end = length === undefined ? blob.data.length : Math.min(blob.data.length, offset + length);
    const bytes = blob.data.subarray(offset, end); // stored buffers are never mutated: no copy needed
    return Readable.from(bytes.length > 0 ? [bytes] : []);
  }

  async upload(name: string, source: UploadSource, options: UploadOptions): Promise<UploadResult> {
    const blockSize = options.blockSize ?? this.blockSize;
    if (!Number.isSafeInteger(blockSize) || blockSize <= 0) {
      throw new BlobError('Invalid', `upload ${name}: bad block size ${blockSize}`);
    }
    const single = options.singleRequest === true && 'data' in source;
    const blocks: Buffer[] = single && 'data' in source ? [Buffer.from(source.data)] : [];
    let staged = 0;
    if (single) options.onProgress?.(blocks[0]!.length);
    try {
      for await (const block of single ? [] : chunksOf(source, blockSize)) {
        await this.begin('stageBlock', name, options.signal);
        this.requireContainer('stageBlock');
        blocks.push(block);
        staged += block.length;
        options.onProgress?.(staged);
      }
    } catch (err) {
      if ('stream' in source) source.stream.destroy();
      throw err;
    }
    const op = single ? 'upload' : 'commitBlockList';
    await this.begin(op, name, options.signal);
    this.requireContainer(op);
    const existing = this.blobs.get(name);
    if (options.ifMatch !== undefined && normalizeEtag(options.ifMatch) !== existing?.etag) {
      throw this.conditionNotMet(op, name);
    }
    if (options.ifNoneMatch === '*' && existing) {
      throw new BlobError('AlreadyExists', `${op} ${name}: HTTP 409 BlobAlreadyExists`, { status: 409 });
    }
    const data = Buffer.concat(blocks);
    checkSourceSize(name, data.length, options.expectedSize);
    const contentMd5 = md5Of(data);
    return { ...this.commit(name, data, normalizeMetadata(options.metadata), contentMd5), contentMd5, size: data.length };
  }

  async setMetadata(
    name: string,
    metadata: Record<string, string>,
    options: { ifMatch?: string; signal?: AbortSignal } = {},
  ): Promise<WriteResult> {
    await this.begin('setMetadata', name, options.signal);
    this.requireContainer('setMetadata');
    const blob = this.blobs.get(name);
    // As Azurite: a failed If-Match is reported before a missing blob (412, not 404).
    if (options.ifMatch !== undefined && normalizeEtag(options.ifMatch) !== blob?.etag) {
      throw this.conditionNotMet('setMetadata', name);
    }
    if (!blob) throw this.notFound('setMetadata', name);
    blob.metadata = normalizeMetadata(metadata);
    blob.etag = this.nextEtag();
    blob.lastModified = this.now();
    return { etag: blob.etag, lastModified: blob.lastModified };
  }

  async delete(name: string, options: { ifMatch?: string; signal?: AbortSignal } = {}): Promise<void> {
    await this.begin('delete', name, options.signal);
    this.requireContainer('delete');
    const blob = this.blobs.get(name);
    if (options.ifMatch !== undefined && normalizeEtag(options.ifMatch) !== blob?.etag) {
      throw this.conditionNotMet('delete', name);
    }
    if (!blob) throw this.notFound('delete', name);
    this.blobs.delete(name);
  }

  async containerExists(options: { signal?: AbortSignal } = {}): Promise<boolean> {
    await this.begin('containerExists', '', options.signal);
    return this.exists;
  }

  async append(name: string, data: Buffer, options: { signal?: AbortSignal } = {}): Promise<void> {
    await this.begin('append', name, options.signal);
    this.requireContainer('append');
    const blob = this.blobs.get(name);
    if (blob) {
      blob.data = Buffer.concat([blob.data, data]);
      blob.etag = this.nextEtag();
      blob.lastModified = this.now();
      delete blob.contentMd5;
    } else {
      this.putDirect(name, Buffer.from(data));
    }
  }

  async createContainer(options: { signal?: AbortSignal } = {}): Promise<boolean> {
    await this.begin('createContainer', '', options.signal);
    if (this.exists) return false;
    this.exists = true;
    return true;
  }

  // ---- internals ----------------------------------------------------------------------------------------

  /** Counts the request, then runs the fault hooks in order: beforeOp, delay, injected failure. */
  private async begin(op: MemoryOp, target: string, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) throw abortReason(signal);
    this.counts[op] = (this.counts[op] ?? 0) + 1;
    if (this.beforeOp) await this.beforeOp(op, target, signal);
    const ms = this.delays.get(op);
    if (ms) await sleep(ms, signal);
    const list = this.failures.get(op);
    if (list && list.length > 0) {
      const f = list[0]!;
      if (--f.remaining <= 0) list.shift();
      throw typeof f.error === 'function' ? f.error() : f.error;
    }
    if (signal?.aborted) throw abortReason(signal);
  }

  private requireContainer(op: string): void {
    if (!this.exists) {
      throw new BlobError('NotFound', `${op}: HTTP 404 ContainerNotFound (${this.description})`, { status: 404 });
    }
  }

  private notFound(op: string, name: string): BlobError {
    this.requireContainer(op);
    return new BlobError('NotFound', `${op} ${name}: HTTP 404 BlobNotFound`, { status: 404 });
  }

  private conditionNotMet(op: string, name: string): BlobError {
    return new BlobError('PreconditionFailed', `${op} ${name}: HTTP 412 ConditionNotMet`, { status: 412 });
  }

  private nextEtag(): string {
    this.seq++;
    return `"0x8DC${this.seq.toString(16).toUpperCase().padStart(12, '0')}"`;
  }

  /** Last-Modified with Azure's 1 s resolution. */
  private now(): Date {
    return new Date(Math.floor(Date.now() / 1000) * 1000);
  }

  private commit(name: string, data: Buffer, metadata: Record<string, string>, contentMd5: string | undefined): WriteResult {
    // A new write resets the tier to the default, as committing a block list does on Azure.
    const blob: StoredBlob = {
      data,
      etag: this.nextEtag(),
      lastModified: this.now(),
      metadata,
      tier: 'Hot',
      ...(contentMd5 ? { contentMd5 } : {}),
    };
    this.blobs.set(name, blob);
    return { etag: blob.etag, lastModified: blob.lastModified };
  }

  private info(name: string, blob: StoredBlob): BlobInfo {
    return {
      name,
      size: blob.data.length,
      etag: blob.etag,
      lastModified: blob.lastModified,
      tier: blob.tier,
      ...(blob.contentMd5 ? { contentMd5: blob.contentMd5 } : {}),
      metadata: { ...blob.metadata },
    };
  }
}
