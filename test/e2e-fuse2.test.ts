// End to end on the fuse-native binding (libfuse 2, `--fuse fuse2`, the fallback), a named subset: mount identity
// and request sizes, reads and writes, hard links, hsm_release dropping the pages, what libfuse 2 does with files unlinked while open
// (.fuse_hidden*, never exported), the two utimens limits it pins, FIFOs and sockets through its mknod, and the automatic fallback when the libfuse3
// addon is missing (hidden with BLOBHSM_FUSE3_ADDON). The whole suite runs on the libfuse3 binding.
import t from 'tap';
import { readFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { startAzurite } from './helpers/azurite.js';
import { mountContainer } from './helpers/mount.js';
import { S, blobNames, exportJson, readBlob, states } from './helpers/write-checks.js';

const azurite = await startAzurite();
t.teardown(() => azurite.stop());

const FUSE2 = ['--fuse', 'fuse2'];
const mountLine = (mnt: string) => readFileSync('/proc/self/mounts', 'utf8').split('\n').find((l) => l.split(' ')[1] === mnt) ?? '';

t.test('fuse2: mount identity, reads, writes, hard links, unlinked open files as .fuse_hidden', async (t) => {
  const m = await mountContainer(t, azurite, [{ name: 'a.txt', data: 'alpha\n' }, { name: 'opened.txt', data: 'old\n' }], FUSE2);
  t.match(mountLine(m.mountpoint), /^blobhsm \S+ fuse\.blobhsm .*max_read=131072/, 'fuse.blobhsm, libfuse 2 read size');
  t.equal(await readFile(join(m.mountpoint, 'a.txt'), 'utf8'), 'alpha\n');
  const sh = async (cmd: string) => {
    const r = await m.sh(`cd "$MNT" && ${cmd}`);
    t.equal(r.code, 0, `${cmd}: ${r.stderr}`);
    return r.stdout;
  };
  await sh('echo one > f && ln f g && echo two-two >> g');
  t.equal(await sh('cat f'), 'one\ntwo-two\n', 'a write through one name reads through the other');
  const py = [
    'import os',
    'fd = os.open("tmpfile", os.O_CREAT | os.O_WRONLY, 0o644)',
    'os.write(fd, b"scratch")',
    'os.unlink("tmpfile")',
    'rd = os.open("opened.txt", os.O_RDONLY)',
    'open("opened.new", "w").write("new\\n")',
    'os.rename("opened.new", "opened.txt")',
    'print(len([n for n in os.listdir(".") if n.startswith(".fuse_hidden")]))',
    'print(os.pread(rd, 100, 0).decode().strip())',
    'os.close(fd)',
    'os.close(rd)',
  ].join('\n');
  const out = (await sh(`python3 -c '${py}'`)).split('\n');
  t.equal(out[0], '2', 'libfuse 2 hides both as .fuse_hidden while open');
  t.equal(out[1], 'old', 'the replaced file stays readable through its descriptor');
  t.equal((await exportJson(m)).code, 0);
  t.notOk((await blobNames(m.store)).some((n) => n.includes('.fuse_hidden')), 'no .fuse_hidden blob');
  t.equal((await readBlob(m.store, 'opened.txt'))!.data.toString(), 'new\n');

  // hsm_release: the CLI drops the kernel's pages itself (libfuse 2 cannot be told), so the next read restores.
  const a = join(m.mountpoint, 'a.txt');
  t.equal(await readFile(a, 'utf8'), 'alpha\n', 'read again: served from the page cache');
  const release = await m.cli(['hsm_release', a]);
  t.equal(release.code, 0, release.stderr);
  const reads = await m.reads();
  t.equal(await readFile(a, 'utf8'), 'alpha\n');
  t.ok((await m.reads()) > reads, 'the read after hsm_release fetched the blob');
});

t.test('fuse2: utimens through fuse-native and libfuse 2 (pins two known limits)', async (t) => {
  const m = await mountContainer(t, azurite, [], FUSE2);
  const times = async () => (await m.sh('stat -c "%X %Y" "$MNT/f"')).stdout.trim();
  await m.sh('echo x > "$MNT/f"');
  await m.sh('TZ=UTC touch -d "2001-02-03 04:05:06" "$MNT/f"');
  t.equal(await times(), '981173106 981173106', 'touch -d sets both times (the same value): right');
  await m.sh('TZ=UTC touch -m -d "2011-01-01 00:00:00" "$MNT/f"');
  t.equal(await times(), '981173106 981173106', 'touch -m is ignored: libfuse 2 calls utimens only with both times');
  await m.sh(`python3 -c 'import os; os.utime(os.environ["MNT"] + "/f", (1000000000, 1200000000))'`);
  t.equal(await times(), '1000000000 1000000000', 'utimensat(a, m) sets mtime = a: fuse-native passes atime twice');
  t.same(await states(m, ['f']), { f: S.NEW }, 'utimens never dirties');
});

t.test('fuse2: FIFOs and sockets through fuse-native mknod, owned by the daemon user; export skips them', async (t) => {
  const m = await mountContainer(t, azurite, [], FUSE2);
  const sh = async (cmd: string) => {
    const r = await m.sh(`cd "$MNT" && ${cmd}`);
    t.equal(r.code, 0, `${cmd}: ${r.stderr}`);
    return r.stdout;
  };
  await sh('umask 027 && mkfifo p');
  const py = 'import socket; s = socket.socket(socket.AF_UNIX); s.bind("sock"); s.listen(1); c = socket.socket(socket.AF_UNIX); c.connect("sock"); print("connected")';
  t.equal(await sh(`python3 -c '${py}'`), 'connected\n', 'bind and connect on a socket in the mount');
  t.equal(await sh(`stat -c '%n %F %a' p sock`), 'p fifo 640\nsock socket 755\n', 'types and the modes the umask left');
  t.equal(await sh('(echo through > p &) && cat p'), 'through\n', 'a writer and a reader through the FIFO');
  t.match((await m.sh('mknod "$MNT/tty" c 5 0')).stderr, /Operation not permitted/, 'devices: EPERM');
  const exported = await exportJson(m);
  t.match(exported.job, { state: 'Succeeded', stats: { skippedLocalOnly: 2 } });
  t.same(await blobNames(m.store), [], 'no blob for them');
});

t.test('without the libfuse3 addon the mount falls back to fuse-native and says why; --fuse fuse3 refuses', async (t) => {
  const hidden = { BLOBHSM_FUSE3_ADDON: '/nonexistent/blobhsm_fuse.node' };
  const m = await mountContainer(t, azurite, [{ name: 'a.txt', data: 'alpha\n' }], [], undefined, hidden);
  t.match(mountLine(m.mountpoint), /fuse\.blobhsm .*max_read=131072/, 'served by libfuse 2');
  t.equal(await readFile(join(m.mountpoint, 'a.txt'), 'utf8'), 'alpha\n');
  const log = readFileSync(join(m.env.BLOBHSM_STATE_DIR!, 'logs', (await m.sh('ls "$BLOBHSM_STATE_DIR/logs"')).stdout.trim()), 'utf8');
  t.match(log, /using fuse-native \(libfuse 2\): the libfuse3 binding is not built \(\/nonexistent\/blobhsm_fuse\.node is missing; run npm run setup\)/);
  t.match(log, / with fuse2 /);
  t.equal((await m.unmount()).code, 0);
  const refused = await m.remount(['--fuse', 'fuse3']);
  t.not(refused.code, 0);
  t.match(refused.stderr, /--fuse fuse3: the libfuse3 binding is not built/);
});
