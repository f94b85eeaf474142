// Starts a local Azurite blob service (the Azure Storage emulator) from the installed azurite package.
// One implementation of "pick a free port, spawn main.js, wait until it answers, stop by PID" shared by the
// runtime (`blobhsm` against a local emulator) and the test helper (test/helpers/azurite.ts).
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createConnection, createServer } from 'node:net';
import { join } from 'node:path';

/** The well-known Azurite development account. */
export const EMULATOR_ACCOUNT = 'devstoreaccount1';
/** The well-known (public) Azurite development account key. */
export const EMULATOR_KEY =
  'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

export interface EmulatorOptions {
  /** Azurite's --location: where blobs and its database persist. Created if missing. */
  dataDir: string;
  /** Port to listen on; default: a free loopback port (retried if another process takes it first). */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Keep everything in memory (--inMemoryPersistence); the data dir is then only the working directory. */
  inMemory?: boolean;
  /**
   * Let the emulator outlive this process (own process group, output to `<dataDir>/azurite.log`).
   * Default false: output is piped, and the emulator stops when this process exits or dies.
   */
  detached?: boolean;
  /** How long to wait for the port to answer; default 30 s. */
  startTimeoutMs?: number;
}

export interface Emulator {
  /** A connection string for the emulator's blob service (contains the public development key). */
  connectionString: string;
  /** e.g. http://127.0.0.1:41234/devstoreaccount1 */
  blobEndpoint: string;
  host: string;
  port: number;
  /** The PID of the Azurite server itself (main.js runs directly under node). */
  pid: number;
  dataDir: string;
  /** SIGTERM (graceful: Azurite flushes its database), SIGKILL after graceMs (default 5 s). */
  stop(graceMs?: number): Promise<void>;
}

const require = createRequire(import.meta.url);

/** Absolute path of the installed azurite package's blob service entry point. */
export function azuriteBlobMain(): string {
  return require.resolve('azurite/dist/src/blob/main.js');
}

export function emulatorBlobEndpoint(port: number, host = '127.0.0.1'): string {
  return `http://${host}:${port}/${EMULATOR_ACCOUNT}`;
}

export function emulatorConnectionString(blobEndpoint: string): string {
  return (
    `DefaultEndpointsProtocol=http;AccountName=${EMULATOR_ACCOUNT};AccountKey=${EMULATOR_KEY};` +
    `BlobEndpoint=${blobEndpoint};`
  );
}

/** A port nobody listens on right now (listen on port 0, read it, close). */
export async function findFreePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error('could not read the port of a listening socket'))));
    });
  });
}

/** True when a TCP connection to host:port succeeds within timeoutMs. */
export async function portAnswers(port: number, host = '127.0.0.1', timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createConnection({ port, host });
    const done = (ok: boolean) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

/**
 * Whether the socket listening on this TCP port belongs to the process (Linux: the socket's inode from
 * /proc/net/tcp{,6} among the process's open files). True where /proc cannot tell.
 */
export function listenerIsOurs(pid: number, port: number): boolean {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  const inodes = new Set<string>();
  let known = false;
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text: string;
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    known = true;
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      // sl local_address rem_address st ... inode (field 9); state 0A is LISTEN.
      if (f.length > 9 && f[1]!.endsWith(`:${hexPort}`) && f[3] === '0A') inodes.add(f[9]!);
    }
  }
  if (!known) return true;
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return true;
  }
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m && inodes.has(m[1]!)) return true;
    } catch {
      // closed meanwhile
    }
  }
  return false;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Waits until the process is gone; false on timeout. */
async function waitForExit(pid: number, child: ChildProcess | undefined, timeoutMs: number): Promise<boolean> {
  if (child && (child.exitCode !== null || child.signalCode !== null)) return true;
  const deadline = Date.now() + timeoutMs;
  if (child) {
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(child.exitCode !== null || child.signalCode !== null), timeoutMs);
      child.once('exit', () => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }
  while (Date.now() < deadline) {
    if (!isAlive(pid)) return true;
    await sleep(50);
  }
  return !isAlive(pid);
}

/** Stops a process by PID: SIGTERM, then SIGKILL after graceMs. Resolves when it is gone. */
export async function stopPid(pid: number, graceMs = 5000, child?: ChildProcess): Promise<void> {
  if (child && (child.exitCode !== null || child.signalCode !== null)) return;
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return; // already gone
  }
  if (await waitForExit(pid, child, graceMs)) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    return;
  }
  await waitForExit(pid, child, 5000);
}

// Preloaded into an attached emulator: if our parent dies (even by SIGKILL), the emulator is reparented and
// terminates itself instead of lingering. The timer is unref'ed so it never keeps Azurite alive.
const PARENT_WATCHDOG =
  'data:text/javascript,' +
  encodeURIComponent(
    'const p=process.ppid;setInterval(()=>{if(process.ppid!==p)process.kill(process.pid,"SIGTERM")},1000).unref();',
  );

// Attached emulators still running are signalled if this process exits without stopping them. SIGTERM, not
// SIGKILL: Azurite then shuts down gracefully on its own and keeps the writes it acknowledged.
const attached = new Set<number>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const pid of attached) {
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        // gone already
      }
    }
  });
}

class Tail {
  private text = '';
  constructor(private readonly max = 8192) {}
  push(chunk: Buffer | string): void {
    this.text = (this.text + chunk.toString()).slice(-this.max);
  }
  toString(): string {
    return this.text;
  }
}

async function spawnOnce(opts: EmulatorOptions, host: string, port: number): Promise<Emulator> {
  const args = [
    azuriteBlobMain(),
    '--blobHost',
    host,
    '--blobPort',
    String(port),
    '--skipApiVersionCheck',
    '--loose',
    '--disableTelemetry',
    '--silent',
  ];
  // Azurite refuses --location together with --inMemoryPersistence; the data dir is then only its cwd.
  if (opts.inMemory) args.push('--inMemoryPersistence');
  else args.push('--location', opts.dataDir);
  const detached = opts.detached ?? false;
  const output = new Tail();
  let child: ChildProcess;
  let logPath: string | undefined;
  if (detached) {
    logPath = join(opts.dataDir, 'azurite.log');
    const fd = openSync(logPath, 'a');
    try {
      child = spawn(process.execPath, args, { detached: true, cwd: opts.dataDir, stdio: ['ignore', fd, fd] });
    } finally {
      closeSync(fd);
    }
  } else {
    child = spawn(process.execPath, ['--import', PARENT_WATCHDOG, ...args], {
      cwd: opts.dataDir,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    // Always drain the pipes so Azurite can never block on a full pipe; keep the tail for error messages.
    child.stdout?.on('data', (c: Buffer) => output.push(c));
    child.stderr?.on('data', (c: Buffer) => output.push(c));
  }
  const outputText = () => {
    if (!logPath) return output.toString();
    try {
      return readFileSync(logPath, 'utf8').slice(-8192);
    } catch {
      return '';
    }
  };

  let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  let spawnError: Error | undefined;
  child.once('exit', (code, signal) => (exited = { code, signal }));
  child.once('error', (err) => (spawnError = err));
  const pid = child.pid;
  if (pid === undefined) {
    await sleep(0);
    throw new Error(`could not start Azurite: ${spawnError?.message ?? 'no PID'}`);
  }
  if (!detached) {
    attached.add(pid);
    installExitHook();
    child.once('exit', () => attached.delete(pid));
  }

  const timeoutMs = opts.startTimeoutMs ?? 30_000;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (spawnError) throw new Error(`could not start Azurite: ${spawnError.message}`);
    if (exited) {
      const how = exited.signal ? `signal ${exited.signal}` : `code ${exited.code}`;
      throw new EmulatorExitError(`Azurite exited early (${how}): ${outputText().trim()}`, outputText());
    }
    // The port answering is not enough: another process (a second copy of the test suite) may have bound it
    // between our probe and Azurite's bind; then our child exits with EADDRINUSE and the caller tries another port.
    if ((await portAnswers(port, host, 500)) && listenerIsOurs(pid, port)) break;
    if (Date.now() > deadline) {
      await stopPid(pid, 1000, child);
      throw new Error(`Azurite did not answer on ${host}:${port} within ${timeoutMs} ms: ${outputText().trim()}`);
    }
    await sleep(50);
  }

  // From here on, nothing of the child keeps this process alive; stop() or process exit ends it.
  child.unref();
  (child.stdout as unknown as { unref?: () => void } | null)?.unref?.();
  (child.stderr as unknown as { unref?: () => void } | null)?.unref?.();

  const blobEndpoint = emulatorBlobEndpoint(port, host);
  return {
    connectionString: emulatorConnectionString(blobEndpoint),
    blobEndpoint,
    host,
    port,
    pid,
    dataDir: opts.dataDir,
    stop: async (graceMs = 5000) => {
      await stopPid(pid, graceMs, child);
      attached.delete(pid);
    },
  };
}

class EmulatorExitError extends Error {
  constructor(
    message: string,
    readonly output: string,
  ) {
    super(message);
  }
}

/** Starts Azurite's blob service and resolves once its port accepts connections. */
export async function startEmulator(opts: EmulatorOptions): Promise<Emulator> {
  const host = opts.host ?? '127.0.0.1';
  mkdirSync(opts.dataDir, { recursive: true });
  if (opts.port !== undefined) return spawnOnce(opts, host, opts.port);
  // Another process may grab the free port between our probe and Azurite's bind: try a few ports.
  for (let attempt = 1; ; attempt++) {
    const port = await findFreePort(host);
    try {
      return await spawnOnce(opts, host, port);
    } catch (err) {
      if (attempt < 3 && err instanceof EmulatorExitError && /EADDRINUSE/.test(err.output)) continue;
      throw err;
    }
  }
}
