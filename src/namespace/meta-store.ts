// SqliteMetaStore: the persistent MetaStore (inodes, names, cached ranges, settings, changelog) on better-sqlite3.
//
// Durability. The database runs in WAL mode with synchronous=NORMAL: every commit reaches the OS before the call
// returns, so a killed daemon (kill -9) loses nothing, and the database is always consistent. Only an OS crash or
// power loss can lose the last commits, and those are made durable (fsync of the WAL) where the HSM needs it:
// - `update()` of a patch that changes HSM state (hsmFlags, archiveId, archivedVersion, blobName, etag,
//   generation) commits with synchronous=FULL, so e.g. DIRTY is on disk before the first byte reaches the cache
//   file and RELEASED is on disk before the cache data is deleted. `update(ino, patch, { durable })` overrides
//   the choice either way.
// - Inside `transaction()`, a durable update makes the whole transaction durable: the safety level cannot change
//   inside a transaction, so after the outermost commit a durability barrier (`sync()`) runs.
// - `sync()` is that barrier on its own: one tiny write committed with synchronous=FULL, which fsyncs the WAL and
//   with it every earlier commit.
// Measured here (ext4 on virtio): a NORMAL update commit costs ~16 µs, a FULL one ~450 µs (one fsync). Making
// every update FULL would cap metadata-heavy workloads (size/mtime per write) at ~2k ops/s, hence the split.
// Timestamps (parent mtime/ctime on create/unlink/rename) are the caller's business: this store never changes a
// time by itself, so the importer can set directory times from blob metadata.
//
// Inode numbers come from an AUTOINCREMENT key: they are never reused and stay stable across reopen.
// Directory nlink is 2 + number of subdirectories; a file's nlink counts its names.
// The changelog follows Lustre: it records only while at least one reader is registered; readers are named
// cl1, cl2, ...; a record is purged once every reader has cleared it.
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { FsError } from '../errors.js';
import { DIRTY_FILE, EVICTABLE, EXPORT_CANDIDATE, flagSql, type FlagPredicate } from '../hsm/flags.js';
import { ARCHIVABLE_KINDS, BLOB_KINDS, LOCAL_ONLY_KINDS } from './file-types.js';
import {
  ROOT_INO,
  blankInode,
  type ByteRange,
  type ChangelogRecord,
  type DirEntry,
  type EntrySummary,
  type Inode,
  type InodeKind,
  type InodePatch,
  type MetaStore,
  type NewInode,
} from './types.js';

/** The flag predicates of src/hsm/flags.ts as SQL (queries and partial indexes use the same text). */
const EVICTABLE_WHERE = `kind = 'file' AND ${flagSql(EVICTABLE, 'hsm_flags')} AND size > 0`;
const DIRTY_WHERE = flagSql(DIRTY_FILE, 'hsm_flags');

const MAX_NAME_BYTES = 255;

/** Inode fields and their columns, in insert order (ino and nlink handled separately). */
const FIELD_COLUMNS = {
  kind: 'kind',
  mode: 'mode',
  uid: 'uid',
  gid: 'gid',
  size: 'size',
  atimeMs: 'atime_ms',
  mtimeMs: 'mtime_ms',
  ctimeMs: 'ctime_ms',
  target: 'target',
  hsmFlags: 'hsm_flags',
  archiveId: 'archive_id',
  dataVersion: 'data_version',
  archivedVersion: 'archived_version',
  blobName: 'blob_name',
  etag: 'etag',
  contentMd5: 'content_md5',
  generation: 'generation',
  lastAccessMs: 'last_access_ms',
} as const satisfies Record<keyof NewInode, string>;

type FieldName = keyof typeof FIELD_COLUMNS;
const FIELDS = Object.keys(FIELD_COLUMNS) as FieldName[];
const PATCHABLE_COLUMNS: Record<string, string> = { ...FIELD_COLUMNS, nlink: 'nlink' };
delete PATCHABLE_COLUMNS.kind;

/** Fields whose change is HSM state that must survive a power loss. */
const DURABLE_FIELDS = new Set<string>(['hsmFlags', 'archiveId', 'archivedVersion', 'blobName', 'etag', 'contentMd5', 'generation']);

const kindIn = (kinds: readonly InodeKind[]) => `kind IN (${kinds.map((k) => `'${k}'`).join(', ')})`;

/** Files and symlinks to export (flags.EXPORT_CANDIDATE; also the partial index predicate): never a local-only kind. */
const EXPORT_WHERE = `${kindIn(ARCHIVABLE_KINDS)} AND ${flagSql(EXPORT_CANDIDATE, 'hsm_flags')}`;

/** FIFOs and sockets (file-types.ts; also the partial index predicate). */
const LOCAL_ONLY_WHERE = kindIn(LOCAL_ONLY_KINDS);

/** The inode table's kind constraint. A store made before FIFOs and sockets has a narrower one (migrateKinds). */
const KIND_CHECK = `CHECK (${kindIn([...BLOB_KINDS, ...LOCAL_ONLY_KINDS])})`;

/** The inode table's indexes (migrateKinds drops them with the table they indexed). */
const INODE_INDEXES = ['inodes_evict', 'inodes_dirty', 'inodes_export', 'inodes_blob', 'inodes_local_only'];

/** The SELECT list of an inode: ino, nlink, then FIELDS in order (read by inodeOfRow). */
const INODE_SELECT =
  'i.ino AS ino, i.nlink AS nlink, ' + FIELDS.map((f) => `i.${FIELD_COLUMNS[f]} AS ${f}`).join(', ');

/** The same columns for an UPDATE's RETURNING clause (which cannot name the table `i`). */
const INODE_RETURNING = 'ino, nlink, ' + FIELDS.map((f) => FIELD_COLUMNS[f]).join(', ');

/** The names of INODE_SELECT's columns, in order. */
const INODE_KEYS = ['ino', 'nlink', ...FIELDS] as const;

/**
 * The inode in an INODE_SELECT row read as an array (raw statements), from column `at` on. One object literal:
 * better-sqlite3 building each row as an object (a property per column, each name interned again) cost 3.5 µs
 * a row, this 1.8 µs, and `rsync -a` reads about 30 inodes per file it writes. Its order is checked against
 * INODE_KEYS when the store opens.
 */
function inodeOfRow(r: unknown[], at = 0): Inode {
  return {
    ino: r[at] as number,
    nlink: r[at + 1] as number,
    kind: r[at + 2] as InodeKind,
    mode: r[at + 3] as number,
    uid: r[at + 4] as number,
    gid: r[at + 5] as number,
    size: r[at + 6] as number,
    atimeMs: r[at + 7] as number,
    mtimeMs: r[at + 8] as number,
    ctimeMs: r[at + 9] as number,
    target: r[at + 10] as string | null,
    hsmFlags: r[at + 11] as number,
    archiveId: r[at + 12] as number,
    dataVersion: r[at + 13] as number,
    archivedVersion: r[at + 14] as number,
    blobName: r[at + 15] as string | null,
    etag: r[at + 16] as string | null,
    contentMd5: r[at + 17] as string | null,
    generation: r[at + 18] as number,
    lastAccessMs: r[at + 19] as number,
  };
}

// A field added to FIELD_COLUMNS but not to inodeOfRow (or out of order) would read another column: refuse to load.
for (const [k, v] of Object.entries(inodeOfRow([...INODE_KEYS]))) {
  if (k !== v) throw new Error(`meta-store: inodeOfRow reads '${String(v)}' as '${k}': keep it in INODE_KEYS order`);
}

/** The inodes of raw INODE_SELECT rows. */
function inodesOfRows(rows: unknown[]): Inode[] {
  return rows.map((r) => inodeOfRow(r as unknown[]));
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS inodes (
  ino INTEGER PRIMARY KEY AUTOINCREMENT,
  kind TEXT NOT NULL ${KIND_CHECK},
  mode INTEGER NOT NULL,
  uid INTEGER NOT NULL,
  gid INTEGER NOT NULL,
  size INTEGER NOT NULL,
  atime_ms INTEGER NOT NULL,
  mtime_ms INTEGER NOT NULL,
  ctime_ms INTEGER NOT NULL,
  nlink INTEGER NOT NULL,
  target TEXT,
  hsm_flags INTEGER NOT NULL,
  archive_id INTEGER NOT NULL,
  data_version INTEGER NOT NULL,
  archived_version INTEGER NOT NULL,
  blob_name TEXT,
  etag TEXT,
  content_md5 TEXT,
  generation INTEGER NOT NULL,
  last_access_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS inodes_evict ON inodes(last_access_ms) WHERE ${EVICTABLE_WHERE};
CREATE INDEX IF NOT EXISTS inodes_dirty ON inodes(ino) WHERE ${DIRTY_WHERE};
CREATE INDEX IF NOT EXISTS inodes_export ON inodes(ino) WHERE ${EXPORT_WHERE};
CREATE INDEX IF NOT EXISTS inodes_blob ON inodes(blob_name) WHERE blob_name IS NOT NULL;
CREATE INDEX IF NOT EXISTS inodes_local_only ON inodes(ino) WHERE ${LOCAL_ONLY_WHERE};
CREATE TABLE IF NOT EXISTS dentries (
  parent INTEGER NOT NULL,
  name TEXT NOT NULL,
  ino INTEGER NOT NULL,
  PRIMARY KEY (parent, name)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS dentries_ino ON dentries(ino);
CREATE TABLE IF NOT EXISTS ranges (
  ino INTEGER NOT NULL,
  generation INTEGER NOT NULL,
  start_off INTEGER NOT NULL,
  end_off INTEGER NOT NULL,
  PRIMARY KEY (ino, generation, start_off)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blob_etags (
  name TEXT PRIMARY KEY,
  etag TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS access_acls (
  ino INTEGER PRIMARY KEY,
  acl TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS listed_blobs (
  name TEXT PRIMARY KEY,
  pass INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS listed_blobs_pass ON listed_blobs(pass);
CREATE TABLE IF NOT EXISTS settings (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS changelog (
  idx INTEGER PRIMARY KEY AUTOINCREMENT,
  type TEXT NOT NULL,
  time_ms INTEGER NOT NULL,
  flags INTEGER NOT NULL,
  ino INTEGER NOT NULL,
  parent_ino INTEGER NOT NULL,
  name TEXT NOT NULL,
  extra TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS changelog_readers (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  cleared INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS durability (
  id INTEGER PRIMARY KEY,
  n INTEGER NOT NULL
);
`;

export interface MetaStoreOptions {
  /** Base safety level of ordinary commits (default NORMAL; OFF only for throwaway stores in tests). */
  synchronous?: 'OFF' | 'NORMAL' | 'FULL';
  /** SQLite exclusive locking (default true): no other connection may open the file while this one is open. */
  exclusive?: boolean;
}

export interface UpdateOptions {
  /** Commit with an fsync of the WAL. Default: true when the patch changes HSM state. */
  durable?: boolean;
}

type Row = unknown;
type Stmt = Database.Statement<unknown[], Row>;

export class SqliteMetaStore implements MetaStore {
  readonly path: string;
  private readonly db: Database.Database;
  private readonly baseSync: 'OFF' | 'NORMAL' | 'FULL';
  private readonly s: ReturnType<SqliteMetaStore['prepareAll']>;
  /** filesMatching() statements, by their WHERE text. */
  private readonly predicateQueries = new Map<string, Database.Statement>();
  private readonly updateStmts = new Map<string, Stmt>();
  private readonly runInTransaction: (fn: () => unknown) => unknown;
  private txDepth = 0;
  private durablePending = false;
  private closed = false;

  constructor(path: string, options: MetaStoreOptions = {}) {
    this.path = path;
    if (path !== ':memory:' && path !== '') mkdirSync(dirname(path), { recursive: true });
    this.db = new Database(path);
    this.baseSync = options.synchronous ?? 'NORMAL';
    try {
      // One process uses the store (the daemon holds the cache directory's lock): exclusive locking keeps the
      // WAL index in the process's memory, so commits and reads take no file locks (an `rsync -a` of 2,000 small
      // files made 294,604 fcntl calls in the daemon with the -shm file, none now). Set before the WAL is used.
      if (options.exclusive ?? true) this.db.pragma('locking_mode = EXCLUSIVE');
      this.db.pragma('journal_mode = WAL');
      this.db.pragma(`synchronous = ${this.baseSync}`);
      this.db.pragma('busy_timeout = 5000');
      this.migrateKinds();
      this.db.exec(SCHEMA);
      this.addMissingColumns();
      this.s = this.prepareAll();
      this.runInTransaction = this.db.transaction((fn: () => unknown) => fn());
      this.ensureRoot();
    } catch (err) {
      this.db.close();
      throw err;
    }
  }

  /**
   * A store made before FIFOs and sockets has an inode table whose CHECK allows files, directories and symlinks
   * only, and an export index that took every non-directory. SQLite cannot change a CHECK in place: the table is
   * rebuilt under the current schema in one transaction, keeping every row and the inode number sequence (numbers
   * are never reused, also after the highest one was deleted).
   */
  private migrateKinds(): void {
    const table = this.db.prepare("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'inodes'").pluck().get() as string | undefined;
    if (table === undefined || table.includes(KIND_CHECK)) return;
    this.db.transaction(() => {
      const seq = this.db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'inodes'").pluck().get() as number | undefined;
      const columns = (this.db.pragma('table_info(inodes)') as Array<{ name: string }>).map((c) => c.name).join(', ');
      this.db.exec('ALTER TABLE inodes RENAME TO inodes_before_kinds');
      for (const index of INODE_INDEXES) this.db.exec(`DROP INDEX IF EXISTS ${index}`);
      this.db.exec(SCHEMA);
      this.db.exec(`INSERT INTO inodes (${columns}) SELECT ${columns} FROM inodes_before_kinds; DROP TABLE inodes_before_kinds`);
      if (seq !== undefined) {
        const kept = this.db.prepare("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'inodes'").run(seq);
        if (kept.changes === 0) this.db.prepare("INSERT INTO sqlite_sequence (name, seq) VALUES ('inodes', ?)").run(seq);
      }
    })();
  }

  /** Columns added after the first release: a store created before them gets them (NULL) when opened. */
  private addMissingColumns(): void {
    const have = new Set((this.db.pragma('table_info(inodes)') as Array<{ name: string }>).map((c) => c.name));
    if (!have.has('content_md5')) this.db.exec('ALTER TABLE inodes ADD COLUMN content_md5 TEXT');
  }

  private prepareAll() {
    const db = this.db;
    const p = (sql: string) => db.prepare<unknown[], Row>(sql);
    const cols = FIELDS.map((f) => FIELD_COLUMNS[f]);
    return {
      get: p(`SELECT ${INODE_SELECT} FROM inodes i WHERE i.ino = ?`).raw(),
      lookup: p(`SELECT ${INODE_SELECT} FROM dentries d JOIN inodes i ON i.ino = d.ino WHERE d.parent = ? AND d.name = ?`).raw(),
      lookupIno: p('SELECT ino FROM dentries WHERE parent = ? AND name = ?').pluck(),
      kindOf: p('SELECT kind FROM inodes WHERE ino = ?').pluck(),
      readdir: p(
        `SELECT d.name AS name, ${INODE_SELECT} FROM dentries d JOIN inodes i ON i.ino = d.ino ` +
          'WHERE d.parent = ? ORDER BY d.name',
      ).raw(),
      readdirPage: p(
        `SELECT d.name AS name, ${INODE_SELECT} FROM dentries d JOIN inodes i ON i.ino = d.ino ` +
          'WHERE d.parent = ? AND d.name > ? ORDER BY d.name LIMIT ?',
      ).raw(),
      readdirSummaryPage: p(
        'SELECT d.name AS name, i.ino AS ino, i.kind AS kind, i.hsm_flags AS hsmFlags, i.size AS size, i.mtime_ms AS mtimeMs ' +
          'FROM dentries d JOIN inodes i ON i.ino = d.ino WHERE d.parent = ? AND d.name > ? ORDER BY d.name LIMIT ?',
      ),
      anyName: p('SELECT parent, name FROM dentries WHERE ino = ? LIMIT 1'),
      allNames: p('SELECT parent, name FROM dentries WHERE ino = ?'),
      namesStartingWith: p('SELECT parent AS parentIno, name FROM dentries WHERE substr(name, 1, length(?)) = ?'),
      hasChildren: p('SELECT 1 FROM dentries WHERE parent = ? LIMIT 1').pluck(),
      insertInode: p(
        `INSERT INTO inodes (${cols.join(', ')}, nlink) VALUES (${cols.map(() => '?').join(', ')}, ?)`,
      ),
      insertRoot: p(
        `INSERT OR IGNORE INTO inodes (ino, ${cols.join(', ')}, nlink) VALUES (?, ${cols.map(() => '?').join(', ')}, 2)`,
      ),
      insertDentry: p('INSERT INTO dentries (parent, name, ino) VALUES (?, ?, ?)'),
      deleteDentry: p('DELETE FROM dentries WHERE parent = ? AND name = ?'),
      moveDentry: p('UPDATE dentries SET parent = ?, name = ? WHERE parent = ? AND name = ?'),
      addNlink: p('UPDATE inodes SET nlink = nlink + ? WHERE ino = ?'),
      deleteInode: p('DELETE FROM inodes WHERE ino = ?'),
      setDentryIno: p('UPDATE dentries SET ino = ? WHERE parent = ? AND name = ?'),
      orphans: p(`SELECT ${INODE_SELECT} FROM inodes i WHERE i.nlink = 0 AND i.kind <> 'dir' ORDER BY i.ino`).raw(),
      isAncestorOf: p(
        // Is @ancestor an ancestor-or-self of @descendant (walking parents up to the root)?
        `WITH RECURSIVE up(ino) AS (SELECT @descendant UNION SELECT d.parent FROM dentries d JOIN up ON d.ino = up.ino
           WHERE up.ino <> ${ROOT_INO}) SELECT 1 FROM up WHERE ino = @ancestor LIMIT 1`,
      ).pluck(),
      exportCandidates: p(`SELECT ${INODE_SELECT} FROM inodes i WHERE ${EXPORT_WHERE} ORDER BY i.ino`).raw(),
      localOnly: p(`SELECT ${INODE_SELECT} FROM inodes i WHERE ${LOCAL_ONLY_WHERE} ORDER BY i.ino`).raw(),
      emptyDirectories: p(
        `SELECT ${INODE_SELECT} FROM inodes i WHERE i.kind = 'dir' AND i.ino <> ${ROOT_INO} ` +
          // Entries that stay local only (FIFOs, sockets) do not count: the directory needs its own stub.
          `AND NOT EXISTS (SELECT 1 FROM dentries d JOIN inodes c ON c.ino = d.ino WHERE d.parent = i.ino AND NOT c.${LOCAL_ONLY_WHERE}) ORDER BY i.ino`,
      ).raw(),
      evictionCandidates: p(`SELECT ${INODE_SELECT} FROM inodes i WHERE ${EVICTABLE_WHERE} ORDER BY i.last_access_ms LIMIT ?`).raw(),
      countInodes: p('SELECT count(*) FROM inodes').pluck(),
      countFilesByHsmFlags: p("SELECT hsm_flags, count(*) FROM inodes WHERE kind = 'file' GROUP BY hsm_flags").raw(),
      ranges: p('SELECT start_off, end_off FROM ranges WHERE ino = ? AND generation = ? ORDER BY start_off').raw(),
      overlapping: p(
        'SELECT start_off, end_off FROM ranges WHERE ino = ? AND generation = ? AND start_off <= ? AND end_off >= ?',
      ).raw(),
      deleteOverlapping: p('DELETE FROM ranges WHERE ino = ? AND generation = ? AND start_off <= ? AND end_off >= ?'),
      insertRange: p('INSERT INTO ranges (ino, generation, start_off, end_off) VALUES (?, ?, ?, ?)'),
      clearRanges: p('DELETE FROM ranges WHERE ino = ?'),
      getBlobEtag: p('SELECT etag FROM blob_etags WHERE name = ?').pluck(),
      setBlobEtag: p('INSERT INTO blob_etags (name, etag) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET etag = excluded.etag'),
      deleteBlobEtag: p('DELETE FROM blob_etags WHERE name = ?'),
      inodesOfBlob: p(`SELECT ${INODE_SELECT} FROM inodes i WHERE i.blob_name = ? AND i.ino <> ? ORDER BY i.ino`).raw(),
      getAccessAcl: p('SELECT acl FROM access_acls WHERE ino = ?').pluck(),
      setAccessAcl: p('INSERT INTO access_acls (ino, acl) VALUES (?, ?) ON CONFLICT (ino) DO UPDATE SET acl = excluded.acl'),
      deleteAccessAcl: p('DELETE FROM access_acls WHERE ino = ?'),
      markListed: p('INSERT INTO listed_blobs (name, pass) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET pass = excluded.pass'),
      listedBefore: p('SELECT name FROM listed_blobs WHERE pass < ? ORDER BY name LIMIT ?').pluck(),
      forgetListed: p('DELETE FROM listed_blobs WHERE name = ?'),
      clearListed: p('DELETE FROM listed_blobs'),
      getSetting: p('SELECT value FROM settings WHERE key = ?').pluck(),
      setSetting: p('INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value'),
      appendChangelog: p(
        'INSERT INTO changelog (type, time_ms, flags, ino, parent_ino, name, extra) VALUES (?, ?, ?, ?, ?, ?, ?)',
      ),
      readChangelog: p(
        'SELECT idx AS "index", type, time_ms AS timeMs, flags, ino, parent_ino AS parentIno, name, extra ' +
          'FROM changelog WHERE idx >= ? ORDER BY idx LIMIT ?',
      ),
      changelogLast: p(`SELECT seq FROM sqlite_sequence WHERE name = 'changelog'`).pluck(),
      hasReaders: p('SELECT EXISTS (SELECT 1 FROM changelog_readers)').pluck(),
      insertReader: p('INSERT INTO changelog_readers (cleared) VALUES (?)'),
      getReader: p('SELECT cleared FROM changelog_readers WHERE id = ?').pluck(),
      setReader: p('UPDATE changelog_readers SET cleared = ? WHERE id = ?'),
      deleteReader: p('DELETE FROM changelog_readers WHERE id = ?'),
      minCleared: p('SELECT min(cleared) FROM changelog_readers').pluck(),
      purgeChangelog: p('DELETE FROM changelog WHERE idx <= ?'),
      barrier: p('INSERT INTO durability (id, n) VALUES (1, 1) ON CONFLICT (id) DO UPDATE SET n = n + 1'),
    };
  }

  private ensureRoot(): void {
    const now = Date.now();
    const root = blankInode('dir', 0o755, 0, 0, now);
    this.s.insertRoot.run(ROOT_INO, ...FIELDS.map((f) => root[f]));
  }

  // ---- reads ----

  get(ino: number): Inode | undefined {
    const row = this.s.get.get(ino) as unknown[] | undefined;
    return row && inodeOfRow(row);
  }

  lookup(parentIno: number, name: string): Inode | undefined {
    const row = this.s.lookup.get(parentIno, name) as unknown[] | undefined;
    return row && inodeOfRow(row);
  }

  resolve(path: string): Inode | undefined {
    let ino = ROOT_INO;
    for (const part of path.split('/')) {
      if (part === '' || part === '.') continue;
      const next = this.s.lookupIno.get(ino, part) as number | undefined;
      if (next === undefined) return undefined;
      ino = next;
    }
    return this.get(ino);
  }

  pathOf(ino: number): string | undefined {
    if (ino === ROOT_INO) return '/';
    const parts: string[] = [];
    let cur = ino;
    for (let depth = 0; cur !== ROOT_INO; depth++) {
      if (depth > 4096) return undefined; // a cycle would be a bug; never loop forever
      const row = this.s.anyName.get(cur) as { parent: number; name: string } | undefined;
      if (!row) return undefined;
      parts.push(row.name);
      cur = row.parent;
    }
    return '/' + parts.reverse().join('/');
  }

  pathsOf(ino: number): string[] {
    if (ino === ROOT_INO) return ['/'];
    const rows = this.s.allNames.all(ino) as Array<{ parent: number; name: string }>;
    const paths: string[] = [];
    for (const { parent, name } of rows) {
      const dir = this.pathOf(parent);
      if (dir !== undefined) paths.push(dir === '/' ? `/${name}` : `${dir}/${name}`);
    }
    return paths.sort();
  }

  entriesStartingWith(prefix: string): Array<{ parentIno: number; name: string }> {
    return this.s.namesStartingWith.all(prefix, prefix) as Array<{ parentIno: number; name: string }>;
  }

  readdir(parentIno: number): DirEntry[] {
    return toDirEntries(this.s.readdir.all(parentIno));
  }

  readdirPage(parentIno: number, after: string | undefined, limit: number): DirEntry[] {
    // Every name is non-empty, so '' sorts before all of them.
    return toDirEntries(this.s.readdirPage.all(parentIno, after ?? '', limit));
  }

  readdirSummaryPage(parentIno: number, after: string | undefined, limit: number): EntrySummary[] {
    return this.s.readdirSummaryPage.all(parentIno, after ?? '', limit) as EntrySummary[];
  }

  hasEntries(parentIno: number): boolean {
    return this.s.hasChildren.get(parentIno) !== undefined;
  }

  countInodes(): number {
    return this.s.countInodes.get() as number;
  }

  countFilesByHsmFlags(): Map<number, number> {
    return new Map(this.s.countFilesByHsmFlags.all() as Array<[number, number]>);
  }

  filesMatching(predicate: FlagPredicate): Inode[] {
    const where = flagSql(predicate, 'hsm_flags');
    let stmt = this.predicateQueries.get(where);
    if (!stmt) {
      stmt = this.db.prepare(`SELECT ${INODE_SELECT} FROM inodes i WHERE kind = 'file' AND ${where} ORDER BY i.ino`).raw();
      this.predicateQueries.set(where, stmt);
    }
    return inodesOfRows(stmt.all());
  }

  exportCandidates(): Inode[] {
    return inodesOfRows(this.s.exportCandidates.all());
  }

  localOnlyInodes(): Inode[] {
    return inodesOfRows(this.s.localOnly.all());
  }

  emptyDirectories(): Inode[] {
    return inodesOfRows(this.s.emptyDirectories.all());
  }

  evictionCandidates(limit: number): Inode[] {
    return inodesOfRows(this.s.evictionCandidates.all(limit));
  }

  // ---- namespace changes ----

  create(parentIno: number, name: string, fields: NewInode): Inode {
    checkName(name);
    return this.atomic(() => {
      this.requireDir(parentIno);
      if (this.s.lookupIno.get(parentIno, name) !== undefined) {
        throw new FsError('EEXIST', `'${name}' already exists in directory ${parentIno}`);
      }
      const nlink = fields.kind === 'dir' ? 2 : 1;
      const info = this.s.insertInode.run(...FIELDS.map((f) => fields[f]), nlink);
      const ino = Number(info.lastInsertRowid);
      this.s.insertDentry.run(parentIno, name, ino);
      if (fields.kind === 'dir') this.s.addNlink.run(1, parentIno);
      return { ...fields, ino, nlink };
    });
  }

  link(ino: number, parentIno: number, name: string): Inode {
    checkName(name);
    return this.atomic(() => {
      const inode = this.get(ino);
      if (!inode) throw new FsError('ENOENT', `inode ${ino} does not exist`);
      if (inode.kind === 'dir') throw new FsError('EPERM', 'hard links to directories are not allowed');
      this.requireDir(parentIno);
      if (this.s.lookupIno.get(parentIno, name) !== undefined) {
        throw new FsError('EEXIST', `'${name}' already exists in directory ${parentIno}`);
      }
      this.s.insertDentry.run(parentIno, name, ino);
      this.s.addNlink.run(1, ino);
      return { ...inode, nlink: inode.nlink + 1 };
    });
  }

  unlink(parentIno: number, name: string, options: { keepInode?: boolean } = {}): Inode {
    return this.atomic(() => {
      const inode = this.lookup(parentIno, name);
      if (!inode) throw new FsError('ENOENT', `'${name}' does not exist in directory ${parentIno}`);
      if (inode.kind === 'dir' && this.s.hasChildren.get(inode.ino) !== undefined) {
        throw new FsError('ENOTEMPTY', `directory '${name}' is not empty`);
      }
      this.s.deleteDentry.run(parentIno, name);
      return this.dropName(parentIno, inode, options.keepInode ?? false);
    });
  }

  rename(oldParentIno: number, oldName: string, newParentIno: number, newName: string, options: { keepReplaced?: boolean } = {}): Inode | undefined {
    checkName(newName);
    return this.atomic(() => {
      const src = this.lookup(oldParentIno, oldName);
      if (!src) throw new FsError('ENOENT', `'${oldName}' does not exist in directory ${oldParentIno}`);
      this.requireDir(newParentIno);
      if (oldParentIno === newParentIno && oldName === newName) return undefined;
      if (src.kind === 'dir' && this.s.isAncestorOf.get({ ancestor: src.ino, descendant: newParentIno }) !== undefined) {
        throw new FsError('EINVAL', `cannot move directory '${oldName}' into itself`);
      }
      const dst = this.lookup(newParentIno, newName);
      let replaced: Inode | undefined;
      if (dst) {
        // POSIX: if both names are links to the same inode, rename does nothing.
        if (dst.ino === src.ino) return undefined;
        if (dst.kind === 'dir') {
          if (src.kind !== 'dir') throw new FsError('EISDIR', `cannot replace directory '${newName}' with a non-directory`);
          if (this.s.hasChildren.get(dst.ino) !== undefined) {
            throw new FsError('ENOTEMPTY', `directory '${newName}' is not empty`);
          }
        } else if (src.kind === 'dir') {
          throw new FsError('ENOTDIR', `cannot replace non-directory '${newName}' with a directory`);
        }
        this.s.deleteDentry.run(newParentIno, newName);
        replaced = this.dropName(newParentIno, dst, options.keepReplaced ?? false);
      }
      this.s.moveDentry.run(newParentIno, newName, oldParentIno, oldName);
      if (src.kind === 'dir' && oldParentIno !== newParentIno) {
        this.s.addNlink.run(-1, oldParentIno);
        this.s.addNlink.run(1, newParentIno);
      }
      return replaced;
    });
  }

  exchange(parentA: number, nameA: string, parentB: number, nameB: string): void {
    this.atomic(() => {
      const a = this.lookup(parentA, nameA);
      const b = this.lookup(parentB, nameB);
      if (!a) throw new FsError('ENOENT', `'${nameA}' does not exist in directory ${parentA}`);
      if (!b) throw new FsError('ENOENT', `'${nameB}' does not exist in directory ${parentB}`);
      if (a.ino === b.ino) return;
      for (const [dir, into] of [[a, parentB], [b, parentA]] as const) {
        if (dir.kind === 'dir' && this.s.isAncestorOf.get({ ancestor: dir.ino, descendant: into }) !== undefined) {
          throw new FsError('EINVAL', `cannot move directory ${dir.ino} into itself`);
        }
      }
      this.s.setDentryIno.run(b.ino, parentA, nameA);
      this.s.setDentryIno.run(a.ino, parentB, nameB);
      if (parentA !== parentB) {
        const dirs = (a.kind === 'dir' ? 1 : 0) - (b.kind === 'dir' ? 1 : 0);
        if (dirs !== 0) {
          this.s.addNlink.run(-dirs, parentA);
          this.s.addNlink.run(dirs, parentB);
        }
      }
    });
  }

  orphans(): Inode[] {
    return inodesOfRows(this.s.orphans.all());
  }

  deleteInode(ino: number): void {
    this.atomic(() => {
      this.s.deleteInode.run(ino);
      this.s.clearRanges.run(ino);
    });
  }

  /**
   * After a dentry of `inode` in `parentIno` was deleted: fix link counts, delete the inode at 0 (or, with `keep`,
   * leave it with nlink 0 for its open handles and kernel references: deleteInode() ends it).
   */
  private dropName(parentIno: number, inode: Inode, keep: boolean): Inode {
    if (inode.kind === 'dir') {
      this.s.addNlink.run(-1, parentIno);
      this.s.deleteInode.run(inode.ino);
      this.s.clearRanges.run(inode.ino);
      this.s.deleteAccessAcl.run(inode.ino);
      return { ...inode, nlink: 0 };
    }
    const nlink = inode.nlink - 1;
    if (nlink <= 0) {
      if (keep) {
        this.s.addNlink.run(-inode.nlink, inode.ino);
        return { ...inode, nlink: 0 };
      }
      this.s.deleteInode.run(inode.ino);
      this.s.clearRanges.run(inode.ino);
      this.s.deleteAccessAcl.run(inode.ino);
      return { ...inode, nlink: 0 };
    }
    this.s.addNlink.run(-1, inode.ino);
    return { ...inode, nlink };
  }

  update(ino: number, patch: InodePatch, options: UpdateOptions = {}): Inode {
    const keys = Object.keys(patch).filter(
      (k) => (patch as Record<string, unknown>)[k] !== undefined && k in PATCHABLE_COLUMNS,
    );
    if (keys.length === 0) {
      const inode = this.get(ino);
      if (!inode) throw new FsError('ENOENT', `inode ${ino} does not exist`);
      return inode;
    }
    keys.sort();
    const sig = keys.join(',');
    let stmt = this.updateStmts.get(sig);
    if (!stmt) {
      const sets = keys.map((k) => `${PATCHABLE_COLUMNS[k]} = ?`).join(', ');
      // RETURNING: the updated inode comes back from the UPDATE itself (no second statement to read it).
      stmt = this.db.prepare<unknown[], Row>(`UPDATE inodes SET ${sets} WHERE ino = ? RETURNING ${INODE_RETURNING}`).raw();
      this.updateStmts.set(sig, stmt);
    }
    const values = keys.map((k) => (patch as Record<string, unknown>)[k]);
    const durable = options.durable ?? keys.some((k) => DURABLE_FIELDS.has(k));
    const run = (): Inode => {
      const row = stmt.get(...values, ino) as unknown[] | undefined;
      if (!row) throw new FsError('ENOENT', `inode ${ino} does not exist`);
      return inodeOfRow(row);
    };
    if (!durable || this.baseSync === 'FULL') return run();
    if (this.txDepth > 0) {
      this.durablePending = true;
      return run();
    }
    this.db.pragma('synchronous = FULL');
    try {
      return run();
    } finally {
      this.db.pragma(`synchronous = ${this.baseSync}`);
    }
  }

  transaction<T>(fn: () => T): T {
    this.txDepth++;
    let ok = false;
    let result: T;
    try {
      result = this.runInTransaction(fn) as T;
      ok = true;
    } finally {
      this.txDepth--;
      if (this.txDepth === 0) {
        const pending = this.durablePending;
        this.durablePending = false;
        if (ok && pending) this.sync();
      }
    }
    return result;
  }

  /**
   * Runs a store operation atomically: in its own transaction, or directly inside the caller's (no savepoint:
   * every operation validates before its first write, so a refused one has written nothing).
   */
  private atomic<T>(fn: () => T): T {
    return this.txDepth > 0 ? fn() : this.transaction(fn);
  }

  /**
   * Durability barrier: every commit made so far survives a power loss once this returns (one fsync of the WAL).
   * Inside a transaction it is deferred to the end of the outermost transaction.
   */
  sync(): void {
    if (this.txDepth > 0) {
      this.durablePending = true;
      return;
    }
    if (this.baseSync === 'FULL') {
      this.s.barrier.run();
      return;
    }
    this.db.pragma('synchronous = FULL');
    try {
      this.s.barrier.run();
    } finally {
      this.db.pragma(`synchronous = ${this.baseSync}`);
    }
  }

  private requireDir(ino: number): void {
    const kind = this.s.kindOf.get(ino) as string | undefined;
    if (kind === undefined) throw new FsError('ENOENT', `directory ${ino} does not exist`);
    if (kind !== 'dir') throw new FsError('ENOTDIR', `inode ${ino} is not a directory`);
  }

  // ---- cached ranges ----

  ranges(ino: number, generation: number): ByteRange[] {
    return this.s.ranges.all(ino, generation) as unknown as ByteRange[];
  }

  addRange(ino: number, generation: number, range: ByteRange): void {
    let [start, end] = range;
    if (!(Number.isSafeInteger(start) && Number.isSafeInteger(end)) || start < 0) {
      throw new FsError('EINVAL', `invalid range [${start}, ${end})`);
    }
    if (end <= start) return;
    this.atomic(() => {
      const touching = this.s.overlapping.all(ino, generation, end, start) as unknown as ByteRange[];
      for (const [s, e] of touching) {
        if (s < start) start = s;
        if (e > end) end = e;
      }
      if (touching.length > 0) this.s.deleteOverlapping.run(ino, generation, end, start);
      this.s.insertRange.run(ino, generation, start, end);
    });
  }

  clearRanges(ino: number): void {
    this.s.clearRanges.run(ino);
  }

  // ---- blob etags of names no inode owns ----

  blobEtag(name: string): string | undefined {
    return this.s.getBlobEtag.get(name) as string | undefined;
  }

  setBlobEtag(name: string, etag: string | null): void {
    if (etag === null) this.s.deleteBlobEtag.run(name);
    else this.s.setBlobEtag.run(name, etag);
  }

  rememberBlobEtag(name: string, etag: string, ino: number): void {
    if (this.blobEtag(name) === undefined && this.inodesOfBlob(name, ino).length === 0) this.setBlobEtag(name, etag);
  }

  inodesOfBlob(name: string, except = 0): Inode[] {
    return inodesOfRows(this.s.inodesOfBlob.all(name, except));
  }

  // ---- access ACLs (HNS) ----

  accessAcl(ino: number): string | null {
    return (this.s.getAccessAcl.get(ino) as string | undefined) ?? null;
  }

  setAccessAcl(ino: number, acl: string | null): void {
    if (acl === null) this.s.deleteAccessAcl.run(ino);
    else this.s.setAccessAcl.run(ino, acl);
  }

  // ---- blobs seen by auto-import's listing passes ----

  markListed(names: readonly string[], pass: number): void {
    this.atomic(() => {
      for (const name of names) this.s.markListed.run(name, pass);
    });
  }

  listedBefore(pass: number, limit: number): string[] {
    return this.s.listedBefore.all(pass, limit) as unknown as string[];
  }

  forgetListed(names: readonly string[]): void {
    this.atomic(() => {
      for (const name of names) this.s.forgetListed.run(name);
    });
  }

  clearListed(): void {
    this.s.clearListed.run();
  }

  // ---- settings ----

  getSetting(key: string): string | undefined {
    return this.s.getSetting.get(key) as string | undefined;
  }

  setSetting(key: string, value: string): void {
    this.s.setSetting.run(key, value);
  }

  // ---- changelog ----

  /**
   * Appends a record and returns its index. Like Lustre, nothing is recorded (and 0 is returned) while no
   * changelog reader is registered.
   */
  appendChangelog(record: Omit<ChangelogRecord, 'index' | 'timeMs'>): number {
    if (this.s.hasReaders.get() === 0) return 0;
    const info = this.s.appendChangelog.run(
      record.type,
      Date.now(),
      record.flags,
      record.ino,
      record.parentIno,
      record.name,
      JSON.stringify(record.extra ?? {}),
    );
    return Number(info.lastInsertRowid);
  }

  readChangelog(fromIndex: number, limit: number): ChangelogRecord[] {
    const rows = this.s.readChangelog.all(fromIndex, limit) as (Omit<ChangelogRecord, 'extra'> & { extra: string })[];
    return rows.map((r) => ({ ...r, extra: JSON.parse(r.extra) as ChangelogRecord['extra'] }));
  }

  /** The index of the last record appended (0 if none ever was). */
  changelogLastIndex(): number {
    return (this.s.changelogLast.get() as number | undefined) ?? 0;
  }

  /** Registers a reader ('cl1', 'cl2', ...); it sees records appended from now on. */
  registerChangelogReader(): string {
    const info = this.s.insertReader.run(this.changelogLastIndex());
    return `cl${Number(info.lastInsertRowid)}`;
  }

  /**
   * Marks records up to `index` (0 = up to the current end) as consumed by `reader`, and purges the records every
   * reader has cleared. An unknown reader is ENOENT, an index past the end EINVAL; clearing backwards is a no-op.
   */
  clearChangelog(reader: string, index: number): void {
    const id = readerId(reader);
    this.atomic(() => {
      const cleared = this.s.getReader.get(id) as number | undefined;
      if (cleared === undefined) throw new FsError('ENOENT', `no changelog reader '${reader}'`);
      const last = this.changelogLastIndex();
      const end = index === 0 ? last : index;
      if (!Number.isSafeInteger(end) || end < 0 || end > last) {
        throw new FsError('EINVAL', `changelog index ${index} is past the last record ${last}`);
      }
      if (end <= cleared) return;
      this.s.setReader.run(end, id);
      this.purgeChangelog();
    });
  }

  /** Removes a reader; its uncleared records are purged unless another reader still needs them. */
  deregisterChangelogReader(reader: string): void {
    const id = readerId(reader);
    this.atomic(() => {
      if (this.s.deleteReader.run(id).changes === 0) throw new FsError('ENOENT', `no changelog reader '${reader}'`);
      this.purgeChangelog();
    });
  }

  private purgeChangelog(): void {
    const min = this.s.minCleared.get() as number | null;
    this.s.purgeChangelog.run(min ?? this.changelogLastIndex());
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
  }
}

/** Raw readdir rows (the name, then INODE_SELECT) as entries; every `ls -l` lists the whole directory. */
function toDirEntries(rows: unknown[]): DirEntry[] {
  return rows.map((row) => ({ name: (row as unknown[])[0] as string, inode: inodeOfRow(row as unknown[], 1) }));
}

/** A name a directory entry may have: EINVAL for '', '.', '..', '/' or NUL; ENAMETOOLONG past 255 bytes. */
export function checkName(name: string): void {
  if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
    throw new FsError('EINVAL', `invalid file name '${name}'`);
  }
  if (Buffer.byteLength(name) > MAX_NAME_BYTES) {
    throw new FsError('ENAMETOOLONG', `file name longer than ${MAX_NAME_BYTES} bytes`);
  }
}

function readerId(reader: string): number {
  const m = /^cl([1-9][0-9]*)$/.exec(reader);
  if (!m) throw new FsError('ENOENT', `no changelog reader '${reader}'`);
  return Number(m[1]);
}

/** Opens (creating if needed) the metadata store at `path`, or an in-memory one. */
export function openMetaStore(path: string | ':memory:', options: MetaStoreOptions = {}): SqliteMetaStore {
  return new SqliteMetaStore(path, options);
}
