// Builds the filesystem stack below FUSE from a blob store and an opened metadata store: the data cache (scanned
// and reconciled with the store), the changelog, the hydrator, the HSM coordinator and the VFS, wired together.
// The daemon uses it before mounting; tests use it to exercise the semantics layer without a kernel mount.
import type { Log } from '../log.js';
import type { BlobStore } from '../blob/blob-store.js';
import { DataCache } from '../cache/data-cache.js';
import { Changelog } from '../hsm/changelog.js';
import { Coordinator } from '../hsm/coordinator.js';
import { Hydrator, type HydratorOptions } from '../hsm/hydrator.js';
import { HnsExport } from '../hsm/hns-export.js';
import { IdMap } from '../namespace/id-map.js';
import type { KernelCache, MetaStore } from '../namespace/types.js';
import { Vfs } from '../vfs/vfs.js';
import { PathVfs } from '../vfs/path-vfs.js';
import { reconcileCache } from './reconcile.js';

/** Hydrator settings a caller may tune (the wiring ones are set here). */
export type HydratorTuning = Omit<HydratorOptions, 'store' | 'cache' | 'ranges' | 'onRestored' | 'log'>;

export interface StackOptions {
  store: BlobStore;
  meta: MetaStore;
  /** State/cache directory (cache files live under <cacheDir>/data/). */
  cacheDir: string;
  /** Blob name prefix of the mount ('' or 'some/prefix/'). */
  blobPrefix: string;
  /** Bytes the cache may hold before clean archived files are released; 0 = unbounded. */
  cacheSizeLimit: number;
  readOnly: boolean;
  /** Identifies this namespace in the `blobhsm_version` stamp. */
  namespaceId: string;
  log: Log;
  /** Parallel HSM actions (the Coordinator's default when absent). */
  concurrency?: number;
  hydrator?: HydratorTuning;
  /** The clock of access times (eviction's LRU order); tests inject one. */
  now?: () => number;
  /** The clock of file times (mtime, ctime, atime the Vfs sets); tests inject one. */
  fileTimes?: () => number;
  /** The mount's kernel caches (told about releases and evictions). */
  kernel?: KernelCache;
  /** uid/gid of new files made through paths (`paths`; the daemon's own when absent). */
  owner?: { uid: number; gid: number };
  /** HNS mounts: serve system.posix_acl_access from the imported ACLs. */
  posixAcls?: boolean;
  /** HNS mounts: uid/gid ↔ Entra identities for export. */
  idMap?: IdMap;
}

export interface Stack {
  cache: DataCache;
  changelog: Changelog;
  hydrator: Hydrator;
  coordinator: Coordinator;
  vfs: Vfs;
  /** The Vfs through paths (the fuse-native binding, tests). */
  paths: PathVfs;
}

export async function buildStack(o: StackOptions): Promise<Stack> {
  const { store, meta, log } = o;
  const cache = new DataCache({ dir: o.cacheDir });
  const cacheFiles = await cache.scan();
  const changelog = new Changelog(meta);
  let coordinator: Coordinator | undefined;
  const hydrator = new Hydrator({
    ...o.hydrator,
    store,
    cache,
    ranges: meta,
    onRestored: (ino: number) => coordinator?.onRestored(ino),
    log,
  });
  coordinator = new Coordinator({
    meta,
    store,
    cache,
    hydrator,
    changelog,
    blobPrefix: o.blobPrefix,
    cacheSizeLimit: o.cacheSizeLimit,
    namespaceId: o.namespaceId,
    ...(o.now ? { now: o.now } : {}),
    log,
    ...(store.hierarchicalPaths() ? { hns: new HnsExport(store.hierarchicalPaths()!, o.idMap ?? new IdMap(), meta, log) } : {}),
    ...(o.kernel ? { kernel: o.kernel } : {}),
    ...(o.concurrency !== undefined ? { concurrency: o.concurrency } : {}),
  });
  const report = await reconcileCache(meta, cache, cacheFiles);
  for (const line of report) log(line);
  const vfs = new Vfs({ meta, cache, coordinator, changelog, readOnly: o.readOnly, log, posixAcls: o.posixAcls ?? false, ...(o.fileTimes ? { now: o.fileTimes } : {}) });
  return { cache, changelog, hydrator, coordinator, vfs, paths: new PathVfs(vfs, o.owner) };
}
