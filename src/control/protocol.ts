// The control protocol between the CLI and a mount's daemon: one JSON request per connection on a 0600 Unix
// socket, answered by zero or more event lines and then one result or error line.

export interface ControlRequest {
  method: string;
  params: Record<string, unknown>;
}

export type ControlReply =
  | { event: unknown }
  | { result: unknown }
  | { error: { code: string; message: string } };

/**
 * Emits an event to the client while a method runs; the promise resolves once the socket took it (a method that
 * streams many events awaits it, so a slow reader slows the method instead of filling the daemon's memory).
 */
export type EventSink = (event: unknown) => Promise<void>;

/**
 * Who is at the other end of the connection, from the kernel (SO_PEERCRED), never from the request; undefined when
 * it cannot be read (the libfuse3 addon, which reads it, is not built).
 */
export interface Peer {
  pid: number;
  uid: number;
  gid: number;
}

export type ControlMethod = (params: Record<string, unknown>, emit: EventSink, signal: AbortSignal, peer: Peer | undefined) => Promise<unknown>;
