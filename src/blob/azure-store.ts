// The BlobStore on Azure Blob Storage (and Azurite). With hns-listing.ts and hns-paths.ts (the hierarchical-
// namespace parts), the only modules that use @azure/* (loaded through azure-sdk.ts).
//
// Every service call runs through `call()`: a client-side timeout per attempt (combined with the caller's
// signal), bounded exponential backoff with jitter, and one mapping from SDK errors to BlobError. The SDK's own
// retry policy is disabled (maxTries 1) and it sets no timeouts, so what runs is what this file says.
// A pipeline policy counts the requests sent, by operation (a core-pipeline policy: a legacy RequestPolicyFactory
// in the SDK's Pipeline would have every request and answer converted to and from the old WebResource shape).
// No secret (account key, SAS signature) ever reaches an error message: every message goes through scrubSecrets().
import { randomBytes } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import type { AnonymousCredential, BlockBlobClient, ContainerClient, StorageSharedKeyCredential } from '@azure/storage-blob';
import type { TokenCredential } from '@azure/identity';
import type { PipelineRequest, PipelineResponse } from '@azure/core-rest-pipeline';
import { BlobError, UsageError } from '../errors.js';
import { loadIdentity, storageBlob } from './azure-sdk.js';
import { headerPermissions, listPermissionsPolicy, parseListingPermissions, type UrlPolicy } from './hns-listing.js';
import { DfsPaths } from './hns-paths.js';
import { formatMd5, md5FromService, md5Of, md5ToService } from './content-md5.js';
import { HashThreadError, Md5Threads, SharedBlockBuffers } from './md5-threads.js';
import {
  checkSourceSize,
  type HierarchicalPaths,
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

export interface AzureStoreOptions {
  container: string;
  connectionString?: string;
  account?: string;
  accountKey?: string;
  sasToken?: string;
  /** e.g. https://acct.blob.core.windows.net or http://127.0.0.1:10000/devstoreaccount1 */
  blobEndpoint?: string;
  /** Client-side timeout of each attempt of each call, in ms (default 30000). For reads: until the response
   * headers arrive, then the longest the body may stall while the consumer is waiting for data. */
  timeoutMs?: number;
  /** Retries of a failed idempotent call (default 4); 0 disables retrying. */
  retries?: number;
  /** First backoff delay in ms (default 200), doubled per retry, with jitter. */
  retryBaseMs?: number;
  /** Largest backoff delay in ms (default 10000). */
  retryMaxMs?: number;
  /** Listing page size (default 5000, the service maximum). */
  pageSize?: number;
  /** Default staged block size for uploads (8 MiB). */
  blockSize?: number;
  /** Default number of blocks staged in parallel (8). */
  concurrency?: number;
  /** The threads that hash staged blocks (shared by several stores; the caller closes it). Default: the store's
   * own (md5-threads.ts: started on first use, ended by close()). */
  md5Threads?: Md5Threads;
  /** Environment used for credential resolution (default process.env). */
  env?: Record<string, string | undefined>;
  /** Use this token credential instead of DefaultAzureCredential when only an account is known. */
  tokenCredential?: TokenCredential;
  /** Called before each retry (for logs and tests). */
  onRetry?: (info: RetryInfo) => void;
}

export interface RetryInfo {
  op: string;
  target: string;
  /** The attempt that failed, from 1. */
  attempt: number;
  delayMs: number;
  error: BlobError;
}

/** Where the store's credentials came from and what they are. */
export type ResolvedAzureCredentials = {
  blobEndpoint: string;
  account: string | undefined;
  /** A description of where the credentials came from, e.g. "env AZURE_STORAGE_CONNECTION_STRING". */
  source: string;
} & (
  | { kind: 'sharedKey'; account: string; accountKey: string }
  | { kind: 'sas'; sasToken: string }
  | { kind: 'token'; account: string }
);

const DEFAULT_TIMEOUT_MS = 30_000;
const DEFAULT_RETRIES = 4;
const DEFAULT_PAGE_SIZE = 5000;
const DEFAULT_BLOCK_SIZE = 8 * 1024 * 1024;
const DEFAULT_CONCURRENCY = 8;

const CREDENTIALS_HELP =
  'set a connection string (--connection-string, env AZURE_STORAGE_CONNECTION_STRING), or an account ' +
  '(--account, env AZURE_STORAGE_ACCOUNT) with a key (--account-key, env AZURE_STORAGE_KEY or ' +
  'AZURE_STORAGE_ACCESS_KEY) or a SAS token (--sas-token, env AZURE_STORAGE_SAS_TOKEN); an account alone ' +
  'uses DefaultAzureCredential (Azure CLI login, managed identity, AZURE_CLIENT_ID/...)';

function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v.trim() === '' ? undefined : v.trim();
}

function stripSas(sas: string): string {
  return sas.startsWith('?') ? sas.slice(1) : sas;
}

function trimSlash(url: string): string {
  return url.replace(/\/+$/, '');
}

function defaultEndpoint(account: string, protocol = 'https', suffix = 'core.windows.net'): string {
  return `${protocol}://${account}.blob.${suffix}`;
}

/** The account name in an endpoint: the first host label of `<acct>.blob.…`, or the first path segment of a
 * path-style (IP or localhost) endpoint such as Azurite's. */
function accountFromEndpoint(endpoint: string): string | undefined {
  try {
    const url = new URL(endpoint);
    const m = /^([a-z0-9]+)\.blob\./i.exec(url.hostname);
    if (m) return m[1];
    const first = url.pathname.split('/').filter(Boolean)[0];
    return first || undefined;
  } catch {
    return undefined;
  }
}

/** Parses `Key=Value;...` (values may contain `=`). */
function parseConnectionString(cs: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of cs.split(';')) {
    const i = part.indexOf('=');
    if (i <= 0) continue;
    out.set(part.slice(0, i).trim().toLowerCase(), part.slice(i + 1).trim());
  }
  return out;
}

function fromConnectionString(
  cs: string,
  source: string,
  endpointOverride: string | undefined,
): ResolvedAzureCredentials {
  const kv = parseConnectionString(cs);
  if (kv.get('usedevelopmentstorage')?.toLowerCase() === 'true') {
    // Azurite's well-known development account on its default port.
    return {
      kind: 'sharedKey',
      account: 'devstoreaccount1',
      accountKey:
        'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==',
      blobEndpoint: trimSlash(endpointOverride ?? 'http://127.0.0.1:10000/devstoreaccount1'),
      source,
    };
  }
  const accountName = nonEmpty(kv.get('accountname'));
  const protocol = nonEmpty(kv.get('defaultendpointsprotocol')) ?? 'https';
  const suffix = nonEmpty(kv.get('endpointsuffix')) ?? 'core.windows.net';
  const endpoint =
    endpointOverride ??
    nonEmpty(kv.get('blobendpoint')) ??
    (accountName ? defaultEndpoint(accountName, protocol, suffix) : undefined);
  if (!endpoint) {
    throw new UsageError(`the connection string from ${source} names neither AccountName nor BlobEndpoint`);
  }
  const blobEndpoint = trimSlash(endpoint);
  const accountKey = nonEmpty(kv.get('accountkey'));
  const sas = nonEmpty(kv.get('sharedaccesssignature'));
  if (accountKey) {
    if (!accountName) throw new UsageError(`the connection string from ${source} has an AccountKey but no AccountName`);
    return { kind: 'sharedKey', account: accountName, accountKey, blobEndpoint, source };
  }
  if (sas) {
    return {
      kind: 'sas',
      account: accountName ?? accountFromEndpoint(blobEndpoint),
      sasToken: stripSas(sas),
      blobEndpoint,
      source,
    };
  }
  throw new UsageError(
    `the connection string from ${source} has neither AccountKey nor SharedAccessSignature; ${CREDENTIALS_HELP}`,
  );
}

/**
 * Decides which credentials to use, without touching the network. Order: explicit options (connection string,
 * account + key, SAS), then the environment (AZURE_STORAGE_CONNECTION_STRING; AZURE_STORAGE_ACCOUNT with
 * AZURE_STORAGE_KEY / AZURE_STORAGE_ACCESS_KEY; with AZURE_STORAGE_SAS_TOKEN), then an account alone with a token
 * credential (DefaultAzureCredential). The endpoint is options.blobEndpoint, else the connection string's, else
 * AZURE_STORAGE_BLOB_ENDPOINT, else https://<account>.blob.core.windows.net.
 * An env connection string is skipped when an explicit account names a different account.
 */
export function resolveAzureCredentials(
  opts: Pick<AzureStoreOptions, 'connectionString' | 'account' | 'accountKey' | 'sasToken' | 'blobEndpoint'>,
  env: Record<string, string | undefined> = process.env,
): ResolvedAzureCredentials {
  const optEndpoint = nonEmpty(opts.blobEndpoint);
  const optCs = nonEmpty(opts.connectionString);
  const optAccount = nonEmpty(opts.account);
  const optKey = nonEmpty(opts.accountKey);
  const optSas = nonEmpty(opts.sasToken);
  const envEndpoint = nonEmpty(env.AZURE_STORAGE_BLOB_ENDPOINT);

  if (optCs) return fromConnectionString(optCs, 'option connectionString', optEndpoint);

  const endpointFor = (account: string | undefined): string | undefined => {
    const e = optEndpoint ?? envEndpoint ?? (account ? defaultEndpoint(account) : undefined);
    return e === undefined ? undefined : trimSlash(e);
  };

  if (optKey) {
    const account = optAccount ?? nonEmpty(env.AZURE_STORAGE_ACCOUNT);
    if (!account) throw new UsageError(`an account key was given without an account name; ${CREDENTIALS_HELP}`);
    return {
      kind: 'sharedKey',
      account,
      accountKey: optKey,
      blobEndpoint: endpointFor(account)!,
      source: optAccount ? 'options account + accountKey' : 'env AZURE_STORAGE_ACCOUNT + option accountKey',
    };
  }
  if (optSas) {
    const account = optAccount ?? nonEmpty(env.AZURE_STORAGE_ACCOUNT);
    const blobEndpoint = endpointFor(account);
    if (!blobEndpoint) throw new UsageError(`a SAS token was given without an account or endpoint; ${CREDENTIALS_HELP}`);
    return {
      kind: 'sas',
      account: account ?? accountFromEndpoint(blobEndpoint),
      sasToken: stripSas(optSas),
      blobEndpoint,
      source: 'option sasToken',
    };
  }

  const envCs = nonEmpty(env.AZURE_STORAGE_CONNECTION_STRING);
  if (envCs) {
    const resolved = fromConnectionString(envCs, 'env AZURE_STORAGE_CONNECTION_STRING', optEndpoint);
    if (!optAccount || !resolved.account || resolved.account === optAccount) return resolved;
  }

  const account = optAccount ?? nonEmpty(env.AZURE_STORAGE_ACCOUNT);
  const accountSource = optAccount ? 'option account' : 'env AZURE_STORAGE_ACCOUNT';
  if (!account) throw new UsageError(`no Azure Storage account or credentials: ${CREDENTIALS_HELP}`);
  const blobEndpoint = endpointFor(account)!;
  const envKey = nonEmpty(env.AZURE_STORAGE_KEY) ?? nonEmpty(env.AZURE_STORAGE_ACCESS_KEY);
  if (envKey) {
    const keyVar = nonEmpty(env.AZURE_STORAGE_KEY) ? 'AZURE_STORAGE_KEY' : 'AZURE_STORAGE_ACCESS_KEY';
    return { kind: 'sharedKey', account, accountKey: envKey, blobEndpoint, source: `${accountSource} + env ${keyVar}` };
  }
  const envSas = nonEmpty(env.AZURE_STORAGE_SAS_TOKEN);
  if (envSas) {
    return {
      kind: 'sas',
      account,
      sasToken: stripSas(envSas),
      blobEndpoint,
      source: `${accountSource} + env AZURE_STORAGE_SAS_TOKEN`,
    };
  }
  return { kind: 'token', account, blobEndpoint, source: `${accountSource} + DefaultAzureCredential` };
}

/** Removes secrets from text: the given secret values (raw and URL-encoded), SAS signatures, account keys in
 * connection strings, and Authorization header values. */
export function scrubSecrets(text: string, secrets: readonly string[] = []): string {
  let out = text;
  for (const secret of secrets) {
    if (!secret || secret.length < 6) continue;
    for (const form of new Set([secret, encodeURIComponent(secret)])) out = out.split(form).join('<redacted>');
  }
  return out
    .replace(/([?&;\s]|^)sig=[^&\s;"'<>]*/gi, '$1sig=<redacted>')
    .replace(/AccountKey=[^;\s"']*/gi, 'AccountKey=<redacted>')
    .replace(/SharedAccessSignature=[^;\s"']*/gi, 'SharedAccessSignature=<redacted>')
    .replace(/\b(SharedKey(?:Lite)?|Bearer)\s+[^\s"',]+/g, '$1 <redacted>');
}

/** The request counter's name for an HTTP request to the blob service. */
export function classifyRequest(method: string, url: string): string {
  let query: URLSearchParams;
  let path: string;
  try {
    const u = new URL(url);
    query = u.searchParams;
    path = u.pathname;
  } catch {
    return `${method} ?`;
  }
  const comp = query.get('comp');
  const restype = query.get('restype');
  const m = method.toUpperCase();
  if (comp === 'list') return 'list';
  if (query.get('resource') === 'directory') return 'createDirectory';
  if (query.get('action') === 'setAccessControl') return 'setAccessControl';
  if (m === 'PUT' && query.has('mode')) return 'rename';
  if (restype === 'container') {
    if (!comp) {
      if (m === 'PUT') return 'createContainer';
      if (m === 'DELETE') return 'deleteContainer';
      return 'containerExists';
    }
    return `container:${comp}`;
  }
  if (restype === 'account') return `account:${comp ?? m}`;
  switch (comp) {
    case 'block':
      return 'stageBlock';
    case 'blocklist':
      return m === 'PUT' ? 'commitBlockList' : 'getBlockList';
    case 'metadata':
      return m === 'PUT' ? 'setMetadata' : 'getMetadata';
    case 'tier':
      return 'setTier';
    case null:
      break;
    default:
      return `${m.toLowerCase()}:${comp}`;
  }
  void path;
  if (m === 'HEAD') return 'head';
  if (m === 'GET') return 'read';
  if (m === 'PUT') return 'upload';
  if (m === 'DELETE') return 'delete';
  return m.toLowerCase();
}

/** Counts every request the client's core pipeline sends (each attempt of a retried call too), by operation. */
function requestCountingPolicy(counts: RequestCounts): SdkPolicy {
  return {
    name: 'blobhsmRequestCounts',
    sendRequest(request, next) {
      const op = classifyRequest(request.method, request.url);
      counts[op] = (counts[op] ?? 0) + 1;
      return next(request);
    },
  };
}

// Network errors after which the request cannot have reached the service: safe to retry any call.
const NOT_SENT_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL']);
const NETWORK_CODES = new Set([
  ...NOT_SENT_CODES,
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ETIMEDOUT',
  'ESOCKETTIMEDOUT',
  'UND_ERR_SOCKET',
  'ERR_STREAM_PREMATURE_CLOSE',
  'REQUEST_SEND_ERROR',
  'PARSE_ERROR',
]);

interface MappedError {
  error: BlobError;
  /** True when the request certainly did not reach the service. */
  notSent: boolean;
}

interface SdkErrorLike {
  name?: string;
  message?: string;
  code?: string;
  statusCode?: number;
  details?: { errorCode?: string };
  response?: { headers?: { get?(name: string): string | undefined } };
}

/** Maps an error thrown by the SDK (or the network) to a BlobError; `secrets` are scrubbed from the message. */
export function toBlobError(err: unknown, op: string, target: string, secrets: readonly string[] = []): MappedError {
  if (err instanceof BlobError) return { error: err, notSent: false };
  const e = (err ?? {}) as SdkErrorLike;
  const status = typeof e.statusCode === 'number' ? e.statusCode : undefined;
  const code = e.details?.errorCode ?? e.code;
  const requestId = e.response?.headers?.get?.('x-ms-request-id');
  const firstLine = String(e.message ?? err ?? '').split('\n')[0]!.trim();
  const what = [status !== undefined ? `HTTP ${status}` : undefined, code].filter(Boolean).join(' ');
  const detail = firstLine && firstLine !== code ? `: ${firstLine}` : '';
  const message = scrubSecrets(
    `${op} ${target}: ${what || 'failed'}${detail}${requestId ? ` (request id ${requestId})` : ''}`,
    secrets,
  );
  const mk = (kind: BlobError['kind']) => new BlobError(kind, message, { status });
  if (status === undefined) {
    const notSent = code !== undefined && NOT_SENT_CODES.has(code);
    if (code && NETWORK_CODES.has(code)) return { error: mk('Transient'), notSent };
    if (e.name === 'AbortError') return { error: mk('Timeout'), notSent: false };
    if (/data corruption|premature|socket hang up|network/i.test(firstLine)) return { error: mk('Transient'), notSent };
    return { error: mk('Transient'), notSent };
  }
  if (status === 404) return { error: mk('NotFound'), notSent: false };
  if (status === 412) return { error: mk('PreconditionFailed'), notSent: false };
  if (status === 401 || status === 403) return { error: mk('Unauthorized'), notSent: false };
  if (status === 409) {
    if (code === 'BlobAlreadyExists' || code === 'ContainerAlreadyExists') return { error: mk('AlreadyExists'), notSent: false };
    if (code === 'BlobArchived' || code === 'BlobBeingRehydrated') return { error: mk('Archived'), notSent: false };
    return { error: mk('PreconditionFailed'), notSent: false };
  }
  if (status === 429 || status === 503) return { error: mk('Throttled'), notSent: false };
  if (status === 408 || status === 500 || status === 502 || status === 504) return { error: mk('Transient'), notSent: false };
  // A body that arrived different from what was sent (its transactional Content-MD5 did not match): send it again.
  // Azure says Md5Mismatch; Azurite InvalidOperation "Provided contentMD5 doesn't match."
  if (status === 400 && (code === 'Md5Mismatch' || /contentMD5 doesn't match/i.test(firstLine))) {
    return { error: mk('Transient'), notSent: false };
  }
  return { error: mk('Invalid'), notSent: false };
}

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('The operation was aborted', 'AbortError');
}

/** One attempt of one call: its own controller, aborted by the per-attempt timer or by the caller's signal. */
class Attempt {
  readonly controller = new AbortController();
  timedOut = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly onCallerAbort: (() => void) | undefined;

  constructor(
    private readonly timeoutMs: number,
    private readonly callerSignal: AbortSignal | undefined,
  ) {
    if (callerSignal) {
      this.onCallerAbort = () => this.controller.abort(abortReason(callerSignal));
      callerSignal.addEventListener('abort', this.onCallerAbort, { once: true });
    }
    this.armTimer();
  }
  get signal(): AbortSignal {
    return this.controller.signal;
  }
  armTimer(): void {
    if (this.timer || this.timeoutMs <= 0 || !Number.isFinite(this.timeoutMs)) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.timedOut = true;
      this.controller.abort(new DOMException('client-side timeout', 'TimeoutError'));
    }, this.timeoutMs);
  }
  clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
  dispose(): void {
    this.clearTimer();
    if (this.callerSignal && this.onCallerAbort) this.callerSignal.removeEventListener('abort', this.onCallerAbort);
  }
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(abortReason(signal));
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortReason(signal!));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });

/**
 * idempotent: retried on any transient failure. conditional: a conditional write, retried after a transient
 * failure too: if the first attempt did commit, the retry fails its condition, and the callers tell their own write
 * from someone else's (the coordinator by its blobhsm_version stamp, stub uploads accept an existing stub).
 * unsafe: retried only when the request was never sent or the service said it did not perform it.
 */
type RetryMode = 'idempotent' | 'conditional' | 'unsafe';

interface CallOptions {
  signal?: AbortSignal;
  retry: RetryMode;
  /** Keep the attempt (caller link) alive after success: the result's lifetime manages it (streams). */
  keepAttempt?: (attempt: Attempt) => void;
}

function withMd5(bytes: Uint8Array | undefined): { contentMd5?: string } {
  const md5 = md5FromService(bytes);
  return md5 ? { contentMd5: md5 } : {};
}

function writeConditions(options: UploadOptions): { ifMatch: string } | { ifNoneMatch: '*' } | undefined {
  return options.ifMatch ? { ifMatch: options.ifMatch } : options.ifNoneMatch ? { ifNoneMatch: options.ifNoneMatch } : undefined;
}

function emptyStream(): Readable {
  return Readable.from([]);
}

function fixedWidthBlockId(uploadId: string, index: number): string {
  return Buffer.from(`${uploadId}-${String(index).padStart(6, '0')}`).toString('base64');
}

interface Block {
  index: number;
  /** A view of a buffer from the upload's SharedBlockBuffers: handed back once sent and hashed. */
  data: Buffer;
}

async function* blocksOfData(data: Buffer, blockSize: number, buffers: SharedBlockBuffers): AsyncGenerator<Block> {
  let index = 0;
  for (let off = 0; off < data.length; off += blockSize) {
    const end = Math.min(off + blockSize, data.length);
    const block = await buffers.take(end - off);
    data.copy(block, 0, off, end);
    yield { index: index++, data: block };
  }
}

async function* blocksOfFile(path: string, blockSize: number, buffers: SharedBlockBuffers): AsyncGenerator<Block> {
  const fh = await open(path, 'r');
  try {
    yield* blocksOfHandle(fh, (await fh.stat()).size, blockSize, buffers);
  } finally {
    await fh.close();
  }
}

/** Bytes [0, size) of an open file, read straight into block buffers; stops early if the file ends early. */
async function* blocksOfHandle(fh: FileHandle, size: number, blockSize: number, buffers: SharedBlockBuffers): AsyncGenerator<Block> {
  let index = 0;
  for (let off = 0; off < size; off += blockSize) {
    const len = Math.min(blockSize, size - off);
    const buf = await buffers.take(len);
    let got = 0;
    while (got < len) {
      const { bytesRead } = await fh.read(buf, got, len - got, off + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    if (got === 0) {
      buffers.give(buf);
      return; // the file shrank while we read it
    }
    yield { index: index++, data: got === len ? buf : buf.subarray(0, got) };
    if (got < len) return;
  }
}

/** The source's blocks; a `{ handle }` source's verify() runs after its last byte was read. */
async function* blocksOf(source: UploadSource, blockSize: number, buffers: SharedBlockBuffers): AsyncGenerator<Block> {
  if ('data' in source) yield* blocksOfData(source.data, blockSize, buffers);
  else if ('path' in source) yield* blocksOfFile(source.path, blockSize, buffers);
  else if ('stream' in source) yield* blocksOfStream(source.stream, blockSize, buffers);
  else {
    yield* blocksOfHandle(source.handle, source.size, blockSize, buffers);
    await source.verify?.();
  }
}

/** The stream's bytes copied into whole blocks (the stream may reuse its chunks; a block's bytes must not move). */
async function* blocksOfStream(stream: Readable, blockSize: number, buffers: SharedBlockBuffers): AsyncGenerator<Block> {
  let index = 0;
  let block: Buffer | undefined;
  let have = 0;
  for await (const chunk of stream) {
    const buf: Uint8Array = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Uint8Array);
    for (let off = 0; off < buf.length; ) {
      block ??= await buffers.take(blockSize);
      const take = Math.min(blockSize - have, buf.length - off);
      block.set(buf.subarray(off, off + take), have);
      have += take;
      off += take;
      if (have === blockSize) {
        yield { index: index++, data: block };
        block = undefined;
        have = 0;
      }
    }
  }
  if (block) yield { index: index++, data: block.subarray(0, have) };
}

export class AzureBlobStore implements BlobStore {
  readonly description: string;
  /** Which credentials are in use (never the secret itself). */
  readonly auth: { kind: ResolvedAzureCredentials['kind']; source: string; account: string | undefined; blobEndpoint: string };
  private readonly client: ContainerClient;
  private readonly counts: RequestCounts = {};
  private readonly secrets: string[];
  private readonly timeoutMs: number;
  private readonly retries: number;
  private readonly retryBaseMs: number;
  private readonly retryMaxMs: number;
  private readonly pageSize: number;
  private readonly blockSize: number;
  private readonly concurrency: number;
  private readonly onRetry: ((info: RetryInfo) => void) | undefined;
  private namespaceKind: NamespaceKind = 'flat';
  private readonly paths: DfsPaths;
  private readonly givenMd5Threads: Md5Threads | undefined;
  private ownMd5Threads: Md5Threads | undefined;

  constructor(
    readonly container: string,
    resolved: ResolvedAzureCredentials,
    options: Omit<AzureStoreOptions, 'container'> = {},
  ) {
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.retries = Math.max(0, options.retries ?? DEFAULT_RETRIES);
    this.retryBaseMs = options.retryBaseMs ?? 200;
    this.retryMaxMs = options.retryMaxMs ?? 10_000;
    this.pageSize = options.pageSize ?? DEFAULT_PAGE_SIZE;
    this.blockSize = options.blockSize ?? DEFAULT_BLOCK_SIZE;
    this.concurrency = Math.max(1, options.concurrency ?? DEFAULT_CONCURRENCY);
    this.onRetry = options.onRetry;
    this.givenMd5Threads = options.md5Threads;
    this.secrets = [];
    let credential: StorageSharedKeyCredential | AnonymousCredential | TokenCredential;
    let containerUrl = `${resolved.blobEndpoint}/${encodeURIComponent(container)}`;
    switch (resolved.kind) {
      case 'sharedKey':
        this.secrets.push(resolved.accountKey);
        credential = new storageBlob.StorageSharedKeyCredential(resolved.account, resolved.accountKey);
        break;
      case 'sas': {
        this.secrets.push(resolved.sasToken);
        const sig = new URLSearchParams(resolved.sasToken).get('sig');
        if (sig) this.secrets.push(sig);
        credential = new storageBlob.AnonymousCredential();
        containerUrl += `?${resolved.sasToken}`;
        break;
      }
      case 'token':
        credential = options.tokenCredential ?? lazyDefaultAzureCredential();
        break;
    }
    const pipeline = storageBlob.newPipeline(credential, {
      retryOptions: { maxTries: 1 },
      userAgentOptions: { userAgentPrefix: 'blobhsm' },
    });
    this.client = new storageBlob.ContainerClient(containerUrl, pipeline);
    // Internal to the SDK (pinned by test/hns-listing.test.ts): the client's core pipeline, for the request counter,
    // the List Blobs include=permissions policy and for sending the DFS path calls through the same credential policy.
    const context = (this.client as unknown as { storageClientContext: SdkServiceClient }).storageClientContext;
    context.pipeline.addPolicy(requestCountingPolicy(this.counts));
    context.pipeline.addPolicy(listPermissionsPolicy(() => this.namespaceKind === 'hns'), { phase: 'Serialize' });
    this.paths = new DfsPaths(
      containerUrl,
      (request) => context.sendRequest(request),
      (op, target, fn, retry, signal) => this.call(op, target, fn, { retry, signal }),
    );
    this.auth = {
      kind: resolved.kind,
      source: resolved.source,
      account: resolved.account,
      blobEndpoint: scrubSecrets(resolved.blobEndpoint, this.secrets),
    };
    let host = resolved.blobEndpoint;
    try {
      host = new URL(resolved.blobEndpoint).host;
    } catch {
      // keep as is
    }
    this.description = scrubSecrets(`${resolved.account ?? host}/${container} (${host})`, this.secrets);
  }

  requestCounts(): RequestCounts {
    return { ...this.counts };
  }

  private md5Threads(): Md5Threads {
    return this.givenMd5Threads ?? (this.ownMd5Threads ??= new Md5Threads());
  }

  /** Ends the store's own MD5 threads (a pool passed in is the caller's to close); uploads after this fail. */
  async close(): Promise<void> {
    await this.ownMd5Threads?.close();
  }

  get namespace(): NamespaceKind {
    return this.namespaceKind;
  }

  useNamespace(kind: NamespaceKind): void {
    this.namespaceKind = kind;
  }

  hierarchicalPaths(): HierarchicalPaths | undefined {
    return this.namespaceKind === 'hns' ? this.paths : undefined;
  }

  /** getAccountInfo's `x-ms-is-hns-enabled` (absent, as on Azurite: flat). */
  async detectNamespace(options: { signal?: AbortSignal } = {}): Promise<NamespaceKind> {
    const info = await this.call('getAccountInfo', this.container, (abortSignal) => this.client.getAccountInfo({ abortSignal }), {
      signal: options.signal,
      retry: 'idempotent',
    });
    return info.isHierarchicalNamespaceEnabled === true ? 'hns' : 'flat';
  }

  /** Runs one service call with the per-attempt timeout, retries and error mapping. */
  private async call<T>(op: string, target: string, fn: (signal: AbortSignal) => Promise<T>, opts: CallOptions): Promise<T> {
    const caller = opts.signal;
    for (let attempt = 1; ; attempt++) {
      if (caller?.aborted) throw abortReason(caller);
      const a = new Attempt(this.timeoutMs, caller);
      let mapped: MappedError;
      try {
        const value = await fn(a.signal);
        a.clearTimer();
        if (opts.keepAttempt) opts.keepAttempt(a);
        else a.dispose();
        return value;
      } catch (err) {
        a.dispose();
        if (caller?.aborted) throw abortReason(caller);
        if (a.timedOut) {
          mapped = {
            error: new BlobError('Timeout', `${op} ${target}: no answer within ${this.timeoutMs} ms (attempt ${attempt})`),
            notSent: false,
          };
        } else {
          mapped = toBlobError(err, op, target, this.secrets);
        }
      }
      const { error, notSent } = mapped;
      const retryable =
        opts.retry === 'idempotent'
          ? error.kind === 'Transient' || error.kind === 'Throttled' || error.kind === 'Timeout'
          : error.kind === 'Throttled' || (error.kind === 'Transient' && (notSent || opts.retry === 'conditional'));
      if (!retryable || attempt > this.retries) {
        if (attempt > 1) error.message += ` (after ${attempt} attempts)`;
        throw error;
      }
      const cap = Math.min(this.retryMaxMs, this.retryBaseMs * 2 ** (attempt - 1));
      const delayMs = Math.round(cap / 2 + Math.random() * (cap / 2));
      this.onRetry?.({ op, target, attempt, delayMs, error });
      await sleep(delayMs, caller);
    }
  }

  async *listPages(options: ListOptions = {}): AsyncIterable<BlobInfo[]> {
    const maxPageSize = options.pageSize ?? this.pageSize;
    const prefix = options.prefix || undefined;
    let continuationToken: string | undefined;
    const target = `${this.container}/${prefix ?? ''}*`;
    do {
      const token = continuationToken;
      const page = await this.call(
        'list',
        target,
        async (abortSignal) => {
          const it = this.client
            .listBlobsFlat({ prefix, includeMetadata: true, abortSignal })
            .byPage({ continuationToken: token, maxPageSize });
          return it.next();
        },
        { signal: options.signal, retry: 'idempotent' },
      );
      if (page.done || !page.value) break;
      const resp = page.value;
      const hns = this.namespaceKind === 'hns' ? await parseListingPermissions(resp._response.bodyAsText ?? '') : undefined;
      const items = resp.segment.blobItems.map(
        (b): BlobInfo => ({
          name: b.name,
          size: b.properties.contentLength ?? 0,
          etag: normalizeEtag(b.properties.etag),
          lastModified: b.properties.lastModified,
          ...(b.properties.accessTier ? { tier: b.properties.accessTier } : {}),
          ...withMd5(b.properties.contentMD5),
          metadata: normalizeMetadata(b.metadata),
          ...(hns?.has(b.name) ? { hns: hns.get(b.name)! } : {}),
        }),
      );
      if (items.length > 0) yield items;
      continuationToken = resp.continuationToken || undefined;
    } while (continuationToken);
  }

  async head(name: string, options: { signal?: AbortSignal } = {}): Promise<BlobInfo> {
    const blob = this.client.getBlobClient(name);
    const p = await this.call('head', name, (abortSignal) => blob.getProperties({ abortSignal }), {
      signal: options.signal,
      retry: 'idempotent',
    });
    const hns = this.namespaceKind === 'hns' ? headerPermissions((h) => p._response.headers.get(h)) : undefined;
    return {
      name,
      size: p.contentLength ?? 0,
      etag: normalizeEtag(p.etag),
      lastModified: p.lastModified ?? new Date(0),
      ...(p.accessTier ? { tier: p.accessTier } : {}),
      ...withMd5(p.contentMD5),
      metadata: normalizeMetadata(p.metadata),
      ...(hns ? { hns } : {}),
    };
  }

  async readRange(name: string, offset: number, length: number | undefined, options: ReadOptions = {}): Promise<Readable> {
    if (!Number.isSafeInteger(offset) || offset < 0) throw new BlobError('Invalid', `read ${name}: bad offset ${offset}`);
    if (length !== undefined && (!Number.isSafeInteger(length) || length < 0)) {
      throw new BlobError('Invalid', `read ${name}: bad length ${length}`);
    }
    // The SDK treats a count of 0 as "to the end": answer an empty read with a HEAD (NotFound still raised).
    if (length === 0) {
      await this.head(name, { signal: options.signal });
      return emptyStream();
    }
    const blob = this.client.getBlobClient(name);
    const conditions = options.ifMatch ? { ifMatch: options.ifMatch } : undefined;
    let attempt: Attempt | undefined;
    let body: NodeJS.ReadableStream | undefined;
    try {
      const resp = await this.call(
        'read',
        name,
        (abortSignal) =>
          blob.download(offset, length, { abortSignal, maxRetryRequests: 0, ...(conditions ? { conditions } : {}) }),
        { signal: options.signal, retry: 'idempotent', keepAttempt: (a) => (attempt = a) },
      );
      body = resp.readableStreamBody;
    } catch (err) {
      // A range starting at or past the end: the service answers 416 InvalidRange.
      if (err instanceof BlobError && err.status === 416) return emptyStream();
      throw err;
    }
    if (!body || !attempt) {
      attempt?.dispose();
      return emptyStream();
    }
    return this.guardBody(name, body as Readable, attempt);
  }

  /**
   * Wraps a download body: while the consumer waits for data and none arrives within timeoutMs, the read fails
   * with Timeout (a stalled connection never hangs a reader). A slow consumer is not a stall. Errors are mapped.
   */
  private guardBody(name: string, src: Readable, attempt: Attempt): Readable {
    let finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      attempt.dispose();
    };
    const out = new Readable({
      read: () => {
        attempt.armTimer();
        src.resume();
      },
      destroy: (err, cb) => {
        finish();
        src.destroy();
        cb(err);
      },
    });
    attempt.signal.addEventListener(
      'abort',
      () => {
        if (out.destroyed) return;
        const err = attempt.timedOut
          ? new BlobError('Timeout', `read ${name}: the body stalled for ${this.timeoutMs} ms`)
          : (attempt.signal.reason ?? new DOMException('The operation was aborted', 'AbortError'));
        out.destroy(err as Error);
      },
      { once: true },
    );
    src.on('data', (chunk: Buffer) => {
      attempt.clearTimer();
      if (!out.push(chunk)) src.pause();
      else attempt.armTimer();
    });
    src.once('end', () => {
      attempt.clearTimer();
      finish();
      out.push(null);
    });
    src.once('error', (err) => {
      if (out.destroyed) return;
      if (attempt.signal.aborted) return; // reported by the abort listener
      out.destroy(toBlobError(err, 'read', name, this.secrets).error);
    });
    src.pause();
    return out;
  }

  async upload(name: string, source: UploadSource, options: UploadOptions): Promise<UploadResult> {
    const blockSize = options.blockSize ?? this.blockSize;
    const concurrency = Math.max(1, options.concurrency ?? this.concurrency);
    if (!Number.isSafeInteger(blockSize) || blockSize <= 0 || blockSize > 4000 * 1024 * 1024) {
      throw new BlobError('Invalid', `upload ${name}: bad block size ${blockSize}`);
    }
    if (options.signal?.aborted) throw abortReason(options.signal);
    const blob = this.client.getBlockBlobClient(name);
    if (options.singleRequest && 'data' in source) return this.putBlob(blob, name, source.data, options);
    const uploadId = randomBytes(6).toString('hex');
    const md5 = this.md5Threads();
    // One buffer per block in flight and one being read: a buffer is read into again only after its block was
    // staged and hashed.
    const buffers = new SharedBlockBuffers(concurrency + 1);
    const blocks = blocksOf(source, blockSize, buffers);
    // The blob's Content-MD5 is fed each block as it is taken, in order: the digest of exactly the bytes staged,
    // defined only once the source is exhausted (a digest of a partial read is never committed).
    const blobMd5 = md5.running();
    let size = 0;
    const take = async (): Promise<(Block & { inBlobMd5: Promise<void> }) | undefined> => {
      const next = await blocks.next();
      if (next.done) return undefined;
      size += next.value.data.length;
      const inBlobMd5 = blobMd5.update(next.value.data);
      inBlobMd5.catch(() => undefined); // awaited by the stager
      return { ...next.value, inBlobMd5 };
    };
    let taking: Promise<unknown> = Promise.resolve();
    const takeInOrder = () => {
      const p = taking.then(take);
      taking = p.catch(() => undefined);
      return p;
    };

    // Stage blocks with bounded parallelism; the first failure stops the others.
    const internal = new AbortController();
    const onCallerAbort = () => internal.abort(abortReason(options.signal!));
    options.signal?.addEventListener('abort', onCallerAbort, { once: true });
    const ids: string[] = [];
    let staged = 0;
    let failure: { err: unknown } | undefined;
    const stager = async () => {
      while (!failure) {
        let block: (Block & { inBlobMd5: Promise<void> }) | undefined;
        try {
          block = await takeInOrder();
        } catch (err) {
          failure ??= { err };
          internal.abort(err);
          return;
        }
        if (!block) return;
        const { index, data } = block;
        const id = fixedWidthBlockId(uploadId, index);
        ids[index] = id;
        try {
          if (failure) return;
          const blockMd5 = await md5.md5(data);
          await this.call(
            'stageBlock',
            name,
            // The block's own MD5 travels with it: the service refuses a block whose bytes changed on the way
            // (Md5Mismatch, retried), so the committed Content-MD5 always describes the bytes it stores.
            (abortSignal) => blob.stageBlock(id, data, data.length, { abortSignal, transactionalContentMD5: blockMd5 }),
            { signal: internal.signal, retry: 'idempotent' },
          );
          await block.inBlobMd5;
        } catch (err) {
          failure ??= { err };
          internal.abort(err);
          return;
        } finally {
          await block.inBlobMd5.catch(() => undefined);
          buffers.give(data);
        }
        staged += data.length;
        options.onProgress?.(staged);
      }
    };
    try {
      await Promise.all(Array.from({ length: concurrency }, stager));
    } finally {
      options.signal?.removeEventListener('abort', onCallerAbort);
      if (failure) {
        blobMd5.discard();
        await blocks.return(undefined).catch(() => undefined);
        if ('stream' in source) source.stream.destroy();
      }
    }
    if (failure) {
      if (options.signal?.aborted) throw abortReason(options.signal);
      const err = failure.err;
      if (err instanceof BlobError || err instanceof HashThreadError) throw err;
      const code = (err as NodeJS.ErrnoException | undefined)?.code;
      if (typeof code === 'string' && code.startsWith('E') && !('statusCode' in (err as object))) throw err; // local I/O
      throw toBlobError(err, 'upload', name, this.secrets).error;
    }
    let contentMd5: string;
    try {
      checkSourceSize(name, size, options.expectedSize);
      contentMd5 = formatMd5(await blobMd5.digest());
    } catch (err) {
      blobMd5.discard();
      throw err;
    }

    const conditions = writeConditions(options);
    const metadata = normalizeMetadata(options.metadata);
    const r = await this.call(
      'commitBlockList',
      name,
      (abortSignal) =>
        blob.commitBlockList(ids, {
          metadata,
          blobHTTPHeaders: { blobContentMD5: md5ToService(contentMd5) },
          abortSignal,
          ...(conditions ? { conditions } : {}),
        }),
      // A reused keep-alive socket the service already closed fails with ECONNRESET: a conditional commit is
      // retried (see RetryMode); an unconditional one only if it was never sent.
      { signal: options.signal, retry: conditions ? 'conditional' : 'unsafe' },
    );
    return { etag: normalizeEtag(r.etag), lastModified: r.lastModified ?? new Date(), contentMd5, size };
  }

  /** One Put Blob request carrying the data, its Content-MD5, the metadata and the conditions. */
  private async putBlob(blob: BlockBlobClient, name: string, data: Buffer, options: UploadOptions): Promise<UploadResult> {
    checkSourceSize(name, data.length, options.expectedSize);
    const contentMd5 = md5Of(data);
    const conditions = writeConditions(options);
    const r = await this.call(
      'upload',
      name,
      (abortSignal) =>
        blob.upload(data, data.length, {
          metadata: normalizeMetadata(options.metadata),
          blobHTTPHeaders: { blobContentMD5: md5ToService(contentMd5) },
          abortSignal,
          ...(conditions ? { conditions } : {}),
        }),
      { signal: options.signal, retry: conditions ? 'conditional' : 'unsafe' },
    );
    options.onProgress?.(data.length);
    return { etag: normalizeEtag(r.etag), lastModified: r.lastModified ?? new Date(), contentMd5, size: data.length };
  }

  async setMetadata(
    name: string,
    metadata: Record<string, string>,
    options: { ifMatch?: string; signal?: AbortSignal } = {},
  ): Promise<WriteResult> {
    const blob = this.client.getBlobClient(name);
    const conditions = options.ifMatch ? { ifMatch: options.ifMatch } : undefined;
    const r = await this.call(
      'setMetadata',
      name,
      (abortSignal) => blob.setMetadata(normalizeMetadata(metadata), { abortSignal, ...(conditions ? { conditions } : {}) }),
      // Setting the same metadata twice is harmless; under ifMatch a retry could report a false conflict.
      { signal: options.signal, retry: conditions ? 'unsafe' : 'idempotent' },
    );
    return { etag: normalizeEtag(r.etag), lastModified: r.lastModified ?? new Date() };
  }

  async delete(name: string, options: { ifMatch?: string; signal?: AbortSignal } = {}): Promise<void> {
    const blob = this.client.getBlobClient(name);
    const conditions = options.ifMatch ? { ifMatch: options.ifMatch } : undefined;
    let attempts = 0;
    try {
      await this.call(
        'delete',
        name,
        (abortSignal) => {
          attempts++;
          return blob.delete({ abortSignal, ...(conditions ? { conditions } : {}) });
        },
        { signal: options.signal, retry: conditions ? 'unsafe' : 'idempotent' },
      );
    } catch (err) {
      // A retried delete that finds nothing: the earlier attempt (whose answer was lost) deleted it.
      if (attempts > 1 && err instanceof BlobError && err.kind === 'NotFound') return;
      throw err;
    }
  }

  async containerExists(options: { signal?: AbortSignal } = {}): Promise<boolean> {
    return this.call('containerExists', this.container, (abortSignal) => this.client.exists({ abortSignal }), {
      signal: options.signal,
      retry: 'idempotent',
    });
  }

  async append(name: string, data: Buffer, options: { signal?: AbortSignal } = {}): Promise<void> {
    const blob = this.client.getAppendBlobClient(name);
    await this.call('createAppendBlob', name, (abortSignal) => blob.createIfNotExists({ abortSignal }), {
      signal: options.signal,
      retry: 'idempotent',
    });
    // Not idempotent: a retry after a lost answer could append the lines twice.
    await this.call('appendBlock', name, (abortSignal) => blob.appendBlock(data, data.length, { abortSignal }), {
      signal: options.signal,
      retry: 'unsafe',
    });
  }

  async createContainer(options: { signal?: AbortSignal } = {}): Promise<boolean> {
    const r = await this.call(
      'createContainer',
      this.container,
      (abortSignal) => this.client.createIfNotExists({ abortSignal }),
      { signal: options.signal, retry: 'idempotent' },
    );
    return r.succeeded;
  }

  /** Deletes the container and everything in it (tests, tooling); false when it did not exist. */
  async deleteContainer(options: { signal?: AbortSignal } = {}): Promise<boolean> {
    const r = await this.call(
      'deleteContainer',
      this.container,
      (abortSignal) => this.client.deleteIfExists({ abortSignal }),
      { signal: options.signal, retry: 'idempotent' },
    );
    return r.succeeded;
  }

  /** Sets a blob's access tier (Hot, Cool, Cold, Archive). */
  async setTier(name: string, tier: 'Hot' | 'Cool' | 'Cold' | 'Archive', options: { signal?: AbortSignal } = {}): Promise<void> {
    const blob = this.client.getBlobClient(name);
    await this.call('setTier', name, (abortSignal) => blob.setAccessTier(tier, { abortSignal }), {
      signal: options.signal,
      retry: 'idempotent',
    });
  }
}

/** A core-rest-pipeline policy (the part of its request this file reads). */
interface SdkPolicy {
  name: string;
  sendRequest(request: PipelineRequest, next: (request: PipelineRequest) => Promise<PipelineResponse>): Promise<PipelineResponse>;
}

/** The SDK's internal service client of a ContainerClient (its core pipeline and raw sender). */
interface SdkServiceClient {
  pipeline: { addPolicy(policy: UrlPolicy | SdkPolicy, options?: { phase: 'Serialize' }): void };
  sendRequest(request: PipelineRequest): Promise<PipelineResponse>;
}

/** A TokenCredential that loads @azure/identity (slow to import) only when a token is first needed. */
function lazyDefaultAzureCredential(): TokenCredential {
  let inner: Promise<TokenCredential> | undefined;
  return {
    async getToken(scopes, options) {
      inner ??= Promise.resolve().then(() => new (loadIdentity().DefaultAzureCredential)());
      return (await inner).getToken(scopes, options);
    },
  };
}

/** Builds an AzureBlobStore; throws UsageError when no account or credentials can be found. */
export function createAzureStore(options: AzureStoreOptions): AzureBlobStore {
  if (!options.container) throw new UsageError('no container name given');
  const resolved = resolveAzureCredentials(options, options.env ?? process.env);
  const { container, ...rest } = options;
  return new AzureBlobStore(container, resolved, rest);
}
