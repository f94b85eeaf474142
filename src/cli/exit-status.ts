// The lfs exit status: 0, or the positive errno of the first failure; 4 (libcfs CMD_HELP) for usage errors.
import { constants } from 'node:os';
import type { FsErrorCode } from '../errors.js';

/** Exit status after printing the usage (lfs returns CMD_HELP = 4 from the command). */
export const EXIT_USAGE = 4;

export type ItemResult = { ok: true } | { ok: false; code: FsErrorCode };

/** The positive errno number of a code (ENOENT 2, EPERM 1, EINVAL 22, ...). */
export function errnoNumber(code: FsErrorCode): number {
  return constants.errno[code];
}

/** 0 when every item succeeded, else the errno of the first failure (lfs keeps the first rc). */
export function exitStatusFor(results: readonly ItemResult[]): number {
  for (const r of results) if (!r.ok) return errnoNumber(r.code);
  return 0;
}
