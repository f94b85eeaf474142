// Streams the entries of local source trees for `blobhsm ingest`: depth first, a directory before its contents,
// each entry with its lstat. Only one open directory handle per level is held, never the tree: a walk of a million
// files needs memory for its depth, not its size. Never follows symlinks; never writes. The walk asks one lstat at
// a time, so in a directory of a local filesystem (local-fs.ts) it asks with a blocking call (no thread-pool round
// trip per entry); elsewhere on the thread pool.
import { lstat, opendir } from 'node:fs/promises';
import { lstatSync, type BigIntStats, type Dir } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { blobKindOf, fileTypeOf } from '../namespace/file-types.js';
import { LocalFilesystems } from './local-fs.js';

/** 'special': a FIFO, socket or device (file-types.ts: local only), skipped. */
export type SourceKind = 'file' | 'dir' | 'symlink' | 'special';

export interface SourceEntry {
  /** Absolute path on the local filesystem. */
  path: string;
  /** Path components below the destination prefix (never empty). */
  components: string[];
  kind: SourceKind;
  stat: BigIntStats;
}

/** A directory or entry that could not be read; the walk goes on with the rest. */
export interface WalkError {
  path: string;
  error: NodeJS.ErrnoException;
}

/** What an entry becomes: a blob (file, directory stub, symlink), or nothing for a local-only type (file-types.ts). */
export function kindOf(stat: BigIntStats): SourceKind {
  return blobKindOf(fileTypeOf(Number(stat.mode))) ?? 'special';
}

/**
 * Where a source lands, as rsync places it: `SRC/` (trailing slash) puts the directory's contents under the
 * prefix, `SRC` puts the directory (or file) itself there under its own name.
 */
export function sourceRoot(source: string): { path: string; contentsOnly: boolean } {
  const path = resolve(source);
  return { path, contentsOnly: source.endsWith('/') || path === '/' };
}

/**
 * Yields every entry of each source tree in turn. Errors reading a directory or stat-ing an entry are yielded
 * (as `{ error }`) and the walk continues.
 */
export async function* walkSources(
  sources: readonly string[],
  localFilesystems = new LocalFilesystems(),
): AsyncGenerator<SourceEntry | WalkError> {
  for (const source of sources) {
    const root = sourceRoot(source);
    let stat: BigIntStats;
    try {
      stat = await lstat(root.path, { bigint: true });
    } catch (err) {
      yield { path: root.path, error: err as NodeJS.ErrnoException };
      continue;
    }
    const kind = kindOf(stat);
    if (kind === 'dir' && root.contentsOnly) {
      yield* walkDir(root.path, stat.dev, [], localFilesystems);
      continue;
    }
    const entry: SourceEntry = { path: root.path, components: [basename(root.path)], kind, stat };
    yield entry;
    if (kind === 'dir') yield* walkDir(root.path, stat.dev, entry.components, localFilesystems);
  }
}

/** The entries under a directory (`dev`: its device). */
async function* walkDir(
  dirPath: string,
  dev: bigint,
  components: string[],
  localFilesystems: LocalFilesystems,
): AsyncGenerator<SourceEntry | WalkError> {
  const local = localFilesystems.isLocal(dev, dirPath);
  let dir: Dir;
  try {
    dir = await opendir(dirPath, { bufferSize: 64 });
  } catch (err) {
    yield { path: dirPath, error: err as NodeJS.ErrnoException };
    return;
  }
  try {
    for await (const dirent of dir) {
      const path = join(dirPath, dirent.name);
      let stat: BigIntStats;
      try {
        stat = local ? lstatSync(path, { bigint: true }) : await lstat(path, { bigint: true });
      } catch (err) {
        yield { path, error: err as NodeJS.ErrnoException };
        continue;
      }
      const entry: SourceEntry = { path, components: [...components, dirent.name], kind: kindOf(stat), stat };
      yield entry;
      if (entry.kind === 'dir') yield* walkDir(path, stat.dev, entry.components, localFilesystems);
    }
  } catch (err) {
    yield { path: dirPath, error: err as NodeJS.ErrnoException };
  }
}
