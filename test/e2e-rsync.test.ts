// End to end: `rsync -a` into a real kernel FUSE mount (the default binding) on a real Azurite, then again: the
// second run must send nothing, so every size, mtime, mode and symlink the first run set must read back as rsync
// set it — also once the files were exported and some released, and on a second mount of the container from an
// empty cache (the attributes then come from the blobs' metadata), and with auto-export archiving them meanwhile.
import t from 'tap';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, utimesSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startAzurite } from './helpers/azurite.js';
import { mountContainer, type MountFixture } from './helpers/mount.js';

const azurite = await startAzurite();
t.teardown(() => azurite.stop());

/** A small tree with what rsync -a carries: nested and empty directories, modes (sticky too), mtimes with
 * fractions of a second, a 0-byte file, a symlink. */
function sourceTree(): string {
  const src = mkdtempSync(join(tmpdir(), 'blobhsm-rsync-src-'));
  t.teardown(() => rmSync(src, { recursive: true, force: true }));
  mkdirSync(join(src, 'd', 'e'), { recursive: true });
  mkdirSync(join(src, 'empty'));
  for (let i = 1; i <= 12; i++) {
    writeFileSync(join(src, 'd', 'e', `f${i}`), Buffer.alloc(i * 1000, i));
    writeFileSync(join(src, `g${i}`), `file ${i}\n`);
  }
  writeFileSync(join(src, 'zero'), '');
  symlinkSync('d/e/f1', join(src, 'link'));
  chmodSync(join(src, 'g1'), 0o600);
  chmodSync(join(src, 'g2'), 0o755);
  chmodSync(join(src, 'empty'), 0o1777);
  const past = new Date('2020-02-03T04:05:06.123Z');
  for (const p of ['g3', 'd/e/f2', 'zero', 'd/e']) utimesSync(join(src, p), past, past);
  return src;
}

/** rsync -a SRC/ DEST/ with the itemized changes and the stats: what it sent. */
async function rsync(m: MountFixture, src: string, dest: string): Promise<{ transferred: number; changes: string[] }> {
  const r = await m.sh(`rsync -a --itemize-changes --stats '${src}/' '${dest}/'`);
  if (r.code !== 0) throw new Error(`rsync exit ${r.code}: ${r.stderr}`);
  const n = /Number of regular files transferred: ([\d,]+)/.exec(r.stdout)?.[1];
  if (n === undefined) throw new Error(`no rsync stats in: ${r.stdout}`);
  // Itemized lines: an update type (<>ch.*) and a file type (fdLDS), then the attribute letters.
  const changes = r.stdout.split('\n').filter((l) => /^[<>ch.*][fdLDS][^ ]* /.test(l));
  return { transferred: Number(n.replace(/,/g, '')), changes };
}

t.test('a second rsync -a into the mount sends nothing, also after export, release and on a fresh mount', async (t) => {
  const src = sourceTree();
  const m = await mountContainer(t, azurite);
  const dest = join(m.mountpoint, 'tree');

  const first = await rsync(m, src, dest);
  t.equal(first.transferred, 25, 'the first run sends every regular file');
  const again = await rsync(m, src, dest);
  t.same(again, { transferred: 0, changes: [] }, 'second run: nothing sent, no attribute changed');

  const exported = await m.cli(['export', m.mountpoint, '--prefix', '/tree', '--json']);
  t.equal(exported.code, 0, exported.stderr);
  const released = await m.cli(['hsm_release', join(dest, 'g3'), join(dest, 'd', 'e', 'f2'), join(dest, 'd', 'e', 'f12')]);
  t.equal(released.code, 0, released.stderr);
  t.match((await m.cli(['hsm_state', join(dest, 'g3')])).stdout, /released exists archived/);
  t.same(await rsync(m, src, dest), { transferred: 0, changes: [] }, 'after export and release: nothing sent');

  // Another mount of the container, with an empty cache: the tree comes from the blobs the export wrote.
  const fresh = await mountContainer(t, azurite, [], [], undefined, {}, m.store);
  t.same(await rsync(fresh, src, join(fresh.mountpoint, 'tree')), { transferred: 0, changes: [] }, 'fresh mount from the blobs: nothing sent');
});

t.test('with the JavaScript thread reading the device (BLOBHSM_FUSE_LOOP=main): the tree arrives whole, a second rsync -a sends nothing, the mount unmounts', async (t) => {
  const src = sourceTree();
  const m = await mountContainer(t, azurite, [], [], undefined, { BLOBHSM_FUSE_LOOP: 'main' });
  const logged = await m.sh('cat "$BLOBHSM_STATE_DIR"/logs/*.log');
  t.match(logged.stdout, /libfuse3 binding: [^"]*, \/dev\/fuse read by the JavaScript thread/, 'the daemon reads the device on its JavaScript thread');
  const dest = join(m.mountpoint, 'tree');
  t.equal((await rsync(m, src, dest)).transferred, 25, 'the first run sends every regular file');
  t.same(await rsync(m, src, dest), { transferred: 0, changes: [] }, 'second run: nothing sent, no attribute changed');
  const same = await m.sh(`diff -r '${src}' '${dest}' && echo same`);
  t.equal(same.stdout, 'same\n', `every byte and symlink as in the source: ${same.stdout}${same.stderr}`);
  const unmounted = await m.unmount();
  t.equal(unmounted.code, 0, unmounted.stderr);
});

t.test('with auto-export archiving the files as rsync writes them, a second rsync -a sends nothing', async (t) => {
  const src = sourceTree();
  const m = await mountContainer(t, azurite, [], ['--auto-export', '--auto-export-min-age', '1', '--auto-export-interval', '1']);
  const dest = join(m.mountpoint, 'tree');
  t.equal((await rsync(m, src, dest)).transferred, 25);
  // Until auto-export has archived every file rsync wrote (a state the daemon reports, polled).
  const archived = async () => {
    const r = await m.sh(`find "$MNT/tree" -type f -exec $BLOBHSM hsm_state {} +`);
    return r.stdout.split('\n').filter((l) => /\) exists archived/.test(l)).length;
  };
  for (let i = 0; i < 300 && (await archived()) < 25; i++) await new Promise((r) => setTimeout(r, 200));
  t.equal(await archived(), 25, 'every file exported by auto-export');
  t.same(await rsync(m, src, dest), { transferred: 0, changes: [] }, 'after auto-export: nothing sent');
});
