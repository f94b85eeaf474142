// The DFS (Data Lake Storage Gen2) path calls of a hierarchical-namespace account that export uses: create a
// directory with its access control, set access control, rename. They are sent through the blob client's own
// pipeline (the same credential policy: SharedKey, SAS in the URL, or a bearer token; the same request counter),
// to the account's DFS endpoint (`<account>.dfs.<suffix>`, or the same host for a path-style endpoint such as a
// loopback one). @azure/storage-file-datalake is not used: its rename drops the account segment of path-style URLs.
// REST: https://learn.microsoft.com/rest/api/storageservices/datalakestoragegen2/path/create (create, rename) and
// .../path/update (action=setAccessControl). Errors are given the SDK's shape so the store maps them as usual.
import type { PipelineResponse } from '@azure/core-rest-pipeline';
import { coreRestPipeline } from './azure-sdk.js';
import type { HierarchicalPaths, HnsAccess, WriteResult } from './blob-store.js';
import { normalizeEtag } from './blob-store.js';

/** Sends one request through the blob client's pipeline. */
export type PipelineSender = (request: ReturnType<typeof coreRestPipeline.createPipelineRequest>) => Promise<PipelineResponse>;

/** Runs one service call with the store's timeout, retries and error mapping. */
export type CallRunner = <T>(
  op: string,
  target: string,
  fn: (signal: AbortSignal) => Promise<T>,
  retry: 'idempotent' | 'conditional' | 'unsafe',
  signal: AbortSignal | undefined,
) => Promise<T>;

/** The DFS URL of a container URL: `.blob.` → `.dfs.` in the host; path-style (IP, localhost) URLs unchanged. */
export function dfsContainerUrl(containerUrl: string): string {
  const u = new URL(containerUrl);
  u.hostname = u.hostname.replace(/\.blob\./, '.dfs.');
  return u.toString().replace(/\/$/, '');
}

/** The error an SDK call would throw for a failed answer (status, error code, message). */
class DfsResponseError extends Error {
  readonly statusCode: number;
  readonly code: string | undefined;
  readonly details: { errorCode?: string };
  readonly response: { headers: { get(name: string): string | undefined } };
  constructor(res: PipelineResponse) {
    let code = res.headers.get('x-ms-error-code') ?? undefined;
    let message = `HTTP ${res.status}`;
    try {
      const body = JSON.parse(res.bodyAsText ?? '') as { error?: { code?: string; message?: string } };
      code ??= body.error?.code;
      if (body.error?.message) message = body.error.message.split('\n')[0]!;
    } catch {
      // not JSON: keep the status line
    }
    super(message);
    this.statusCode = res.status;
    this.code = code;
    this.details = code ? { errorCode: code } : {};
    this.response = { headers: { get: (name: string) => res.headers.get(name) ?? undefined } };
  }
}

/** Path names are blob names: each segment percent-encoded, `/` kept. */
function encodePath(name: string): string {
  return name.split('/').map(encodeURIComponent).join('/');
}

export class DfsPaths implements HierarchicalPaths {
  private readonly base: URL;

  constructor(
    containerUrl: string,
    private readonly send: PipelineSender,
    private readonly run: CallRunner,
  ) {
    this.base = new URL(dfsContainerUrl(containerUrl));
  }

  /** The container's DFS URL for `name` with `query` added (a SAS in the container URL is kept). */
  private url(name: string, query: Record<string, string>): string {
    const u = new URL(this.base.toString());
    u.pathname = `${u.pathname.replace(/\/$/, '')}/${encodePath(name)}`;
    for (const [k, v] of Object.entries(query)) u.searchParams.set(k, v);
    return u.toString();
  }

  private async request(
    method: 'PUT' | 'PATCH',
    name: string,
    query: Record<string, string>,
    headers: Record<string, string | undefined>,
    signal: AbortSignal,
  ): Promise<PipelineResponse> {
    const h = coreRestPipeline.createHttpHeaders();
    for (const [k, v] of Object.entries(headers)) if (v !== undefined) h.set(k, v);
    h.set('content-length', '0');
    const url = this.url(name, query);
    // As the SDK does for an http: endpoint (the emulator, a loopback fake).
    const allowInsecureConnection = url.startsWith('http:');
    const res = await this.send(coreRestPipeline.createPipelineRequest({ url, method, headers: h, abortSignal: signal, allowInsecureConnection }));
    if (res.status >= 300) throw new DfsResponseError(res);
    return res;
  }

  private static result(res: PipelineResponse): WriteResult {
    const lm = res.headers.get('last-modified');
    return { etag: normalizeEtag(res.headers.get('etag') ?? undefined), lastModified: lm ? new Date(lm) : new Date() };
  }

  async createDirectory(name: string, access: HnsAccess, options: { ifNoneMatch?: '*'; signal?: AbortSignal } = {}): Promise<WriteResult> {
    const res = await this.run(
      'createDirectory',
      name,
      (signal) =>
        this.request(
          'PUT',
          name,
          { resource: 'directory' },
          {
            'x-ms-owner': access.owner,
            'x-ms-group': access.group,
            'x-ms-permissions': access.acl ? undefined : access.permissions,
            'x-ms-acl': access.acl,
            // The permissions are the directory's own: no umask applied.
            ...(access.permissions && !access.acl ? { 'x-ms-umask': '0000' } : {}),
            'if-none-match': options.ifNoneMatch,
          },
          signal,
        ),
      options.ifNoneMatch ? 'conditional' : 'idempotent',
      options.signal,
    );
    return DfsPaths.result(res);
  }

  async setAccessControl(name: string, access: HnsAccess, options: { ifMatch?: string; signal?: AbortSignal } = {}): Promise<WriteResult> {
    const res = await this.run(
      'setAccessControl',
      name,
      (signal) =>
        this.request(
          'PATCH',
          name,
          { action: 'setAccessControl' },
          {
            'x-ms-owner': access.owner,
            'x-ms-group': access.group,
            'x-ms-permissions': access.acl ? undefined : access.permissions,
            'x-ms-acl': access.acl,
            'if-match': options.ifMatch,
          },
          signal,
        ),
      // Setting the same access control twice is harmless.
      options.ifMatch ? 'unsafe' : 'idempotent',
      options.signal,
    );
    return DfsPaths.result(res);
  }

  async rename(from: string, to: string, options: { ifNoneMatch?: '*'; signal?: AbortSignal } = {}): Promise<void> {
    const source = `${this.base.pathname.replace(/\/$/, '')}/${encodePath(from)}${this.base.search}`;
    await this.run(
      'rename',
      `${from} → ${to}`,
      (signal) =>
        this.request('PUT', to, { mode: 'legacy' }, { 'x-ms-rename-source': source, 'if-none-match': options.ifNoneMatch }, signal),
      // A retried rename whose first attempt succeeded finds no source: never retried once sent.
      'unsafe',
      options.signal,
    );
  }
}
