// End-to-end test helpers: a real kernel FUSE mount of a container on a real Azurite, served by the blobhsm
// daemon in its own process (started with the real CLI), and driven from child processes / this test process
// (never from the serving process). Teardown unmounts, and breaks a hung mount if it has to.
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync, readFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import type { AzureBlobStore } from '../../src/blob/azure-store.js';
import type { Azurite, TeardownHost } from './azurite.js';
import { withContainer } from './azurite.js';

const execFileAsync = promisify(execFile);

export const BIN = resolve(import.meta.dirname, '../../bin/blobhsm.js');

export interface SeedBlob {
  name: string;
  data?: Buffer | string;
  metadata?: Record<string, string>;
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface MountFixture {
  mountpoint: string;
  container: string;
  store: AzureBlobStore;
  /** Environment every blobhsm command of this fixture runs with (state/cache dirs, connection). */
  env: NodeJS.ProcessEnv;
  cacheDir: string;
  /** Runs `blobhsm ARGS...` as a child process; never throws on a non-zero exit. */
  cli(args: string[], options?: { input?: string }): Promise<CliResult>;
  /** Runs any command as a child process; never throws on a non-zero exit. */
  sh(command: string, options?: { input?: string }): Promise<CliResult>;
  /** `blobhsm mount` again after an unmount (or a crash), with the same cache directory. */
  remount(extraArgs?: string[]): Promise<CliResult>;
  unmount(): Promise<CliResult>;
  daemonPid(): number | undefined;
  /** Blob service requests the daemon has made, by operation. */
  requests(): Promise<Record<string, number>>;
  /** Sum of read (GET) requests to blob data. */
  reads(): Promise<number>;
}

export async function seed(store: AzureBlobStore, blobs: SeedBlob[]): Promise<void> {
  for (const b of blobs) {
    const data = typeof b.data === 'string' ? Buffer.from(b.data) : (b.data ?? Buffer.alloc(0));
    await store.upload(b.name, { data }, { metadata: b.metadata ?? {} });
  }
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, input?: string): Promise<CliResult> {
  return new Promise((resolvePromise) => {
    const child = execFile(cmd, args, { env, maxBuffer: 64 * 1024 * 1024, timeout: 300_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
      resolvePromise({ code, stdout: String(stdout), stderr: String(stderr) });
    });
    if (input !== undefined) child.stdin?.end(input);
    else child.stdin?.end();
  });
}

/** Aborts a FUSE connection that no longer answers and lazily unmounts it. */
export function breakMount(mountpoint: string): void {
  spawnSync('fusermount', ['-uz', mountpoint]);
  spawnSync('umount', ['-l', mountpoint]);
}

/**
 * A small tmpfs of `size` (e.g. '16m') mounted on a new temporary directory for a full-disk test, or undefined when
 * it cannot be mounted (not root). Its teardown is registered before the mount is tried, so a failing test leaves
 * none behind; lazy, because a daemon may still hold files in it when it runs.
 */
export function smallTmpfs(t: TeardownHost, size: string, name: string): { dir: string } | { error: string } {
  const dir = mkdtempSync(join(tmpdir(), `blobhsm-${name}-`));
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir]);
  if (mounted.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    return { error: `cannot mount a tmpfs: ${String(mounted.stderr)}` };
  }
  t.teardown(() => {
    spawnSync('umount', ['-l', dir]);
    rmSync(dir, { recursive: true, force: true });
  });
  return { dir };
}

/**
 * Seeds a fresh container with `blobs`, mounts it with `blobhsm mount` (background daemon) and registers the
 * teardown. `args` are extra mount flags (`--fuse fuse2` for the fuse-native binding), `extraEnv` extra variables
 * for every command of the fixture.
 */
export async function mountContainer(
  t: TeardownHost,
  azurite: Pick<Azurite, 'connectionString'>,
  blobs: SeedBlob[] = [],
  args: string[] = [],
  /** Runs after seeding, before the mount (e.g. to set an HNS fake's path attributes). */
  beforeMount?: (store: AzureBlobStore) => Promise<void> | void,
  extraEnv: NodeJS.ProcessEnv = {},
  /** Mount this existing container (another fixture's `store`) instead of a fresh one: a second mount of it. */
  existing?: AzureBlobStore,
): Promise<MountFixture> {
  const store = existing ?? (await withContainer(t, azurite));
  await seed(store, blobs);
  await beforeMount?.(store);
  const base = mkdtempSync(join(tmpdir(), 'blobhsm-e2e-'));
  const mountpoint = join(base, 'mnt');
  const cacheDir = join(base, 'cache');
  execFileSync('mkdir', ['-p', mountpoint]);
  // Without tap's NODE_OPTIONS (a process-info loader): it would make every blobhsm command, and the daemon, start
  // about three times slower.
  const { NODE_OPTIONS: _tapLoader, ...inherited } = process.env;
  const env: NodeJS.ProcessEnv = {
    ...inherited,
    BLOBHSM_STATE_DIR: join(base, 'state'),
    XDG_CACHE_HOME: join(base, 'xdg-cache'),
    XDG_DATA_HOME: join(base, 'xdg-data'),
    AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString,
    ...extraEnv,
  };
  const container = store.container;
  const cli = (a: string[], o: { input?: string } = {}) => run(process.execPath, [BIN, ...a], env, o.input);
  const mountArgs = (extra: string[]) => ['mount', mountpoint, '--container', container, '--cache-dir', cacheDir, ...args, ...extra];
  const fixture: MountFixture = {
    mountpoint,
    container,
    store,
    env,
    cacheDir,
    cli,
    sh: (command, o = {}) => run('/bin/sh', ['-c', command], { ...env, MNT: mountpoint, BLOBHSM: `${process.execPath} ${BIN}` }, o.input),
    remount: (extra = []) => cli(mountArgs(extra)),
    unmount: () => cli(['unmount', mountpoint]),
    daemonPid: () => {
      const pidFile = join(cacheDir, 'daemon.pid');
      return existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8')) : undefined;
    },
    requests: async () => {
      const r = await cli(['status', '--json', mountpoint]);
      if (r.code !== 0) throw new Error(`blobhsm status failed: ${r.stderr}`);
      return (JSON.parse(r.stdout) as { requests: Record<string, number> }).requests;
    },
    reads: async () => (await fixture.requests()).read ?? 0,
  };
  t.teardown(async () => {
    const pid = fixture.daemonPid();
    const r = await fixture.unmount();
    // A failed test shows the daemon's log, which goes with the temporary directory below.
    if (t.passing?.() === false) printDaemonLogs(join(base, 'state', 'logs'));
    if (r.code !== 0 && existsSync(mountpoint)) breakMount(mountpoint);
    if (pid) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    rmSync(base, { recursive: true, force: true });
  });
  const r = await fixture.remount();
  if (r.code !== 0) throw new Error(`blobhsm mount failed (${r.code}): ${r.stderr}${r.stdout}`);
  return fixture;
}

/** The last lines of each daemon log under `dir`, on stderr (tap keeps them with the test's output). */
function printDaemonLogs(dir: string): void {
  if (!existsSync(dir)) return;
  for (const name of readdirSync(dir)) {
    const lines = readFileSync(join(dir, name), 'utf8').trimEnd().split('\n');
    process.stderr.write(`--- daemon log ${name} (last ${Math.min(40, lines.length)} of ${lines.length} lines)\n${lines.slice(-40).join('\n')}\n`);
  }
}

export { execFileAsync };
