// The control socket's bounds (src/control/server.ts) on a real Unix socket: an over-long request (with or without
// a newline) is answered with E2BIG and closed, malformed requests get an error saying what is expected, the
// request rate and the connection count are bounded, a connection that never sends a request is closed. Methods
// are told the peer's credentials from the kernel (SO_PEERCRED through the libfuse3 addon), never from the request:
// a client run as nobody that claims uid 0 is seen as 65534; and who may change the privileged HSM flags.
import t, { type Test } from 'tap';
import { createConnection } from 'node:net';
import { chmodSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ControlServer, type ControlLimits } from '../src/control/server.js';
import { callDaemon } from '../src/control/client.js';
import type { ControlMethod, Peer } from '../src/control/protocol.js';
import { peerCredentials } from '../src/fuse/lowlevel.js';
import { mayChangePrivilegedFlags } from '../src/daemon/control-methods.js';
import { requestAs } from './helpers/control-as.js';

const methods: Record<string, ControlMethod> = {
  echo: async (params, emit) => {
    await emit({ progress: 1 });
    return params;
  },
  whoami: async (params, _emit, _signal, peer) => ({ peer: peer ?? null, claimed: params.uid ?? null }),
};

const kernelPeer = (fd: number): Peer | undefined => {
  const peer = peerCredentials(fd);
  return peer instanceof Error ? undefined : peer;
};

async function serve(t: Test, limits: Partial<ControlLimits> = {}, now?: () => number, peerOf?: (fd: number) => Peer | undefined) {
  const dir = mkdtempSync(join(tmpdir(), 'blobhsm-control-'));
  const path = join(dir, 'c.sock');
  const server = new ControlServer(methods, limits, now, peerOf);
  await server.listen(path);
  t.teardown(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return path;
}

type Reply = { error?: { code: string; message: string }; result?: unknown };

/** Sends raw bytes, then collects every reply line until the server closes the connection. */
function raw(path: string, payload: string | Buffer | null, connected: () => void = () => undefined): Promise<Reply[]> {
  return new Promise((resolve) => {
    const socket = createConnection(path, connected);
    let text = '';
    socket.on('data', (c) => (text += c.toString()));
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(text.split('\n').filter(Boolean).map((l) => JSON.parse(l))));
    if (payload !== null) socket.write(payload);
  });
}

t.test('a request answers with its events and result; the socket is 0600', async (t) => {
  const path = await serve(t);
  t.equal(statSync(path).mode & 0o777, 0o600);
  const events: unknown[] = [];
  t.same(await callDaemon(path, 'echo', { a: 1 }, (e) => events.push(e)), { a: 1 });
  t.same(events, [{ progress: 1 }]);
});

t.test('a request longer than the bound is refused at once, newline or not', async (t) => {
  const path = await serve(t, { maxRequestBytes: 1024 });
  const noNewline = await raw(path, Buffer.alloc(4096, 'x'));
  t.equal(noNewline.length, 1);
  t.equal(noNewline[0]!.error!.code, 'E2BIG');
  t.match(noNewline[0]!.error!.message, /request longer than 1024 bytes/);
  const long = await raw(path, JSON.stringify({ method: 'echo', params: { pad: 'y'.repeat(2000) } }) + '\n');
  t.equal(long[0]!.error!.code, 'E2BIG');
  const fits = await raw(path, JSON.stringify({ method: 'echo', params: { pad: 'y'.repeat(900) } }) + '\n');
  t.equal((fits.at(-1)!.result as { pad: string }).pad.length, 900, 'one under the bound is served');
});

t.test('malformed requests are answered with what is expected', async (t) => {
  const path = await serve(t);
  const cases: Array<[string, RegExp]> = [
    ['not json\n', /malformed request \(.*JSON.*\): send one JSON object/],
    ['[1,2]\n', /malformed request \(not an object\)/],
    ['{"method":5}\n', /malformed request \(no method name\)/],
    ['{"method":"echo","params":3}\n', /params is not an object/],
  ];
  for (const [line, message] of cases) {
    const replies = await raw(path, line);
    t.equal(replies.length, 1, line.trim());
    t.equal(replies[0]!.error!.code, 'EINVAL');
    t.match(replies[0]!.error!.message, message);
  }
  const unknown = await raw(path, '{"method":"constructor"}\n');
  t.equal(unknown[0]!.error!.code, 'EUSAGE');
  t.match(unknown[0]!.error!.message, /unknown control method 'constructor'/);
});

t.test('the request rate is bounded (a token bucket on an injected clock)', async (t) => {
  let clock = 0;
  const path = await serve(t, { burst: 3, perSecond: 2 }, () => clock);
  const request = JSON.stringify({ method: 'echo', params: {} }) + '\n';
  for (let i = 0; i < 3; i++) t.notOk((await raw(path, request))[0]!.error, `request ${i + 1} of the burst`);
  const refused = await raw(path, request);
  t.equal(refused[0]!.error!.code, 'EAGAIN');
  t.match(refused[0]!.error!.message, /too many requests/);
  clock += 500;
  t.notOk((await raw(path, request))[0]!.error, 'one more after half a second at 2 per second');
  t.equal((await raw(path, request))[0]!.error!.code, 'EAGAIN');
});

t.test('connections beyond the bound are refused; one that sends nothing is closed', async (t) => {
  const path = await serve(t, { maxConnections: 1, requestTimeoutMs: 100 });
  // The idle connection is accepted first (the server accepts in order) and holds the only slot.
  let idle!: Promise<Reply[]>;
  await new Promise<void>((connected) => (idle = raw(path, null, connected)));
  const second = await raw(path, JSON.stringify({ method: 'echo', params: {} }) + '\n');
  t.equal(second[0]!.error!.code, 'EAGAIN', 'refused while the slot is taken');
  t.match(second[0]!.error!.message, /serving 1 requests already; try again/);
  const idleReplies = await idle;
  t.equal(idleReplies[0]!.error!.code, 'ETIMEDOUT');
  t.match(idleReplies[0]!.error!.message, /no complete request within 0\.1 s/);
  const third = await raw(path, JSON.stringify({ method: 'echo', params: { n: 3 } }) + '\n');
  t.same(third.at(-1)!.result, { n: 3 }, 'served once the slot is free');
});

t.test("a method is told the peer the kernel reports: nobody claiming uid 0 is seen as 65534", async (t) => {
  const path = await serve(t, {}, undefined, kernelPeer);
  t.same(await callDaemon(path, 'whoami', { uid: 4242 }), {
    peer: { pid: process.pid, uid: process.getuid!(), gid: process.getgid!() },
    claimed: 4242,
  });
  // Open to nobody for this test only (the daemon's socket is 0600 in a 0700 directory).
  chmodSync(join(path, '..'), 0o755);
  chmodSync(path, 0o666);
  const [reply] = (await requestAs('nobody', path, { method: 'whoami', params: { uid: 0 } })) as Array<{ result: { peer: Peer; claimed: number } }>;
  t.equal(reply!.result.claimed, 0, 'the request claims root');
  t.equal(reply!.result.peer.uid, 65534, 'the method sees nobody');
  t.equal(reply!.result.peer.gid, 65534);
});

t.test('without a peer reader a method is told nothing about the caller', async (t) => {
  const path = await serve(t);
  t.same(await callDaemon(path, 'whoami', { uid: 0 }), { peer: null, claimed: 0 });
});

t.test('privileged HSM flags: root by SO_PEERCRED; unknown peers only when the daemon itself is root', async (t) => {
  const peer = (uid: number): Peer => ({ pid: 1, uid, gid: uid });
  t.ok(mayChangePrivilegedFlags(peer(0), 1000), 'root connecting to a user daemon');
  t.notOk(mayChangePrivilegedFlags(peer(65534), 0), 'nobody connecting to a root daemon');
  t.notOk(mayChangePrivilegedFlags(peer(1000), 1000), "the daemon's own user is not root");
  t.ok(mayChangePrivilegedFlags(undefined, 0), 'no addon, root daemon: only root can connect to its 0600 socket');
  t.notOk(mayChangePrivilegedFlags(undefined, 1000), 'no addon, user daemon: root and the user cannot be told apart');
});
