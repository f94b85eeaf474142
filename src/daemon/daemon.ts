// Daemon wiring: the one place that builds every layer from a typed MountConfig, imports the namespace at the
// first mount, reconciles the cache, mounts FUSE, serves the control socket, and shuts it all down cleanly.
import type { Log } from '../log.js';
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { BlobError, FsError, UsageError, describeError, errnoCodeOf } from '../errors.js';
import type { MountConfig } from '../config.js';
import { describeIdentity, metaStorePath, sameIdentity, stateHome, type CacheIdentity } from '../config.js';
import type { BlobStore } from '../blob/blob-store.js';
import { createAzureStore } from '../blob/azure-store.js';
import { startEmulator, type Emulator } from '../emulator/emulator.js';
import { seedDemo } from '../emulator/demo.js';
import { openMetaStore } from '../namespace/meta-store.js';
import type { MetaStore } from '../namespace/types.js';
import { importNamespace, type ImportStats } from '../namespace/importer.js';
import type { DataCache } from '../cache/data-cache.js';
import type { Coordinator } from '../hsm/coordinator.js';
import type { Hydrator } from '../hsm/hydrator.js';
import type { Changelog } from '../hsm/changelog.js';
import type { Vfs } from '../vfs/vfs.js';
import type { FuseHandle } from '../fuse/fuse-adapter.js';
import { mountBinding } from '../fuse/mount-binding.js';
import { NO_KERNEL_CACHE, type KernelCache } from '../namespace/types.js';
import { ControlServer, type PeerReader } from '../control/server.js';
import { peerCredentials } from '../fuse/lowlevel.js';
import { MountRegistry, isAlive } from '../control/registry.js';
import { controlMethods, daemonStatus } from './control-methods.js';
import { DaemonMetrics, serveMetrics } from './metrics.js';
import { meterStore } from '../blob/metered-store.js';
import { instrumentVfs } from '../vfs/instrumented-vfs.js';
import { buildStack } from './build-stack.js';
import { checkMountpoint, tuneReadAhead } from './mount-checks.js';
import { strerror } from '../hsm/format.js';
import { chooseNamespace, loadIdMap } from './namespace-choice.js';
import { JobRunner } from '../jobs/job-runner.js';
import { AutoExporter } from '../jobs/auto-export.js';
import { AutoImporter } from '../jobs/auto-import.js';
import { CHANGE_FEED_CONTAINER } from '../blob/change-feed.js';

export interface DaemonHandle {
  /** Unmounts and stops everything; safe to call twice. */
  stop(): Promise<void>;
  /** Resolves when the daemon has stopped (by stop(), a signal or an unmount request). */
  stopped: Promise<void>;
}

export interface DaemonParts {
  config: MountConfig;
  store: BlobStore;
  meta: MetaStore;
  cache: DataCache;
  coordinator: Coordinator;
  hydrator: Hydrator;
  changelog: Changelog;
  vfs: Vfs;
  jobs: JobRunner;
  autoExport: AutoExporter;
  autoImport: AutoImporter;
  log: Log;
  requestStop: () => void;
  /**
   * `blobhsm unmount`: refused with EBUSY while files are open (unless lazy) or while the kernel says the mount is
   * busy, and then nothing changes; otherwise the kernel mount goes (lazy: at once, the daemon serves the open files
   * until they are closed) and the daemon stops. Resolves with the number of files still open.
   */
  unmount: (lazy: boolean) => Promise<{ openFiles: number }>;
  /** Where --metrics serves /metrics. */
  metricsUrl?: string;
}

/** Holds the cache directory for one daemon; a second daemon on the same directory is refused. */
function lockCacheDir(cacheDir: string): () => void {
  const lockPath = join(cacheDir, 'daemon.pid');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(lockPath, 'wx', 0o600);
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return () => rmSync(lockPath, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number(readFileSync(lockPath, 'utf8').trim());
      if (pid && pid !== process.pid && isAlive(pid)) {
        throw new UsageError(
          `another blobhsm daemon (pid ${pid}) is using the cache directory ${cacheDir}: unmount it first, or pass a different --cache-dir`,
        );
      }
      rmSync(lockPath, { force: true });
    }
  }
  throw new UsageError(`cannot lock the cache directory ${cacheDir}`);
}

/**
 * Refuses a cache directory that holds another namespace (account, endpoint, container, prefix), naming both. A
 * record from before the endpoint was kept (container and prefix only) is accepted when those match.
 */
function checkCacheIdentity(recorded: string | undefined, config: MountConfig): void {
  if (!recorded) return;
  const was = JSON.parse(recorded) as Partial<CacheIdentity>;
  const legacy = was.endpoint === undefined;
  const same = legacy
    ? was.container === config.identity.container && (was.prefix ?? '') === config.identity.prefix
    : sameIdentity(was as CacheIdentity, config.identity);
  if (same) return;
  const theirs = legacy ? `container '${was.container}'${was.prefix ? ` (prefix '${was.prefix}')` : ''}` : describeIdentity(was as CacheIdentity);
  throw new UsageError(
    `the cache directory ${config.cacheDir} holds ${theirs}, not ${describeIdentity(config.identity)}: ` +
      'pass another --cache-dir, or none (the default is one per account, endpoint, container and prefix)',
  );
}

/**
 * Explains a first-contact failure with the blob service in terms of what to fix. Not a UsageError: the command
 * line was well formed, the service refused or did not answer (exit status 1, not 4).
 */
function explainStorageError(err: unknown, where: string): Error {
  if (err instanceof BlobError) {
    const hint =
      err.kind === 'Unauthorized'
        ? 'check the account key, SAS token or Azure login (AZURE_STORAGE_KEY, AZURE_STORAGE_SAS_TOKEN, az login)'
        : err.kind === 'Timeout' || err.kind === 'Transient'
          ? 'check the endpoint and that the service is reachable (--blob-endpoint, AZURE_STORAGE_BLOB_ENDPOINT)'
          : 'check the container name and credentials';
    return new Error(`cannot use ${where}: ${describeError(err)}; ${hint}`, { cause: err });
  }
  return err instanceof Error ? err : new Error(String(err));
}

/** What the user waiting for the mount should see, besides the log. */
export interface DaemonEvents {
  /** Each retry of a slow or failing blob endpoint. */
  notice?: (line: string) => void;
  /** The first mount's import, as it walks the listing. */
  importProgress?: (stats: ImportStats) => void;
}

/** Starts serving `config`. */
export async function startDaemon(config: MountConfig, log: Log, events: DaemonEvents = {}): Promise<DaemonHandle> {
  // Everything the daemon creates (meta.db and its WAL, cache files, job logs, the socket) is the user's alone,
  // whatever the caller's umask or the mode of a cache directory the user made.
  process.umask(0o077);
  checkMountpoint(config.mountpoint, { nonempty: config.nonempty });
  const createdCacheDir = !existsSync(config.cacheDir);
  mkdirSync(config.cacheDir, { recursive: true, mode: 0o700 });
  const cleanups: Array<() => Promise<void> | void> = [];
  // A mount that fails leaves no cache directory behind that it made itself.
  const dropNewCacheDir = () => rmSync(config.cacheDir, { recursive: true, force: true });
  let unlock: () => void;
  try {
    // A cache directory others could write to would let them replace meta.db or cached data: it becomes 0700.
    if (statSync(config.cacheDir).mode & 0o077) {
      chmodSync(config.cacheDir, 0o700);
      log(`the cache directory ${config.cacheDir} was open to other users; it is now 0700`);
    }
    unlock = lockCacheDir(config.cacheDir);
  } catch (err) {
    if (createdCacheDir) dropNewCacheDir();
    throw err;
  }
  cleanups.push(unlock);
  const runCleanups = async () => {
    for (const c of cleanups.splice(0).reverse()) {
      try {
        await c();
      } catch (err) {
        log(`shutdown: ${describeError(err)}`);
      }
    }
  };
  try {
    return await startParts(config, log, cleanups, runCleanups, events);
  } catch (err) {
    await runCleanups();
    if (createdCacheDir) dropNewCacheDir();
    throw err;
  }
}

async function startParts(
  config: MountConfig,
  log: Log,
  cleanups: Array<() => Promise<void> | void>,
  runCleanups: () => Promise<void>,
  events: DaemonEvents,
): Promise<DaemonHandle> {
  const notice = events.notice ?? (() => undefined);
  // The cache's identity first: nothing is fetched for a mount that would show another namespace's files.
  const meta = openMetaStore(metaStorePath(config.cacheDir));
  cleanups.push(() => meta.close());
  checkCacheIdentity(meta.getSetting('source'), config);
  let emulator: Emulator | undefined;
  const storage = { ...config.storage };
  if (config.emulator) {
    emulator = await startEmulator({ dataDir: config.emulator.dataDir });
    cleanups.push(() => emulator!.stop());
    storage.connectionString = emulator.connectionString;
    log(`embedded Azurite emulator on port ${emulator.port} (data in ${config.emulator.dataDir})`);
  }
  // --metrics: served from the start (a port that cannot be had fails the mount before any import).
  const metrics = config.metrics ? new DaemonMetrics() : undefined;
  let metricsUrl: string | undefined;
  if (metrics && config.metrics) {
    const server = await serveMetrics(config.metrics, metrics, () => ({ mountpoint: config.mountpoint, pid: process.pid }));
    cleanups.push(() => server.close());
    metricsUrl = server.url;
    log(`metrics on ${server.url}`);
  }
  const azureStore = createAzureStore({
    ...storage,
    timeoutMs: config.requestTimeoutSeconds * 1000,
    onRetry: (r) => {
      const line = `${r.op} ${r.target}: attempt ${r.attempt} failed (${describeError(r.error)}); retrying in ${(r.delayMs / 1000).toFixed(1)} s`;
      log(line);
      notice(line);
    },
  });
  // Its MD5 threads end last (reverse order), after the coordinator's uploads.
  cleanups.push(() => azureStore.close());
  const store = metrics ? meterStore(azureStore, metrics) : azureStore;
  const where = `container '${storage.container}' at ${store.description}`;
  let exists: boolean;
  try {
    exists = await store.containerExists();
  } catch (err) {
    throw explainStorageError(err, where);
  }
  if (!exists) {
    if (!config.emulator) throw new UsageError(`${where} does not exist: create it first, or check --container`);
    await store.createContainer();
  }
  const idMap = loadIdMap(config.idMapFile);
  const namespace = await chooseNamespace(store, config.namespace, log);
  if (config.emulator?.demo) {
    const seeded = await seedDemo(store, config.prefix);
    if (seeded) log(`seeded the demo tree (${seeded} blobs)`);
  }

  let namespaceId = meta.getSetting('namespaceId');
  if (!namespaceId) {
    namespaceId = randomUUID();
    meta.setSetting('namespaceId', namespaceId);
  }
  meta.setSetting('source', JSON.stringify(config.identity));
  meta.setSetting('namespace', JSON.stringify(namespace));

  if (!meta.getSetting('importedAt')) {
    const stats = await importNamespace({
      store,
      meta,
      prefix: config.prefix,
      log,
      idMap,
      ...(events.importProgress ? { onProgress: events.importProgress } : {}),
      defaultModes: config.defaultModes,
    });
    if (stats.state !== 'Completed') {
      throw new Error(`the import of ${where} did not complete (${stats.state}${stats.error ? `: ${stats.error}` : ''}); mount again to retry`);
    }
    meta.setSetting('importedAt', new Date().toISOString());
    meta.setSetting('lastImport', JSON.stringify(stats));
    log(importSummary(stats));
  }

  // The kernel's caches, known once mounted: the coordinator and import jobs tell it what they change.
  let kernel: KernelCache = NO_KERNEL_CACHE;
  const kernelCache: KernelCache = {
    inodeChanged: (ino) => kernel.inodeChanged(ino),
    entryChanged: (parent, name) => kernel.entryChanged(parent, name),
    entryDeleted: (parent, name, child) => kernel.entryDeleted(parent, name, child),
  };
  const { cache, changelog, hydrator, coordinator, vfs } = await buildStack({
    kernel: kernelCache,
    store,
    meta,
    cacheDir: config.cacheDir,
    blobPrefix: config.prefix,
    cacheSizeLimit: config.cacheSize,
    readOnly: config.readOnly,
    namespaceId,
    log,
    posixAcls: namespace.kind === 'hns',
    hydrator: { verifyMd5: config.verifyMd5 ?? true },
    idMap,
    ...(config.exportConcurrency !== undefined ? { concurrency: config.exportConcurrency } : {}),
  });
  const accessTimer = setInterval(() => coordinator.flushAccessTimes(), 5000);
  accessTimer.unref();
  cleanups.push(() => {
    clearInterval(accessTimer);
    coordinator.flushAccessTimes();
  });
  // Runs after the mount, auto-export and the jobs have stopped (cleanups run in reverse) and before the metadata
  // store closes: queued HSM actions are cancelled, running ones and restores aborted and awaited.
  cleanups.push(() => coordinator.shutdown());

  let stopRequested: () => void = () => undefined;
  const stopSignal = new Promise<void>((resolve) => (stopRequested = resolve));
  let loggingContainer: { store: BlobStore; folder: string } | undefined;
  if (config.loggingContainer) {
    const logStore = createAzureStore({ ...storage, container: config.loggingContainer, timeoutMs: config.requestTimeoutSeconds * 1000 });
    try {
      await logStore.createContainer();
    } catch (err) {
      throw explainStorageError(err, `logging container '${config.loggingContainer}' at ${logStore.description}`);
    }
    loggingContainer = { store: logStore, folder: storage.container };
    log(`job logs also go to the logging container ${logStore.description}`);
  }
  const jobs = new JobRunner({
    meta,
    store,
    coordinator,
    log,
    prefix: config.prefix,
    mountRoot: config.mountpoint,
    logDir: join(config.cacheDir, 'jobs'),
    idMap,
    ...(config.exportConcurrency !== undefined ? { concurrency: config.exportConcurrency } : {}),
    defaultModes: config.defaultModes,
    kernel: kernelCache,
    ...(loggingContainer ? { loggingContainer } : {}),
  });
  vfs.setRootMarkers(() => jobs.markers());
  cleanups.push(() => jobs.cancelAll());
  const autoExport = new AutoExporter({
    meta,
    coordinator,
    hasWriter: (ino) => vfs.hasWriter(ino),
    jobs,
    log,
    ...(config.exportConcurrency !== undefined ? { concurrency: Math.max(1, Math.floor(config.exportConcurrency / 2)) } : {}),
    ...(config.autoExport ? { config: config.autoExport } : {}),
  });
  cleanups.push(() => autoExport.close());
  const autoImport = new AutoImporter({
    meta,
    store,
    changeFeed: createAzureStore({ ...storage, container: CHANGE_FEED_CONTAINER, timeoutMs: config.requestTimeoutSeconds * 1000 }),
    container: storage.container,
    prefix: config.prefix,
    isBusy: (ino) => coordinator.isBusy(ino),
    dropData: (ino, generation) => coordinator.dropData(ino, generation),
    jobs,
    log,
    logDir: join(config.cacheDir, 'jobs'),
    ...(loggingContainer ? { loggingContainer } : {}),
    importOptions: { idMap, defaultModes: config.defaultModes, kernel: kernelCache },
    ...(config.autoImport ? { config: config.autoImport } : {}),
  });
  cleanups.push(() => autoImport.close());

  const mounted = await mountBinding(config.mountpoint, metrics ? instrumentVfs(vfs, metrics) : vfs, config.fuse ?? 'auto', {
    readOnly: config.readOnly,
    allowOther: config.allowOther,
    extraOptions: config.fuseOptions,
    debug: config.debug,
    ...(config.attrTimeoutSeconds !== undefined ? { attrTimeoutSeconds: config.attrTimeoutSeconds } : {}),
    log,
  });
  const fuse: FuseHandle = mounted.handle;
  kernel = mounted.kernel;
  cleanups.push(() => {
    kernel = NO_KERNEL_CACHE;
    return unmountWithRetry(fuse, log);
  });
  const unmount = async (lazy: boolean): Promise<{ openFiles: number }> => {
    const openFiles = vfs.openFileCount();
    if (openFiles > 0 && !lazy) {
      throw new FsError(
        'EBUSY',
        `${strerror('EBUSY')} (${openFiles} open file${openFiles === 1 ? '' : 's'}): close ${openFiles === 1 ? 'it' : 'them'} ` +
          `(fuser -m ${config.mountpoint} shows who), or unmount with --lazy to detach now and finish when they are closed`,
      );
    }
    try {
      await fuse.unmount(lazy ? 'lazy' : 'strict');
    } catch (err) {
      throw new FsError(errnoCodeOf(err) === 'EBUSY' ? 'EBUSY' : 'EIO', `cannot unmount: ${describeError(err)}`, { cause: err });
    }
    log(lazy ? `detached ${config.mountpoint} (${openFiles} open files; stopping when they are closed)` : `unmounted ${config.mountpoint}`);
    // The kernel says when a lazily detached mount is no longer used (open files, but also a cwd or an mmap).
    if (lazy) void fuse.ended().then(() => stopRequested());
    else setImmediate(() => stopRequested());
    return { openFiles };
  };
  tuneReadAhead(config.mountpoint, 1024, log);

  const registry = new MountRegistry(stateHome());
  const socket = registry.socketPathFor(config.mountpoint);
  const parts: DaemonParts = {
    config,
    store,
    meta,
    cache,
    coordinator,
    hydrator,
    changelog,
    vfs,
    jobs,
    autoExport,
    autoImport,
    log,
    requestStop: () => stopRequested(),
    unmount,
    ...(metricsUrl ? { metricsUrl } : {}),
  };
  metrics?.setSource(() => ({ status: daemonStatus(parts), filesByFlags: meta.countFilesByHsmFlags(), jobs: jobs.list(), autoExport: autoExport.metrics(), autoImport: autoImport.metrics() }));
  const control = new ControlServer(controlMethods(parts), {}, Date.now, controlPeers(log));
  await control.listen(socket);
  cleanups.push(() => control.close());
  registry.register({
    mountpoint: config.mountpoint,
    container: storage.container,
    prefix: config.prefix,
    description: store.description,
    cacheDir: config.cacheDir,
    socket,
    pid: process.pid,
    startedAt: new Date().toISOString(),
    binding: mounted.binding,
  });
  cleanups.push(() => registry.unregister(config.mountpoint));
  log(`mounted ${where} on ${config.mountpoint} with ${mounted.binding} (cache ${config.cacheDir})`);

  let stopping: Promise<void> | undefined;
  const stop = () => (stopping ??= (async () => {
    log(`unmounting ${config.mountpoint}`);
    await runCleanups();
    stopRequested();
  })());
  const stopped = stopSignal.then(() => stop());
  return { stop, stopped };
}

/** The control socket's peers as the kernel knows them (SO_PEERCRED, through the addon); unknown, said once, without it. */
function controlPeers(log: Log): PeerReader {
  let said = false;
  return (fd) => {
    const peer = peerCredentials(fd);
    if (!(peer instanceof Error)) return peer;
    if (!said) {
      said = true;
      const rule = process.getuid?.() === 0 ? 'only root can connect, so it may' : 'privileged flags are refused to every caller';
      log(`control socket: the caller's uid is unknown (${peer.message}); hsm_set/hsm_clear of privileged flags: ${rule}`);
    }
    return undefined;
  };
}

async function unmountWithRetry(fuse: FuseHandle, log: Log): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await fuse.unmount();
      return;
    } catch (err) {
      if (attempt >= 20) throw err;
      if (attempt === 1) log(`unmount busy (${describeError(err)}); retrying`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

function importSummary(s: ImportStats): string {
  return (
    `import: ${s.totalBlobsWalked} blobs walked, ${s.importedFiles} files, ${s.importedDirectories} directories, ` +
    `${s.importedSymlinks} symlinks, ${s.totalConflicts} conflicts, ${s.totalErrors} errors`
  );
}

