// The typed mount configuration, its defaults and the well-known directories (state, data, cache).
import { createHash } from 'node:crypto';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { UsageError } from './errors.js';
import type { AutoImportConfig } from './jobs/auto-import.js';

export interface StorageConfig {
  container: string;
  connectionString?: string;
  account?: string;
  accountKey?: string;
  sasToken?: string;
  blobEndpoint?: string;
}

export interface MountConfig {
  mountpoint: string;
  storage: StorageConfig;
  /** Blob name prefix mapped to the mount root ('' or ending in '/'). */
  prefix: string;
  cacheDir: string;
  /** Cache size bound in bytes, 0 = unbounded. */
  cacheSize: number;
  readOnly: boolean;
  /** `-o` options passed to libfuse as given (checked by src/fuse/mount-options.ts). */
  fuseOptions: string[];
  /** Users other than the mounting one may enter (`--allow-other`, `-o allow_other`); permissions are enforced. */
  allowOther: boolean;
  /** `-o nonempty`: the mountpoint may have entries. */
  nonempty: boolean;
  /** Set when the embedded emulator serves the container. */
  emulator?: { dataDir: string; demo: boolean };
  /** Seconds for each blob service call before it counts as a timeout. */
  requestTimeoutSeconds: number;
  debug: boolean;
  /** Check restored files against their blob's Content-MD5 (--verify-md5, the default; --no-verify-md5). */
  verifyMd5?: boolean;
  /** Uploads in flight for export jobs and HSM actions (auto-export uses half); default 8. */
  exportConcurrency?: number;
  /** Auto-export (src/jobs/auto-export.ts): whether it starts enabled, and its settings (defaults when absent). */
  autoExport?: { enabled: boolean; minAgeSeconds: number; intervalSeconds: number };
  /** `--namespace hns|flat`: the namespace rules to use instead of detecting them. */
  namespace?: 'hns' | 'flat';
  /** `--id-map FILE`: HNS owners/groups → uid/gid (format in src/namespace/id-map.ts). */
  idMapFile?: string;
  /** Auto-import (src/jobs/auto-import.ts): whether it starts enabled, and its settings. */
  autoImport?: AutoImportConfig;
  /** Seconds the kernel caches attributes, entries and negative lookups (default 60). */
  attrTimeoutSeconds?: number;
}

/** The metadata store (SQLite) of a mount, in its cache directory. */
export function metaStorePath(cacheDir: string): string {
  return join(cacheDir, 'meta.db');
}

export function stateHome(e: NodeJS.ProcessEnv = process.env): string {
  return resolve(e.BLOBHSM_STATE_DIR ?? join(e.XDG_STATE_HOME ?? join(homedir(), '.local', 'state'), 'blobhsm'));
}

export function dataHome(e: NodeJS.ProcessEnv = process.env): string {
  return resolve(join(e.XDG_DATA_HOME ?? join(homedir(), '.local', 'share'), 'blobhsm'));
}

export function cacheHome(e: NodeJS.ProcessEnv = process.env): string {
  return resolve(join(e.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'blobhsm'));
}

/** Default cache directory: one per account, container and prefix. */
export function defaultCacheDir(storage: StorageConfig, prefix: string, e: NodeJS.ProcessEnv = process.env): string {
  const where = storage.blobEndpoint ?? storage.account ?? storage.connectionString ?? 'default';
  const id = createHash('sha256').update(`${where}\n${storage.container}\n${prefix}`).digest('hex').slice(0, 12);
  return join(cacheHome(e), `${storage.container}-${id}`);
}

/** Normalises a mount prefix: no leading slash, one trailing slash, '' for the whole container. */
export function normalisePrefix(prefix: string | undefined): string {
  if (!prefix) return '';
  const trimmed = prefix.replace(/^\/+/, '').replace(/\/+$/, '');
  if (!trimmed) return '';
  if (trimmed.split('/').some((c) => c === '' || c === '.' || c === '..')) {
    throw new UsageError(`invalid --prefix '${prefix}': it must be a blob name prefix like 'data/2024' (no empty, '.' or '..' components)`);
  }
  return trimmed + '/';
}

/** Parses a byte count: a plain number of bytes, or with a K/M/G/T suffix (powers of 1024). */
export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?$/i.exec(text.trim());
  if (!m) throw new UsageError(`invalid size '${text}': use bytes or a number with K, M, G or T (e.g. 20G)`);
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2]!.toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  return Math.floor(Number(m[1]) * mult);
}

/** Container names as Azure accepts them. */
export function checkContainerName(name: string): string {
  if (!/^(?=.{3,63}$)[a-z0-9](?:[a-z0-9]|-(?!-))*[a-z0-9]$/.test(name) && name !== '$root') {
    throw new UsageError(
      `invalid container name '${name}': 3-63 characters, lower-case letters, digits and single hyphens, starting and ending with a letter or digit`,
    );
  }
  return name;
}
