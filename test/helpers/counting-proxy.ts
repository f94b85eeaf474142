// A loopback HTTP proxy in front of Azurite that records every blob request (operation, blob name, status) and can
// hold every request after the Nth committed blob: a test then knows exactly which blobs a killed client committed.
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ProxiedRequest {
  method: string;
  /** 'upload' (Put Blob), 'commitBlockList', 'stageBlock', 'head', 'list', ... */
  op: string;
  /** Blob name (decoded), '' for container-level requests. */
  blob: string;
  status?: number;
}

export interface CountingProxy {
  /** Connection string pointing at the proxy (same account and key as Azurite's). */
  connectionString: string;
  requests: ProxiedRequest[];
  /** Blob names committed (Put Blob or Put Block List answered 201), in order. */
  committed(): string[];
  /** From now on, hold every request once `count` more blobs are committed; resolves when that happens. */
  holdAfterCommits(count: number): Promise<void>;
  /** Resolves once every forwarded request has its status (a killed client's last commits included). */
  idle(): Promise<void>;
  /** Clears the records and releases the hold for requests that come from now on. */
  reset(): void;
  close(): Promise<void>;
}

/** The blob operation a request is (shared with fault-proxy.ts). */
export function opOf(method: string, query: URLSearchParams): string {
  const comp = query.get('comp');
  if (query.get('restype') === 'container') return comp === 'list' ? 'list' : `container:${method}`;
  if (comp === 'block') return 'stageBlock';
  if (comp === 'blocklist') return method === 'PUT' ? 'commitBlockList' : 'getBlockList';
  if (comp) return `${method}:${comp}`;
  return method === 'PUT' ? 'upload' : method === 'HEAD' ? 'head' : method === 'GET' ? 'read' : method.toLowerCase();
}

/** Azurite's connection string pointed at a proxy on `proxyPort` (same account and key). */
export function proxiedConnectionString(azuriteConnectionString: string, proxyPort: number): string {
  const cs = azuriteConnectionString.replace(/BlobEndpoint=http:\/\/127\.0\.0\.1:\d+\//, `BlobEndpoint=http://127.0.0.1:${proxyPort}/`);
  if (cs === azuriteConnectionString) throw new Error(`cannot point the connection string at the proxy: ${azuriteConnectionString}`);
  return cs;
}

/** Starts the proxy for an Azurite listening on `port` (connection string `azuriteConnectionString`). */
export async function startCountingProxy(port: number, azuriteConnectionString: string): Promise<CountingProxy> {
  let requests: ProxiedRequest[] = [];
  let hold: { remaining: number; reached: () => void } | undefined;
  let holding = false;
  const held = new Set<IncomingMessage>();
  let inFlight = 0;
  let idleWaiters: Array<() => void> = [];
  const settle = () => {
    if (--inFlight > 0) return;
    const waiters = idleWaiters;
    idleWaiters = [];
    for (const w of waiters) w();
  };
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://proxy');
    const parts = url.pathname.split('/').slice(3); // '', account, container, blob...
    const record: ProxiedRequest = { method: req.method ?? 'GET', op: opOf(req.method ?? 'GET', url.searchParams), blob: decodeURIComponent(parts.join('/')) };
    if (holding) {
      held.add(req);
      req.on('close', () => held.delete(req));
      return; // never forwarded: the client waits until it gives up or dies
    }
    requests.push(record);
    inFlight++;
    const upstream = request(
      { host: '127.0.0.1', port, method: req.method, path: req.url, headers: req.headers },
      (up) => {
        record.status = up.statusCode;
        if ((record.op === 'upload' || record.op === 'commitBlockList') && up.statusCode === 201 && hold) {
          if (--hold.remaining <= 0) {
            holding = true;
            const reached = hold.reached;
            hold = undefined;
            reached();
          }
        }
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
        settle(); // the status is known: that is all a record needs
      },
    );
    upstream.on('error', () => {
      settle();
      res.destroy();
    });
    req.pipe(upstream);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const proxyPort = (server.address() as AddressInfo).port;
  const connectionString = proxiedConnectionString(azuriteConnectionString, proxyPort);
  return {
    connectionString,
    get requests() {
      return requests;
    },
    committed: () => requests.filter((r) => (r.op === 'upload' || r.op === 'commitBlockList') && r.status === 201).map((r) => r.blob),
    idle: () => (inFlight === 0 ? Promise.resolve() : new Promise<void>((r) => idleWaiters.push(r))),
    holdAfterCommits: (count) => new Promise<void>((reached) => (hold = { remaining: count, reached })),
    reset: () => {
      requests = [];
      holding = false;
      hold = undefined;
    },
    close: async () => {
      for (const req of held) req.socket.destroy();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
