// importNamespace: walks a container listing page by page and records every blob as an inode (SPEC §1, §3).
//
// - One listing walk, no per-blob HEAD: the listing carries size, etag, Last-Modified and metadata. The only extra
//   requests are one ranged GET per symlink (its target is the blob's content), run with bounded parallelism
//   before the page's transaction.
// - Each page is inserted in one MetaStore transaction: a cancelled or failed import leaves whole pages only.
// - Files are recorded released (flags 0x0d exists|released|archived, archive id 1, dataVersion = archivedVersion
//   = 1) with the blob's name and etag; no data is fetched. Symlinks get 0x09 (exists archived) so export jobs
//   do not upload them again; directories get 0.
// - Directories: a stub (hdi_isfolder=true) carries attributes; any other prefix before a `/` is an implicit
//   directory with the defaults (0777, uid/gid 0, time of the import). A stub seen after its implicit directory
//   was created by this import updates its attributes.
// - Collisions (SPEC §1), each counted in totalConflicts with a log line: unmappable names are skipped; a name
//   ending in `/` only makes its directory exist; a file blob `a` beside blobs under `a/` loses to the directory
//   whatever the listing order (a clean imported file record for `a` is removed when the directory is needed).
// - Re-import: a path that already holds the same thing (type, blob name, etag, size, attributes) counts as
//   preexisting and is left alone. A path holding something else is a conflict and is left alone too (the `Skip`
//   policy); richer conflict policies belong to the job layer.
// - Invalid metadata never fails a blob: the default is used, totalWarnings counts it, a log line names blob and key.
// Log lines are JSON, one per event: {"time","event":"conflict"|"warning"|"error","blob","reason",...}.
//
// Telling this run's inodes from older ones (for the statistics of a converted file) relies on the store
// allocating increasing inode numbers, as SqliteMetaStore does.
import type { Readable } from 'node:stream';
import type { BlobInfo, BlobStore } from '../blob/blob-store.js';
import { describeError } from '../errors.js';
import {
  MAX_SYMLINK_TARGET,
  blobAttributes,
  checkBlobName,
  normalizePrefix,
  type BlobAttributes,
  type BlobNameCheck,
} from './blob-encoding.js';
import { ROOT_INO, type Inode, type MetaStore, type NewInode } from './types.js';

// Lustre HSM flag bits (src/hsm/flags.ts has the full set; the namespace layer does not import from hsm).
const EXISTS = 0x01;
const DIRTY = 0x02;
const RELEASED = 0x04;
const ARCHIVED = 0x08;
/** Flags of an imported regular file: released exists archived. */
export const IMPORTED_FILE_FLAGS = EXISTS | RELEASED | ARCHIVED;
/** Flags of an imported symlink: exists archived (its blob is its archive copy; export skips it). */
export const IMPORTED_SYMLINK_FLAGS = EXISTS | ARCHIVED;
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
  totalConflicts: number;
  totalErrors: number;
  totalWarnings: number;
  state: ImportState;
  /** ISO 8601. */
  startTime: string;
  /** ISO 8601, once the import ended. */
  finishTime?: string;
  /** Why the import failed. */
  error?: string;
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
  /** Symlink targets fetched in parallel (default 8). */
  symlinkConcurrency?: number;
}

interface Item {
  info: BlobInfo;
  check: BlobNameCheck;
  attrs?: BlobAttributes;
  /** Symlink target, or the reason it could not be read. */
  target?: { ok: true; value: string } | { ok: false; reason: string; error: boolean };
}

/** Directory cache entries beyond this are dropped (the listing is ordered, so old ones are rarely needed). */
const DIR_CACHE_LIMIT = 100_000;

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

  constructor(private readonly o: ImportOptions) {
    this.pfx = normalizePrefix(o.prefix);
    this.stats = {
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
      totalConflicts: 0,
      totalErrors: 0,
      totalWarnings: 0,
      state: 'InProgress',
      startTime: new Date(this.started).toISOString(),
    };
  }

  async run(): Promise<ImportStats> {
    const { store, signal } = this.o;
    try {
      signal?.throwIfAborted();
      const pages = store.listPages({ prefix: this.pfx || undefined, pageSize: this.o.pageSize, signal });
      for await (const page of pages) {
        signal?.throwIfAborted();
        const items: Item[] = page.map((info) => {
          const check = checkBlobName(info.name, this.pfx);
          return { info, check, attrs: check.ok ? blobAttributes(info) : undefined };
        });
        await this.fetchTargets(items.filter((it) => it.attrs?.kind === 'symlink'));
        signal?.throwIfAborted();
        this.o.meta.transaction(() => {
          for (const item of items) this.importBlob(item);
        });
        this.progress();
        const max = this.o.maximumErrors ?? -1;
        if (max >= 0 && this.stats.totalErrors > max) {
          throw new Error(`${this.stats.totalErrors} errors, more than the ${max} allowed`);
        }
      }
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

  private progress(): void {
    const s = this.stats;
    const seconds = Math.max((Date.now() - this.started) / 1000, 0.001);
    s.blobsWalkedPerSecond = Math.round((s.totalBlobsWalked / seconds) * 10) / 10;
    s.blobsImportedPerSecond = Math.round((s.totalBlobsImported / seconds) * 10) / 10;
    this.o.onProgress?.({ ...s });
  }

  private emit(event: 'conflict' | 'warning' | 'error', blob: string | undefined, fields: Record<string, string>): void {
    if (!this.o.log) return;
    this.o.log(JSON.stringify({ time: new Date().toISOString(), event, ...(blob === undefined ? {} : { blob }), ...fields }));
  }

  private conflict(blob: string, reason: string, path?: string): void {
    this.stats.totalConflicts++;
    this.emit('conflict', blob, path === undefined ? { reason } : { path, reason });
  }

  // ---- symlink targets ----

  private async fetchTargets(items: Item[]): Promise<void> {
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
    const t = attrs.mtimeMs;
    return {
      kind: attrs.kind,
      mode: attrs.mode,
      uid: attrs.uid,
      gid: attrs.gid,
      size: 0,
      atimeMs: t,
      mtimeMs: t,
      ctimeMs: t,
      target: null,
      hsmFlags: 0,
      archiveId: 0,
      dataVersion: 0,
      archivedVersion: 0,
      blobName: info?.name ?? null,
      etag: info?.etag ?? null,
      generation: 0,
      lastAccessMs: 0,
    };
  }

  private create(parentIno: number, name: string, fields: NewInode): Inode {
    const inode = this.o.meta.create(parentIno, name, fields);
    if (inode.ino < this.firstNewIno) this.firstNewIno = inode.ino;
    return inode;
  }

  private isNew(inode: Inode): boolean {
    return inode.ino >= this.firstNewIno;
  }

  private sameAttrs(inode: Inode, attrs: BlobAttributes, withTime: boolean): boolean {
    return (
      inode.mode === attrs.mode &&
      inode.uid === attrs.uid &&
      inode.gid === attrs.gid &&
      (!withTime || inode.mtimeMs === attrs.mtimeMs)
    );
  }

  private importFile(
    info: BlobInfo,
    attrs: BlobAttributes,
    parentIno: number,
    leaf: string,
    path: string,
    existing: Inode | undefined,
  ): void {
    const s = this.stats;
    if (!existing) {
      this.create(parentIno, leaf, {
        ...this.newInode(info, attrs),
        size: info.size,
        hsmFlags: IMPORTED_FILE_FLAGS,
        archiveId: IMPORT_ARCHIVE_ID,
        dataVersion: IMPORTED_DATA_VERSION,
        archivedVersion: IMPORTED_DATA_VERSION,
      });
      s.importedFiles++;
      s.totalBlobsImported++;
      return;
    }
    if (existing.kind === 'dir') {
      this.conflict(info.name, `file blob hidden by the directory of the same name (blobs under '${info.name}/')`, '/' + path);
      return;
    }
    if (
      existing.kind === 'file' &&
      existing.blobName === info.name &&
      existing.etag === info.etag &&
      existing.size === info.size &&
      (existing.hsmFlags & DIRTY) === 0 &&
      this.sameAttrs(existing, attrs, true)
    ) {
      s.preexistingFiles++;
      return;
    }
    this.conflict(info.name, `local ${existing.kind} differs from the blob; left unchanged`, '/' + path);
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
    if (!existing) {
      this.create(parentIno, leaf, {
        ...this.newInode(info, attrs),
        size: Buffer.byteLength(target.value),
        target: target.value,
        hsmFlags: IMPORTED_SYMLINK_FLAGS,
        archiveId: IMPORT_ARCHIVE_ID,
        dataVersion: IMPORTED_DATA_VERSION,
        archivedVersion: IMPORTED_DATA_VERSION,
      });
      s.importedSymlinks++;
      s.totalBlobsImported++;
      return;
    }
    if (existing.kind === 'dir') {
      this.conflict(info.name, 'symlink blob hidden by the directory of the same name', '/' + path);
      return;
    }
    if (
      existing.kind === 'symlink' &&
      existing.target === target.value &&
      existing.blobName === info.name &&
      existing.etag === info.etag &&
      this.sameAttrs(existing, attrs, true)
    ) {
      s.preexistingSymlinks++;
      return;
    }
    this.conflict(info.name, `local ${existing.kind} differs from the blob; left unchanged`, '/' + path);
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
    let dir = existing;
    if (dir && dir.kind !== 'dir') {
      if (!this.replaceableByDir(dir, path)) {
        this.conflict(info.name, `directory stub conflicts with the local ${dir.kind}; left unchanged`, '/' + path);
        return;
      }
      this.convertToDir(parentIno, leaf, dir, path, info.name);
      dir = undefined;
    }
    if (!dir) {
      const created = this.create(parentIno, leaf, this.newInode(info, attrs));
      this.cacheDir(path, created.ino);
      s.importedDirectories++;
      s.totalBlobsImported++;
      return;
    }
    this.cacheDir(path, dir.ino);
    if (this.isNew(dir) && dir.blobName === null) {
      // Created implicitly by this run (the listing was not in name order): the stub supplies its attributes.
      const t = attrs.mtimeMs;
      this.o.meta.update(
        dir.ino,
        { mode: attrs.mode, uid: attrs.uid, gid: attrs.gid, atimeMs: t, mtimeMs: t, ctimeMs: t, blobName: info.name, etag: info.etag },
        { durable: false },
      );
      s.implicitDirectories--;
      s.totalBlobsImported++;
      return;
    }
    if (dir.blobName === info.name && dir.etag === info.etag && this.sameAttrs(dir, attrs, false)) {
      s.preexistingDirectories++;
      return;
    }
    this.conflict(info.name, 'local directory differs from the directory stub; left unchanged', '/' + path);
  }

  /** A local file or symlink at `path` may give way to a directory when it is an unmodified record of blob `path`. */
  private replaceableByDir(inode: Inode, path: string): boolean {
    if (inode.blobName !== this.pfx + path) return false;
    if (inode.kind === 'symlink') return true;
    return inode.kind === 'file' && inode.nlink === 1 && (inode.hsmFlags & (DIRTY | ARCHIVED)) === ARCHIVED;
  }

  private convertToDir(parentIno: number, leaf: string, inode: Inode, path: string, byBlob: string): void {
    const s = this.stats;
    this.o.meta.unlink(parentIno, leaf);
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
        if (!this.replaceableByDir(child, path)) {
          this.conflict(blobName, `not imported: local ${child.kind} '/${path}' is in the way`, '/' + path);
          return undefined;
        }
        this.convertToDir(ino, name, child, path, blobName);
        child = undefined;
      }
      if (!child) {
        const now = this.started;
        child = this.create(ino, name, this.newInode(undefined, { kind: 'dir', mode: 0o777, uid: 0, gid: 0, mtimeMs: now }));
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
