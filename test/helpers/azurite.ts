// Test helpers: an Azurite per test file (src/emulator/emulator.ts does the spawning) in a temporary directory,
// and a fresh container plus AzureBlobStore per test.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AzureBlobStore, createAzureStore, type AzureStoreOptions } from '../../src/blob/azure-store.js';
import { startEmulator, EMULATOR_ACCOUNT, EMULATOR_KEY } from '../../src/emulator/emulator.js';

export { EMULATOR_ACCOUNT, EMULATOR_KEY };

export interface Azurite {
  connectionString: string;
  blobEndpoint: string;
  port: number;
  pid: number;
  /** Kills Azurite (by PID) and removes the temporary data directory (one passed in is kept). */
  stop(): Promise<void>;
}

/** Starts Azurite on a free loopback port with its data in a new temporary directory (or `dataDir`). */
export async function startAzurite(opts: { dataDir?: string; inMemory?: boolean } = {}): Promise<Azurite> {
  const ownDir = opts.dataDir === undefined;
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'blobhsm-azurite-'));
  try {
    const emu = await startEmulator({ dataDir, inMemory: opts.inMemory });
    let stopped = false;
    return {
      connectionString: emu.connectionString,
      blobEndpoint: emu.blobEndpoint,
      port: emu.port,
      pid: emu.pid,
      stop: async () => {
        if (stopped) return;
        stopped = true;
        // Test data need not survive: a short grace period keeps teardown fast.
        await emu.stop(1000);
        if (ownDir) rmSync(dataDir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    if (ownDir) rmSync(dataDir, { recursive: true, force: true });
    throw err;
  }
}

/** The minimal part of a tap Test these helpers use. */
export interface TeardownHost {
  teardown(fn: () => unknown): void;
  /** tap's: false once an assertion of the test failed. */
  passing?(): boolean;
}

/** A unique, valid container name (3–63 lower-case letters, digits and dashes). */
export function uniqueContainerName(prefix = 't'): string {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`.toLowerCase().slice(0, 63);
}

/**
 * Gives the test a fresh, created container on this Azurite and a store for it; the container is deleted in
 * t.teardown. Store options (timeouts, block size, ...) may be overridden.
 */
export async function withContainer(
  t: TeardownHost,
  azurite: Pick<Azurite, 'connectionString'>,
  options: Partial<Omit<AzureStoreOptions, 'container' | 'connectionString'>> = {},
): Promise<AzureBlobStore> {
  const container = uniqueContainerName();
  const store = createAzureStore({
    container,
    connectionString: azurite.connectionString,
    timeoutMs: 10_000,
    retries: 2,
    env: {},
    ...options,
  });
  await store.createContainer();
  t.teardown(async () => {
    await store.deleteContainer().catch(() => undefined);
    await store.close(); // its MD5 threads
  });
  return store;
}
