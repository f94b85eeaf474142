// The control methods a mount's daemon answers: HSM state and requests by path, the changelog, jobs, status and
// unmount. Paths are inside the mount ('/dir/file'); per-path failures are results, not errors.
import { statSync, statfsSync } from 'node:fs';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { FsError, NotRegularFileError, UsageError, describeError, errnoCodeOf, type FsErrorCode } from '../errors.js';
import { metaStorePath } from '../config.js';
import { findPaths, type FindCriteria } from '../namespace/find.js';
import type { DfTarget } from '../hsm/format.js';
import type { ControlMethod, EventSink, Peer } from '../control/protocol.js';
import type { Inode } from '../namespace/types.js';
import type { ActionKind } from '../hsm/coordinator.js';
import type { DaemonParts } from './daemon.js';
import { scrubFiles } from './scrub.js';
import type { AutoImportConfig } from '../jobs/auto-import.js';

/** What `hsm_request` with `wait` sends while the actions run. */
export interface HsmRequestProgress {
  finished: number;
  total: number;
  bytesDone: number;
  bytesTotal: number;
}

export type PathResult =
  | { path: string; ok: true; flags: number; archiveId: number; action?: unknown }
  | { path: string; ok: false; code: FsErrorCode | 'ENOTREG'; message: string; queued?: boolean };

/** The `df` method: the metadata store as the MDT, the data cache as the OST (obd_statfs's fields each). */
export interface DfResult {
  container: string;
  mountpoint: string;
  mdt: DfTarget;
  ost: DfTarget;
}

/** Sum of the sizes of the files that exist (a SQLite database and its -wal/-shm companions). */
function bytesOf(paths: string[]): number {
  let total = 0;
  for (const path of paths) {
    try {
      total += statSync(path).size;
    } catch {
      /* absent */
    }
  }
  return total;
}

const ACTION_KINDS: Record<string, ActionKind> = {
  hsm_archive: 'ARCHIVE',
  hsm_restore: 'RESTORE',
  hsm_release: 'RELEASE',
  hsm_remove: 'REMOVE',
};

/**
 * Whether a caller may set or clear the HSM flags beyond the user's (Lustre checks CAP_SYS_ADMIN): root, as the
 * kernel reports the control socket's peer; whatever uid a request carries is ignored. When the peer is unknown
 * (the libfuse3 addon that reads SO_PEERCRED is not built), the socket (0600 in a 0700 directory) still admits
 * only the daemon's own user and root: a daemon running as root grants them (every caller is root), any other
 * daemon refuses them to everyone (it cannot tell root from its own user).
 */
export function mayChangePrivilegedFlags(peer: Peer | undefined, daemonUid: number): boolean {
  return peer ? peer.uid === 0 : daemonUid === 0;
}

function stringArray(v: unknown, name: string): string[] {
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw new UsageError(`'${name}' must be a list of paths`);
  return v as string[];
}

/** Returns a job's summary at once, or with `wait` sends progress every 500 ms and returns it when done. */
async function followJob<S>(job: { summary(): S; done: Promise<unknown> }, wait: boolean, emit: EventSink): Promise<S> {
  if (!wait) return job.summary();
  const timer = setInterval(() => emit(job.summary()), 500);
  try {
    await job.done;
  } finally {
    clearInterval(timer);
  }
  return job.summary();
}

/** What `blobhsm status` answers (and /metrics reads). */
export function daemonStatus(p: DaemonParts) {
  const { meta, coordinator } = p;
  return {
    mountpoint: p.config.mountpoint,
    container: p.config.storage.container,
    prefix: p.config.prefix,
    description: p.store.description,
    namespace: JSON.parse(meta.getSetting('namespace') ?? '{"kind":"flat","how":"detected"}') as unknown,
    pid: process.pid,
    cacheDir: p.config.cacheDir,
    cacheBytes: p.cache.bytesUsed(),
    openFiles: p.vfs.openFileCount(),
    inodes: meta.countInodes(),
    requests: p.store.requestCounts(),
    io: p.vfs.ioStats(),
    hsm: coordinator.stats(),
    integrity: { verifyMd5: p.config.verifyMd5 ?? true, ...p.hydrator.verification },
    metrics: p.metricsUrl ?? null,
  };
}

export function controlMethods(p: DaemonParts): Record<string, ControlMethod> {
  const { meta, coordinator } = p;

  const resolveFile = (path: string, regularOnly: boolean): Inode => {
    const inode = meta.resolve(path);
    if (!inode) throw new FsError('ENOENT', `no such file or directory: ${path}`);
    if (regularOnly && inode.kind !== 'file') throw new NotRegularFileError(path);
    // lfs asks the state through open(O_RDONLY | O_NONBLOCK) and an ioctl (llapi_hsm_state_get): a FIFO opens, and
    // its pipe has no such ioctl (ENOTTY); a socket cannot be opened at all (ENXIO).
    if (inode.kind === 'fifo') throw new FsError('ENOTTY', `${path} is a FIFO: local only, it has no HSM state`);
    if (inode.kind === 'socket') throw new FsError('ENXIO', `${path} is a socket: local only, it has no HSM state`);
    return inode;
  };

  const failure = (path: string, err: unknown): PathResult => ({
    path,
    ok: false,
    code: err instanceof NotRegularFileError ? 'ENOTREG' : errnoCodeOf(err),
    message: describeError(err),
  });

  const eachPath = (paths: string[], fn: (path: string) => PathResult): PathResult[] =>
    paths.map((path) => {
      try {
        return fn(path);
      } catch (err) {
        return failure(path, err);
      }
    });

  /** Lets restores that have all their bytes finish recording first (see Coordinator.settle). */
  const settled = async (paths: string[]): Promise<string[]> => {
    for (const path of paths) {
      const inode = meta.resolve(path);
      if (inode) await coordinator.settle(inode.ino);
    }
    return paths;
  };

  const ok = (path: string, inode: Inode, action?: unknown): PathResult => ({
    path,
    ok: true,
    flags: inode.hsmFlags,
    archiveId: inode.archiveId,
    ...(action === undefined ? {} : { action }),
  });

  return {
    status: async () => daemonStatus(p),

    unmount: async (params) => p.unmount(params.lazy === true),

    hsm_state: async (params) =>
      eachPath(await settled(stringArray(params.paths, 'paths')), (path) => ok(path, resolveFile(path, false))),

    hsm_action: async (params) =>
      eachPath(await settled(stringArray(params.paths, 'paths')), (path) => {
        const inode = resolveFile(path, false);
        return ok(path, inode, coordinator.action(inode.ino) ?? null);
      }),

    hsm_set: async (params, _emit, _signal, peer) => {
      const set = Number(params.set ?? 0);
      const clear = Number(params.clear ?? 0);
      const archiveId = params.archiveId === undefined ? undefined : Number(params.archiveId);
      const privileged = mayChangePrivilegedFlags(peer, process.getuid?.() ?? -1);
      return eachPath(await settled(stringArray(params.paths, 'paths')), (path) => {
        const inode = resolveFile(path, true);
        return ok(path, coordinator.setFlags(inode.ino, set, clear, privileged, archiveId));
      });
    },

    hsm_request: async (params, emit) => {
      const kind = ACTION_KINDS[String(params.command)];
      if (!kind) throw new UsageError(`unknown HSM request '${String(params.command)}'`);
      const archiveId = params.archiveId === undefined ? undefined : Number(params.archiveId);
      const paths = await settled(stringArray(params.paths, 'paths'));
      const pending: Array<{ ino: number; size: number; done: Promise<void> }> = [];
      const results = eachPath(paths, (path) => {
        const inode = resolveFile(path, true);
        const { done } = coordinator.request(kind, inode.ino, archiveId);
        pending.push({ ino: inode.ino, size: inode.size, done });
        return ok(path, inode);
      });
      // Lustre releases synchronously (llite drops the data before its ioctl returns), so `hsm_release` waits;
      // only --wait reports a failure as one of a queued request.
      if (!params.wait && kind !== 'RELEASE') {
        for (const x of pending) x.done.catch((err) => p.log(`${kind.toLowerCase()} failed: ${describeError(err)}`));
        return results;
      }
      const okIndexes = results.map((r, i) => (r.ok ? i : -1)).filter((i) => i >= 0);
      // Progress every 500 ms: files finished, and bytes of the finished files plus those moved by running ones.
      const running = new Set(pending.map((x) => x.ino));
      let finished = 0;
      let finishedBytes = 0;
      const bytesTotal = pending.reduce((n, x) => n + x.size, 0);
      const progress = (): HsmRequestProgress => {
        let moving = 0;
        for (const ino of running) moving += coordinator.action(ino)?.bytesMoved ?? 0;
        return { finished, total: pending.length, bytesDone: Math.min(bytesTotal, finishedBytes + moving), bytesTotal };
      };
      const timer = setInterval(() => emit(progress()), 500);
      try {
        await Promise.all(
          pending.map(async (x, n) => {
            const i = okIndexes[n]!;
            try {
              await x.done;
              const inode = meta.resolve(paths[i]!);
              if (inode) results[i] = ok(paths[i]!, inode);
            } catch (err) {
              // Queued, then failed while it ran (not refused when asked).
              results[i] = { ...failure(paths[i]!, err), ...(params.wait ? { queued: true } : {}) } as PathResult;
            }
            running.delete(x.ino);
            finished++;
            finishedBytes += x.size;
          }),
        );
      } finally {
        clearInterval(timer);
      }
      emit(progress());
      return results;
    },

    hsm_cancel: async (params) =>
      eachPath(stringArray(params.paths, 'paths'), (path) => {
        const inode = resolveFile(path, true);
        coordinator.cancel(inode.ino);
        return ok(path, inode);
      }),

    changelog: async (params, emit, signal) => {
      const from = Number(params.from ?? 0);
      const follow = Boolean(params.follow);
      let next = from;
      for (;;) {
        const batch = meta.readChangelog(next, 1000);
        for (const r of batch) emit(r);
        if (batch.length) next = batch[batch.length - 1]!.index + 1;
        if (batch.length === 1000) continue;
        if (!follow || signal.aborted) return { next };
        await new Promise((r) => setTimeout(r, 200));
      }
    },

    /**
     * `lfs find`: streams the matching paths (relative to `path`, '' for itself) as events of up to a page each,
     * walking the metadata store page by page; the result is the number found.
     */
    find: async (params, emit, signal) => {
      const start = meta.resolve(String(params.path ?? '/'));
      if (!start) throw new FsError('ENOENT', `no such file or directory: ${String(params.path)}`);
      let found = 0;
      for (const batch of findPaths(meta, start, (params.criteria ?? {}) as FindCriteria)) {
        if (signal.aborted) break;
        if (batch.length > 0) {
          found += batch.length;
          await emit({ paths: batch });
        }
        // One directory page per turn: FUSE requests keep being served while a big tree is walked.
        await yieldToEventLoop();
      }
      return { found };
    },

    /** `lfs df`: the metadata store (MDT) and the data cache (OST), against the cache directory's filesystem. */
    df: async (): Promise<DfResult> => {
      const disk = statfsSync(p.config.cacheDir);
      const bsize = disk.bsize;
      const blocksOf = (bytes: number) => Math.ceil(bytes / bsize);
      const metaPath = metaStorePath(p.config.cacheDir);
      const metaBlocks = blocksOf(bytesOf([metaPath, `${metaPath}-wal`, `${metaPath}-shm`]));
      const fs = await p.vfs.statfs();
      const limit = p.config.cacheSize > 0 ? Math.floor(p.config.cacheSize / bsize) : disk.blocks;
      const cacheBlocks = blocksOf(p.cache.bytesUsed());
      return {
        container: p.config.storage.container,
        mountpoint: p.config.mountpoint,
        mdt: { bsize, blocks: disk.blocks, bfree: disk.blocks - metaBlocks, bavail: disk.bavail, files: fs.files, ffree: fs.ffree },
        ost: {
          bsize,
          blocks: limit,
          bfree: Math.max(0, limit - cacheBlocks),
          bavail: Math.max(0, Math.min(limit - cacheBlocks, disk.bavail)),
          files: disk.files,
          ffree: disk.ffree,
        },
      };
    },

    changelog_register: async () => ({ reader: meta.registerChangelogReader() }),

    changelog_clear: async (params) => {
      meta.clearChangelog(String(params.reader), Number(params.index));
      return { cleared: true };
    },

    export: async (params, emit) => {
      const prefixes = params.prefixes === undefined ? ['/'] : stringArray(params.prefixes, 'prefixes');
      return followJob(p.jobs.startExport(prefixes), Boolean(params.wait), emit);
    },

    import: async (params, emit) => {
      const job = p.jobs.startImport({
        ...(params.prefixes === undefined ? {} : { prefixes: stringArray(params.prefixes, 'prefixes') }),
        ...(params.conflictMode === undefined ? {} : { conflictMode: String(params.conflictMode) }),
        ...(params.maximumErrors === undefined ? {} : { maximumErrors: Number(params.maximumErrors) }),
        ...(params.pageSize === undefined ? {} : { pageSize: Number(params.pageSize) }),
      });
      return followJob(job, Boolean(params.wait), emit);
    },

    /** `blobhsm verify`: re-hashes hydrated clean files under the paths against their blobs' Content-MD5. */
    verify: async (params) =>
      scrubFiles({
        meta,
        cache: p.cache,
        counts: p.hydrator.verification,
        paths: params.paths === undefined ? ['/'] : stringArray(params.paths, 'paths'),
      }),

    jobs: async () => p.jobs.list(),

    jobs_cancel: async () => p.jobs.cancelRunning(),

    /** Auto-export: its metrics, after applying the changes given (enable, minAgeSeconds, intervalSeconds). */
    auto_export: async (params) =>
      p.autoExport.configure({
        ...(params.enable === undefined ? {} : { enabled: params.enable as boolean }),
        ...(params.minAgeSeconds === undefined ? {} : { minAgeSeconds: params.minAgeSeconds as number }),
        ...(params.intervalSeconds === undefined ? {} : { intervalSeconds: params.intervalSeconds as number }),
      }),

    /** Auto-import: its metrics, after applying the changes given (src/jobs/auto-import.ts validates them). */
    auto_import: async (params) => {
      if (params.cancel) await p.autoImport.cancel();
      return p.autoImport.configure((params.change ?? {}) as Partial<AutoImportConfig>);
    },
  };
}
