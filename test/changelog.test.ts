// The changelog writer and its line format: Lustre's type numbers, HSM record flag bits (lustre_user.h) and the
// fields `lfs changelog` prints, including a rename's target and source.
import t from 'tap';
import { Changelog, changelogJson, formatChangelogRecord } from '../src/hsm/changelog.js';
import type { ChangelogRecord } from '../src/namespace/types.js';

function recorder(): { changelog: Changelog; records: Array<Omit<ChangelogRecord, 'index' | 'timeMs'>> } {
  const records: Array<Omit<ChangelogRecord, 'index' | 'timeMs'>> = [];
  const meta = { appendChangelog: (r: Omit<ChangelogRecord, 'index' | 'timeMs'>) => records.push(r) };
  return { changelog: new Changelog(meta as never), records };
}

t.test('HSM records carry the error in bits 0-6, the event in bits 7-9 and the dirty flag at bit 10', async (t) => {
  const { changelog, records } = recorder();
  changelog.hsm('ARCHIVE', 5, 0, false);
  changelog.hsm('RESTORE', 5, 0, false);
  changelog.hsm('RELEASE', 5, 0, false);
  changelog.hsm('REMOVE', 5, 0, false);
  changelog.hsm('STATE', 5, 0, true);
  changelog.hsm('ARCHIVE', 5, 5, true);
  changelog.hsm('RESTORE', 5, 125, false);
  changelog.hsm('RESTORE', 5, 300, false);
  t.same(
    records.map((r) => r.flags),
    [0x0, 0x80, 0x180, 0x200, 0x680, 0x405, 0xfd, 0xff],
    'an errno above 126 is 0x7f',
  );
  t.same(records[5]!.extra, { event: 'ARCHIVE', error: 5, dirty: 1 });
});

t.test('UNLNK flags: last link 0x1, had an archive 0x2', async (t) => {
  const { changelog, records } = recorder();
  changelog.record('UNLNK', 7, 1, 'f', { lastLink: 1, hadArchive: 1 });
  changelog.record('UNLNK', 7, 1, 'g', { lastLink: 1, hadArchive: 0 });
  changelog.record('UNLNK', 7, 1, 'h', { lastLink: 0, hadArchive: 0 });
  t.same(records.map((r) => r.flags), [0x3, 0x1, 0x0]);
});

const at = Date.UTC(2026, 10, 22, 3, 7, 6, 165);
const rec = (r: Partial<ChangelogRecord>): ChangelogRecord => ({ index: 1, type: 'CREAT', timeMs: at, flags: 0, ino: 8, parentIno: 1, name: 'f', extra: {}, ...r });

t.test('lines as lfs changelog prints them', async (t) => {
  t.equal(formatChangelogRecord(rec({})), '1 01CREAT 03:07:06.165000000 2026.11.22 0x0 t=[0x200000400:0x8:0x0] p=[0x200000400:0x1:0x0] f');
  t.equal(formatChangelogRecord(rec({ index: 2, type: 'CLOSE', parentIno: 0, name: '' })), '2 11CLOSE 03:07:06.165000000 2026.11.22 0x0 t=[0x200000400:0x8:0x0]');
  t.equal(
    formatChangelogRecord(rec({ index: 3, type: 'HSM', flags: 0x180, parentIno: 0, name: '', extra: { event: 'RELEASE', error: 0, dirty: 0 } })),
    '3 16HSM   03:07:06.165000000 2026.11.22 0x180 t=[0x200000400:0x8:0x0] RELEASE',
  );
  t.equal(
    formatChangelogRecord(rec({ index: 4, type: 'RENME', name: 'new', parentIno: 2, extra: { sourceParent: 1, sourceName: 'old', targetIno: 0 } })),
    '4 08RENME 03:07:06.165000000 2026.11.22 0x0 t=[0:0x0:0x0] p=[0x200000400:0x2:0x0] new s=[0x200000400:0x8:0x0] sp=[0x200000400:0x1:0x0] old',
    'a rename: no target, the renamed file as s=',
  );
  t.equal(
    formatChangelogRecord(rec({ index: 5, type: 'RENME', name: 'new', extra: { sourceParent: 1, sourceName: 'old', targetIno: 9 } })),
    '5 08RENME 03:07:06.165000000 2026.11.22 0x0 t=[0x200000400:0x9:0x0] p=[0x200000400:0x1:0x0] new s=[0x200000400:0x8:0x0] sp=[0x200000400:0x1:0x0] old',
    'a rename over a file names it as the target',
  );
  t.same(changelogJson(rec({})), { index: 1, type: 'CREAT', time: '2026-11-22T03:07:06.165Z', flags: 0, ino: 8, parentIno: 1, name: 'f' });
});
