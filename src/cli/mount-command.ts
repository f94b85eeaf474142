// `blobhsm mount`: builds the MountConfig from flags and environment, then serves the mount in the foreground or
// starts a background daemon and returns once the mount answers (exit 0) or with the reason it failed.
import { spawn } from 'node:child_process';
import { closeSync, fchmodSync, fstatSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Command, Option } from 'commander';
import { UsageError, describeError } from '../errors.js';
import {
  cacheHome,
  checkContainerName,
  cacheIdentity,
  dataHome,
  defaultCacheDir,
  normalisePrefix,
  parseListen,
  parseLogLevel,
  parseSize,
  stateHome,
  type MountConfig,
  type StorageConfig,
} from '../config.js';
import { MountRegistry } from '../control/registry.js';
import { AUTO_EXPORT_DEFAULTS, checkAutoExportConfig, parseSeconds } from '../jobs/auto-export.js';
import { parseMountOptions } from '../fuse/mount-options.js';
import { checkMountpoint } from '../daemon/mount-checks.js';
import { AUTO_IMPORT_DEFAULTS, checkAutoImportConfig, type AutoImportConfig } from '../jobs/auto-import.js';
import { checkMaximumErrors } from '../jobs/job-runner.js';
import { EMULATOR_ACCOUNT } from '../emulator/emulator.js';
import { readSecretFlags } from './secret-args.js';
import { FUSE_BINDINGS, type FuseBindingChoice } from '../fuse/bindings.js';
import { defaultModesFrom } from './mode-options.js';
import type { CliIo } from './io.js';
import { layerConfigFile, loadConfigFile } from './config-file.js';
import { addStorageOptions, storageConfigFromFlags, type StorageFlags } from './storage-options.js';
import { importUpdate, progressOnDemand } from './progress.js';
import { packageRoot } from '../version.js';
import type { DaemonEvents } from '../daemon/daemon.js';
import type { ImportStats } from '../namespace/importer.js';
import { EXIT_FAILURE } from './io.js';
import { EXIT_USAGE } from './exit-status.js';

export interface MountFlags extends StorageFlags {
  configFile?: string;
  metrics?: string;
  logLevel?: string;
  logFile?: string;
  prefix?: string;
  cacheDir?: string;
  cacheSize?: string;
  readOnly?: boolean;
  allowOther?: boolean;
  fileMode?: string;
  dirMode?: string;
  umask?: string;
  foreground?: boolean;
  o?: string[];
  emulator?: boolean;
  demo?: boolean;
  timeout?: string;
  debug?: boolean;
  fuse?: string;
  autoExport?: boolean;
  autoExportMinAge?: string;
  autoExportInterval?: string;
  exportConcurrency?: string;
  namespace?: string;
  idMap?: string;
  verifyMd5?: boolean;
  autoImport?: boolean;
  autoImportInterval?: string;
  autoImportPrefix?: string[];
  autoImportSource?: string;
  maximumErrors?: string;
  enableDeletions?: boolean;
  conflictMode?: string;
  attrTimeout?: string;
  loggingContainer?: string;
}

export function mountCommandSpec(): Command {
  const command = new Command('mount')
    .description('mount a blob container as an HSM namespace')
    .argument('<mountpoint>', 'an existing empty directory')
    .option('--config-file <file>', 'YAML config file (blobfuse2 layout; flags and environment override it)')
    .option('--metrics <host:port>', 'serve Prometheus metrics at http://HOST:PORT/metrics (and /healthz)')
    .option('--log-level <level>', 'error, warn, info (default) or debug')
    .option('--log-file <file>', 'write the JSON-lines log here (default: the log in ~/.local/state/blobhsm/logs/)');
  return addStorageOptions(command, 'blob name prefix to mount as the root')
    .option('--cache-dir <dir>', 'local cache and metadata directory')
    .option('--cache-size <size>', 'cache bound: bytes or NNG/NNM (least recently used clean files are released)')
    .option('--read-only', 'refuse every write')
    .option('--allow-other', 'let other users in (as -o allow_other; the kernel enforces the permissions shown)')
    .option('--file-mode <octal>', 'mode of files whose blob has no permissions (default 0644)')
    .option('--dir-mode <octal>', 'mode of directories without permissions, implicit ones included (default 0755)')
    .option('--umask <octal>', 'removed from --file-mode and --dir-mode (default 0)')
    .option('--foreground', 'stay attached; unmount on SIGINT/SIGTERM')
    .option('-o <options>', 'FUSE mount options, comma separated (allow_other, nonempty, ro, noatime, ...; unknown ones are refused)', (v: string, prev: string[] = []) => [...prev, ...v.split(',').filter(Boolean)])
    .option('--emulator', 'serve the container from the embedded Azurite emulator')
    .option('--demo', 'with --emulator: seed a sample tree into an empty container')
    .option('--timeout <seconds>', 'per-request timeout to the blob service (default 30)')
    .option('--debug', 'FUSE debug output')
    .option('--verify-md5', "check each restored file against its blob's Content-MD5 (the default)")
    .option('--no-verify-md5', 'restore without checking the Content-MD5')
    .option('--export-concurrency <n>', 'files uploaded at once by export jobs and hsm_archive (default 8; auto-export uses half)')
    .addOption(new Option('--fuse <binding>', 'FUSE binding: fuse3 (the libfuse3 addon), fuse2 (fuse-native), auto (fuse3 when built)').choices([...FUSE_BINDINGS]).default('auto'))
    .option('--auto-export', 'archive new and modified files continuously (see `blobhsm auto-export`)')
    .option('--auto-export-min-age <seconds>', `auto-export files unchanged for this long (default ${AUTO_EXPORT_DEFAULTS.minAgeSeconds})`)
    .option('--auto-export-interval <seconds>', `seconds between auto-export iterations (default ${AUTO_EXPORT_DEFAULTS.intervalSeconds})`)
    .option('--namespace <kind>', 'hns or flat: the account namespace rules instead of detecting them (getAccountInfo)')
    .option('--id-map <file>', 'HNS: map Entra object IDs / UPNs to uid/gid (lines "user ID UID", "group ID GID")')
    .option('--auto-import', 'follow the container continuously: Full Sync, then Blob Sync (see `blobhsm auto-import`)')
    .option('--auto-import-interval <seconds>', `seconds between Blob Sync passes (default ${AUTO_IMPORT_DEFAULTS.intervalSeconds})`)
    .option('--auto-import-prefix <path>', 'auto-import only blob paths starting with this (repeatable, at most 100; default /)', (v: string, prev: string[] = []) => [...prev, v])
    .option('--auto-import-source <source>', 'auto (default: the change feed when the account has one), change-feed or listing')
    .option('--enable-deletions', 'auto-import applies blob deletions (AMLFS enableDeletions)')
    .option('--conflict-mode <mode>', 'auto-import conflict mode: Skip (default), OverwriteIfDirty, OverwriteAlways or Fail')
    .option('--maximum-errors <n>', 'errors an auto-import phase tolerates before it stops as Failed: N, 0, or -1 for unlimited (default)')
    .option('--logging-container <name>', 'container in the same account that receives each import job\'s and auto-import phase\'s log')
    .option('--attr-timeout <seconds>', 'seconds the kernel caches attributes, names and missing names (default 60)');
}

/** The account and endpoint that credentials lead to (resolveAzureCredentials; no network). */
export type AccountLocator = (storage: StorageConfig, env: NodeJS.ProcessEnv) => { account?: string | undefined; blobEndpoint: string };

/**
 * Builds and validates the configuration; every problem is a UsageError saying what to do. `locateAccount` says
 * which account and endpoint the credentials lead to (the cache identity), whatever their kind or source.
 */
export function buildMountConfig(mountpoint: string, flags: MountFlags, env: NodeJS.ProcessEnv, locateAccount: AccountLocator): MountConfig {
    if (flags.demo && !flags.emulator) throw new UsageError('--demo works only with --emulator');
  const prefix = normalisePrefix(flags.prefix);
  const storage = flags.emulator
    ? { container: storageConfigFromFlags({ container: flags.container }, env, 'demo').container, blobEndpoint: 'emulator' }
    : storageConfigFromFlags(flags, env);
  const fuse = parseMountOptions(flags.o ?? []);
  const timeout = Number(flags.timeout ?? 30);
  if (!(timeout > 0)) throw new UsageError(`invalid --timeout '${flags.timeout}': a positive number of seconds`);
  const autoExport = checkAutoExportConfig(AUTO_EXPORT_DEFAULTS, {
    enabled: Boolean(flags.autoExport),
    ...(flags.autoExportMinAge !== undefined ? { minAgeSeconds: parseSeconds(flags.autoExportMinAge, '--auto-export-min-age') } : {}),
    ...(flags.autoExportInterval !== undefined ? { intervalSeconds: parseSeconds(flags.autoExportInterval, '--auto-export-interval') } : {}),
  });
  if (flags.namespace !== undefined && flags.namespace !== 'hns' && flags.namespace !== 'flat') {
    throw new UsageError(`invalid --namespace '${flags.namespace}': hns (hierarchical namespace) or flat`);
  }
  const exportConcurrency = flags.exportConcurrency === undefined ? undefined : Number(flags.exportConcurrency);
  if (exportConcurrency !== undefined && !(Number.isInteger(exportConcurrency) && exportConcurrency >= 1 && exportConcurrency <= 256)) {
    throw new UsageError(`invalid --export-concurrency '${flags.exportConcurrency}': a whole number from 1 to 256`);
  }
  const { container } = storage;
  const autoImport = checkAutoImportConfig(AUTO_IMPORT_DEFAULTS, {
    enabled: Boolean(flags.autoImport),
    ...(flags.autoImportInterval !== undefined ? { intervalSeconds: parseSeconds(flags.autoImportInterval, '--auto-import-interval') } : {}),
    ...(flags.autoImportPrefix ? { prefixes: flags.autoImportPrefix } : {}),
    ...(flags.autoImportSource !== undefined ? { source: flags.autoImportSource as AutoImportConfig['source'] } : {}),
    ...(flags.enableDeletions ? { enableDeletions: true } : {}),
    ...(flags.conflictMode !== undefined ? { conflictMode: flags.conflictMode as AutoImportConfig['conflictMode'] } : {}),
    ...(flags.maximumErrors !== undefined ? { maximumErrors: checkMaximumErrors(flags.maximumErrors, '--maximum-errors') } : {}),
  });
  if (
    !flags.autoImport &&
    (flags.autoImportInterval ?? flags.autoImportPrefix ?? flags.autoImportSource ?? flags.enableDeletions ?? flags.conflictMode ?? flags.maximumErrors) !== undefined
  ) {
    throw new UsageError('--auto-import-interval, --auto-import-prefix, --auto-import-source, --enable-deletions, --conflict-mode and --maximum-errors need --auto-import');
  }
  const attrTimeoutSeconds = flags.attrTimeout === undefined ? undefined : parseSeconds(flags.attrTimeout, '--attr-timeout');
  const identity = flags.emulator
    ? cacheIdentity({ account: EMULATOR_ACCOUNT, blobEndpoint: 'emulator' }, container, prefix)
    : cacheIdentity(locateAccount(storage, env), container, prefix);
  const cacheDir = resolve(
    flags.cacheDir ?? (flags.emulator ? join(cacheHome(env), `emulator-${container}-${normalisedId(prefix)}`) : defaultCacheDir(identity, env)),
  );
  return {
    mountpoint: resolve(mountpoint),
    storage: storage.blobEndpoint === 'emulator' ? { container } : storage,
    prefix,
    cacheDir,
    cacheSize: flags.cacheSize ? parseSize(flags.cacheSize) : 0,
    readOnly: Boolean(flags.readOnly) || fuse.readOnly,
    fuseOptions: fuse.passed,
    fuse: (flags.fuse ?? 'auto') as FuseBindingChoice,
    allowOther: Boolean(flags.allowOther) || fuse.allowOther,
    nonempty: fuse.nonempty,
    identity,
    defaultModes: defaultModesFrom(flags),
    ...(flags.emulator ? { emulator: { dataDir: join(dataHome(env), 'emulator'), demo: Boolean(flags.demo) } } : {}),
    requestTimeoutSeconds: timeout,
    ...(flags.metrics !== undefined ? { metrics: parseListen(flags.metrics) } : {}),
    ...(flags.logLevel !== undefined ? { logLevel: parseLogLevel(flags.logLevel) } : {}),
    ...(flags.logFile !== undefined ? { logFile: resolve(flags.logFile) } : {}),
    debug: Boolean(flags.debug) || fuse.debug,
    verifyMd5: flags.verifyMd5 ?? true,
    autoExport,
    ...(exportConcurrency !== undefined ? { exportConcurrency } : {}),
    ...(flags.namespace ? { namespace: flags.namespace } : {}),
    ...(flags.idMap ? { idMapFile: resolve(flags.idMap) } : {}),
    autoImport,
    ...(attrTimeoutSeconds !== undefined ? { attrTimeoutSeconds } : {}),
    ...(flags.loggingContainer !== undefined ? { loggingContainer: checkContainerName(flags.loggingContainer) } : {}),
  };
}

function normalisedId(prefix: string): string {
  return prefix ? prefix.replace(/[^a-zA-Z0-9]+/g, '_').replace(/_+$/, '') : 'root';
}

/** The executable the background daemon runs (the same one from a clone, dist/ or an installed package). */
const BIN = join(packageRoot(), 'bin', 'blobhsm.js');

export async function runMount(mountpoint: string, cliFlags: MountFlags, io: CliIo): Promise<number> {
  const flags = cliFlags.configFile ? layerConfigFile(cliFlags, loadConfigFile(cliFlags.configFile), io.env) : cliFlags;
  await readSecretFlags(flags, io);
  const { resolveAzureCredentials } = await import('../blob/azure-store.js');
  const config = buildMountConfig(mountpoint, flags, io.env, resolveAzureCredentials);
  // Before anything is imported or started: a mountpoint that cannot be used fails at once (the daemon checks again).
  checkMountpoint(config.mountpoint, { nonempty: config.nonempty });
  if (!flags.foreground) return startBackground(config, io);
  const bar = progressOnDemand(io.stderr, { label: 'importing', unit: 'blobs' });
  const code = await runForeground(config, io, { importProgress: (s) => bar.update(importUpdate(s)) }, () => bar.stop());
  // The serving process ends here: after a kernel unmount the FUSE session's handle would keep it alive.
  process.exit(code);
}

/** Serves the mount in this process; `started` runs once the daemon is up (or failed to start). */
async function runForeground(config: MountConfig, io: CliIo, events: DaemonEvents = {}, started?: () => Promise<void>): Promise<number> {
  const { startDaemon } = await import('../daemon/daemon.js');
  const { createDaemonLog } = await import('../daemon/logger.js');
  const { storage } = config;
  const { log } = createDaemonLog({
    ...(config.logLevel ? { level: config.logLevel } : {}),
    ...(config.logFile ? { file: config.logFile } : {}),
    secrets: [storage.accountKey, storage.sasToken, storage.connectionString].filter((s): s is string => Boolean(s)),
  });
  let daemon;
  try {
    daemon = await startDaemon(config, log, events);
  } finally {
    await started?.();
  }
  const onSignal = () => void daemon.stop();
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.send?.({ ready: true });
  await daemon.stopped;
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  return 0;
}

/** libfuse's own lines (`fuse: ...`, `fusermount: ...`) in the part of the log written since `from`. */
function fuseMessages(logPath: string, from: number): string[] {
  try {
    const text = readFileSync(logPath).subarray(from).toString('utf8');
    return text.split('\n').filter((l) => /^(fuse|fusermount3?):\s/.test(l));
  } catch {
    return [];
  }
}

/** What the detached daemon tells the mount command over IPC until the mount is ready. */
interface DaemonMessage {
  ready?: boolean;
  error?: string;
  /** The failure was a UsageError (exit status 4, as for a bad flag). */
  usage?: boolean;
  notice?: string;
  importProgress?: ImportStats;
}

/** Runs the daemon as a detached child (config passed over IPC, so secrets never appear in `ps`). */
async function startBackground(config: MountConfig, io: CliIo): Promise<number> {
  const logDir = join(stateHome(io.env), 'logs');
  mkdirSync(logDir, { recursive: true, mode: 0o700 });
  const logPath = join(logDir, `${MountRegistry.idOf(config.mountpoint)}.log`);
  const logFd = openSync(logPath, 'a', 0o600);
  fchmodSync(logFd, 0o600);
  const logStart = fstatSync(logFd).size;
  const child = spawn(process.execPath, [BIN, '__daemon'], {
    detached: true,
    stdio: ['ignore', logFd, logFd, 'ipc'],
    env: { ...io.env, UV_THREADPOOL_SIZE: io.env.UV_THREADPOOL_SIZE ?? '64' },
  });
  closeSync(logFd);
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
  const bar = progressOnDemand(io.stderr, { label: 'importing', unit: 'blobs' });
  const outcome = await new Promise<{ ok: true } | { ok: false; message: string; usage?: boolean }>((done) => {
    child.on('message', (m: DaemonMessage) => {
      if (m.importProgress) bar.update(importUpdate(m.importProgress));
      else if (m.notice) io.stderr.write(`blobhsm mount: ${m.notice}\n`);
      else if (m.ready) done({ ok: true });
      else if (m.error) done({ ok: false, message: m.error, usage: m.usage === true });
    });
    void exited.then((code) => done({ ok: false, message: `the daemon exited (status ${code}) before the mount was ready` }));
    child.send({ config });
  });
  await bar.stop();
  if (!outcome.ok) {
    // The daemon has cleaned up and exits; one that does not within seconds is killed (it serves nothing).
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
    const fuse = fuseMessages(logPath, logStart);
    const said = fuse.length ? `; libfuse said: ${fuse.join('; ')}` : '';
    io.stderr.write(`blobhsm mount: ${outcome.message}${said}\nblobhsm mount: the daemon's log is ${logPath}\n`);
    // A usage error found by the daemon (cache identity, mountpoint, missing container) exits as one found here.
    return outcome.usage ? EXIT_USAGE : EXIT_FAILURE;
  }
  child.disconnect();
  child.unref();
  io.stdout.write(`mounted ${config.storage.container}${config.prefix ? '/' + config.prefix : ''} on ${config.mountpoint} (daemon pid ${child.pid}, log ${logPath})\n`);
  return 0;
}

/**
 * The detached child's side: receive the config, serve, report readiness (and, until then, retries) or the
 * reason for failing. It ends the process when done: after a kernel unmount the FUSE session's handle would keep
 * it alive.
 */
export async function runDaemonChild(): Promise<never> {
  const config = await new Promise<MountConfig>((done) => process.once('message', (m: { config: MountConfig }) => done(m.config)));
  const io: CliIo = { stdout: process.stdout, stderr: process.stderr, env: process.env };
  // Until the parent disconnects (the mount is ready), notices such as retries also reach the user's terminal.
  const notice = (line: string) => {
    if (process.connected) process.send?.({ notice: line });
  };
  try {
    const importProgress = (stats: ImportStats) => {
      if (process.connected) process.send?.({ importProgress: stats });
    };
    const code = await runForeground(config, io, { notice, importProgress });
    process.exit(code);
  } catch (err) {
    const message = describeError(err);
    io.stderr.write(`${new Date().toISOString()} mount failed: ${message}\n`);
    const reply: DaemonMessage = { error: message, usage: err instanceof UsageError };
    await new Promise<void>((r) => (process.send && process.connected ? process.send(reply, undefined, {}, () => r()) : r()));
    process.exit(err instanceof UsageError ? EXIT_USAGE : EXIT_FAILURE);
  }
}
