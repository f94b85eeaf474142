// A loopback HTTP proxy in front of Azurite that injects faults into chosen blob requests: an error status (503
// ServerBusy, 500), a connection reset before the answer, a hang (no answer until the client gives up or the
// fault is cleared), a response body cut off after N bytes, a slow body, and one flipped byte in a response or a
// request body. SharedKey
// signs the path, not host:port, so signed requests pass unchanged. Rules are matched in order; each applies to
// its first `times` matching requests (default: all of them until cleared), or to every `every`-th one.
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { opOf, proxiedConnectionString } from './counting-proxy.js';

export type Fault =
  | { kind: 'status'; status: 500 | 503 }
  | { kind: 'reset' }
  | { kind: 'hang' }
  | { kind: 'truncate'; after: number }
  | { kind: 'slow'; bytesPerSecond: number }
  | { kind: 'flip'; at: number }
  /** One byte of the request body flipped on its way to Azurite (an upload corrupted in flight). */
  | { kind: 'flipRequest'; at: number };

export interface FaultRule {
  /** 'read', 'head', 'list', 'stageBlock', 'commitBlockList', 'upload' (Put Blob), ...; any when absent. */
  op?: string;
  /** The blob name, exactly or by pattern; any when absent. */
  blob?: string | RegExp;
  fault: Fault;
  /** Apply to the first `times` matching requests only. */
  times?: number;
  /** Apply to every `every`-th matching request only (1 = each). */
  every?: number;
}

export interface FaultProxy {
  /** Connection string pointing at the proxy (same account and key as Azurite's). */
  connectionString: string;
  /** Adds a rule; returns a counter of the requests it faulted. */
  inject(rule: FaultRule): { applied: number };
  /** Removes every rule and fails the hung requests (their clients see a reset and retry). */
  clear(): void;
  /** Requests forwarded or faulted, by operation. */
  counts: Record<string, number>;
  close(): Promise<void>;
}

interface ActiveRule extends FaultRule {
  matched: number;
  stats: { applied: number };
}

function matches(rule: ActiveRule, op: string, blob: string): boolean {
  if (rule.op !== undefined && rule.op !== op) return false;
  if (rule.blob === undefined) return true;
  return typeof rule.blob === 'string' ? rule.blob === blob : rule.blob.test(blob);
}

function serverBusy(res: ServerResponse, status: number): void {
  const code = status === 503 ? 'ServerBusy' : 'InternalError';
  const body = `<?xml version="1.0" encoding="utf-8"?><Error><Code>${code}</Code><Message>injected by the fault proxy</Message></Error>`;
  res.writeHead(status, { 'content-type': 'application/xml', 'x-ms-error-code': code, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** Starts the proxy for an Azurite listening on `port` (connection string `azuriteConnectionString`). */
export async function startFaultProxy(port: number, azuriteConnectionString: string): Promise<FaultProxy> {
  let rules: ActiveRule[] = [];
  const counts: Record<string, number> = {};
  const hung = new Set<IncomingMessage>();

  const pick = (op: string, blob: string): Fault | undefined => {
    for (const rule of rules) {
      if (!matches(rule, op, blob)) continue;
      rule.matched++;
      if (rule.times !== undefined && rule.stats.applied >= rule.times) continue;
      if (rule.every !== undefined && rule.matched % rule.every !== 0) continue;
      rule.stats.applied++;
      return rule.fault;
    }
    return undefined;
  };

  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://proxy');
    const blob = decodeURIComponent(url.pathname.split('/').slice(3).join('/'));
    const op = opOf(req.method ?? 'GET', url.searchParams);
    counts[op] = (counts[op] ?? 0) + 1;
    const fault = pick(op, blob);
    if (fault?.kind === 'status') {
      req.resume();
      req.on('end', () => serverBusy(res, fault.status));
      return;
    }
    if (fault?.kind === 'reset') {
      req.socket.destroy();
      return;
    }
    if (fault?.kind === 'hang') {
      // Held until the client gives up or clear() resets it. Not req's 'close': that fires once the body is read.
      hung.add(req);
      res.on('close', () => hung.delete(req));
      req.resume();
      return;
    }
    const upstream = request({ host: '127.0.0.1', port, method: req.method, path: req.url, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      if (!fault || fault.kind === 'flipRequest') {
        up.pipe(res);
        return;
      }
      let offset = 0;
      up.on('data', (chunk: Buffer) => {
        let out = chunk;
        if (fault.kind === 'flip' && fault.at >= offset && fault.at < offset + chunk.length) {
          out = Buffer.from(chunk);
          out[fault.at - offset] = out[fault.at - offset]! ^ 0x01;
        }
        if (fault.kind === 'truncate' && offset + chunk.length > fault.after) {
          res.write(out.subarray(0, Math.max(0, fault.after - offset)));
          up.destroy();
          res.socket?.destroy(); // the client sees the body end early (Content-Length not reached)
          return;
        }
        offset += chunk.length;
        if (!res.write(out)) {
          up.pause();
          res.once('drain', () => up.resume());
        }
        if (fault.kind === 'slow') {
          up.pause();
          setTimeout(() => up.resume(), Math.ceil((chunk.length / fault.bytesPerSecond) * 1000));
        }
      });
      up.on('end', () => res.end());
    });
    upstream.on('error', () => res.destroy());
    if (fault?.kind !== 'flipRequest') {
      req.pipe(upstream);
      return;
    }
    let sent = 0;
    req.on('data', (chunk: Buffer) => {
      let out = chunk;
      if (fault.at >= sent && fault.at < sent + chunk.length) {
        out = Buffer.from(chunk);
        out[fault.at - sent] = out[fault.at - sent]! ^ 0x01;
      }
      sent += chunk.length;
      upstream.write(out);
    });
    req.on('end', () => upstream.end());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const proxyPort = (server.address() as AddressInfo).port;
  return {
    connectionString: proxiedConnectionString(azuriteConnectionString, proxyPort),
    inject: (rule) => {
      const active: ActiveRule = { ...rule, matched: 0, stats: { applied: 0 } };
      rules.push(active);
      return active.stats;
    },
    clear: () => {
      rules = [];
      for (const req of hung) req.socket.destroy();
    },
    counts,
    close: async () => {
      rules = [];
      for (const req of hung) req.socket.destroy();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
