// Test helper: a blobhsm user's environment under a fresh temporary directory (state dir, XDG cache home, a
// mountpoint, credentials for one Azurite), with the real CLI run as a child process, for tests that mount
// without the mountContainer fixture (default cache dirs, failing mounts). Teardown unmounts only its own mount.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BIN, type CliResult } from './mount.js';
import type { TeardownHost } from './azurite.js';
import { mountAt } from '../../src/daemon/mount-checks.js';

export interface Sandbox {
  base: string;
  mountpoint: string;
  stateDir: string;
  /** XDG_CACHE_HOME: default cache directories are under <cacheHome>/blobhsm. */
  cacheHome: string;
  env: NodeJS.ProcessEnv;
  /** `blobhsm ARGS...` with the sandbox's environment (plus `extraEnv`); never throws on a non-zero exit. */
  cli(args: string[], extraEnv?: NodeJS.ProcessEnv): Promise<CliResult>;
  /** The default cache directories made so far. */
  cacheDirs(): string[];
}

export function sandbox(t: TeardownHost, connectionString: string): Sandbox {
  const base = mkdtempSync(join(tmpdir(), 'blobhsm-sandbox-'));
  const mountpoint = join(base, 'mnt');
  mkdirSync(mountpoint);
  const stateDir = join(base, 'state');
  const cacheHome = join(base, 'xdg-cache');
  // Without tap's NODE_OPTIONS loader (it makes every command about three times slower).
  const { NODE_OPTIONS: _tapLoader, ...inherited } = process.env;
  const env: NodeJS.ProcessEnv = { ...inherited, BLOBHSM_STATE_DIR: stateDir, XDG_CACHE_HOME: cacheHome, AZURE_STORAGE_CONNECTION_STRING: connectionString };
  const cli = (args: string[], extraEnv: NodeJS.ProcessEnv = {}) =>
    new Promise<CliResult>((done) =>
      execFile(process.execPath, [BIN, ...args], { env: { ...env, ...extraEnv }, timeout: 120_000 }, (err, stdout, stderr) =>
        done({ code: err ? Number((err as { code?: unknown }).code ?? 1) : 0, stdout: String(stdout), stderr: String(stderr) }),
      ),
    );
  t.teardown(async () => {
    if (mountAt(mountpoint)) await cli(['unmount', mountpoint]);
    rmSync(base, { recursive: true, force: true });
  });
  const caches = join(cacheHome, 'blobhsm');
  return { base, mountpoint, stateDir, cacheHome, env, cli, cacheDirs: () => (existsSync(caches) ? readdirSync(caches).sort() : []) };
}

/** Processes whose environment names this state directory (the CLI passes it to its daemons). */
export function processesOf(stateDir: string): number[] {
  const pids: number[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').includes(`BLOBHSM_STATE_DIR=${stateDir}`)) pids.push(Number(pid));
    } catch {
      /* gone, or not ours to read */
    }
  }
  return pids;
}
