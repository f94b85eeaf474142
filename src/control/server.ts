// The daemon side of the control socket: dispatches JSON requests to named methods.
import { chmodSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { describeError, errnoCodeOf, UsageError } from '../errors.js';
import type { ControlMethod, ControlReply, ControlRequest } from './protocol.js';

export class ControlServer {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();

  constructor(private readonly methods: Record<string, ControlMethod>) {
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

  private serve(socket: Socket): void {
    this.sockets.add(socket);
    const abort = new AbortController();
    socket.on('close', () => {
      this.sockets.delete(socket);
      abort.abort();
    });
    socket.on('error', () => undefined);
    let buffered = '';
    const onData = (chunk: Buffer) => {
      buffered += chunk.toString('utf8');
      const nl = buffered.indexOf('\n');
      if (nl < 0) return;
      socket.off('data', onData);
      void this.dispatch(buffered.slice(0, nl), socket, abort.signal);
    };
    socket.on('data', onData);
  }

  private async dispatch(line: string, socket: Socket, signal: AbortSignal): Promise<void> {
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
    try {
      const request = JSON.parse(line) as ControlRequest;
      const method = this.methods[request.method];
      if (!method) throw new UsageError(`unknown control method '${request.method}'`);
      const result = await method(request.params ?? {}, (event) => send({ event }), signal);
      send({ result: result ?? null });
    } catch (err) {
      const code = err instanceof UsageError ? 'EUSAGE' : errnoCodeOf(err);
      send({ error: { code, message: describeError(err) } });
    }
    socket.end();
  }
}
