// End to end on a real kernel mount of a real Azurite: `lfs find` answered by the daemon from the metadata store
// (--hsm-state, -type, --size, !, -print0), piped into `hsm_restore --filelist -` (NUL separated, one process for
// the whole list), `hsm_state --filelist -` (newline separated), and `lfs df`. Every command is the real
// executable run by a shell, as a policy engine or a prefetch script runs it.
import t from 'tap';
import { appendFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startAzurite } from './helpers/azurite.js';
import { mountContainer } from './helpers/mount.js';

const azurite = await startAzurite();
t.teardown(() => azurite.stop());

const KiB = 1024;
const m = await mountContainer(t, azurite, [
  { name: 'data/big.bin', data: Buffer.alloc(64 * KiB, 7) },
  { name: 'data/small one.txt', data: 'small\n' },
  { name: 'data/sub/deep.txt', data: 'deep\n' },
  { name: 'data/sub/deeper/last.txt', data: 'last\n' },
  { name: 'other.txt', data: 'other\n' },
]);
const p = (name: string) => join(m.mountpoint, name);
const lines = (text: string) => text.split('\n').filter((l) => l !== '');

t.test('lfs find --hsm-state over the imported tree, and its other criteria', async (t) => {
  const released = await m.sh('$BLOBHSM lfs find "$MNT/data" -type f --hsm-state released');
  t.equal(released.code, 0, released.stderr);
  t.same(lines(released.stdout), ['data/big.bin', 'data/small one.txt', 'data/sub/deep.txt', 'data/sub/deeper/last.txt'].map(p), 'every imported file is released, depth first in name order');
  const dirs = await m.sh('$BLOBHSM lfs find "$MNT" -type d');
  t.same(lines(dirs.stdout), [m.mountpoint, p('data'), p('data/sub'), p('data/sub/deeper')], 'the start itself is listed, as find does');
  const big = await m.sh('$BLOBHSM lfs find "$MNT" --size +32k');
  t.same(lines(big.stdout), [p('data/big.bin')]);
  const notFiles = await m.sh('$BLOBHSM lfs find "$MNT/data/" ! -type f --maxdepth 1');
  t.same(lines(notFiles.stdout), [`${m.mountpoint}/data/`, p('data/sub')], 'a trailing slash is kept on the start only');
  const missing = await m.sh('$BLOBHSM lfs find "$MNT/nothing-here"');
  t.equal(missing.code, 2, 'ENOENT');
  t.equal(missing.stderr, `lfs find: failed for '${p('nothing-here')}': No such file or directory\n`);
  const bad = await m.sh('$BLOBHSM lfs find "$MNT" --hsm-state gone');
  t.equal(bad.code, 4, 'usage error');
  t.match(bad.stderr, /unknown HSM state 'gone'/);
});

t.test('find -print0 | hsm_restore --filelist - restores exactly the listed files in one process', async (t) => {
  const r = await m.sh('$BLOBHSM lfs find "$MNT/data/sub" -type f -print0 | $BLOBHSM lfs hsm_restore --wait --filelist -');
  t.equal(r.code, 0, r.stderr);
  t.equal(r.stdout, '');
  const resident = await m.sh('$BLOBHSM lfs find "$MNT" -type f ! --hsm-state released');
  t.same(lines(resident.stdout), [p('data/sub/deep.txt'), p('data/sub/deeper/last.txt')], 'restored: no longer released');
  const still = await m.sh('$BLOBHSM lfs find "$MNT" -type f --hsm-state released,^dirty');
  t.same(lines(still.stdout), [p('data/big.bin'), p('data/small one.txt'), p('other.txt')]);
});

t.test('hsm_state --filelist - reads newline-separated paths from stdin; dirty and new files are found', async (t) => {
  await appendFile(p('data/sub/deep.txt'), 'more\n');
  await writeFile(p('data/new.txt'), 'new\n');
  const list = [p('data/sub/deep.txt'), p('data/new.txt'), p('data/small one.txt')].join('\n') + '\n';
  const r = await m.cli(['hsm_state', '--filelist', '-'], { input: list });
  t.equal(r.code, 0, r.stderr);
  t.equal(
    r.stdout,
    `${p('data/sub/deep.txt')}: (0x0000000b) exists dirty archived, archive_id:1\n` +
      `${p('data/new.txt')}: (0x00000000)\n` +
      `${p('data/small one.txt')}: (0x0000000d) released exists archived, archive_id:1\n`,
  );
  const dirty = await m.sh('$BLOBHSM lfs find "$MNT" --hsm-state dirty');
  t.same(lines(dirty.stdout), [p('data/sub/deep.txt')]);
  const none = await m.sh('$BLOBHSM lfs find "$MNT" -type f --hsm-state none');
  t.same(lines(none.stdout), [p('data/new.txt')], 'a new file has no HSM state');
  const empty = await m.cli(['hsm_state', '--filelist', '-'], { input: '' });
  t.equal(empty.code, 0, 'an empty list does nothing');
  t.equal(empty.stdout, '');
});

t.test('lfs df: the metadata store and the cache in lfs df layout', async (t) => {
  const r = await m.sh('$BLOBHSM lfs df "$MNT"');
  t.equal(r.code, 0, r.stderr);
  const out = r.stdout.split('\n');
  t.equal(out[0], 'UUID                   1K-blocks        Used   Available Use% Mounted on');
  t.match(out[1], new RegExp(`^${m.container.slice(0, 20)}.*-MDT0000_UUID +\\d+ +[1-9]\\d* +\\d+ +\\d+% ${m.mountpoint}\\[MDT:0\\]$`), 'the metadata store uses space');
  t.match(out[2], new RegExp(`-OST0000_UUID +\\d+ +[1-9]\\d* +\\d+ +\\d+% ${m.mountpoint}\\[OST:0\\]$`), 'restored data is in the cache');
  t.equal(out[3], '');
  t.match(out[4], new RegExp(`^filesystem_summary: +\\d+ +\\d+ +\\d+ +\\d+% ${m.mountpoint}$`));
  const inodes = await m.sh('$BLOBHSM lfs df -i "$MNT"');
  t.match(inodes.stdout.split('\n')[0], /^UUID +Inodes +IUsed +IFree IUse% Mounted on$/);
});
