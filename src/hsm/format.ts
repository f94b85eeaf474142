// Byte-exact `lfs hsm_*` output lines (as lustre/utils/lfs.c prints them) and their JSON variants. Pure.
// Every function returns one line without its trailing newline; the caller writes it and the "\n".
import { constants } from 'node:os';
import type { FsErrorCode } from '../errors.js';
import { flagsHex, stateWords } from './flags.js';

/**
 * strerror() texts as glibc prints them: every code blobhsm raises, and a few more lfs can report. Not typed as
 * Record<FsErrorCode, string> so that a code added to errors.ts does not break this file: an unlisted code prints
 * as glibc prints an unknown errno, `Unknown error N`.
 */
const STRERROR: Readonly<Record<string, string>> = {
  EPERM: 'Operation not permitted',
  ENOENT: 'No such file or directory',
  EIO: 'Input/output error',
  ENXIO: 'No such device or address',
  E2BIG: 'Argument list too long',
  EBADF: 'Bad file descriptor',
  EAGAIN: 'Resource temporarily unavailable',
  ENOMEM: 'Cannot allocate memory',
  EACCES: 'Permission denied',
  EBUSY: 'Device or resource busy',
  EEXIST: 'File exists',
  EXDEV: 'Invalid cross-device link',
  ENOTDIR: 'Not a directory',
  ENOTTY: 'Inappropriate ioctl for device',
  EISDIR: 'Is a directory',
  EINVAL: 'Invalid argument',
  EFBIG: 'File too large',
  ENOSPC: 'No space left on device',
  EROFS: 'Read-only file system',
  ERANGE: 'Numerical result out of range',
  ENAMETOOLONG: 'File name too long',
  ENOSYS: 'Function not implemented',
  ENOTEMPTY: 'Directory not empty',
  ENODATA: 'No data available',
  EPROTO: 'Protocol error',
  EOVERFLOW: 'Value too large for defined data type',
  ENOTSUP: 'Operation not supported',
  ETIMEDOUT: 'Connection timed out',
  ENOTCONN: 'Transport endpoint is not connected',
  EALREADY: 'Operation already in progress',
  ESTALE: 'Stale file handle',
  ECANCELED: 'Operation canceled',
};

/** glibc's strerror() text for an errno code name such as 'ENOENT'. */
export function strerror(code: FsErrorCode | string): string {
  const text = STRERROR[code];
  if (text !== undefined) return text;
  const n = (constants.errno as Record<string, number | undefined>)[code];
  return `Unknown error ${n ?? code}`;
}


/** `f: (0x0000000d) released exists archived, archive_id:1` */
export function formatHsmState(path: string, flags: number, archiveId: number): string {
  let line = `${path}: (${flagsHex(flags)})`;
  for (const word of stateWords(flags)) line += ` ${word}`;
  if (archiveId !== 0) line += `, archive_id:${archiveId}`;
  return line;
}

/**
 * `lfs hsm_state: get HSM state for 'F' failed: No such file or directory` (stderr). `command` is lfs's argv[0]
 * for the sub-command: `hsm_state`, or `state` when spelled `lfs hsm state`.
 */
export function formatHsmStateError(path: string, code: FsErrorCode, command = 'hsm_state'): string {
  return `lfs ${command}: get HSM state for '${path}' failed: ${strerror(code)}`;
}

/** `lfs hsm_action: get hsm action for 'F' failed: <strerror>` (stderr). */
export function formatHsmActionError(path: string, code: FsErrorCode, command = 'hsm_action'): string {
  return `lfs ${command}: get hsm action for '${path}' failed: ${strerror(code)}`;
}

/** `lfs hsm_set: change hsm flags for 'F' failed: <strerror>` (stderr; also for hsm_clear). */
export function formatHsmFlagsError(path: string, code: FsErrorCode, command: string): string {
  return `lfs ${command}: change hsm flags for '${path}' failed: ${strerror(code)}`;
}

/** `error: "F" is not a regular file` (stderr; lfs then prints the usage and exits 4). */
export function formatNotRegular(path: string): string {
  return `error: "${path}" is not a regular file`;
}

/** `Cannot stat F: <strerror>` (stderr), when a request names a path that cannot be stat'ed. */
export function formatCannotStat(path: string, code: FsErrorCode): string {
  return `Cannot stat ${path}: ${strerror(code)}`;
}

/** `Cannot read the file list F: <strerror>` (stderr). */
export function formatFilelistError(filelist: string, code: FsErrorCode): string {
  return `Cannot read the file list ${filelist}: ${strerror(code)}`;
}

/** `Cannot send HSM request (use of F): <strerror>` (stderr), F being the first file of the request. */
export function formatRequestFailed(firstFile: string, code: FsErrorCode): string {
  return `Cannot send HSM request (use of ${firstFile}): ${strerror(code)}`;
}

/**
 * Ours (lfs returns once a request is queued): a request that `--wait` saw fail after it was queued,
 * `lfs hsm_restore: restore of 'F' failed: Input/output error (detail)` (stderr).
 */
export function formatActionFailed(command: string, kind: string, path: string, code: FsErrorCode, detail?: string): string {
  return `lfs ${command}: ${kind.toLowerCase()} of '${path}' failed: ${strerror(code)}${detail ? ` (${detail})` : ''}`;
}

export type HsmActionKind = 'NOOP' | 'ARCHIVE' | 'RESTORE' | 'RELEASE' | 'REMOVE' | 'CANCEL';
/** Lustre's hsm_progress_state2name words; 'unknown' is what lfs prints for HPS_NONE. */
export type HsmActionStatus = 'waiting' | 'running' | 'done' | 'unknown';

export interface HsmAction {
  kind: HsmActionKind;
  /** Required unless kind is NOOP. */
  status?: HsmActionStatus;
  /** Bytes copied so far, printed for a running ARCHIVE or RESTORE. */
  bytesMoved?: number;
  /** The request's byte range; default the whole file, from 0 to EOF. */
  extent?: { offset: number; length: number | 'EOF' };
}

/**
 * One `hsm_action` line, as lfs_hsm_action prints it: `f: NOOP`; a running ARCHIVE or RESTORE gives
 * `f: ARCHIVE running (1048576 bytes moved)`; anything else gives its extent, `f: RESTORE waiting (from 0 to EOF)`
 * or `f: REMOVE running (from 0 to 4096)`.
 */
export function formatHsmAction(path: string, action: HsmAction): string {
  if (action.kind === 'NOOP') return `${path}: NOOP`;
  const status = action.status ?? 'unknown';
  const head = `${path}: ${action.kind} ${status} `;
  if (status === 'running' && (action.kind === 'ARCHIVE' || action.kind === 'RESTORE')) {
    return `${head}(${action.bytesMoved ?? 0} bytes moved)`;
  }
  const { offset, length } = action.extent ?? { offset: 0, length: 'EOF' as const };
  if (length === 'EOF') return `${head}(from ${offset} to EOF)`;
  return `${head}(from ${offset} to ${offset + length})`;
}

export interface HsmStateJson {
  path: string;
  flags: number;
  /** `0x%08x`, as in the text output. */
  flagsHex: string;
  states: string[];
  archiveId: number;
}

export function hsmStateJson(path: string, flags: number, archiveId: number): HsmStateJson {
  return { path, flags, flagsHex: flagsHex(flags), states: stateWords(flags), archiveId };
}

export interface HsmActionJson {
  path: string;
  action: HsmActionKind;
  status: HsmActionStatus | null;
  bytesMoved: number | null;
  extent: { offset: number; length: number | 'EOF' } | null;
}

export function hsmActionJson(path: string, action: HsmAction): HsmActionJson {
  if (action.kind === 'NOOP') return { path, action: 'NOOP', status: null, bytesMoved: null, extent: null };
  return {
    path,
    action: action.kind,
    status: action.status ?? 'unknown',
    bytesMoved: action.bytesMoved ?? null,
    extent: action.extent ?? { offset: 0, length: 'EOF' },
  };
}

/** `{"path":...,"error":"ENOENT","message":"No such file or directory"}` for a JSON error line. */
export function hsmErrorJson(path: string, code: FsErrorCode): { path: string; error: FsErrorCode; message: string } {
  return { path, error: code, message: strerror(code) };
}

/** One target of `lfs df`: obd_statfs's counters. */
export interface DfTarget {
  bsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
}

/** lfs's rounding of a use ratio: up to the next whole percent, as df(1) does (obd_statfs_ratio). */
function useRatio(used: number, avail: number): number {
  const ratio = used + avail > 0 ? (used / (used + avail)) * 100 : 0;
  return ratio > Math.trunc(ratio) ? Math.trunc(ratio) + 1 : Math.trunc(ratio);
}

/** lfs's `-h` value: "%8.1f%c" after dividing by 1024 while above it, else "%11llu". */
function cooked(value: number): string {
  let v = value;
  let radix = 0;
  while (v > 1024) {
    v /= 1024;
    radix++;
  }
  return radix > 0 ? `${v.toFixed(1).padStart(8)}${'KMGTPEZY'[radix - 1]}` : String(value).padStart(11);
}

/**
 * `lfs df` of one mount, in lfs's layout (UUF "%-20s", CDF "%11llu", RDF "%3d%%"): a header, the MDT and OST
 * lines (`MOUNT[MDT:0]`), a blank line, `filesystem_summary:` and a blank line; as in Lustre the summary's
 * blocks are the OST's and its inodes the MDT's. `inodes` prints Inodes/IUsed/IFree/IUse%, `human` bytes with K/M/G suffixes.
 */
export function formatDf(fsname: string, mountpoint: string, mdt: DfTarget, ost: DfTarget, o: { inodes: boolean; human: boolean }): string {
  const num = (n: number) => (o.human ? cooked(n) : String(n).padStart(11));
  const header = o.inodes
    ? `${'UUID'.padEnd(20)} ${'Inodes'.padStart(11)} ${'IUsed'.padStart(11)} ${'IFree'.padStart(11)} ${'IUse%'.padStart(4)} Mounted on`
    : `${'UUID'.padEnd(20)} ${(o.human ? 'bytes' : '1K-blocks').padStart(11)} ${'Used'.padStart(11)} ${'Available'.padStart(11)} ${'Use%'.padStart(4)} Mounted on`;
  const line = (uuid: string, t: DfTarget, where: string) => {
    if (o.inodes) {
      const used = t.files - t.ffree;
      return `${uuid.padEnd(20)} ${num(t.files)} ${num(used)} ${num(t.ffree)} ${`${useRatio(used, t.ffree)}%`.padStart(4)} ${where}`;
    }
    const unit = o.human ? t.bsize : t.bsize / 1024;
    const used = t.blocks - t.bfree;
    return (
      `${uuid.padEnd(20)} ${num(Math.floor(t.blocks * unit))} ${num(Math.floor(used * unit))} ${num(Math.floor(t.bavail * unit))} ` +
      `${`${useRatio(used, t.bavail)}%`.padStart(4)} ${where}`
    );
  };
  return [
    header,
    line(`${fsname}-MDT0000_UUID`, mdt, `${mountpoint}[MDT:0]`),
    line(`${fsname}-OST0000_UUID`, ost, `${mountpoint}[OST:0]`),
    '',
    line('filesystem_summary:', o.inodes ? mdt : ost, mountpoint),
    '',
  ].join('\n');
}
