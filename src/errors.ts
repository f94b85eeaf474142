// Typed errors shared by every layer, and the one mapping from an error to a POSIX errno.
import { constants } from 'node:os';

/** Failure kinds a blob service call can end in. */
export type BlobErrorKind =
  | 'NotFound'
  | 'PreconditionFailed'
  | 'AlreadyExists'
  | 'Archived'
  | 'Throttled'
  | 'Unauthorized'
  | 'Transient'
  | 'Timeout'
  | 'Invalid';

export class BlobError extends Error {
  override readonly name = 'BlobError';
  constructor(
    readonly kind: BlobErrorKind,
    message: string,
    options: { cause?: unknown; status?: number } = {},
  ) {
    super(message, { cause: options.cause });
    this.status = options.status;
  }
  readonly status: number | undefined;
}

/** POSIX error codes the filesystem and the HSM layer raise. */
export type FsErrorCode =
  | 'ENOENT'
  | 'EEXIST'
  | 'ENOTDIR'
  | 'EISDIR'
  | 'ENOTEMPTY'
  | 'EINVAL'
  | 'EPERM'
  | 'EACCES'
  | 'EROFS'
  | 'EIO'
  | 'EBUSY'
  | 'ENOSPC'
  | 'ENAMETOOLONG'
  | 'ENODATA'
  | 'ENOTSUP'
  | 'EXDEV'
  | 'EBADF'
  | 'ETIMEDOUT'
  | 'ENOSYS'
  | 'ERANGE'
  | 'EAGAIN'
  | 'EFBIG'
  | 'ECANCELED'
  | 'ENOTCONN'
  | 'ENOTTY'
  | 'ENXIO';

export class FsError extends Error {
  override readonly name = 'FsError';
  constructor(
    readonly code: FsErrorCode,
    message: string,
    options: { cause?: unknown } = {},
  ) {
    super(message, { cause: options.cause });
  }
}

/**
 * An HSM action met a blob that changed behind the mount's back (an archive's If-Match/If-None-Match, or a remove's
 * If-Match, failed): nothing was overwritten or deleted. EBUSY, as Lustre's copytool reports a busy target.
 * `expected` is the etag the mount recorded (null: it expected no blob), `found` the blob's etag now (null: gone,
 * undefined: not known).
 */
export class ConflictError extends FsError {
  constructor(
    readonly blob: string,
    readonly expected: string | null,
    readonly found: string | null | undefined,
    message: string,
    options: { cause?: unknown } = {},
  ) {
    super('EBUSY', message, options);
  }
}

/**
 * The source of an upload did not hold the same bytes from the first read to the last (the file changed, shrank
 * or grew): nothing was committed. EBUSY, as Lustre's copytool fails an archive whose data version moved.
 */
export class SourceChangedError extends FsError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super('EBUSY', message, options);
  }
}

/** An HSM request named a directory or a symlink (`lfs`: `"F" is not a regular file`, exit 4). EINVAL. */
export class NotRegularFileError extends FsError {
  constructor(readonly path: string) {
    super('EINVAL', `${path} is not a regular file`);
  }
}

/** Bytes whose MD5 is not the digest their blob carries (a restore, `blobhsm verify`). EIO. */
export class DigestMismatchError extends FsError {
  constructor(
    readonly blobName: string,
    readonly expected: string,
    readonly actual: string,
    what: string,
  ) {
    super('EIO', `${what}: blob ${blobName} has Content-MD5 ${expected} but the bytes hash to ${actual}`);
  }
}

/** A user-facing configuration or usage problem: the message says what was wrong and what to do. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, { cause: options.cause });
  }
}

const blobKindErrno: Record<BlobErrorKind, FsErrorCode> = {
  NotFound: 'EIO',
  PreconditionFailed: 'EBUSY',
  AlreadyExists: 'EEXIST',
  Archived: 'EIO',
  Throttled: 'EAGAIN',
  Unauthorized: 'EACCES',
  Transient: 'EIO',
  Timeout: 'ETIMEDOUT',
  Invalid: 'EINVAL',
};

/** The one errno mapping: a positive errno number for any thrown value. */
export function errnoOf(err: unknown): number {
  return constants.errno[errnoCodeOf(err)];
}

/** Errno names by number (os.constants.errno inverted; the first name of numbers with two, as EAGAIN/EWOULDBLOCK). */
const errnoNames = new Map<number, FsErrorCode>();
for (const [name, n] of Object.entries(constants.errno)) if (!errnoNames.has(n)) errnoNames.set(n, name as FsErrorCode);

/** The name of a positive errno number ('ENOSPC' for 28), the inverse of errnoOf; EIO for a number that is none. */
export function errnoCodeOfNumber(errno: number): FsErrorCode {
  return errnoNames.get(errno) ?? 'EIO';
}

export function errnoCodeOf(err: unknown): FsErrorCode {
  if (err instanceof FsError) return err.code;
  if (err instanceof BlobError) return blobKindErrno[err.kind];
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code === 'string' && code in constants.errno) return code as FsErrorCode;
  if (code === 'SQLITE_FULL') return 'ENOSPC'; // the metadata store's disk is full
  return 'EIO';
}

/** The errnos a failed restore passes on to read(2) (docs/SEMANTICS.md, "Reading a released file"). */
const READ_ERRNOS: ReadonlySet<FsErrorCode> = new Set(['EIO', 'ETIMEDOUT', 'EACCES', 'ENOSPC']);

/**
 * The one rule for the errno a reader gets when the data it waits for could not be fetched: the cause's errno when
 * it tells the reader something it can act on (ETIMEDOUT: the service did not answer in time; EACCES: the
 * credentials were refused; ENOSPC: the cache disk is full), else EIO (the blob changed or is gone, a transient
 * failure that outlived its retries, a cancel, anything else).
 */
export function readErrnoOf(cause: unknown): FsErrorCode {
  const code = errnoCodeOf(cause);
  return READ_ERRNOS.has(code) ? code : 'EIO';
}

/** A one-line description of an error and its causes, for logs and CLI messages. */
export function describeError(err: unknown): string {
  const parts: string[] = [];
  let cur: unknown = err;
  for (let depth = 0; cur && depth < 5; depth++) {
    const msg = cur instanceof Error ? cur.message : String(cur);
    // A wrapper's message often already quotes its cause: say each thing once.
    if (!parts.some((p) => p.includes(msg))) parts.push(msg);
    cur = cur instanceof Error ? cur.cause : undefined;
  }
  return parts.join(': ');
}
