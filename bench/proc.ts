// Child processes for the bench: run a command with a hard time limit (never hangs the driver), time it, drop the
// kernel caches, and read a process's I/O counters from /proc. Nothing here touches a mount itself.
import { spawn, type SpawnOptions } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';

export interface RunResult {
  code: number;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Wall time of the child, measured by the driver (spawn to exit), in ms. */
  ms: number;
  timedOut: boolean;
}

export interface RunOptions {
  timeoutMs: number;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  input?: string;
  /** Discard stdout (e.g. `ls -l` of 10k entries): it is then not piped back through the driver. */
  discardStdout?: boolean;
}

/** Called with the PID of a child that would not die after SIGKILL (D state: a hung FUSE mount). */
let onStuck: ((what: string) => void) | undefined;
export function setStuckHandler(fn: (what: string) => void): void {
  onStuck = fn;
}

/** Runs a command; never throws for a non-zero exit; SIGKILLs it at the time limit. */
export function run(cmd: string, args: string[], o: RunOptions): Promise<RunResult> {
  return new Promise((resolve) => {
    const opts: SpawnOptions = {
      env: o.env ?? process.env,
      cwd: o.cwd,
      stdio: [o.input === undefined ? 'ignore' : 'pipe', o.discardStdout ? 'ignore' : 'pipe', 'pipe'],
    };
    const t0 = performance.now();
    const child = spawn(cmd, args, opts);
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout?.on('data', (c: Buffer) => {
      if (stdout.length < 4 * 1024 * 1024) stdout += c.toString();
    });
    child.stderr?.on('data', (c: Buffer) => {
      if (stderr.length < 256 * 1024) stderr += c.toString();
    });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
      // A child blocked in the kernel on a hung FUSE mount ignores SIGKILL until the connection is aborted.
      stuckTimer = setTimeout(() => onStuck?.(`${cmd} ${args.join(' ')}`), 3000);
    }, o.timeoutMs);
    let stuckTimer: NodeJS.Timeout | undefined;
    child.on('error', (err) => {
      clearTimeout(timer);
      resolve({ code: 127, signal: null, stdout, stderr: stderr + String(err), ms: performance.now() - t0, timedOut });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (stuckTimer) clearTimeout(stuckTimer);
      resolve({ code: code ?? 128, signal, stdout, stderr, ms: performance.now() - t0, timedOut });
    });
    child.stdin?.on('error', () => undefined);
    if (o.input !== undefined) child.stdin?.end(o.input);
  });
}

/** Runs a command and throws (with its output) unless it exits 0. */
export async function runOk(cmd: string, args: string[], o: RunOptions): Promise<RunResult> {
  const r = await run(cmd, args, o);
  if (r.code !== 0) {
    const why = r.timedOut ? `timed out after ${o.timeoutMs} ms` : `exit ${r.code}${r.signal ? ` (${r.signal})` : ''}`;
    throw new Error(`${cmd} ${args.join(' ')}: ${why}: ${(r.stderr || r.stdout).trim().slice(-2000)}`);
  }
  return r;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

let dropWorks: boolean | undefined;
/** sync + drop page cache, dentries and inodes. False when not permitted (then results say so). */
export async function dropCaches(): Promise<boolean> {
  if (dropWorks === false) return false;
  await run('sync', [], { timeoutMs: 60_000 });
  try {
    writeFileSync('/proc/sys/vm/drop_caches', '3');
    dropWorks = true;
  } catch {
    dropWorks = false;
  }
  return dropWorks;
}

export function canDropCaches(): boolean | undefined {
  return dropWorks;
}

export interface ProcIo {
  /** Bytes passed to read-like syscalls (files, sockets, /dev/fuse). */
  rchar: number;
  /** Bytes passed to write-like syscalls. */
  wchar: number;
  syscr: number;
  syscw: number;
}

/** A process's I/O counters (/proc/PID/io), or undefined when unreadable. */
export function procIo(pid: number | undefined): ProcIo | undefined {
  if (!pid) return undefined;
  try {
    const text = readFileSync(`/proc/${pid}/io`, 'utf8');
    const get = (k: string) => Number(/^(\w+): (\d+)$/m.exec(text.split('\n').find((l) => l.startsWith(k + ':')) ?? '')?.[2] ?? NaN);
    return { rchar: get('rchar'), wchar: get('wchar'), syscr: get('syscr'), syscw: get('syscw') };
  } catch {
    return undefined;
  }
}

export function ioDelta(a: ProcIo | undefined, b: ProcIo | undefined): ProcIo | undefined {
  if (!a || !b) return undefined;
  return { rchar: b.rchar - a.rchar, wchar: b.wchar - a.wchar, syscr: b.syscr - a.syscr, syscw: b.syscw - a.syscw };
}

/** CPU seconds (user + system) of a process and of its waited-for children (/proc/PID/stat), or undefined. */
export interface ProcCpu {
  self: number;
  children: number;
}

/** Clock ticks per second of /proc/PID/stat's times: USER_HZ, 100 on every Linux architecture Node runs on. */
const USER_HZ = 100;

export function procCpu(pid: number | 'self'): ProcCpu | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces, so split after its closing parenthesis): the 12th-15th
    // are utime, stime, cutime, cstime.
    const f = text.slice(text.lastIndexOf(')') + 2).split(' ').map(Number);
    return { self: (f[11]! + f[12]!) / USER_HZ, children: (f[13]! + f[14]!) / USER_HZ };
  } catch {
    return undefined;
  }
}

export { isAlive } from '../src/control/registry.js';
