import t from 'tap';
import Database from 'better-sqlite3';
import { FsError } from '../src/errors.js';
import {
  CLEAN_ARCHIVED,
  DIRTY_FILE,
  EVICTABLE,
  EXPORT_CANDIDATE,
  FAITHFUL_RECORD,
  RELEASABLE_BY_IMPORT,
  RESIDENT,
  flagSql,
  flagsHex,
  isExportCandidate,
  maskOf,
  matches,
  onImportSymlink,
  onReimport,
  ALL_FLAGS,
  DEFAULT_ARCHIVE_ID,
  HsmFlag,
  USER_SETTABLE,
  archiveDecision,
  archiveIdAfterSet,
  archiveIdForRequest,
  checkInvariants,
  onArchiveDispatched,
  onArchiveFailed,
  onArchiveSucceeded,
  onContentChange,
  onCreate,
  onImport,
  onReleaseSucceeded,
  onRemoveSucceeded,
  onRestoreFailed,
  onRestoreSucceeded,
  releaseDecision,
  removeDecision,
  restoreDecision,
  setFlags,
  stateWords,
} from '../src/hsm/flags.js';

const { EXISTS: E, DIRTY: D, RELEASED: R, ARCHIVED: A, NORELEASE: NR, NOARCHIVE: NA, LOST: L } = HsmFlag;
const hex = (n: number) => `0x${(n >>> 0).toString(16).padStart(2, '0')}`;

/** Runs fn and returns its result, or the FsError code it threw. */
function outcome<T>(fn: () => T): T | string {
  try {
    return fn();
  } catch (err) {
    if (err instanceof FsError) return err.code;
    throw err;
  }
}

/** All 128 flag combinations that satisfy the invariants. */
const validStates = Array.from({ length: 0x80 }, (_, i) => i).filter((f) => checkInvariants(f) === null);

t.test('bit values and masks are Lustre\'s', async (t) => {
  t.same(HsmFlag, { EXISTS: 1, DIRTY: 2, RELEASED: 4, ARCHIVED: 8, NORELEASE: 0x10, NOARCHIVE: 0x20, LOST: 0x40 });
  t.equal(USER_SETTABLE, 0x32);
  t.equal(ALL_FLAGS, 0x7f);
  t.equal(DEFAULT_ARCHIVE_ID, 1);
});

t.test('stateWords: lfs order, only set flags', async (t) => {
  t.same(stateWords(0), []);
  t.same(stateWords(0x7f), ['released', 'exists', 'dirty', 'archived', 'never_release', 'never_archive', 'lost_from_hsm']);
  t.same(stateWords(0x0d), ['released', 'exists', 'archived']);
  t.same(stateWords(0x0b), ['exists', 'dirty', 'archived']);
  t.same(stateWords(L | NR), ['never_release', 'lost_from_hsm']);
});

t.test('invariants', async (t) => {
  const cases: Array<[flags: number, ok: boolean, why: string]> = [
    [0, true, 'no state'],
    [E, true, 'exists'],
    [E | D, true, 'exists dirty'],
    [E | A, true, 'exists archived'],
    [E | D | A, true, 'exists dirty archived'],
    [R | E | A, true, 'released exists archived'],
    [A | L, true, 'archived lost'],
    [NR | NA, true, 'user flags alone'],
    [D, false, 'DIRTY without EXISTS'],
    [D | A, false, 'DIRTY without EXISTS (archived)'],
    [R | E | A | D, false, 'RELEASED and DIRTY'],
    [R | E, false, 'RELEASED without ARCHIVED'],
    [R, false, 'RELEASED without ARCHIVED (alone)'],
    [L, false, 'LOST without ARCHIVED'],
    [E | L, false, 'LOST without ARCHIVED (exists)'],
    [0x80, false, 'unknown bit (PCC)'],
    [0x100, false, 'unknown bit'],
    [-1, false, 'negative'],
  ];
  for (const [flags, ok, why] of cases) {
    const r = checkInvariants(flags);
    if (ok) t.equal(r, null, `${hex(flags)} ${why}: valid`);
    else t.type(r, 'string', `${hex(flags)} ${why}: refused (${r})`);
  }
  t.equal(validStates.length, 52, 'number of consistent states (13 core states × 4 user-flag combinations)');
});

t.test('setFlags (hsm_set / hsm_clear)', async (t) => {
  const unpriv = { privileged: false };
  const priv = { privileged: true };
  const cases: Array<[desc: string, cur: number, set: number, clear: number, privileged: boolean, want: number | string]> = [
    ['user sets never_release', 0, NR, 0, false, NR],
    ['user sets never_archive', E | A, NA, 0, false, E | A | NA],
    ['user sets dirty on an archived file', E | A, D, 0, false, E | D | A],
    ['user clears dirty', E | D | A, 0, D, false, E | A],
    ['user clears user flags', NR | NA, 0, NR | NA, false, 0],
    ['user sets dirty without exists → EINVAL', 0, D, 0, false, 'EINVAL'],
    ['user sets dirty on a released file → EINVAL', R | E | A, D, 0, false, 'EINVAL'],
    ['user sets exists → EPERM', 0, E, 0, false, 'EPERM'],
    ['user sets archived → EPERM', E, A, 0, false, 'EPERM'],
    ['user sets lost → EPERM', E | A, L, 0, false, 'EPERM'],
    ['user clears released → EPERM', R | E | A, 0, R, false, 'EPERM'],
    ['user clears exists → EPERM (even though allowed flags mixed in)', E, NR, E, false, 'EPERM'],
    ['EPERM is checked before the invariants', 0, R, 0, false, 'EPERM'],
    ['root sets exists archived', 0, E | A, 0, true, E | A],
    ['root sets lost on an archived file', E | A, L, 0, true, E | A | L],
    ['root sets lost without archived → EINVAL', E, L, 0, true, 'EINVAL'],
    ['root sets released without archived → EINVAL', E, R, 0, true, 'EINVAL'],
    ['root releases by flag', E | A, R, 0, true, R | E | A],
    ['root clears archived of a released file → EINVAL', R | E | A, 0, A, true, 'EINVAL'],
    ['root clears exists of a dirty file → EINVAL', E | D, 0, E, true, 'EINVAL'],
    ['set then clear: clear wins', E, D, D, true, E],
    ['unknown bit → EINVAL (before EPERM)', 0, 0x80, 0, false, 'EINVAL'],
    ['unknown bit, root → EINVAL', 0, 0, 0x100, true, 'EINVAL'],
    ['empty masks change nothing', E | A, 0, 0, false, E | A],
  ];
  for (const [desc, cur, set, clear, privileged, want] of cases) {
    t.equal(outcome(() => setFlags(cur, set, clear, privileged ? priv : unpriv)), want, desc);
  }
  // Exhaustive: unprivileged callers never touch a non-user bit; every success satisfies the invariants.
  for (const cur of validStates) {
    for (const set of [0, E, D, R, A, NR, NA, L]) {
      for (const clear of [0, E, D, R, A, NR, NA, L]) {
        const u = outcome(() => setFlags(cur, set, clear, unpriv));
        if (((set | clear) & ~USER_SETTABLE) !== 0) t.equal(u, 'EPERM');
        const p = outcome(() => setFlags(cur, set, clear, priv));
        if (typeof p === 'number') t.equal(checkInvariants(p), null);
        else t.equal(p, 'EINVAL');
      }
    }
  }
});

t.test('archive id on hsm_set', async (t) => {
  t.equal(archiveIdAfterSet(E | A, 1, 3), 3, 'changed when EXISTS');
  t.equal(archiveIdAfterSet(0, 1, 3), 1, 'not without EXISTS');
  t.equal(archiveIdAfterSet(E, 2, 0), 2, '0 means no change');
  t.equal(archiveIdAfterSet(E, 2, undefined), 2);
  t.equal(archiveIdForRequest(undefined, 0), 1, 'default archive');
  t.equal(archiveIdForRequest(0, 4), 4, 'the file\'s archive');
  t.equal(archiveIdForRequest(2, 4), 2, 'the requested one');
});

t.test('transitions table (docs/SEMANTICS.md §2)', async (t) => {
  // [row, got, want]
  const rows: Array<[string, number, number]> = [
    ['create a new file → 0x00', onCreate(), 0x00],
    ['import of a blob → 0x0d released exists archived', onImport(), 0x0d],
    ['archive dispatched on a new file → +EXISTS', onArchiveDispatched(0), E],
    ['archive dispatched on a dirty file → unchanged', onArchiveDispatched(E | D | A), E | D | A],
    ['archive dispatched keeps user flags', onArchiveDispatched(NR), E | NR],
    ['archive succeeded on a new file → exists archived', onArchiveSucceeded(E), E | A],
    ['archive succeeded: −DIRTY', onArchiveSucceeded(E | D | A), E | A],
    ['archive succeeded: −LOST', onArchiveSucceeded(E | A | L), E | A],
    ['archive succeeded keeps user flags', onArchiveSucceeded(E | NR | D | A), E | A | NR],
    ['archive succeeded but data changed meanwhile → stays dirty', onArchiveSucceeded(E | D, { dataChanged: true }), E | D | A],
    ['archive failed on a clean archived file → +DIRTY', onArchiveFailed(E | A), E | D | A],
    ['archive failed on a new file → unchanged', onArchiveFailed(E), E],
    ['archive failed on a dirty file → unchanged', onArchiveFailed(E | D | A), E | D | A],
    ['content change on an archived file → +DIRTY', onContentChange(E | A), E | D | A],
    ['content change on an exists-only file → +DIRTY', onContentChange(E), E | D],
    ['content change on a new file → unchanged', onContentChange(0), 0],
    ['content change on a released file → unchanged', onContentChange(R | E | A), R | E | A],
    ['content change on a dirty file → unchanged', onContentChange(E | D | A), E | D | A],
    ['release succeeded → +RELEASED', onReleaseSucceeded(E | A), R | E | A],
    ['restore succeeded on an import → 0x09', onRestoreSucceeded(R | E | A), 0x09],
    ['restore succeeded keeps user flags', onRestoreSucceeded(R | E | A | NR), E | A | NR],
    ['restore failed → stays released', onRestoreFailed(R | E | A), R | E | A],
    ['remove succeeded → 0x00', onRemoveSucceeded(E | A), 0x00],
    ['remove succeeded (no argument) → 0x00', onRemoveSucceeded(), 0x00],
    ['remove succeeded on a dirty file → 0x00', onRemoveSucceeded(E | D | A), 0x00],
    ['remove succeeded on a lost file → 0x00', onRemoveSucceeded(E | A | L), 0x00],
    ['remove succeeded keeps never_release/never_archive (Lustre)', onRemoveSucceeded(E | A | NR | NA), NR | NA],
  ];
  for (const [row, got, want] of rows) t.equal(hex(got), hex(want), row);

  // Every transition maps a consistent state to a consistent state.
  const transitions: Array<[string, (f: number) => number]> = [
    ['onArchiveDispatched', onArchiveDispatched],
    ['onArchiveSucceeded', (f) => onArchiveSucceeded(onArchiveDispatched(f))],
    ['onArchiveSucceeded dataChanged', (f) => onArchiveSucceeded(onArchiveDispatched(f), { dataChanged: true })],
    ['onArchiveFailed', onArchiveFailed],
    ['onContentChange', onContentChange],
    ['onRestoreSucceeded', onRestoreSucceeded],
    ['onRestoreFailed', onRestoreFailed],
  ];
  for (const [name, fn] of transitions) {
    const broken = validStates.filter((f) => checkInvariants(fn(f)) !== null).map(hex);
    t.same(broken, [], `${name} keeps the invariants`);
  }
  // Transitions reached only after their decision said 'run'.
  const gated: Array<[string, (f: number) => unknown, (f: number) => number]> = [
    ['onRemoveSucceeded', removeDecision, onRemoveSucceeded],
    ['onRestoreSucceeded', restoreDecision, onRestoreSucceeded],
    ['archive run', archiveDecision, (f) => onArchiveSucceeded(onArchiveDispatched(f))],
  ];
  for (const [name, decide, fn] of gated) {
    const runs = validStates.filter((f) => outcome(() => decide(f)) === 'run');
    t.ok(runs.length > 0);
    const broken = runs.filter((f) => checkInvariants(fn(f)) !== null).map(hex);
    t.same(broken, [], `${name} keeps the invariants`);
  }
  for (const f of validStates) {
    if (outcome(() => releaseDecision(f, { dataVersion: 1, archivedVersion: 1, writersOpen: 0 })) === 'run') {
      t.equal(checkInvariants(onReleaseSucceeded(f)), null, `release of ${hex(f)} keeps the invariants`);
    }
  }
});

t.test('a full life cycle', async (t) => {
  let f = onImport();
  t.equal(restoreDecision(f), 'run');
  f = onRestoreSucceeded(f);
  t.equal(f, 0x09);
  f = onContentChange(f);
  t.equal(f, 0x0b, 'exists dirty archived');
  t.equal(outcome(() => releaseDecision(f, { dataVersion: 2, archivedVersion: 1, writersOpen: 0 })), 'EPERM');
  t.equal(archiveDecision(f), 'run');
  f = onArchiveSucceeded(onArchiveDispatched(f));
  t.equal(f, 0x09);
  t.equal(releaseDecision(f, { dataVersion: 2, archivedVersion: 2, writersOpen: 0 }), 'run');
  f = onReleaseSucceeded(f);
  t.equal(f, 0x0d);
  t.equal(outcome(() => removeDecision(f)), 'EPERM');
  f = onRestoreSucceeded(f);
  t.equal(removeDecision(f), 'run');
  f = onRemoveSucceeded(f);
  t.equal(f, 0);
});

t.test('archive decisions', async (t) => {
  const cases: Array<[string, number, number | string, { requested?: number; current?: number }?]> = [
    ['new file → run', 0, 'run'],
    ['exists, never archived → run', E, 'run'],
    ['dirty → run', E | D | A, 'run'],
    ['clean archived → noop (silent)', E | A, 'noop'],
    ['released (clean archived) → noop', R | E | A, 'noop'],
    ['clean archived never_archive → noop (needed is tested first, as Lustre)', E | A | NA, 'noop'],
    ['never_archive new file → EPERM', NA, 'EPERM'],
    ['never_archive dirty → EPERM', E | D | A | NA, 'EPERM'],
    ['lost but not dirty → noop', E | A | L, 'noop'],
    ['dirty, same archive id → run', E | D | A, 'run', { requested: 1, current: 1 }],
    ['dirty, other archive id → EPERM', E | D | A, 'EPERM', { requested: 2, current: 1 }],
    ['new file, any archive id → run', 0, 'run', { requested: 2, current: 0 }],
    ['dirty, no archive id requested → run', E | D | A, 'run', { requested: 0, current: 1 }],
  ];
  for (const [desc, flags, want, ids] of cases) t.equal(outcome(() => archiveDecision(flags, ids)), want, desc);
});

t.test('restore decisions', async (t) => {
  const cases: Array<[string, number, string]> = [
    ['released → run', R | E | A, 'run'],
    ['released never_release → run', R | E | A | NR, 'run'],
    ['resident clean → noop (silent)', E | A, 'noop'],
    ['new file → noop', 0, 'noop'],
    ['exists only → noop', E, 'noop'],
    ['dirty → EPERM', E | D | A, 'EPERM'],
    ['dirty, never archived → EPERM', E | D, 'EPERM'],
    ['released and lost → EPERM', R | E | A | L, 'EPERM'],
    ['lost but resident → noop', E | A | L, 'noop'],
  ];
  for (const [desc, flags, want] of cases) t.equal(outcome(() => restoreDecision(flags)), want, desc);
});

t.test('release decisions', async (t) => {
  const ok = { dataVersion: 5, archivedVersion: 5, writersOpen: 0 };
  const cases: Array<[string, number, Partial<typeof ok> | { writersOpen: boolean }, string]> = [
    ['clean archived → run', E | A, {}, 'run'],
    ['already released → noop (silent)', R | E | A, {}, 'noop'],
    ['dirty → EPERM', E | D | A, {}, 'EPERM'],
    ['never_release → EPERM', E | A | NR, {}, 'EPERM'],
    ['lost → EPERM', E | A | L, {}, 'EPERM'],
    ['unarchived (new) → EPERM', 0, {}, 'EPERM'],
    ['unarchived (exists) → EPERM', E, {}, 'EPERM'],
    ['released and never_release → EPERM (Lustre checks flags first)', R | E | A | NR, {}, 'EPERM'],
    ['released and lost → EPERM', R | E | A | L, {}, 'EPERM'],
    ['writer open → EBUSY', E | A, { writersOpen: 1 }, 'EBUSY'],
    ['writer open (boolean) → EBUSY', E | A, { writersOpen: true }, 'EBUSY'],
    ['no writer (boolean) → run', E | A, { writersOpen: false }, 'run'],
    ['dirty with a writer open → EPERM first', E | D | A, { writersOpen: 1 }, 'EPERM'],
    ['data version differs from archived → EPERM', E | A, { dataVersion: 6 }, 'EPERM'],
    ['released, versions differ → noop', R | E | A, { dataVersion: 6 }, 'noop'],
  ];
  for (const [desc, flags, ctx, want] of cases) {
    t.equal(outcome(() => releaseDecision(flags, { ...ok, ...ctx })), want, desc);
  }
});

t.test('remove decisions', async (t) => {
  const cases: Array<[string, number, string]> = [
    ['archived → run', E | A, 'run'],
    ['exists only (archive interrupted) → run', E, 'run'],
    ['dirty archived → run', E | D | A, 'run'],
    ['lost → run', E | A | L, 'run'],
    ['new file → noop', 0, 'noop'],
    ['user flags only → noop', NR | NA, 'noop'],
    ['released → EPERM', R | E | A, 'EPERM'],
  ];
  for (const [desc, flags, want] of cases) t.equal(outcome(() => removeDecision(flags)), want, desc);
});

t.test('errors are FsErrors with a message', async (t) => {
  t.throws(() => restoreDecision(E | D | A), { name: 'FsError', code: 'EPERM', message: /dirty/ });
  t.throws(() => setFlags(0, E, 0, { privileged: false }), { code: 'EPERM' });
  t.throws(() => setFlags(0, D, 0, { privileged: true }), { code: 'EINVAL', message: /dirty without exists/ });
});

t.test('named predicates: the SQL the metadata store uses says exactly what matches() says', async (t) => {
  const db = new Database(':memory:');
  t.teardown(() => db.close());
  const predicates = { RESIDENT, DIRTY_FILE, CLEAN_ARCHIVED, FAITHFUL_RECORD, EXPORT_CANDIDATE, RELEASABLE_BY_IMPORT, EVICTABLE, none: [] };
  for (const [name, p] of Object.entries(predicates)) {
    const sql = db.prepare(`SELECT ${flagSql(p, 'f')} AS m FROM (SELECT ? AS f)`).pluck();
    const disagree = [];
    for (let f = 0; f <= ALL_FLAGS; f++) if (Boolean(sql.get(f)) !== matches(f, p)) disagree.push(f);
    t.same(disagree, [], `${name}: SQL and TypeScript agree on all ${ALL_FLAGS + 1} flag words`);
  }
  t.equal(isExportCandidate(0x00), true, 'a new file is exported');
  t.equal(isExportCandidate(0x0b), true, 'a modified one too');
  t.equal(isExportCandidate(0x09), false, 'a clean archived one is not');
  t.equal(isExportCandidate(0x23), false, 'never a NOARCHIVE one');
  t.equal(matches(0x09, EVICTABLE), true);
  t.equal(matches(0x19, EVICTABLE), false, 'never_release is not evicted');
  t.equal(onReimport(0x3b), 0x3d, 'a reimport keeps the policy flags');
  t.equal(onImportSymlink(), 0x09);
  t.equal(maskOf(['NORELEASE', 'DIRTY']), 0x12);
  t.equal(flagsHex(0x0d), '0x0000000d');
});
