// decideImport: what an import job does with one blob given what the local namespace holds at its path (docs/SEMANTICS.md §3,
// AMLFS conflict resolution modes). Pure: no I/O, no clock; test/decide-import.test.ts covers every mode × case.
//
// - Nothing local at the path → `create`.
// - Preexisting (src/namespace/import-entry.ts compareEntries: same type; for files and symlinks a record of this
//   blob with the same etag and size, not dirty, and for symlinks the same target; the same owner, group,
//   permissions and modtime as export writes them) → `none`, in every mode.
// - Anything else at the path is a conflict, resolved by the mode:
//   - `Fail`: `fail` (the job stops); `Skip`: `skip` (the local path stays as it is).
//   - `OverwriteIfDirty`:
//     - a different type → `replace` (delete the local entry, import the blob);
//     - a directory (same type) → `update-attributes` (a directory is never deleted);
//     - a file or symlink that is a clean archived record of this very blob (not dirty, not lost, one link):
//       data changed (etag/size/target) → `reimport` in place (a file becomes released with the blob's new etag,
//       size and attributes: its next read fetches the new content); metadata only → `update-attributes`;
//     - otherwise (dirty, never imported from this blob, lost, several hard links) → `replace`.
//   - `OverwriteAlways`: as OverwriteIfDirty, and a metadata conflict on a clean restored (resident) file also
//     releases it (`release: true`) so the next read fetches the blob again (not a never_release file). A
//     preexisting file is not released: its data is the blob's.
// - Whatever the mode, a non-empty local directory hides a file or symlink blob of the same name (docs/SEMANTICS.md §1): `skip`.
// - A conflicting path that is open or has an HSM action or restore running (`busy`) is never replaced,
//   reimported or released: `skip` (or attributes only), counted and logged; a later import resolves it.
import { CLEAN_ARCHIVED, FAITHFUL_RECORD, RELEASABLE_BY_IMPORT, isLost, matches } from '../hsm/flags.js';
import {
  compareEntries,
  importDecision as decision,
  type ImportDecision,
  type LocalEntry,
  type RemoteEntry,
} from '../namespace/import-entry.js';

export type { ImportActionKind, ImportDecision, LocalEntry, RemoteEntry } from '../namespace/import-entry.js';

export type ConflictMode = 'Fail' | 'Skip' | 'OverwriteIfDirty' | 'OverwriteAlways';
export const CONFLICT_MODES: readonly ConflictMode[] = ['Fail', 'Skip', 'OverwriteIfDirty', 'OverwriteAlways'];

export function isConflictMode(value: unknown): value is ConflictMode {
  return typeof value === 'string' && (CONFLICT_MODES as readonly string[]).includes(value);
}


export function decideImport(mode: ConflictMode, local: LocalEntry | undefined, remote: RemoteEntry): ImportDecision {
  if (!local) return decision('create');
  const c = compareEntries(local, remote);
  if (c.same) return decision('none');
  if (c.hiddenByDirectory) return decision('skip', c.reason);
  const reason = c.reason;
  if (mode === 'Fail') return decision('fail', reason);
  if (mode === 'Skip') return decision('skip', `${reason}; left unchanged`);

  const busy = (what: string) => decision('skip', `${reason}; not ${what}: the file is open or has an HSM action running`);
  if (c.typeDiffers) {
    if (local.busy) return busy('replaced');
    return decision('replace', `${reason}; replaced`);
  }
  if (local.kind === 'dir') return decision('update-attributes', `${reason}; attributes updated`);

  const flags = local.hsmFlags;
  const cleanRecord =
    local.blobName === remote.blobName && local.etag !== null && matches(flags, FAITHFUL_RECORD) && local.nlink <= 1;
  if (!cleanRecord) {
    if (local.busy) return busy('replaced');
    const why = isLost(flags) ? 'lost from HSM' : local.nlink > 1 ? `${local.nlink} hard links` : '';
    return decision('replace', `${reason}${why ? ` (${why})` : ''}; replaced`);
  }
  if (c.data) {
    if (local.busy) return busy('reimported');
    return decision('reimport', `${reason}; reimported`, local.kind === 'file');
  }
  const release = mode === 'OverwriteAlways' && local.kind === 'file' && matches(flags, RELEASABLE_BY_IMPORT);
  if (release && local.busy) {
    return decision('update-attributes', `${reason}; attributes updated, not released: the file is open or has an HSM action running`);
  }
  return decision('update-attributes', `${reason}; attributes updated${release ? ', released' : ''}`, release);
}

/**
 * Auto-import applies *changes*: a blob whose etag is the one the local entry recorded (at its import, or at the
 * export that wrote it) has not changed since, whatever happened locally (a dirty file waits for its export), so
 * it is left alone; anything else is decided as by an import job. Without this, a listing pass under
 * OverwriteIfDirty would replace every locally modified file whose blob still exists.
 */
export function decideAutoImport(mode: ConflictMode, local: LocalEntry | undefined, remote: RemoteEntry): ImportDecision {
  if (local && remote.blobName !== undefined && local.kind === remote.kind && local.blobName === remote.blobName && local.etag === remote.etag) {
    return decision('none');
  }
  return decideImport(mode, local, remote);
}

/**
 * Auto-import with deletions enabled (AMLFS enableDeletions): what happens to the local entry of a blob deleted
 * remotely. An unmodified file or symlink is deleted under every mode; one modified locally (dirty, or never
 * archived since) only under OverwriteIfDirty/OverwriteAlways (Skip and Fail keep it); an open or busy file and a
 * non-empty directory are never deleted (a later pass tries again).
 */
export function decideDeletion(mode: ConflictMode, local: LocalEntry): { delete: boolean; reason: string } {
  if (local.kind === 'dir') {
    return local.hasChildren ? { delete: false, reason: 'blob deleted; the directory is not empty: kept' } : { delete: true, reason: 'blob deleted' };
  }
  if (local.busy) return { delete: false, reason: 'blob deleted; not deleted: the file is open or has an HSM action running' };
  const modified = !matches(local.hsmFlags, CLEAN_ARCHIVED);
  if (!modified) return { delete: true, reason: 'blob deleted' };
  if (mode === 'OverwriteIfDirty' || mode === 'OverwriteAlways') return { delete: true, reason: `blob deleted; modified locally, deleted (${mode})` };
  return { delete: false, reason: `blob deleted; modified locally, kept (${mode})` };
}
