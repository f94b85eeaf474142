// The typed mount configuration, its defaults and the well-known directories (state, data, cache).
import { createHash } from 'node:crypto';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { UsageError } from './errors.js';
import type { AutoImportConfig } from './jobs/auto-import.js';
import type { DefaultModes } from './namespace/blob-encoding.js';
import type { FuseBindingChoice } from './fuse/bindings.js';

export interface StorageConfig {
  container: string;
  connectionString?: string;
  account?: string;
  accountKey?: string;
  sasToken?: string;
  blobEndpoint?: string;
}

export interface MountConfig {
  /** --log-level (default info) and --log-file (default: stderr, the background daemon's log file). */
  logLevel?: LogLevel;
  logFile?: string;
  /** --metrics: where /metrics and /healthz are served. */
  metrics?: MetricsListen;
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
  /** What the cache directory holds: it is keyed on it by default and refuses a mount of anything else. */
  identity: CacheIdentity;
  /** Modes of entries whose blob carries no permissions (`--file-mode`, `--dir-mode`, `--umask`). */
  defaultModes: DefaultModes;
  /** FUSE binding: the libfuse3 addon, fuse-native (libfuse 2), or auto (the addon when built). */
  fuse?: FuseBindingChoice;
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
  /** `--logging-container NAME`: import jobs and auto-import phases append their logs there too. */
  loggingContainer?: string;
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

/** Where a namespace comes from, whatever the credentials used to reach it. */
export interface CacheIdentity {
  account: string;
  /** The blob service endpoint, normalised (lower-case host, no trailing slash); 'emulator' for --emulator. */
  endpoint: string;
  container: string;
  prefix: string;
}

export function cacheIdentity(where: { account?: string | undefined; blobEndpoint: string }, container: string, prefix: string): CacheIdentity {
  let endpoint = where.blobEndpoint;
  try {
    const url = new URL(where.blobEndpoint);
    endpoint = `${url.protocol}//${url.host.toLowerCase()}${url.pathname.replace(/\/+$/, '')}`;
  } catch {
    /* 'emulator', or a string the store will refuse with its own message */
  }
  return { account: where.account ?? '', endpoint, container, prefix };
}

export function sameIdentity(a: CacheIdentity, b: CacheIdentity): boolean {
  return a.account === b.account && a.endpoint === b.endpoint && a.container === b.container && a.prefix === b.prefix;
}

/** "container 'c' (prefix 'p/') of account 'a' at http://host/a", for messages. */
export function describeIdentity(i: CacheIdentity): string {
  return `container '${i.container}'${i.prefix ? ` (prefix '${i.prefix}')` : ''} of account '${i.account || '?'}' at ${i.endpoint}`;
}

/** Default cache directory: one per account, endpoint, container and prefix (not per credential). */
export function defaultCacheDir(identity: CacheIdentity, e: NodeJS.ProcessEnv = process.env): string {
  const key = JSON.stringify([identity.account, identity.endpoint, identity.container, identity.prefix]);
  const id = createHash('sha256').update(key).digest('hex').slice(0, 12);
  return join(cacheHome(e), `${identity.container}-${id}`);
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

export interface MetricsListen {
  host: string;
  port: number;
}

/** Parses `HOST:PORT` (`[::1]:9100`, `127.0.0.1:0` for any free port). */
export function parseListen(text: string): MetricsListen {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new UsageError(`invalid --metrics '${text}': HOST:PORT, e.g. 127.0.0.1:9464`);
  return { host: (m[1] ?? m[2])!, port };
}

export const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** --log-level: ours, or blobfuse2's names (log_err, log_warning, log_info, log_debug). */
export function parseLogLevel(text: string): LogLevel {
  const aliases: Record<string, LogLevel> = { log_err: 'error', log_crit: 'error', log_warning: 'warn', log_info: 'info', log_debug: 'debug', log_trace: 'debug' };
  const level = (aliases[text] ?? text) as LogLevel;
  if (!LOG_LEVELS.includes(level)) throw new UsageError(`invalid --log-level '${text}': one of ${LOG_LEVELS.join(', ')} (or blobfuse2's log_err, log_warning, log_info, log_debug)`);
  return level;
}
