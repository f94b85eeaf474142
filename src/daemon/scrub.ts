// `blobhsm verify` on the daemon side: re-hashes the cached data of hydrated clean files against their blob's
// Content-MD5, as a scrub would (catches a bad disk sector or a bug after the restore was verified). Reads only
// the cache files; never changes a file's state (a mismatch is reported; the user decides, e.g. hsm_release).
import { md5OfFile } from '../blob/content-md5.js';
import type { DataCache } from '../cache/data-cache.js';
import { FsError, describeError } from '../errors.js';
import { isArchived, isDirty, isReleased } from '../hsm/flags.js';
import type { VerificationCounts } from '../hsm/hydrator.js';
import type { Inode, MetaStore } from '../namespace/types.js';

export type ScrubOutcome = 'ok' | 'mismatch' | 'unverified' | 'skipped';

export interface ScrubResult {
  path: string;
  outcome: ScrubOutcome;
  /** The blob's digest and the cached bytes' (mismatch). */
  expected?: string;
  actual?: string;
  /** Why a file was not checked (skipped, unverified). */
  reason?: string;
}

export interface ScrubSummary {
  files: number;
  ok: number;
  mismatches: number;
  unverified: number;
  skipped: number;
  /** Every file that was not ok, in path order. */
  problems: ScrubResult[];
}

/** Why a file's cached data cannot be checked against its blob, or undefined when it can. */
function notCheckable(inode: Inode): string | undefined {
  if (isReleased(inode.hsmFlags)) return 'released: no local data';
  if (isDirty(inode.hsmFlags)) return 'modified since it was archived';
  if (!isArchived(inode.hsmFlags)) return 'never archived';
  return undefined;
}

/** Checks the files at `paths` (directories: every file under them, each inode once). */
export async function scrubFiles(o: { meta: MetaStore; cache: DataCache; counts: VerificationCounts; paths: string[] }): Promise<ScrubSummary> {
  const files = new Map<number, string>();
  const walk = (path: string, inode: Inode) => {
    if (inode.kind === 'file') {
      if (!files.has(inode.ino)) files.set(inode.ino, path);
    } else if (inode.kind === 'dir') {
      for (const e of o.meta.readdir(inode.ino)) walk(`${path === '/' ? '' : path}/${e.name}`, e.inode);
    }
  };
  for (const path of o.paths) {
    const inode = o.meta.resolve(path);
    if (!inode) throw new FsError('ENOENT', `no such file or directory: ${path}`);
    walk(path, inode);
  }
  const summary: ScrubSummary = { files: files.size, ok: 0, mismatches: 0, unverified: 0, skipped: 0, problems: [] };
  for (const [ino, path] of [...files].sort((a, b) => (a[1] < b[1] ? -1 : 1))) {
    const result = await scrubOne(o, ino, path);
    if (result.outcome === 'ok') summary.ok++;
    else {
      summary.problems.push(result);
      if (result.outcome === 'mismatch') summary.mismatches++;
      else if (result.outcome === 'unverified') summary.unverified++;
      else summary.skipped++;
    }
  }
  return summary;
}

async function scrubOne(o: { meta: MetaStore; cache: DataCache; counts: VerificationCounts }, ino: number, path: string): Promise<ScrubResult> {
  const before = o.meta.get(ino);
  if (!before) return { path, outcome: 'skipped', reason: 'removed while verified' };
  const why = notCheckable(before);
  if (why) return { path, outcome: 'skipped', reason: why };
  if (!before.contentMd5) {
    o.counts.unverified++;
    return { path, outcome: 'unverified', reason: 'its blob has no Content-MD5' };
  }
  let actual: string;
  try {
    actual = await md5OfFile(o.cache.pathFor(ino, before.generation), before.size);
  } catch (err) {
    const now = o.meta.get(ino);
    if (!now || now.generation !== before.generation) return { path, outcome: 'skipped', reason: 'released while verified' };
    // The data a clean resident file must have is not there: as bad as a wrong byte.
    o.counts.mismatches++;
    return { path, outcome: 'mismatch', expected: before.contentMd5, actual: `unreadable (${describeError(err)})` };
  }
  const now = o.meta.get(ino);
  if (!now || now.generation !== before.generation || now.dataVersion !== before.dataVersion) {
    return { path, outcome: 'skipped', reason: 'changed while verified' };
  }
  if (actual === before.contentMd5) {
    o.counts.verified++;
    return { path, outcome: 'ok' };
  }
  o.counts.mismatches++;
  return { path, outcome: 'mismatch', expected: before.contentMd5, actual };
}
