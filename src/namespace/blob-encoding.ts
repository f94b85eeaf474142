// The blob encoding of a POSIX tree (docs/SEMANTICS.md §1): blob metadata → inode attributes on import, inode → metadata on
// export, and which blob names map to a path. Pure functions, no I/O.
import type { BlobInfo } from '../blob/blob-store.js';
import type { Inode, InodeKind } from './types.js';

/** Modes of entries whose blob carries no (valid) permissions: `--file-mode`, `--dir-mode` (docs/SEMANTICS.md §1: files 0644,
 * directories 0755, symlinks 0777; never world-writable by default, so a shared mount's directories are not). */
export interface DefaultModes {
  file: number;
  dir: number;
  symlink: number;
}
export const DEFAULT_MODES: Readonly<DefaultModes> = { file: 0o644, dir: 0o755, symlink: 0o777 };
/** Longest symlink target accepted (PATH_MAX). */
export const MAX_SYMLINK_TARGET = 4096;
export const MAX_COMPONENT_BYTES = 255;
export const MAX_BLOB_NAME_CHARS = 1024;

const S_ISVTX = 0o1000;
/** Largest valid uid/gid ((uid_t)-1 is "no change"). */
const MAX_ID = 0xfffffffe;

/** A parsed metadata value: the value, or the default with the reason the input was refused. */
export type Parsed<T> = { ok: true; value: T } | { ok: false; value: T; reason: string };

export interface MetadataWarning {
  /** The metadata key as the blob carries it. */
  key: string;
  value: string;
  reason: string;
}

export interface BlobAttributes {
  kind: InodeKind;
  mode: number;
  uid: number;
  gid: number;
  mtimeMs: number;
  warnings: MetadataWarning[];
}

function parseId(value: string, what: string, isSuperName: (v: string) => boolean): Parsed<number> {
  const v = value;
  if (/^[0-9]+$/.test(v)) {
    const n = Number(v);
    if (n <= MAX_ID) return { ok: true, value: n };
    return { ok: false, value: 0, reason: `${what} ${v} is out of range` };
  }
  if (isSuperName(v)) return { ok: true, value: 0 };
  return { ok: false, value: 0, reason: `${what} '${value}' is not a decimal id or a known superuser name` };
}

/** `owner`: a decimal uid; names containing `superuser`, and `root`, are 0. Default 0. */
export function parseOwner(value: string): Parsed<number> {
  return parseId(value, 'owner', (v) => v.includes('superuser') || v === 'root');
}

/** `group`: a decimal gid; `supergroup` (also as part of a name, e.g. `$supergroup`), `root`, `wheel` are 0. */
export function parseGroup(value: string): Parsed<number> {
  return parseId(value, 'group', (v) => v.includes('supergroup') || v === 'root' || v === 'wheel');
}

export function defaultMode(kind: InodeKind, modes: DefaultModes = DEFAULT_MODES): number {
  return kind === 'file' ? modes.file : kind === 'dir' ? modes.dir : modes.symlink;
}

/**
 * `permissions`: 4-digit octal `^[0-1][0-7]{3}$` (a leading 1 is the sticky bit) or `rwxr-xr-x` with an optional
 * trailing `t` (sticky). Default (`modes`): 0644 for files, 0755 for directories, 0777 for symlinks.
 */
export function parsePermissions(value: string, kind: InodeKind, modes: DefaultModes = DEFAULT_MODES): Parsed<number> {
  const v = value;
  if (/^[0-1][0-7]{3}$/.test(v)) return { ok: true, value: parseInt(v, 8) };
  if (/^([r-][w-][x-]){3}t?$/.test(v)) {
    let mode = 0;
    for (let i = 0; i < 9; i++) if (v[i] !== '-') mode |= 1 << (8 - i);
    if (v.length === 10) mode |= S_ISVTX;
    return { ok: true, value: mode };
  }
  return {
    ok: false,
    value: defaultMode(kind, modes),
    reason: `permissions '${value}' are neither 4-digit octal (0755, 1777) nor rwx form (rwxr-xr-x, rwxrwxrwxt)`,
  };
}

const DAYS_IN_MONTH = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

function civilToMs(
  y: number,
  mo: number,
  d: number,
  h: number,
  mi: number,
  s: number,
  frac: string | undefined,
  offsetMinutes: number,
): number | undefined {
  if (mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || s > 60) return undefined;
  const leap = (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
  const dim = mo === 2 && !leap ? 28 : DAYS_IN_MONTH[mo - 1]!;
  if (d > dim) return undefined;
  const ms = frac ? Math.floor(Number(`0${frac}`) * 1000) : 0;
  // A leap second (:60) is folded into the next second, as most systems do.
  const utc = Date.UTC(y, mo - 1, d, h, mi, 0, 0) + s * 1000 + ms;
  return utc - offsetMinutes * 60_000;
}

const LEMUR_TIME = /^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})(\.\d{1,9})? ([+-])(\d{2})(\d{2})(?: [A-Za-z]{1,6})?$/;
const RFC3339_TIME =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;

/**
 * The times a file can carry through FUSE (fuse-native passes unsigned 32-bit seconds: an earlier time showed as
 * year 584555949). A modtime outside is refused with a warning, as any invalid value.
 */
const MIN_TIME_MS = 0;
const MAX_TIME_MS = (2 ** 32 - 1) * 1000;

/**
 * `modtime`: lemur's `YYYY-MM-DD HH:MM:SS ±hhmm` (Go's "2006-01-02 15:04:05 -0700", fractional seconds and a
 * trailing zone abbreviation tolerated) or RFC 3339. Invalid → `fallbackMs` (the blob's Last-Modified).
 */
export function parseModtime(value: string, fallbackMs: number): Parsed<number> {
  const v = value;
  let ms: number | undefined;
  let m = LEMUR_TIME.exec(v);
  if (m) {
    const off = (Number(m[9]) * 60 + Number(m[10])) * (m[8] === '-' ? -1 : 1);
    if (Number(m[9]) <= 23 && Number(m[10]) <= 59) {
      ms = civilToMs(+m[1]!, +m[2]!, +m[3]!, +m[4]!, +m[5]!, +m[6]!, m[7], off);
    }
  } else if ((m = RFC3339_TIME.exec(v))) {
    const off = m[8] ? 0 : (Number(m[10]) * 60 + Number(m[11])) * (m[9] === '-' ? -1 : 1);
    if (m[8] || (Number(m[10]) <= 23 && Number(m[11]) <= 59)) {
      ms = civilToMs(+m[1]!, +m[2]!, +m[3]!, +m[4]!, +m[5]!, +m[6]!, m[7], off);
    }
  }
  if (ms === undefined || !Number.isFinite(ms)) {
    return {
      ok: false,
      value: fallbackMs,
      reason: `modtime '${value}' is neither 'YYYY-MM-DD HH:MM:SS ±hhmm' nor RFC 3339`,
    };
  }
  if (ms < MIN_TIME_MS || ms > MAX_TIME_MS) {
    return {
      ok: false,
      value: fallbackMs,
      reason: `modtime '${value}' is outside what the mount can show (1970-01-01 to 2106-02-07 UTC); Last-Modified is used`,
    };
  }
  return { ok: true, value: ms };
}

/** `%04o` of the permission bits, sticky kept, setuid/setgid dropped. */
export function formatPermissions(mode: number): string {
  return (mode & 0o1777).toString(8).padStart(4, '0');
}

const pad = (n: number, width = 2) => String(n).padStart(width, '0');

/** Lemur's modtime format, in UTC: `2024-05-01 13:45:07 +0000` (whole seconds). */
export function formatModtime(ms: number): string {
  const d = new Date(Math.floor(ms / 1000) * 1000);
  return (
    `${pad(d.getUTCFullYear(), 4)}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} +0000`
  );
}

/** Metadata keys are case-insensitive: the first key matching `name` case-insensitively, with its value. */
function findKey(metadata: Record<string, string>, name: string): [key: string, value: string] | undefined {
  if (Object.hasOwn(metadata, name)) return [name, metadata[name]!];
  for (const [k, v] of Object.entries(metadata)) if (k.toLowerCase() === name) return [k, v];
  return undefined;
}

function isTrue(value: string): boolean {
  return value.toLowerCase() === 'true';
}

/** The inode attributes a blob's listing entry encodes, with a warning per invalid value (defaults used). */
export function blobAttributes(info: BlobInfo, modes: DefaultModes = DEFAULT_MODES): BlobAttributes {
  const md = info.metadata ?? {};
  const warnings: MetadataWarning[] = [];
  const lastModifiedMs = info.lastModified.getTime();

  const folder = findKey(md, 'hdi_isfolder');
  const ftype = findKey(md, 'ftype');
  const isSymlink = findKey(md, 'is_symlink');
  const isDir = folder !== undefined && isTrue(folder[1]);
  if (folder && !isDir && folder[1].toLowerCase() !== 'false') {
    warnings.push({ key: folder[0], value: folder[1], reason: `hdi_isfolder '${folder[1]}' is not true or false` });
  }
  if (isSymlink && !isTrue(isSymlink[1]) && isSymlink[1].toLowerCase() !== 'false') {
    warnings.push({ key: isSymlink[0], value: isSymlink[1], reason: `is_symlink '${isSymlink[1]}' is not true or false` });
  }
  const lnk = ftype !== undefined && ftype[1].toUpperCase() === 'LNK';
  const symlinkMarked = lnk || (isSymlink !== undefined && isTrue(isSymlink[1]));
  let kind: InodeKind = 'file';
  if (isDir) {
    kind = 'dir';
    if (symlinkMarked) {
      const [key, value] = lnk ? ftype! : isSymlink!;
      warnings.push({ key, value, reason: 'a directory stub cannot be a symlink; treated as a directory' });
    }
    if (info.size > 0) {
      warnings.push({
        key: folder![0],
        value: folder![1],
        reason: `directory stub is not empty (${info.size} bytes); its content is ignored`,
      });
    }
  } else if (symlinkMarked) {
    kind = 'symlink';
  }

  let uid = 0;
  let gid = 0;
  let mode = defaultMode(kind, modes);
  let mtimeMs = lastModifiedMs;
  const apply = <T>(name: string, parse: (v: string) => Parsed<T>, set: (v: T) => void) => {
    const found = findKey(md, name);
    if (!found) return;
    const r = parse(found[1]);
    set(r.value);
    if (!r.ok) warnings.push({ key: found[0], value: found[1], reason: r.reason });
  };
  apply('owner', parseOwner, (v) => (uid = v));
  apply('group', parseGroup, (v) => (gid = v));
  apply('permissions', (v) => parsePermissions(v, kind, modes), (v) => (mode = v));
  apply('modtime', (v) => parseModtime(v, lastModifiedMs), (v) => (mtimeMs = v));
  return { kind, mode, uid, gid, mtimeMs, warnings };
}

export type BlobNameCheck =
  | { ok: true; components: string[]; isDirMarker: boolean }
  | { ok: false; reason: string };

/** Normalises a mount prefix: '', '/', 'data', 'data/', '/data/' → '' or 'data/'. */
export function normalizePrefix(prefix: string | undefined): string {
  const p = (prefix ?? '').replace(/^\/+/, '').replace(/\/+$/, '');
  return p === '' ? '' : `${p}/`;
}

/**
 * Whether a blob name maps to a path under the (normalised or not) mount prefix: its path components relative to
 * the prefix, and whether it names a directory (trailing `/`). Refused: names outside the prefix, empty, `.` or
 * `..` components, NUL, a component over 255 bytes, a name over 1024 characters.
 */
export function checkBlobName(name: string, prefix = ''): BlobNameCheck {
  const pfx = normalizePrefix(prefix);
  if (!name.startsWith(pfx)) return { ok: false, reason: `name is outside the prefix '${pfx}'` };
  let length = 0;
  for (const _ of name) length++;
  if (length > MAX_BLOB_NAME_CHARS) return { ok: false, reason: `name is longer than ${MAX_BLOB_NAME_CHARS} characters` };
  if (name.includes('\0')) return { ok: false, reason: 'name contains a NUL character' };
  let rel = name.slice(pfx.length);
  const isDirMarker = rel.endsWith('/') || (rel === '' && pfx !== '');
  if (rel.endsWith('/')) rel = rel.slice(0, -1);
  if (rel === '') {
    if (isDirMarker) return { ok: true, components: [], isDirMarker: true };
    return { ok: false, reason: 'name is empty' };
  }
  const components = rel.split('/');
  for (const c of components) {
    if (c === '') return { ok: false, reason: 'name has an empty path component' };
    if (c === '.' || c === '..') return { ok: false, reason: `name has a '${c}' path component` };
    if (Buffer.byteLength(c) > MAX_COMPONENT_BYTES) {
      return { ok: false, reason: `a path component is longer than ${MAX_COMPONENT_BYTES} bytes` };
    }
  }
  return { ok: true, components, isDirMarker };
}

/** The metadata export writes for an inode (lower-case keys; docs/SEMANTICS.md §1 "Export writes"). */
export function exportMetadata(inode: Pick<Inode, 'kind' | 'uid' | 'gid' | 'mode' | 'mtimeMs'>): Record<string, string> {
  const md: Record<string, string> = {
    owner: String(inode.uid),
    group: String(inode.gid),
    permissions: formatPermissions(inode.mode),
    modtime: formatModtime(inode.mtimeMs),
  };
  if (inode.kind === 'dir') md.hdi_isfolder = 'true';
  if (inode.kind === 'symlink') md.ftype = 'LNK';
  return md;
}
