// The daemon side of the control socket: one JSON request line per connection, dispatched to named methods.
// Bounded: a request line is at most `maxRequestBytes` (a longer one, newline or not, is answered with an error and
// the connection closed: nothing grows without bound), at most `maxConnections` at once, requests admitted at a
// bounded rate (a token bucket), a connection that sends no complete request within `requestTimeoutMs` is closed,
// and a malformed request is answered with an error saying what is expected. Each method is told who connected
// (the peer's credentials, read by the injected `peerOf` from the kernel), never what the request claims.
import { chmodSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { describeError, errnoCodeOf, UsageError } from '../errors.js';
import type { ControlMethod, ControlReply, ControlRequest, Peer } from './protocol.js';

export interface ControlLimits {
  /** Longest request line in bytes (default 32 MiB: about 300,000 paths). */
  maxRequestBytes: number;
  /** Connections served at once (default 64). */
  maxConnections: number;
  /** Requests admitted in a burst, and per second after it (default 200 and 100). */
  burst: number;
  perSecond: number;
  /** Time to send a complete request line (default 30 s). */
  requestTimeoutMs: number;
}

export const DEFAULT_CONTROL_LIMITS: Readonly<ControlLimits> = {
  maxRequestBytes: 32 * 1024 * 1024,
  maxConnections: 64,
  burst: 200,
  perSecond: 100,
  requestTimeoutMs: 30_000,
};

/** The credentials of a connected Unix socket's peer (SO_PEERCRED of its descriptor), or undefined if unknown. */
export type PeerReader = (fd: number) => Peer | undefined;

/** The descriptor of an accepted Unix socket (libuv's pipe handle; Node has no public accessor). */
function descriptorOf(socket: Socket): number | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

const REQUEST_SHAPE = 'send one JSON object {"method": "...", "params": {...}} followed by a newline';

export class ControlServer {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly limits: ControlLimits;
  private tokens: number;
  private refilledAt: number;

  constructor(
    private readonly methods: Record<string, ControlMethod>,
    limits: Partial<ControlLimits> = {},
    private readonly now: () => number = Date.now,
    private readonly peerOf: PeerReader = () => undefined,
  ) {
    this.limits = { ...DEFAULT_CONTROL_LIMITS, ...limits };
    this.tokens = this.limits.burst;
    this.refilledAt = now();
    this.server = createServer((socket) => this.serve(socket));
  }

  async listen(path: string): Promise<void> {
    rmSync(path, { force: true });
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(path, () => resolve());
    });
    chmodSync(path, 0o600);
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  /** Takes one token from the bucket (refilled at perSecond, up to burst); false when empty. */
  private admit(): boolean {
    const t = this.now();
    this.tokens = Math.min(this.limits.burst, this.tokens + ((t - this.refilledAt) / 1000) * this.limits.perSecond);
    this.refilledAt = t;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** Answers with an error and closes (whatever the client still sends is not read). */
  private refuse(socket: Socket, code: string, message: string): void {
    socket.end(JSON.stringify({ error: { code, message } } satisfies ControlReply) + '\n');
    socket.destroySoon();
  }

  private serve(socket: Socket): void {
    socket.on('error', () => undefined);
    if (this.sockets.size >= this.limits.maxConnections) {
      this.refuse(socket, 'EAGAIN', `the daemon is serving ${this.sockets.size} requests already; try again`);
      return;
    }
    this.sockets.add(socket);
    // Read at once: the peer is whoever connected, whatever it sends later.
    const fd = descriptorOf(socket);
    const peer = fd === undefined ? undefined : this.peerOf(fd);
    const abort = new AbortController();
    socket.on('close', () => {
      this.sockets.delete(socket);
      abort.abort();
    });
    socket.setTimeout(this.limits.requestTimeoutMs, () => {
      this.refuse(socket, 'ETIMEDOUT', `no complete request within ${this.limits.requestTimeoutMs / 1000} s: ${REQUEST_SHAPE}`);
    });
    const chunks: Buffer[] = [];
    let length = 0;
    const onData = (chunk: Buffer) => {
      const nl = chunk.indexOf(0x0a);
      const used = nl < 0 ? chunk.length : nl;
      if (length + used > this.limits.maxRequestBytes) {
        socket.off('data', onData);
        chunks.length = 0;
        this.refuse(socket, 'E2BIG', `request longer than ${this.limits.maxRequestBytes} bytes: ${REQUEST_SHAPE}`);
        return;
      }
      chunks.push(nl < 0 ? chunk : chunk.subarray(0, nl));
      length += used;
      if (nl < 0) return;
      socket.off('data', onData);
      socket.setTimeout(0);
      const line = Buffer.concat(chunks, length).toString('utf8');
      chunks.length = 0;
      if (!this.admit()) {
        this.refuse(socket, 'EAGAIN', 'too many requests: try again in a moment');
        return;
      }
      void this.dispatch(line, socket, abort.signal, peer);
    };
    socket.on('data', onData);
  }

  private async dispatch(line: string, socket: Socket, signal: AbortSignal, peer: Peer | undefined): Promise<void> {
    // Resolves once the socket took the line: a method streaming events is slowed by a slow reader, not buffered.
    const send = (reply: ControlReply): Promise<void> => {
      if (socket.destroyed || socket.write(JSON.stringify(reply) + '\n')) return Promise.resolve();
      return new Promise((resolve) => {
        const done = () => {
          socket.off('drain', done);
          socket.off('close', done);
          resolve();
        };
        socket.on('drain', done);
        socket.on('close', done);
      });
    };
    let request: ControlRequest;
    try {
      request = parseRequest(line);
    } catch (err) {
      this.refuse(socket, 'EINVAL', describeError(err));
      return;
    }
    try {
      const method = Object.hasOwn(this.methods, request.method) ? this.methods[request.method] : undefined;
      if (!method) throw new UsageError(`unknown control method '${request.method}'`);
      const result = await method(request.params, (event) => send({ event }), signal, peer);
      void send({ result: result ?? null });
    } catch (err) {
      const code = err instanceof UsageError ? 'EUSAGE' : errnoCodeOf(err);
      void send({ error: { code, message: describeError(err) } });
    }
    socket.end();
  }
}

/** A request line as the protocol defines it, or an error saying what was wrong. */
export function parseRequest(line: string): ControlRequest {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (err) {
    throw new Error(`malformed request (${(err as Error).message}): ${REQUEST_SHAPE}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`malformed request (not an object): ${REQUEST_SHAPE}`);
  const { method, params } = value as { method?: unknown; params?: unknown };
  if (typeof method !== 'string') throw new Error(`malformed request (no method name): ${REQUEST_SHAPE}`);
  if (params !== undefined && (typeof params !== 'object' || params === null || Array.isArray(params))) {
    throw new Error(`malformed request (params is not an object): ${REQUEST_SHAPE}`);
  }
  return { method, params: (params ?? {}) as Record<string, unknown> };
}
