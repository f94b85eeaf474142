// importNamespace: walks a container listing page by page and records every blob as an inode (docs/SEMANTICS.md §1, §3).
//
// - One listing walk, no per-blob HEAD: the listing carries size, etag, Last-Modified and metadata. The only extra
//   requests are one ranged GET per symlink (its target is the blob's content), run with bounded parallelism
//   before the page's transaction.
// - Each page is inserted in one MetaStore transaction: a cancelled or failed import leaves whole pages only.
// - Files are recorded released (flags 0x0d exists|released|archived, archive id 1, dataVersion = archivedVersion
//   = 1) with the blob's name and etag; no data is fetched. Symlinks get 0x09 (exists archived) so export jobs
//   do not upload them again; directories get 0.
// - Directories: a stub (hdi_isfolder=true) carries attributes; any other prefix before a `/` is an implicit
//   directory with the defaults (--dir-mode, 0755; uid/gid 0, time of the import). A stub seen after its implicit directory
//   was created by this import updates its attributes.
// - Collisions (docs/SEMANTICS.md §1), each counted in totalConflicts with a log line: unmappable names are skipped; a name
//   ending in `/` only makes its directory exist; a file blob `a` beside blobs under `a/` loses to the directory
//   whatever the listing order (a clean imported file record for `a` is removed when the directory is needed).
// - Re-import: a path that already holds the same thing (type, blob name, etag, size, attributes) counts as
//   preexisting and is left alone. A path holding something else is a conflict: `decide` (default keepLocal, the
//   first import's policy: leave it alone) says what to do; the import job passes the AMLFS conflict modes
//   (src/jobs/decide-import.ts). Decisions are applied inside the page transaction: `update-attributes`, `reimport`
//   (a clean record of a changed blob becomes released in place, new etag/size/attributes), `replace` (the local
//   entry is unlinked and the blob imported anew), `fail` (the page commits what came before, then the import
//   stops). Files that an import released or removed lose their cache data (`dropData`) after the page commits.
//   A file that `isBusy` (open, or an HSM action running) is never converted, replaced, reimported or released.
// - Invalid metadata never fails a blob: the default is used, totalWarnings counts it, a log line names blob and key.
// - Hierarchical namespace (entries carrying `hns`, see hns-encoding.ts): owner/group/permissions from the service
//   (metadata only as a fallback, counted in posixFallbacks; overridden metadata counted in metadataOverridden),
//   identities through the id map (one warning per unknown identity per run), the extended access ACL recorded
//   with the inode.
// Log lines are JSON, one per event: {"time","event":"conflict"|"warning"|"error","blob","reason",...}.
//
// Telling this run's inodes from older ones (for the statistics of a converted file) relies on the store
// allocating increasing inode numbers, as SqliteMetaStore does.
import type { Readable } from 'node:stream';
import type { BlobInfo, BlobStore } from '../blob/blob-store.js';
import { describeError } from '../errors.js';
import {
  MAX_SYMLINK_TARGET,
  DEFAULT_MODES,
  blobAttributes,
  checkBlobName,
  normalizePrefix,
  type BlobAttributes,
  type BlobNameCheck,
  type DefaultModes,
} from './blob-encoding.js';
import { CLEAN_ARCHIVED, isReleased, matches, onImport, onImportSymlink, onReimport } from '../hsm/flags.js';
import { hnsBlobAttributes } from './hns-encoding.js';
import { IdMap } from './id-map.js';
import { ROOT_INO, blankInode, type Inode, type InodePatch, type KernelCache, type MetaStore, type NewInode } from './types.js';
import { keepLocal, type ImportDecider, type ImportDecision, type LocalEntry, type RemoteEntry } from './import-entry.js';

export const IMPORT_ARCHIVE_ID = 1;
export const IMPORTED_DATA_VERSION = 1;

export type ImportState = 'InProgress' | 'Completed' | 'Failed' | 'Canceled';

export interface ImportStats {
  totalBlobsWalked: number;
  blobsWalkedPerSecond: number;
  /** Blobs that became a file, symlink or directory stub. */
  totalBlobsImported: number;
  blobsImportedPerSecond: number;
  importedFiles: number;
  /** Directories created: from stubs and implicit ones (see implicitDirectories). */
  importedDirectories: number;
  importedSymlinks: number;
  /** Of importedDirectories, those created from a name prefix without a stub. */
  implicitDirectories: number;
  preexistingFiles: number;
  preexistingDirectories: number;
  preexistingSymlinks: number;
  /** Local entries deleted because their blob was deleted (auto-import with deletions enabled). */
  deletions: number;
  /** Conflicts resolved by updating attributes only (Overwrite modes). */
  updatedAttributes: number;
  /** Conflicts resolved by replacing or reimporting the local entry (Overwrite modes; also counted as imported). */
  replacedEntries: number;
  /** Existing files released by this import (their blob changed, or OverwriteAlways). */
  releasedFiles: number;
  totalConflicts: number;
  totalErrors: number;
  totalWarnings: number;
  /** HNS: entries where the service gave no usable owner, group or permissions, so metadata or the default was used. */
  posixFallbacks: number;
  /** HNS: entries whose owner/group/permissions metadata lost to the service's values. */
  metadataOverridden: number;
  state: ImportState;
  /** ISO 8601. */
  startTime: string;
  /** ISO 8601, once the import ended. */
  finishTime?: string;
  /** Why the import failed. */
  error?: string;
  /** The import failed because conflict mode Fail met a conflict. */
  stoppedAtConflict?: boolean;
  /** The import failed because its errors (with errorsBefore) exceeded maximumErrors. */
  stoppedAtMaximumErrors?: boolean;
}

export interface ImportOptions {
  store: BlobStore;
  meta: MetaStore;
  /** Mount prefix: 'data', 'data/' and '/data/' all mean the directory data (blob names are relative to it). */
  prefix?: string;
  /** Listing page size (service default 5000). */
  pageSize?: number;
  /** Called after each page with a snapshot of the statistics. */
  onProgress?: (stats: ImportStats) => void;
  /** One JSON line per conflict, warning and error. */
  log?: (line: string) => void;
  signal?: AbortSignal;
  /** Errors (failed symlink reads) tolerated before the import stops as Failed; -1 (default) = unlimited. */
  maximumErrors?: number;
  /** Errors already counted against maximumErrors before this run (auto-import: the phase's earlier passes). */
  errorsBefore?: number;
  /** Symlink targets fetched in parallel (default 8). */
  symlinkConcurrency?: number;
  /** Blob name prefixes to walk, relative to the mount prefix (string prefixes: 'data' also walks 'data2/'). Default ['']. */
  listPrefixes?: string[];
  /** What to do with a blob whose path exists locally (default keepLocal: leave the local path alone). */
  decide?: ImportDecider;
  /** Whether a file is open or has an HSM action or restore running (then it is never replaced or released). */
  isBusy?: (ino: number) => boolean;
  /** Deletes the cache data of a file generation this import released or removed (called after its page commits). */
  dropData?: (ino: number, generation: number) => Promise<void>;
  /** HNS owners and groups (Entra object IDs, UPNs) → uid/gid (default: only `$superuser` and decimal ids known). */
  idMap?: IdMap;
  /**
   * Pages to apply instead of listing the container (auto-import: blobs from the change feed, deletions, a cursor to
   * save with them). listPrefixes is ignored when given.
   */
  source?: AsyncIterable<ImportPage>;
  /** What to do with the local entry of a deleted blob (required for pages that carry deletions). */
  decideDeletion?: DeletionDecider;
  /** Modes of entries whose blob carries no permissions, and of implicit directories (default DEFAULT_MODES). */
  defaultModes?: DefaultModes;
  /** Told, after each page commits, which files and names it changed (the kernel caches them on a live mount). */
  kernel?: KernelCache;
}

/** One unit the importer applies in one transaction. */
export interface ImportPage {
  /** Blobs as listed (or as HEAD reports them). */
  blobs: BlobInfo[];
  /** Names of blobs known to be deleted: their local entries are deleted as decideDeletion says. */
  deleted?: string[];
  /** Runs inside the page's transaction after its entries were applied (e.g. to save a cursor with them). */
  onCommit?: () => void;
}

/** Whether the local entry of a deleted blob is deleted (reason for the log line either way). */
export type DeletionDecider = (local: LocalEntry, blobName: string) => { delete: boolean; reason: string };

interface Item {
  info: BlobInfo;
  check: BlobNameCheck;
  attrs?: BlobAttributes & { acl?: string | null };
  /** Symlink target, or the reason it could not be read. */
  target?: { ok: true; value: string } | { ok: false; reason: string; error: boolean };
}

/** Directory cache entries beyond this are dropped (the listing is ordered, so old ones are rarely needed). */
const DIR_CACHE_LIMIT = 100_000;

/**
 * Iterates `source` one item ahead: the next listing page is requested before the caller processes this one, so
 * the service's time (and, on another core, its XML) overlaps the page's transaction. Two pages in memory at most.
 */
export async function* readAhead<T>(source: AsyncIterable<T>): AsyncGenerator<T> {
  const it = source[Symbol.asyncIterator]();
  let next = it.next();
  try {
    for (;;) {
      const r = await next;
      if (r.done) return;
      next = it.next();
      // Awaited on the next turn of the loop; until then a failure must not count as unhandled.
      next.catch(() => undefined);
      yield r.value;
    }
  } finally {
    await it.return?.();
  }
}

/** Statistics before the first page. */
export function emptyImportStats(startTime: string): ImportStats {
  return {
    totalBlobsWalked: 0,
    blobsWalkedPerSecond: 0,
    totalBlobsImported: 0,
    blobsImportedPerSecond: 0,
    importedFiles: 0,
    importedDirectories: 0,
    importedSymlinks: 0,
    implicitDirectories: 0,
    preexistingFiles: 0,
    preexistingDirectories: 0,
    preexistingSymlinks: 0,
    deletions: 0,
    updatedAttributes: 0,
    replacedEntries: 0,
    releasedFiles: 0,
    totalConflicts: 0,
    totalErrors: 0,
    totalWarnings: 0,
    posixFallbacks: 0,
    metadataOverridden: 0,
    state: 'InProgress',
    startTime,
  };
}

export async function importNamespace(options: ImportOptions): Promise<ImportStats> {
  return new Importer(options).run();
}

class Importer {
  private readonly stats: ImportStats;
  private readonly started = Date.now();
  private readonly pfx: string;
  private readonly dirs = new Map<string, number>([['', ROOT_INO]]);
  /** Inodes numbered from here on were created by this run. */
  private firstNewIno = Number.POSITIVE_INFINITY;
  private readonly decide: ImportDecider;
  /** Cache data to delete once the current page has committed: [ino, generation]. */
  private drops: Array<[number, number]> = [];
  /** Files and names this page changed, told to the kernel once it commits (child: the inode of a deleted name). */
  private changedInodes = new Set<number>();
  private changedEntries: Array<{ parent: number; name: string; child?: number }> = [];
  /** Set by a `fail` decision: the import stops after committing the page so far. */
  private failure: string | undefined;
  private readonly idMap: IdMap;
  private readonly modes: DefaultModes;
  /** HNS identities already warned about in this run ("user:<id>", "group:<id>"). */
  private readonly unknownWarned = new Set<string>();

  constructor(private readonly o: ImportOptions) {
    this.pfx = normalizePrefix(o.prefix);
    this.decide = o.decide ?? keepLocal;
    this.idMap = o.idMap ?? new IdMap();
    this.modes = o.defaultModes ?? DEFAULT_MODES;
    this.stats = emptyImportStats(new Date(this.started).toISOString());
  }

  async run(): Promise<ImportStats> {
    const { signal } = this.o;
    try {
      signal?.throwIfAborted();
      if (this.o.source) await this.consume(this.o.source);
      else for (const listPrefix of this.o.listPrefixes ?? ['']) await this.consume(this.listing(this.pfx + listPrefix));
      this.stats.state = 'Completed';
    } catch (err) {
      if (signal?.aborted) {
        this.stats.state = 'Canceled';
      } else {
        this.stats.state = 'Failed';
        this.stats.error = describeError(err);
        this.emit('error', undefined, { reason: `import failed: ${this.stats.error}` });
      }
    }
    this.stats.finishTime = new Date().toISOString();
    this.progress();
    return { ...this.stats };
  }

  private async *listing(listPrefix: string): AsyncIterable<ImportPage> {
    const { store, signal } = this.o;
    const pages = readAhead(store.listPages({ prefix: listPrefix || undefined, pageSize: this.o.pageSize, signal }));
    for await (const blobs of pages) yield { blobs };
  }

  private async consume(pages: AsyncIterable<ImportPage>): Promise<void> {
    const { signal } = this.o;
    for await (const page of pages) {
      signal?.throwIfAborted();
      const items: Item[] = page.blobs.map((info) => {
        const check = checkBlobName(info.name, this.pfx);
        return { info, check, attrs: check.ok ? this.attributes(info) : undefined };
      });
      await this.fetchTargets(items.filter((it) => it.attrs?.kind === 'symlink'));
      signal?.throwIfAborted();
      this.drops = [];
      this.o.meta.transaction(() => {
        for (let i = 0; i < items.length; i++) {
          // A cancel or a Fail conflict ends the page early: whole blobs only, the page commits what came before.
          if (this.failure || ((i & 63) === 63 && signal?.aborted)) return;
          this.importBlob(items[i]!);
        }
        if (this.failure) return;
        for (const name of page.deleted ?? []) this.deleteBlob(name);
        // Only a page applied whole saves what the source records with it (a change-feed cursor).
        page.onCommit?.();
      });
      await this.dropCommitted();
      this.progress();
      if (this.failure) {
        this.stats.stoppedAtConflict = true;
        throw new Error(this.failure);
      }
      signal?.throwIfAborted();
      const max = this.o.maximumErrors ?? -1;
      const errors = (this.o.errorsBefore ?? 0) + this.stats.totalErrors;
      if (max >= 0 && errors > max) {
        this.stats.stoppedAtMaximumErrors = true;
        throw new Error(`${errors} errors, more than the ${max} allowed`);
      }
    }
  }

  /** The flat rules, or on an HNS entry the service's attributes (counting fallbacks, warning of unknown ids). */
  private attributes(info: BlobInfo): Item['attrs'] {
    if (!info.hns) return blobAttributes(info, this.modes);
    const a = hnsBlobAttributes({ ...info, hns: info.hns }, this.idMap, this.modes);
    if (a.fallbacks.length > 0) this.stats.posixFallbacks++;
    if (a.metadataIgnored.length > 0) this.stats.metadataOverridden++;
    for (const [kind, identity] of a.unknownIdentities) {
      const key = `${kind}:${identity.toLowerCase()}`;
      if (this.unknownWarned.has(key)) continue;
      this.unknownWarned.add(key);
      this.stats.totalWarnings++;
      this.emit('warning', info.name, {
        key: kind === 'user' ? 'x-ms-owner' : 'x-ms-group',
        value: identity,
        reason: `${kind} '${identity}' is not in the id map (--id-map); the default ${kind === 'user' ? 'uid' : 'gid'} is used for it on every entry`,
      });
    }
    return a;
  }

  /** Deletes the cache data of files the committed page released or removed. */
  private async dropCommitted(): Promise<void> {
    const kernel = this.o.kernel;
    const inodes = [...this.changedInodes];
    const entries = this.changedEntries;
    this.changedInodes.clear();
    this.changedEntries = [];
    // Awaited: once a page (and so the job) is done, the kernel shows what it changed. In call order, so a name
    // deleted and created again in one page is forgotten twice in that order.
    if (kernel) {
      await Promise.all([
        ...entries.map((e) => (e.child === undefined ? kernel.entryChanged(e.parent, e.name) : kernel.entryDeleted(e.parent, e.name, e.child))),
        ...inodes.map((ino) => kernel.inodeChanged(ino)),
      ]);
    }
    const drops = this.drops;
    this.drops = [];
    const drop = this.o.dropData;
    if (!drop || drops.length === 0) return;
    await Promise.all(
      drops.map(async ([ino, gen]) => {
        try {
          await drop(ino, gen);
        } catch (err) {
          // A leftover file of an old generation is never read again; the next mount's reconcile purges it.
          this.stats.totalWarnings++;
          this.emit('warning', undefined, { reason: `deleting the old cache data of inode ${ino} failed: ${describeError(err)}` });
        }
      }),
    );
  }

  private progress(): void {
    const s = this.stats;
    const seconds = Math.max((Date.now() - this.started) / 1000, 0.001);
    s.blobsWalkedPerSecond = Math.round((s.totalBlobsWalked / seconds) * 10) / 10;
    s.blobsImportedPerSecond = Math.round((s.totalBlobsImported / seconds) * 10) / 10;
    this.o.onProgress?.({ ...s });
  }

  private emit(event: 'conflict' | 'warning' | 'error' | 'deletion', blob: string | undefined, fields: Record<string, string>): void {
    if (!this.o.log) return;
    this.o.log(JSON.stringify({ time: new Date().toISOString(), event, ...(blob === undefined ? {} : { blob }), ...fields }));
  }

  private conflict(blob: string, reason: string, path?: string, action?: string): void {
    this.stats.totalConflicts++;
    this.emit('conflict', blob, { ...(path === undefined ? {} : { path }), reason, ...(action ? { action } : {}) });
  }

  // ---- symlink targets ----

  private async fetchTargets(all: Item[]): Promise<void> {
    // The target of a symlink already recorded from this very blob (same etag) is known: no read.
    const items = all.filter((item) => {
      if (!item.check.ok) return true;
      const local = this.o.meta.resolve('/' + item.check.components.join('/'));
      if (local?.kind !== 'symlink' || local.target === null || local.blobName !== item.info.name || local.etag !== item.info.etag) return true;
      item.target = { ok: true, value: local.target };
      return false;
    });
    if (items.length === 0) return;
    let next = 0;
    const worker = async () => {
      while (next < items.length) {
        const item = items[next++]!;
        item.target = await this.fetchTarget(item.info);
      }
    };
    const n = Math.max(1, Math.min(this.o.symlinkConcurrency ?? 8, items.length));
    await Promise.all(Array.from({ length: n }, worker));
  }

  private async fetchTarget(info: BlobInfo): Promise<NonNullable<Item['target']>> {
    if (info.size === 0) return { ok: false, reason: 'symlink blob is empty (no target)', error: false };
    if (info.size > MAX_SYMLINK_TARGET) {
      return { ok: false, reason: `symlink target is longer than ${MAX_SYMLINK_TARGET} bytes`, error: false };
    }
    let data: Buffer;
    try {
      const stream = await this.o.store.readRange(info.name, 0, MAX_SYMLINK_TARGET + 1, {
        ifMatch: info.etag,
        signal: this.o.signal,
      });
      data = await readAll(stream, MAX_SYMLINK_TARGET + 1);
    } catch (err) {
      if (this.o.signal?.aborted) throw err;
      return { ok: false, reason: `reading the symlink target failed: ${describeError(err)}`, error: true };
    }
    if (data.length === 0) return { ok: false, reason: 'symlink blob is empty (no target)', error: false };
    if (data.length > MAX_SYMLINK_TARGET) {
      return { ok: false, reason: `symlink target is longer than ${MAX_SYMLINK_TARGET} bytes`, error: false };
    }
    if (data.includes(0)) return { ok: false, reason: 'symlink target contains a NUL byte', error: false };
    return { ok: true, value: data.toString('utf8') };
  }

  // ---- one blob (inside the page transaction) ----

  private importBlob(item: Item): void {
    const { info, check } = item;
    const s = this.stats;
    s.totalBlobsWalked++;
    if (!check.ok) {
      this.conflict(info.name, `not imported: ${check.reason}`);
      return;
    }
    const attrs = item.attrs!;
    for (const w of attrs.warnings) {
      s.totalWarnings++;
      this.emit('warning', info.name, { key: w.key, value: w.value, reason: `${w.reason}; default used` });
    }
    const comps = check.components;
    if (comps.length === 0) return; // the marker of the mount root itself
    const path = comps.join('/');
    const lookalike = ownNameLookalike(path);
    if (lookalike) {
      s.totalWarnings++;
      this.emit('warning', info.name, { path: '/' + path, reason: `${lookalike}; imported as an ordinary entry` });
    }
    if (check.isDirMarker) {
      this.conflict(info.name, "name ends in '/': not a file; its directory exists", '/' + path);
      this.ensureDir(comps, info.name);
      return;
    }
    const parentIno = this.ensureDir(comps.slice(0, -1), info.name);
    if (parentIno === undefined) return;
    const leaf = comps[comps.length - 1]!;
    const existing = this.o.meta.lookup(parentIno, leaf);
    switch (attrs.kind) {
      case 'dir':
        return this.importStub(info, attrs, parentIno, leaf, path, existing);
      case 'file':
        return this.importFile(info, attrs, parentIno, leaf, path, existing);
      case 'symlink':
        return this.importSymlink(item, attrs, parentIno, leaf, path, existing);
    }
  }

  private newInode(info: BlobInfo | undefined, attrs: Omit<BlobAttributes, 'warnings'>): NewInode {
    return {
      ...blankInode(attrs.kind, attrs.mode, attrs.uid, attrs.gid, attrs.mtimeMs),
      blobName: info?.name ?? null,
      etag: info?.etag ?? null,
      contentMd5: info?.contentMd5 ?? null,
      lastAccessMs: 0,
    };
  }


  private create(parentIno: number, name: string, fields: NewInode): Inode {
    const inode = this.o.meta.create(parentIno, name, fields);
    this.changedEntries.push({ parent: parentIno, name });
    this.changedInodes.add(parentIno);
    if (inode.ino < this.firstNewIno) this.firstNewIno = inode.ino;
    return inode;
  }

  private isNew(inode: Inode): boolean {
    return inode.ino >= this.firstNewIno;
  }

  private countImported(kind: Inode['kind']): void {
    const s = this.stats;
    s.totalBlobsImported++;
    if (kind === 'file') s.importedFiles++;
    else if (kind === 'dir') s.importedDirectories++;
    else s.importedSymlinks++;
  }

  private countPreexisting(kind: Inode['kind']): void {
    const s = this.stats;
    if (kind === 'file') s.preexistingFiles++;
    else if (kind === 'dir') s.preexistingDirectories++;
    else s.preexistingSymlinks++;
  }

  private busy(ino: number): boolean {
    return this.o.isBusy?.(ino) ?? false;
  }

  /** The local entry as a decision sees it; `busy` and `hasChildren` are looked up only if the decider asks. */
  private localEntry(inode: Inode): LocalEntry {
    const meta = this.o.meta;
    const busy = (ino: number) => this.busy(ino);
    return {
      kind: inode.kind,
      mode: inode.mode,
      uid: inode.uid,
      gid: inode.gid,
      mtimeMs: inode.mtimeMs,
      size: inode.size,
      target: inode.target,
      hsmFlags: inode.hsmFlags,
      nlink: inode.nlink,
      blobName: inode.blobName,
      etag: inode.etag,
      get hasChildren() {
        return inode.kind === 'dir' && meta.hasEntries(inode.ino);
      },
      get busy() {
        return inode.kind !== 'dir' && busy(inode.ino);
      },
    };
  }

  /**
   * Applies a decision for one blob at `path` (a file, symlink or stub): creates, counts, updates, releases or
   * replaces the local entry, and logs a conflict with what was done.
   */
  private apply(d: ImportDecision, c: Parameters<Importer['applyDecision']>[1]): void {
    this.applyDecision(d, c);
    if (d.action === 'create' || d.action === 'update-attributes' || d.action === 'reimport' || d.action === 'replace') {
      this.recordAcl(c.parentIno, c.leaf, c.attrs);
    }
  }

  /** Records the extended access ACL of the entry now at parentIno/leaf (HNS), or removes a stale one. */
  private recordAcl(parentIno: number, leaf: string, attrs: Item['attrs']): void {
    const acl = attrs?.acl ?? null;
    const inode = this.o.meta.lookup(parentIno, leaf);
    if (inode && (acl !== null || this.o.meta.accessAcl(inode.ino) !== null)) this.o.meta.setAccessAcl(inode.ino, acl);
  }

  private applyDecision(
    d: ImportDecision,
    c: {
      info: BlobInfo;
      attrs: BlobAttributes;
      parentIno: number;
      leaf: string;
      path: string;
      existing: Inode | undefined;
      /** The record of the blob as a new entry. */
      fresh: () => NewInode;
      /** The blob's data fields for an in-place reimport (size, target). */
      data: InodePatch;
    },
  ): void {
    const s = this.stats;
    const kind = c.attrs.kind;
    const { existing } = c;
    if (d.conflict) this.conflict(c.info.name, d.reason, '/' + c.path, d.action);
    // The entry now records this blob version: an etag remembered for the name (from a file since unlinked or
    // renamed away) is older than what the mount has just seen, and would make the next export a false conflict.
    if (kind !== 'dir' && (d.action === 'create' || d.action === 'reimport' || d.action === 'replace')) this.o.meta.setBlobEtag(c.info.name, null);
    switch (d.action) {
      case 'create':
        this.create(c.parentIno, c.leaf, c.fresh());
        this.countImported(kind);
        return;
      case 'none':
        this.countPreexisting(kind);
        return;
      case 'skip':
        return;
      case 'fail':
        this.failure = `stopped at the first conflict: /${c.path} (blob ${c.info.name}): ${d.reason}`;
        return;
      case 'update-attributes': {
        const t = c.attrs.mtimeMs;
        const patch: InodePatch = {
          mode: c.attrs.mode,
          uid: c.attrs.uid,
          gid: c.attrs.gid,
          ctimeMs: Date.now(),
          ...(kind === 'dir' ? { blobName: c.info.name, etag: c.info.etag } : { mtimeMs: t }),
        };
        if (d.release && existing!.kind === 'file') this.releaseFile(existing!, patch, false);
        else this.o.meta.update(existing!.ino, patch);
        this.changedInodes.add(existing!.ino);
        s.updatedAttributes++;
        return;
      }
      case 'reimport': {
        const t = c.attrs.mtimeMs;
        const patch: InodePatch = {
          ...c.data,
          mode: c.attrs.mode,
          uid: c.attrs.uid,
          gid: c.attrs.gid,
          atimeMs: t,
          mtimeMs: t,
          ctimeMs: t,
          blobName: c.info.name,
          etag: c.info.etag,
          contentMd5: c.info.contentMd5 ?? null,
        };
        if (d.release && existing!.kind === 'file') this.releaseFile(existing!, patch, true);
        else this.o.meta.update(existing!.ino, patch);
        this.changedInodes.add(existing!.ino);
        s.replacedEntries++;
        this.countImported(kind);
        return;
      }
      case 'replace':
        this.removeLocal(c.parentIno, c.leaf, existing!, c.path);
        this.create(c.parentIno, c.leaf, c.fresh());
        s.replacedEntries++;
        this.countImported(kind);
        return;
    }
  }

  /**
   * Records a file as released (exists archived released, policy flags kept) with `patch` applied, in a new cache
   * generation; its old cache data is deleted once the page commits.
   */
  private releaseFile(inode: Inode, patch: InodePatch, dataChanged: boolean): void {
    const version = dataChanged ? inode.dataVersion + 1 : inode.dataVersion;
    this.o.meta.update(inode.ino, {
      ...patch,
      hsmFlags: onReimport(inode.hsmFlags),
      archiveId: inode.archiveId || IMPORT_ARCHIVE_ID,
      dataVersion: version,
      archivedVersion: version,
      generation: inode.generation + 1,
    });
    this.o.meta.clearRanges(inode.ino);
    this.drops.push([inode.ino, inode.generation]);
    if (!isReleased(inode.hsmFlags)) this.stats.releasedFiles++;
  }

  /** Unlinks a local entry (a directory only when empty); a file's data goes once the page commits. */
  private removeLocal(parentIno: number, leaf: string, inode: Inode, path: string): void {
    const left = this.o.meta.unlink(parentIno, leaf);
    this.changedEntries.push({ parent: parentIno, name: leaf, child: inode.ino });
    this.changedInodes.add(parentIno);
    this.changedInodes.add(inode.ino);
    if (inode.kind === 'file' && left.nlink === 0) this.drops.push([inode.ino, inode.generation]);
    if (inode.kind === 'dir') this.dirs.delete(path);
  }

  /**
   * The blob `name` was deleted: its local entry (the inode recorded as that blob, still at the blob's path) is
   * deleted as decideDeletion says; a directory only when empty. Anything else at the path is left alone.
   */
  private deleteBlob(name: string): void {
    const decide = this.o.decideDeletion;
    if (!decide) throw new Error('an import page carries deletions but no decideDeletion was given');
    const check = checkBlobName(name, this.pfx);
    if (!check.ok || check.isDirMarker || check.components.length === 0) return;
    const path = check.components.join('/');
    const meta = this.o.meta;
    const parent = check.components.length === 1 ? meta.get(ROOT_INO) : meta.resolve('/' + check.components.slice(0, -1).join('/'));
    if (!parent || parent.kind !== 'dir') return;
    const leaf = check.components[check.components.length - 1]!;
    const local = meta.lookup(parent.ino, leaf);
    if (!local || local.blobName !== name) return;
    const d = decide(this.localEntry(local), name);
    if (!d.delete) {
      this.conflict(name, d.reason, '/' + path, 'skip');
      return;
    }
    this.removeLocal(parent.ino, leaf, local, path);
    this.stats.deletions++;
    this.emit('deletion', name, { path: '/' + path, reason: d.reason });
  }

  private importFile(
    info: BlobInfo,
    attrs: BlobAttributes,
    parentIno: number,
    leaf: string,
    path: string,
    existing: Inode | undefined,
  ): void {
    const remote: RemoteEntry = { kind: 'file', blobName: info.name, etag: info.etag, size: info.size, ...pick(attrs) };
    this.apply(this.decide(existing && this.localEntry(existing), remote), {
      info,
      attrs,
      parentIno,
      leaf,
      path,
      existing,
      data: { size: info.size },
      fresh: () => ({
        ...this.newInode(info, attrs),
        size: info.size,
        hsmFlags: onImport(),
        archiveId: IMPORT_ARCHIVE_ID,
        dataVersion: IMPORTED_DATA_VERSION,
        archivedVersion: IMPORTED_DATA_VERSION,
      }),
    });
  }

  private importSymlink(
    item: Item,
    attrs: BlobAttributes,
    parentIno: number,
    leaf: string,
    path: string,
    existing: Inode | undefined,
  ): void {
    const { info, target } = item;
    const s = this.stats;
    if (!target || !target.ok) {
      const reason = target?.reason ?? 'symlink target not read';
      if (target && target.error) {
        s.totalErrors++;
        this.emit('error', info.name, { path: '/' + path, reason });
      } else {
        this.conflict(info.name, `not imported: ${reason}`, '/' + path);
      }
      return;
    }
    const size = Buffer.byteLength(target.value);
    const remote: RemoteEntry = { kind: 'symlink', blobName: info.name, etag: info.etag, size, target: target.value, ...pick(attrs) };
    this.apply(this.decide(existing && this.localEntry(existing), remote), {
      info,
      attrs,
      parentIno,
      leaf,
      path,
      existing,
      data: { size, target: target.value },
      fresh: () => ({
        ...this.newInode(info, attrs),
        size,
        target: target.value,
        hsmFlags: onImportSymlink(),
        archiveId: IMPORT_ARCHIVE_ID,
        dataVersion: IMPORTED_DATA_VERSION,
        archivedVersion: IMPORTED_DATA_VERSION,
      }),
    });
  }

  private importStub(
    info: BlobInfo,
    attrs: BlobAttributes,
    parentIno: number,
    leaf: string,
    path: string,
    existing: Inode | undefined,
  ): void {
    const s = this.stats;
    let local = existing;
    if (local && local.kind !== 'dir' && this.replaceableByDir(local, path)) {
      this.convertToDir(parentIno, leaf, local, path, info.name);
      local = undefined;
    }
    if (local && local.kind === 'dir' && this.isNew(local) && local.blobName === null) {
      // Created implicitly by this run (the listing was not in name order): the stub supplies its attributes.
      const t = attrs.mtimeMs;
      this.o.meta.update(
        local.ino,
        { mode: attrs.mode, uid: attrs.uid, gid: attrs.gid, atimeMs: t, mtimeMs: t, ctimeMs: t, blobName: info.name, etag: info.etag },
        { durable: false },
      );
      this.recordAcl(parentIno, leaf, attrs);
      this.cacheDir(path, local.ino);
      s.implicitDirectories--;
      s.totalBlobsImported++;
      return;
    }
    const remote: RemoteEntry = { kind: 'dir', blobName: info.name, etag: info.etag, size: 0, ...pick(attrs) };
    const d = this.decide(local && this.localEntry(local), remote);
    this.apply(d, { info, attrs, parentIno, leaf, path, existing: local, data: {}, fresh: () => this.newInode(info, attrs) });
    if (d.action === 'none' && local && (local.blobName !== info.name || local.etag !== info.etag)) {
      this.o.meta.update(local.ino, { blobName: info.name, etag: info.etag });
    }
    const now = this.o.meta.lookup(parentIno, leaf);
    if (now?.kind === 'dir') this.cacheDir(path, now.ino);
  }

  /**
   * A local file or symlink at `path` gives way to a directory (docs/SEMANTICS.md §1: the directory wins) when it is an
   * unmodified record of blob `path` that nothing is using.
   */
  private replaceableByDir(inode: Inode, path: string): boolean {
    if (inode.blobName !== this.pfx + path) return false;
    if (inode.kind === 'symlink') return true;
    return (
      inode.kind === 'file' && inode.nlink === 1 && matches(inode.hsmFlags, CLEAN_ARCHIVED) && !this.busy(inode.ino)
    );
  }

  private convertToDir(parentIno: number, leaf: string, inode: Inode, path: string, byBlob: string): void {
    const s = this.stats;
    this.removeLocal(parentIno, leaf, inode, path);
    if (this.isNew(inode)) {
      s.totalBlobsImported--;
      if (inode.kind === 'file') s.importedFiles--;
      else s.importedSymlinks--;
    }
    this.conflict(
      inode.blobName ?? this.pfx + path,
      `${inode.kind} blob hidden by the directory of the same name (needed by '${byBlob}')`,
      '/' + path,
    );
  }

  private cacheDir(path: string, ino: number): void {
    if (this.dirs.size >= DIR_CACHE_LIMIT) {
      this.dirs.clear();
      this.dirs.set('', ROOT_INO);
    }
    this.dirs.set(path, ino);
  }

  /** The directory at comps (created implicitly as needed), or undefined when a local non-directory blocks it. */
  private ensureDir(comps: string[], blobName: string): number | undefined {
    const whole = comps.join('/');
    const cached = this.dirs.get(whole);
    if (cached !== undefined) return cached;
    // Find the deepest cached ancestor, then walk down from it.
    let i = comps.length - 1;
    let ino = ROOT_INO;
    for (; i > 0; i--) {
      const hit = this.dirs.get(comps.slice(0, i).join('/'));
      if (hit !== undefined) {
        ino = hit;
        break;
      }
    }
    if (i < 0) i = 0;
    const meta = this.o.meta;
    const s = this.stats;
    for (; i < comps.length; i++) {
      const name = comps[i]!;
      const path = comps.slice(0, i + 1).join('/');
      let child = meta.lookup(ino, name);
      if (child && child.kind !== 'dir') {
        if (this.replaceableByDir(child, path)) {
          this.convertToDir(ino, name, child, path, blobName);
        } else {
          const implicit: RemoteEntry = { kind: 'dir', size: 0, mode: this.modes.dir, uid: 0, gid: 0, mtimeMs: this.started, implicit: true };
          const d = this.decide(this.localEntry(child), implicit);
          if (d.action !== 'replace') {
            this.conflict(blobName, `not imported: local ${child.kind} '/${path}' is in the way (${d.reason})`, '/' + path, d.action);
            if (d.action === 'fail') this.failure = `stopped at the first conflict: /${path} (needed by blob ${blobName}): ${d.reason}`;
            return undefined;
          }
          this.conflict(blobName, `local ${child.kind} '/${path}' is in the way of blobs under it: ${d.reason}`, '/' + path, d.action);
          this.removeLocal(ino, name, child, path);
          s.replacedEntries++;
        }
        child = undefined;
      }
      if (!child) {
        const now = this.started;
        child = this.create(ino, name, this.newInode(undefined, { kind: 'dir', mode: this.modes.dir, uid: 0, gid: 0, mtimeMs: now }));
        s.importedDirectories++;
        s.implicitDirectories++;
      } else if (!this.isNew(child)) {
        s.preexistingDirectories++;
      }
      ino = child.ino;
      this.cacheDir(path, ino);
    }
    return ino;
  }
}

function pick(attrs: BlobAttributes): Pick<RemoteEntry, 'mode' | 'uid' | 'gid' | 'mtimeMs'> {
  return { mode: attrs.mode, uid: attrs.uid, gid: attrs.gid, mtimeMs: attrs.mtimeMs };
}

async function readAll(stream: Readable, limit: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of stream) {
    const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string);
    chunks.push(b);
    total += b.length;
    if (total >= limit) {
      stream.destroy();
      break;
    }
  }
  return Buffer.concat(chunks);
}

/**
 * Why a blob's path looks like a name blobhsm makes itself (libfuse's `.fuse_hidden*` stand-in for an unlinked open
 * file, the import job's `IMPORT_<state>.<time>` marker in the mount root), else undefined. Such a blob is still
 * imported and shown, and the warning says so, so nobody mistakes one for the other.
 */
export function ownNameLookalike(path: string): string | undefined {
  if (/(^|\/)\.fuse_hidden[0-9a-f]+$/.test(path)) return "the name looks like libfuse's stand-in for a file unlinked while open";
  if (/^IMPORT_(InProgress|Canceling|Failed|Canceled)\./.test(path)) return 'the name looks like the marker of an import job';
  return undefined;
}
