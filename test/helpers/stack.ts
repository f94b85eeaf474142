// The real filesystem stack without FUSE, for semantics tests: a MemoryBlobStore seeded with blobs, an in-memory
// SQLite MetaStore the namespace was imported into, a DataCache in a temporary directory, and the Hydrator,
// Coordinator, Changelog and Vfs wired as the daemon wires them (src/daemon/build-stack.ts).
import { constants as fsConstants, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MemoryBlobStore } from '../../src/blob/memory-store.js';
import { buildStack, type HydratorTuning, type Stack } from '../../src/daemon/build-stack.js';
import { normalizePrefix } from '../../src/namespace/blob-encoding.js';
import { openMetaStore } from '../../src/namespace/meta-store.js';
import type { SqliteMetaStore } from '../../src/namespace/meta-store.js';
import { importNamespace, type ImportStats } from '../../src/namespace/importer.js';
import type { Inode } from '../../src/namespace/types.js';
import type { PathVfs } from '../../src/vfs/path-vfs.js';
import type { Vfs } from '../../src/vfs/vfs.js';

/** A seeded blob: its content, and metadata (a string content with no metadata is a plain file). */
export type SeedBlob = string | Buffer | { data?: string | Buffer; metadata?: Record<string, string> };

export interface TestStackOptions {
  /** Blobs put into the store before the import, by name. */
  blobs?: Record<string, SeedBlob>;
  /** Use this store instead of a new MemoryBlobStore (blobs are still seeded into it). */
  store?: MemoryBlobStore;
  /** Mount prefix ('' by default). */
  prefix?: string;
  readOnly?: boolean;
  cacheSizeLimit?: number;
  concurrency?: number;
  hydrator?: HydratorTuning;
  namespaceId?: string;
  /** The coordinator's clock of access times (eviction order). */
  now?: () => number;
  /** The Vfs's clock of file times. */
  fileTimes?: () => number;
  /** uid/gid of new files (default 1000:1000). */
  owner?: { uid: number; gid: number };
}

/** The stack with `vfs` as its path view (tests name files by path); `inodes` is the inode Vfs itself. */
export interface TestStack extends Omit<Stack, 'vfs' | 'paths'> {
  vfs: PathVfs;
  inodes: Vfs;
  store: MemoryBlobStore;
  meta: SqliteMetaStore;
  dir: string;
  importStats: ImportStats;
  /** Every log line, in order. */
  logs: string[];
  /** The inode at a path (throws when missing). */
  inode(path: string): Inode;
  /** Reads a whole file through the Vfs (open, read, release). */
  readFile(path: string): Promise<Buffer>;
  /** Writes data at an offset through the Vfs (open O_WRONLY, write, release). */
  writeFile(path: string, data: Buffer | string, position?: number): Promise<void>;
  /** Creates a file with this content through the Vfs (create, write, release). */
  createFile(path: string, data: Buffer | string, mode?: number): Promise<void>;
  /** Waits until no HSM action, restore or eviction pass is running. */
  settle(): Promise<void>;
  /**
   * A daemon restart after a crash: this stack's handles, restores and cache file descriptors are dropped without
   * a shutdown (no drain, no access-time flush), and a new stack is built on the same metadata store, cache
   * directory and container, reconciling the cache as the daemon does at start. This stack is unusable after.
   */
  crashAndRemount(): Promise<TestStack>;
  cleanup(): Promise<void>;
}

export const { O_RDONLY, O_WRONLY, O_RDWR, O_TRUNC } = fsConstants;

export async function makeStack(options: TestStackOptions = {}): Promise<TestStack> {
  const store = options.store ?? new MemoryBlobStore();
  for (const [name, seed] of Object.entries(options.blobs ?? {})) {
    if (typeof seed === 'string' || Buffer.isBuffer(seed)) store.putDirect(name, seed);
    else store.putDirect(name, seed.data ?? '', seed.metadata ?? {});
  }
  const logs: string[] = [];
  const log = (line: string) => void logs.push(line);
  const meta = openMetaStore(':memory:', { synchronous: 'OFF' });
  const importStats = await importNamespace({ store, meta, prefix: options.prefix ?? '', log });
  if (importStats.state !== 'Completed') throw new Error(`import failed: ${importStats.error ?? importStats.state}`);
  const dir = mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'blobhsm-stack-'));
  return assemble(options, store, meta, dir, importStats, logs);
}

/** The stack on an imported metadata store and a cache directory (a first mount, or a remount after a crash). */
async function assemble(
  options: TestStackOptions,
  store: MemoryBlobStore,
  meta: SqliteMetaStore,
  dir: string,
  importStats: ImportStats,
  logs: string[],
): Promise<TestStack> {
  const log = (line: string) => void logs.push(line);
  const parts = await buildStack({
    store,
    meta,
    cacheDir: dir,
    blobPrefix: normalizePrefix(options.prefix),
    cacheSizeLimit: options.cacheSizeLimit ?? 0,
    readOnly: options.readOnly ?? false,
    namespaceId: options.namespaceId ?? 'test-ns',
    ...(options.now ? { now: options.now } : {}),
    ...(options.fileTimes ? { fileTimes: options.fileTimes } : {}),
    log,
    owner: options.owner ?? { uid: 1000, gid: 1000 },
    hydrator: { backgroundHoldMs: 0, ...options.hydrator } as HydratorTuning,
    ...(options.concurrency !== undefined ? { concurrency: options.concurrency } : {}),
  });
  const { paths: vfs, coordinator, hydrator, cache } = parts;
  // Eviction passes start in the background (after a close or a restore): track them so settle() can wait.
  const evictions = new Set<Promise<void>>();
  const evict = coordinator.evictIfNeeded.bind(coordinator);
  coordinator.evictIfNeeded = () => {
    const pass = evict().finally(() => evictions.delete(pass));
    evictions.add(pass);
    return pass;
  };

  const inode = (path: string): Inode => {
    const found = meta.resolve(path);
    if (!found) throw new Error(`no inode at ${path}`);
    return found;
  };
  const readFile = async (path: string): Promise<Buffer> => {
    const fh = await vfs.open(path, O_RDONLY);
    try {
      const chunks: Buffer[] = [];
      for (let pos = 0; ; ) {
        const buf = Buffer.alloc(64 * 1024);
        const n = await vfs.read(fh, buf, buf.length, pos);
        if (n === 0) break;
        chunks.push(buf.subarray(0, n));
        pos += n;
      }
      return Buffer.concat(chunks);
    } finally {
      await vfs.release(fh);
    }
  };
  const writeFile = async (path: string, data: Buffer | string, position = 0): Promise<void> => {
    const buf = Buffer.from(data);
    const fh = await vfs.open(path, O_WRONLY);
    try {
      await vfs.write(fh, buf, buf.length, position);
      await vfs.flush(fh);
    } finally {
      await vfs.release(fh);
    }
  };
  const createFile = async (path: string, data: Buffer | string, mode = 0o644): Promise<void> => {
    const buf = Buffer.from(data);
    const fh = await vfs.create(path, mode);
    try {
      if (buf.length > 0) await vfs.write(fh, buf, buf.length, 0);
      await vfs.flush(fh);
    } finally {
      await vfs.release(fh);
    }
  };
  const settle = async (): Promise<void> => {
    for (let i = 0; i < 10_000; i++) {
      await coordinator.idle();
      await Promise.all(evictions);
      if (hydrator.running().length === 0 && evictions.size === 0) {
        // A finished restore calls onRestored; let its follow-ups (eviction) run too.
        await new Promise((r) => setImmediate(r));
        if (hydrator.running().length === 0 && evictions.size === 0) return;
      }
      await new Promise((r) => setTimeout(r, 1));
    }
    throw new Error('the stack did not settle');
  };
  const crashAndRemount = async (): Promise<TestStack> => {
    hydrator.cancelAll();
    await coordinator.idle().catch(() => undefined);
    cache.close();
    return assemble(options, store, meta, dir, importStats, logs);
  };
  const cleanup = async (): Promise<void> => {
    hydrator.cancelAll();
    await coordinator.idle().catch(() => undefined);
    cache.close();
    meta.close();
    rmSync(dir, { recursive: true, force: true });
  };
  const { vfs: inodes, paths: _paths, ...rest } = parts;
  return { ...rest, vfs, inodes, store, meta, dir, importStats, logs, inode, readFile, writeFile, createFile, settle, crashAndRemount, cleanup };
}
