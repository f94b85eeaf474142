// Startup reconciliation of the metadata store with the cache directory: a resident file whose data is missing
// becomes RELEASED if it was clean and archived, and keeps its flags otherwise (reported loudly: its local changes are gone,
// its archive copy is not, so it is not LOST); a file written before a crash gets the
// size of its cache file; an empty file whose cache file was never created (a crash inside create) gets one;
// libfuse's `.fuse_hidden*` stand-ins for files unlinked while open, and the nlink-0 records the libfuse3 binding
// keeps for them, are removed (nothing has them open after a restart); cache files no inode owns are deleted.
import type { CacheFile, DataCache } from '../cache/data-cache.js';
import { RESIDENT, isReleased, onCacheDataMissing } from '../hsm/flags.js';
import type { MetaStore } from '../namespace/types.js';

export async function reconcileCache(meta: MetaStore, cache: DataCache, files: CacheFile[]): Promise<string[]> {
  const report: string[] = [];
  for (const { parentIno, name } of meta.entriesStartingWith('.fuse_hidden')) {
    if (!/^\.fuse_hidden[0-9a-f]+$/.test(name)) continue;
    // A blob of that very name was imported: a real file, not a stand-in (libfuse never reuses a taken name).
    const entry = meta.lookup(parentIno, name);
    if (entry?.blobName?.split('/').pop() === name) {
      report.push(`kept ${(meta.pathOf(parentIno) ?? `directory ${parentIno}`).replace(/\/$/, '')}/${name}: imported from blob ${entry.blobName}, not a stand-in for an unlinked file`);
      continue;
    }
    const left = meta.unlink(parentIno, name);
    // Its blob stays, as after any unlink: remember the etag for a file created under that name later.
    if (left.nlink === 0 && left.blobName && left.etag) meta.rememberBlobEtag(left.blobName, left.etag, left.ino);
    report.push(`removed ${meta.pathOf(parentIno) ?? `directory ${parentIno}`}/${name}: a file unlinked while still open before the restart`);
  }
  for (const orphan of meta.orphans()) {
    // Unlinked while open (libfuse3 binding): nothing has it open after a restart. Its cache file goes below.
    meta.deleteInode(orphan.ino);
    if (orphan.blobName && orphan.etag) meta.rememberBlobEtag(orphan.blobName, orphan.etag, orphan.ino);
    report.push(`removed inode ${orphan.ino}: a file unlinked while still open before the restart`);
  }
  const byIno = new Map(files.map((f) => [f.ino, f] as const));
  const resident = meta.filesMatching(RESIDENT);
  const empty: Array<{ ino: number; generation: number }> = [];
  meta.transaction(() => {
    for (const inode of resident) {
      const file = byIno.get(inode.ino);
      if (file && file.generation === inode.generation) {
        // Data written before a crash may have outrun the persisted size: the cache file is the truth.
        if (file.size !== inode.size) {
          meta.update(inode.ino, { size: file.size });
          report.push(`recovered size of inode ${inode.ino} (${meta.pathOf(inode.ino) ?? '?'}): ${inode.size} → ${file.size}`);
        }
        continue;
      }
      if (inode.size === 0) {
        empty.push(inode);
        continue;
      }
      const hsmFlags = onCacheDataMissing(inode.hsmFlags);
      const path = meta.pathOf(inode.ino) ?? `inode ${inode.ino}`;
      if (isReleased(hsmFlags)) {
        meta.update(inode.ino, { hsmFlags, generation: inode.generation + 1 });
        meta.clearRanges(inode.ino);
        report.push(`cache data of ${path} is missing; it is archived, so it is now released and will be restored on read`);
      } else {
        meta.update(inode.ino, { hsmFlags });
        report.push(
          `WARNING: cache data of ${path} is missing and it was never archived with its latest content: local changes are lost; ` +
            'reads fail with EIO until it is truncated, overwritten or deleted',
        );
      }
    }
  });
  for (const { ino, generation } of empty) await cache.truncate(ino, generation, 0);
  for (const f of files) {
    const inode = meta.get(f.ino);
    if (!inode || inode.generation !== f.generation || inode.kind !== 'file') await cache.drop(f.ino, f.generation);
  }
  return report;
}
