// `lfs find` over the metadata store: walks a tree depth first in name order, one directory page at a time (its
// memory is one page per level, whatever the tree's size), and yields the paths whose inode meets every
// criterion. The criteria are Lustre's (lustre/utils/lfs.c lfs_find, liblustreapi_pfind.c find_value_cmp):
// --type, --size, --mtime with their signs, margins and `!` negation, --maxdepth/--mindepth; --hsm-state is
// blobhsm's (rbh-find's words). The CLI parses them (src/cli/lfs-find-args.ts); the daemon runs findPaths.
import { inHsmState, type FindState } from '../hsm/flags.js';
import type { EntrySummary, Inode, InodeKind, MetaStore } from './types.js';

/**
 * Lustre's numeric test (find_value_cmp, for a value known exactly): sign > 0 holds when value + margin <= limit,
 * sign 0 when value lies in (limit - margin, limit], sign < 0 when value > limit. lfs sets the sign so that
 * `--size +N` is sign -1 (bigger), `--size -N` sign 1; `--mtime +N` sign 1 (older), `--mtime -N` sign -1.
 */
export interface ValueCriterion {
  sign: -1 | 0 | 1;
  limit: number;
  margin: number;
  negate: boolean;
}

export interface FindCriteria {
  /** lfs's one-letter type (b c d f l p s); blobhsm has no devices (b, c). */
  type?: { letter: string; negate: boolean };
  /** Every state must hold (a state with `exclude` must not); `negate` inverts the whole test. */
  hsmState?: { states: Array<{ state: FindState; exclude: boolean }>; negate: boolean };
  /** Size in bytes; margin = the unit the size was given in. */
  size?: ValueCriterion;
  /** mtime in seconds since the epoch; limit = the CLI's now minus the given age. */
  mtime?: ValueCriterion;
  maxDepth?: number;
  minDepth?: number;
}

const TYPE_LETTER: Record<InodeKind, string> = { file: 'f', dir: 'd', symlink: 'l', fifo: 'p', socket: 's' };

export function valueMatches(value: number, c: ValueCriterion): boolean {
  let ok: boolean;
  if (c.sign > 0) ok = value + c.margin <= c.limit;
  else if (c.sign === 0) ok = value <= c.limit && value + c.margin > c.limit;
  else ok = value > c.limit;
  return ok !== c.negate;
}

/** Whether an inode meets every criterion (depth aside). */
export function inodeMatches(inode: Pick<Inode, 'kind' | 'hsmFlags' | 'size' | 'mtimeMs'>, c: FindCriteria): boolean {
  if (c.type && (TYPE_LETTER[inode.kind] === c.type.letter) === c.type.negate) return false;
  if (c.hsmState) {
    const all = c.hsmState.states.every(({ state, exclude }) => inHsmState(inode.hsmFlags, state) !== exclude);
    if (all === c.hsmState.negate) return false;
  }
  if (c.size && !valueMatches(inode.size, c.size)) return false;
  if (c.mtime && !valueMatches(Math.floor(inode.mtimeMs / 1000), c.mtime)) return false;
  return true;
}

interface Frame {
  ino: number;
  /** Path relative to the start ('' for the start itself). */
  path: string;
  depth: number;
  page: EntrySummary[];
  index: number;
  last: boolean;
}

/**
 * The matching paths under `start` (itself included), relative to it: '' for the start, '/a', '/a/b', ...;
 * yields one batch per directory page read (possibly empty), so a caller can pass each on and yield the event loop.
 */
export function* findPaths(meta: MetaStore, start: Inode, c: FindCriteria, pageSize = 1000): Generator<string[]> {
  const maxDepth = c.maxDepth ?? Number.POSITIVE_INFINITY;
  const minDepth = c.minDepth ?? 0;
  let out: string[] = [];
  if (minDepth === 0 && inodeMatches(start, c)) out.push('');
  if (start.kind !== 'dir' || maxDepth < 1) return yield out;
  const stack: Frame[] = [{ ino: start.ino, path: '', depth: 1, page: [], index: 0, last: false }];
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    if (top.index >= top.page.length) {
      if (top.last) {
        stack.pop();
        continue;
      }
      const after = top.page.length > 0 ? top.page[top.page.length - 1]!.name : undefined;
      top.page = meta.readdirSummaryPage(top.ino, after, pageSize);
      top.index = 0;
      top.last = top.page.length < pageSize;
      yield out;
      out = [];
      continue;
    }
    const entry = top.page[top.index++]!;
    const path = `${top.path}/${entry.name}`;
    if (top.depth >= minDepth && inodeMatches(entry, c)) out.push(path);
    if (entry.kind === 'dir' && top.depth < maxDepth) stack.push({ ino: entry.ino, path, depth: top.depth + 1, page: [], index: 0, last: false });
  }
  yield out;
}
