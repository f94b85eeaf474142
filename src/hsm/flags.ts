// Lustre HSM flag bits, their invariants and the pure state transitions (docs/SEMANTICS.md §2). No I/O.
//
// Every rule mirrors the Lustre MDT: the bits and masks come from lustre_user.h (enum hsm_states,
// HSM_USER_MASK); state set/clear from mdt_hsm.c (mdt_hsm_state_set); "is the request needed" and "is it
// compatible" from mdt_hsm_cdt_client.c (hsm_action_is_needed) and mdt_coordinator.c
// (mdt_hsm_is_action_compat); result updates from mdt_coordinator.c (hsm_cdt_request_completed,
// mdt_hsm_set_exists); release checks from mdt_open.c (mdt_hsm_release_allow, mdt_hsm_release) and the lease
// taken by llite (ll_hsm_release). A decision function answers 'noop' (not needed: succeed silently), 'run',
// or throws FsError; an `on*` function returns the flags after an event.
import { FsError } from '../errors.js';
import { HsmFlag } from '../namespace/types.js';

export { HsmFlag };

export type HsmFlagName = keyof typeof HsmFlag;

const { EXISTS, DIRTY, RELEASED, ARCHIVED, NORELEASE, NOARCHIVE, LOST } = HsmFlag;

/** Flags any caller may set or clear (Lustre HSM_USER_MASK). */
export const USER_SETTABLE = NORELEASE | NOARCHIVE | DIRTY;

/** Every flag blobhsm knows (Lustre HSM_FLAGS_MASK without the PCC bits). */
export const ALL_FLAGS = EXISTS | DIRTY | RELEASED | ARCHIVED | NORELEASE | NOARCHIVE | LOST;

/** Archive id given to imported files, and to archives requested without one. */
export const DEFAULT_ARCHIVE_ID = 1;

/** The `hsm_state` words, in the order lfs prints them. */
export const STATE_WORDS: ReadonlyArray<readonly [flag: number, word: string]> = [
  [RELEASED, 'released'],
  [EXISTS, 'exists'],
  [DIRTY, 'dirty'],
  [ARCHIVED, 'archived'],
  [NORELEASE, 'never_release'],
  [NOARCHIVE, 'never_archive'],
  [LOST, 'lost_from_hsm'],
];

/**
 * The states `lfs find --hsm-state` names (rbh-find's `-hsm-state` words): each holds when its flag is set;
 * `none` holds when no flag is.
 */
export const FIND_STATES = {
  exists: EXISTS,
  dirty: DIRTY,
  released: RELEASED,
  archived: ARCHIVED,
  norelease: NORELEASE,
  noarchive: NOARCHIVE,
  lost: LOST,
  none: 0,
} as const;

export type FindState = keyof typeof FIND_STATES;

/** Whether flags are in a FIND_STATES state. */
export function inHsmState(flags: number, state: FindState): boolean {
  const bit = FIND_STATES[state];
  return bit === 0 ? (flags & ALL_FLAGS) === 0 : has(flags, bit);
}

export type Decision = 'noop' | 'run';

const has = (flags: number, bit: number): boolean => (flags & bit) !== 0;

// ---- named predicates, in TypeScript and in SQL ------------------------------------------------------------

/** One test of the flag word: `(flags & mask) === value`, or `!==` when `differs`. */
export interface FlagTest {
  readonly mask: number;
  readonly value: number;
  readonly differs?: boolean;
}

/** A predicate on the flag word: every test holds. The metadata store compiles the same value to SQL. */
export type FlagPredicate = readonly FlagTest[];

/** Whether the flags satisfy the predicate. */
export function matches(flags: number, predicate: FlagPredicate): boolean {
  return predicate.every((t) => ((flags & t.mask) === t.value) !== (t.differs ?? false));
}

/** The predicate as a SQL condition on an integer column (the metadata store's queries and partial indexes). */
export function flagSql(predicate: FlagPredicate, column: string): string {
  if (predicate.length === 0) return '1';
  return predicate.map((t) => `(${column} & ${t.mask}) ${t.differs ? '<>' : '='} ${t.value}`).join(' AND ');
}

/** The local data is present (not RELEASED). */
export const RESIDENT: FlagPredicate = [{ mask: RELEASED, value: 0 }];
/** The local data is newer than the archive (DIRTY). */
export const DIRTY_FILE: FlagPredicate = [{ mask: DIRTY, value: DIRTY }];
/** An archive copy holds exactly the local data: ARCHIVED and not DIRTY. */
export const CLEAN_ARCHIVED: FlagPredicate = [{ mask: DIRTY | ARCHIVED, value: ARCHIVED }];
/** Clean archived and the copy is not lost: the blob is a faithful record of the file (an import may update it). */
export const FAITHFUL_RECORD: FlagPredicate = [{ mask: DIRTY | ARCHIVED | LOST, value: ARCHIVED }];
/**
 * What export jobs and auto-export archive: not NOARCHIVE, and DIRTY or not ARCHIVED (new and content-modified
 * files; Lustre's hsm_action_is_needed plus mdt_hsm_is_action_compat for ARCHIVE).
 */
export const EXPORT_CANDIDATE: FlagPredicate = [
  { mask: NOARCHIVE, value: 0 },
  { mask: DIRTY | ARCHIVED, value: ARCHIVED, differs: true },
];
/** What eviction may release: ARCHIVED, and none of DIRTY, RELEASED, NORELEASE, LOST (releaseDecision's flag part). */
/** What an OverwriteAlways import may release: resident and not NORELEASE. */
export const RELEASABLE_BY_IMPORT: FlagPredicate = [{ mask: RELEASED | NORELEASE, value: 0 }];
export const EVICTABLE: FlagPredicate = [{ mask: DIRTY | RELEASED | ARCHIVED | NORELEASE | LOST, value: ARCHIVED }];

export const isReleased = (flags: number): boolean => has(flags, RELEASED);
export const isDirty = (flags: number): boolean => has(flags, DIRTY);
export const isArchived = (flags: number): boolean => has(flags, ARCHIVED);
export const isLost = (flags: number): boolean => has(flags, LOST);
export const isExportCandidate = (flags: number): boolean => matches(flags, EXPORT_CANDIDATE);

/** The mask of the named flags (`hsm_set --norelease --dirty` → 0x12). */
export function maskOf(names: readonly HsmFlagName[]): number {
  return names.reduce((mask, name) => mask | HsmFlag[name], 0);
}

/** The flag word as `hsm_state` prints it and `user.hsm.flags` shows it: `0x0000000d`. */
export function flagsHex(flags: number): string {
  return `0x${(flags >>> 0).toString(16).padStart(8, '0')}`;
}

/** The words for the set flags, in `hsm_state` order. */
export function stateWords(flags: number): string[] {
  return STATE_WORDS.filter(([bit]) => has(flags, bit)).map(([, word]) => word);
}

/** null when the flags are consistent, else why not (Lustre's four invariants, plus unknown bits). */
export function checkInvariants(flags: number): string | null {
  if (!Number.isInteger(flags) || flags < 0 || (flags & ~ALL_FLAGS) !== 0) {
    return `unknown HSM flag bits in 0x${(flags >>> 0).toString(16)}`;
  }
  if (has(flags, DIRTY) && !has(flags, EXISTS)) return 'dirty without exists: no dirty copy if no archive was created';
  if (has(flags, RELEASED) && has(flags, DIRTY)) return 'released and dirty: a dirty file cannot be released';
  if (has(flags, RELEASED) && !has(flags, ARCHIVED)) return 'released without archived: a file is released only once archived';
  if (has(flags, LOST) && !has(flags, ARCHIVED)) return 'lost without archived: only an archived copy can be lost';
  return null;
}

/**
 * `hsm_set`/`hsm_clear`: the flags after setting `set` then clearing `clear` (as mdt_hsm_state_set does).
 * Unknown bits → EINVAL; an unprivileged caller touching anything outside USER_SETTABLE → EPERM; a result that
 * breaks an invariant → EINVAL (checked in that order, as Lustre does).
 */
export function setFlags(cur: number, set: number, clear: number, opts: { privileged: boolean }): number {
  if (((set | clear) & ~ALL_FLAGS) !== 0 || set < 0 || clear < 0) {
    throw new FsError('EINVAL', `unsupported HSM flag mask (set 0x${set.toString(16)}, clear 0x${clear.toString(16)})`);
  }
  if (!opts.privileged && ((set | clear) & ~USER_SETTABLE) !== 0) {
    throw new FsError('EPERM', 'only root may change HSM flags other than never_release, never_archive and dirty');
  }
  const next = (cur | set) & ~clear;
  const broken = checkInvariants(next);
  if (broken) throw new FsError('EINVAL', `incompatible HSM flag change: ${broken}`);
  return next;
}

/**
 * The archive id after `hsm_set --archive-id N`: Lustre changes it only to a non-zero value and only when the
 * resulting flags have EXISTS. (Lustre then also drops the whole flag change without an error, which looks like
 * a bug; blobhsm applies the flags and keeps the old archive id.)
 */
export function archiveIdAfterSet(newFlags: number, currentArchiveId: number, requested: number | undefined): number {
  if (requested === undefined || requested === 0 || !has(newFlags, EXISTS)) return currentArchiveId;
  return requested;
}

/** A file created through the filesystem: no HSM state. */
export function onCreate(): number {
  return 0;
}

/** A regular file created from a blob: `released exists archived` (0x0d), archive id DEFAULT_ARCHIVE_ID. */
export function onImport(): number {
  return RELEASED | EXISTS | ARCHIVED;
}

/** A symlink created from a blob: `exists archived` (its blob is its archive copy; there is no data to release). */
export function onImportSymlink(): number {
  return EXISTS | ARCHIVED;
}

/**
 * An import replaced a file's data by its blob's (reimport, or OverwriteAlways' release): `released exists
 * archived`, keeping the user's policy flags NORELEASE and NOARCHIVE.
 */
export function onReimport(flags: number): number {
  return (flags & (NORELEASE | NOARCHIVE)) | onImport();
}

/**
 * Is an archive request needed, and allowed? Not needed (noop) when ARCHIVED and not DIRTY — this includes a
 * clean archived NOARCHIVE file, as in Lustre where "needed" is tested before "compatible". EPERM when
 * NOARCHIVE, or when the file already has a copy in another archive (EXISTS and a different non-zero id).
 */
export function archiveDecision(
  flags: number,
  ids: { requested?: number; current?: number } = {},
): Decision {
  if (!has(flags, DIRTY) && has(flags, ARCHIVED)) return 'noop';
  if (has(flags, NOARCHIVE)) throw new FsError('EPERM', 'file is never_archive');
  const requested = ids.requested ?? 0;
  if (has(flags, EXISTS) && requested !== 0 && requested !== (ids.current ?? 0)) {
    throw new FsError('EPERM', `file is archived in archive ${ids.current ?? 0}, not ${requested}`);
  }
  return 'run';
}

/** The archive id an archive request uses: the requested one, else the file's, else the default. */
export function archiveIdForRequest(requested: number | undefined, current: number): number {
  if (requested) return requested;
  return current || DEFAULT_ARCHIVE_ID;
}

/** An archive was handed to the copy tool: a copy now (partly) exists. */
export function onArchiveDispatched(flags: number): number {
  return flags | EXISTS;
}

/**
 * The archive committed: +ARCHIVED, −DIRTY, −LOST (the caller records the archived data version). When the
 * data changed while the copy ran (`dataChanged`), the blob holds older data: the file stays DIRTY.
 */
export function onArchiveSucceeded(flags: number, opts: { dataChanged?: boolean } = {}): number {
  const next = (flags | EXISTS | ARCHIVED) & ~(LOST | DIRTY);
  return opts.dataChanged ? onContentChange(next) : next;
}

/**
 * The archive failed: a file that was clean and archived becomes DIRTY, for safety (its copy may be damaged).
 * DIRTY is only added where the invariants allow it (EXISTS, which dispatch set, and not RELEASED).
 */
export function onArchiveFailed(flags: number): number {
  if (has(flags, ARCHIVED) && !has(flags, DIRTY) && has(flags, EXISTS) && !has(flags, RELEASED)) return flags | DIRTY;
  return flags;
}

/**
 * Close after a write, open with O_TRUNC, truncate: DIRTY when an archive copy exists and the file is resident.
 * chmod, chown, utimens and plain open/read never call this.
 */
export function onContentChange(flags: number): number {
  if (has(flags, EXISTS) && !has(flags, RELEASED)) return flags | DIRTY;
  return flags;
}

/**
 * Is a restore needed, and allowed? Not needed (noop) unless RELEASED or DIRTY. EPERM for a DIRTY file (its
 * data is newer than the archive) and for a LOST one (the copy is gone).
 */
export function restoreDecision(flags: number): Decision {
  if (!has(flags, RELEASED) && !has(flags, DIRTY)) return 'noop';
  if (has(flags, DIRTY)) throw new FsError('EPERM', 'file is dirty: its data is newer than the archive');
  if (has(flags, LOST)) throw new FsError('EPERM', 'the archived copy is lost');
  if (!has(flags, ARCHIVED)) throw new FsError('EPERM', 'file has no archived copy');
  return 'run';
}

/**
 * At mount, a resident file's cache data is missing (the cache directory was lost or damaged). A clean archived
 * file is simply released (its archive copy is its data: the next read restores it). Otherwise the flags stay:
 * the local content is gone, but the archive copy is not (LOST would say it is, and would refuse the truncate,
 * overwrite or removal that recovers the file); docs/SEMANTICS.md §2 "Lost data".
 */
export function onCacheDataMissing(flags: number): number {
  return matches(flags, FAITHFUL_RECORD) ? onReleaseSucceeded(flags) : flags;
}

/** Every byte is back and synced: −RELEASED, −DIRTY (a clean import becomes 0x09 `exists archived`). */
export function onRestoreSucceeded(flags: number): number {
  return flags & ~(RELEASED | DIRTY);
}

/**
 * A restore found the archived copy gone (its blob was deleted behind the mount's back): +LOST, Lustre's
 * `lost_from_hsm`. Only an archived file can lose its copy (the invariant); others are unchanged.
 */
export function onArchiveLost(flags: number): number {
  return has(flags, ARCHIVED) ? flags | LOST : flags;
}

/** A failed restore changes nothing: the file stays RELEASED (the reader gets EIO). */
export function onRestoreFailed(flags: number): number {
  return flags;
}

export interface ReleaseContext {
  /** The file's current data version. */
  dataVersion: number;
  /** The data version recorded when it was last archived (or imported). */
  archivedVersion: number;
  /** Handles open for writing (a count, or whether there is any). */
  writersOpen: number | boolean;
}

/**
 * Is a release needed, and allowed? Checked in Lustre's order:
 * 1. not ARCHIVED, or DIRTY, NORELEASE or LOST → EPERM (mdt_hsm_release_allow; also for a released file);
 * 2. a writer has the file open → EBUSY (the MDS refuses the release lease: "anyone else has opened file for
 *    write");
 * 3. already RELEASED → noop;
 * 4. the data version differs from the archived one → EPERM (mdt_hsm_release "data_version mismatches").
 */
export function releaseDecision(flags: number, ctx: ReleaseContext): Decision {
  if (!has(flags, ARCHIVED)) throw new FsError('EPERM', 'file is not archived');
  if (has(flags, DIRTY)) throw new FsError('EPERM', 'file is dirty');
  if (has(flags, NORELEASE)) throw new FsError('EPERM', 'file is never_release');
  if (has(flags, LOST)) throw new FsError('EPERM', 'the archived copy is lost');
  if (ctx.writersOpen === true || (typeof ctx.writersOpen === 'number' && ctx.writersOpen > 0)) throw new FsError('EBUSY', 'file is open for writing');
  if (has(flags, RELEASED)) return 'noop';
  if (ctx.dataVersion !== ctx.archivedVersion) {
    throw new FsError('EPERM', `data version ${ctx.dataVersion} is not the archived version ${ctx.archivedVersion}`);
  }
  return 'run';
}

/** The local data was dropped: +RELEASED (the caller sets st_blocks = 1 when size > 0). */
export function onReleaseSucceeded(flags: number): number {
  return flags | RELEASED;
}

/**
 * Is removing the archived copy needed, and allowed? Not needed (noop) unless ARCHIVED or EXISTS. EPERM for a
 * RELEASED file (the archive holds its only data).
 */
export function removeDecision(flags: number): Decision {
  if (!has(flags, ARCHIVED) && !has(flags, EXISTS)) return 'noop';
  if (has(flags, RELEASED)) throw new FsError('EPERM', 'file is released: the archive holds its only copy');
  return 'run';
}

/**
 * The blob was deleted: −EXISTS, −ARCHIVED, −LOST as in Lustre, and −DIRTY (which needs EXISTS). Given the
 * current flags, the user policy flags NORELEASE and NOARCHIVE are kept, as Lustre keeps them; without them
 * (or called with no argument) the result is 0x00, the row of docs/SEMANTICS.md §2.
 */
export function onRemoveSucceeded(flags = 0): number {
  return flags & ~(EXISTS | ARCHIVED | LOST | DIRTY);
}
