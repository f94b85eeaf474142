// The CLI side of the control socket: send one request, receive events, then the result or a typed error.
import { createConnection } from 'node:net';
import { FsError, UsageError, type FsErrorCode } from '../errors.js';
import type { ControlReply } from './protocol.js';

export class ControlError extends Error {
  override readonly name = 'ControlError';
  constructor(readonly code: string, message: string) {
    super(message);
  }
}

export async function callDaemon(
  socketPath: string,
  method: string,
  params: Record<string, unknown> = {},
  onEvent: (event: unknown) => void = () => undefined,
): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const socket = createConnection(socketPath);
    let buffered = '';
    let settled = false;
    const settle = (fn: () => void) => {
      if (!settled) {
        settled = true;
        fn();
      }
    };
    socket.on('connect', () => socket.write(JSON.stringify({ method, params }) + '\n'));
    socket.on('data', (chunk) => {
      buffered += chunk.toString('utf8');
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const reply = JSON.parse(buffered.slice(0, nl)) as ControlReply;
        buffered = buffered.slice(nl + 1);
        if ('event' in reply) onEvent(reply.event);
        else if ('result' in reply) settle(() => resolve(reply.result));
        else settle(() => reject(toError(reply.error.code, reply.error.message)));
      }
    });
    socket.on('error', (err) =>
      settle(() => reject(new ControlError('ENOTCONN', `cannot reach the blobhsm daemon at ${socketPath}: ${err.message}`))),
    );
    socket.on('close', () => settle(() => reject(new ControlError('EIO', 'the blobhsm daemon closed the connection without an answer'))));
  });
}

function toError(code: string, message: string): Error {
  if (code === 'EUSAGE') return new UsageError(message);
  return new FsError(code as FsErrorCode, message);
}
