// End to end on the libfuse3 binding (a real kernel mount, a real Azurite): FIFOs (mkfifo, mknod p) and Unix-domain
// sockets (python3 bind) made by another uid belong to it with the mode its umask left; stat and readdir show their
// types; a writer and a reader meet through a FIFO (the kernel carries the data: blobhsm sees no READ or WRITE); a
// client connects to a socket bound in the mount; chmod/chown/rename/link/unlink work on them; devices are refused
// (EPERM); lfs's hsm_state answers as for a non-regular file; an export job skips them and counts them; they
// survive a remount from the same cache (docs/SEMANTICS.md §4).
import t from 'tap';
import { chmodSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { startAzurite } from './helpers/azurite.js';
import { mountContainer, type CliResult, type MountFixture } from './helpers/mount.js';
import { blobNames, exportJson } from './helpers/write-checks.js';

const azurite = await startAzurite();
t.teardown(() => azurite.stop());

/** Runs a shell command in the mount's world-writable directory `w` as the unprivileged user `nobody`. */
function asNobody(m: MountFixture, command: string): Promise<CliResult> {
  return m.sh(`cd "$MNT/w" && runuser -u nobody -- /bin/sh -c '${command}'`);
}

/** `stat -c '%F %a %U'` of entries of `w`, one line each. */
async function kinds(m: MountFixture, names: string[]): Promise<string[]> {
  const r = await m.sh(`cd "$MNT/w" && stat -c '%n: %F %a %U:%G' ${names.join(' ')}`);
  return r.stdout.trim().split('\n');
}

/** READ and WRITE requests the daemon has served. */
async function io(m: MountFixture): Promise<{ readOps: number; writeOps: number }> {
  const r = await m.cli(['status', m.mountpoint, '--json']);
  return (JSON.parse(r.stdout) as { io: { readOps: number; writeOps: number } }).io;
}

// One python3 process binds a socket in the mount, connects to it by path and passes a message through.
const SOCKET_ROUNDTRIP = `import os, socket
os.umask(0o077)
server = socket.socket(socket.AF_UNIX)
server.bind("sock")
server.listen(1)
client = socket.socket(socket.AF_UNIX)
client.connect("sock")
peer, _ = server.accept()
client.sendall(b"ping")
print(peer.recv(4).decode())
`;

t.test('FIFOs and sockets on a real mount: owner, mode, types, data through them, local-only export, remount', async (t) => {
  const m = await mountContainer(t, azurite, [{ name: 'd/f.txt', data: 'file\n' }], ['--allow-other']);
  chmodSync(dirname(m.mountpoint), 0o755); // the fixture's base is 0700: let nobody reach the mount
  const sh = async (cmd: string) => {
    const r = await m.sh(cmd);
    t.equal(r.code, 0, `${cmd}: ${r.stderr}`);
    return r.stdout;
  };
  await sh('mkdir "$MNT/w" && chmod 1777 "$MNT/w" && echo x > "$MNT/w/plain"');
  const options = (await sh(`awk -v m="$MNT" '$2 == m { print $4 }' /proc/self/mounts`)).trim().split(',');
  t.ok(options.includes('nodev'), `the mount is nodev (${options.join(',')})`);

  for (const [cmd, what] of [
    ['umask 027 && mkfifo p', 'mkfifo'],
    ['umask 022 && mknod p2 p', 'mknod p'],
  ]) {
    const r = await asNobody(m, cmd!);
    t.equal(r.code, 0, `${what} as nobody: ${r.stderr}`);
  }
  const script = join(dirname(m.mountpoint), 'socket-roundtrip.py');
  writeFileSync(script, SOCKET_ROUNDTRIP, { mode: 0o644 });
  const bound = await asNobody(m, `python3 ${script}`);
  t.equal(bound.code, 0, bound.stderr);
  t.equal(bound.stdout, 'ping\n', 'a client connected to the socket bound in the mount');
  t.same(await kinds(m, ['p', 'p2', 'sock', 'plain']), [
    'p: fifo 640 nobody:nogroup',
    'p2: fifo 644 nobody:nogroup',
    'sock: socket 700 nobody:nogroup',
    'plain: regular file 644 root:root',
  ], "the caller's uid/gid, the mode its umask left, the type bits");

  // readdir's d_type: Python's DirEntry answers is_file()/is_dir() from it without a stat.
  const types = await sh(`cd "$MNT/w" && python3 -c 'import os; print(" ".join(f"{e.name}:{int(e.is_file(follow_symlinks=False))}{int(e.is_dir(follow_symlinks=False))}" for e in sorted(os.scandir("."), key=lambda e: e.name)))'`);
  t.equal(types.trim(), 'p:00 p2:00 plain:10 sock:00', 'readdir gives neither a regular file nor a directory for them');
  t.equal((await sh(`cd "$MNT/w" && find . -type p | sort && find . -type s`)).trim(), './p\n./p2\n./sock', 'find -type p / -type s');

  // A writer and a reader through the FIFO: the kernel's pipe carries the data, blobhsm serves no READ or WRITE.
  const before = await io(m);
  t.equal(await sh(`cd "$MNT/w" && (echo through-the-fifo > p &) && cat p`), 'through-the-fifo\n');
  const after = await io(m);
  t.same({ reads: after.readOps - before.readOps, writes: after.writeOps - before.writeOps }, { reads: 0, writes: 0 }, 'no data reached the daemon');

  // chmod, chown, rename, link, unlink.
  await sh(`cd "$MNT/w" && chmod 600 p && chown 1:2 p && mv p moved && ln moved linked && rm p2`);
  t.same(await kinds(m, ['moved', 'linked']), ['moved: fifo 600 daemon:bin', 'linked: fifo 600 daemon:bin']);
  t.equal((await sh('stat -c %h "$MNT/w/moved"')).trim(), '2', 'two names, one inode');
  t.equal((await m.sh('test -e "$MNT/w/p2"')).code, 1, 'unlinked');

  // Devices are refused, by root too.
  const dev = await m.sh('mknod "$MNT/w/tty" c 5 0');
  t.not(dev.code, 0);
  t.match(dev.stderr, /Operation not permitted/, 'a character device: EPERM');
  t.match((await m.sh('mknod "$MNT/w/disk" b 7 0')).stderr, /Operation not permitted/, 'a block device: EPERM');

  // lfs: hsm_state as lfs's open + ioctl answers; the HSM requests name them not regular files.
  const state = await m.cli(['hsm_state', `${m.mountpoint}/w/moved`, `${m.mountpoint}/w/sock`, `${m.mountpoint}/w/plain`]);
  t.equal(state.code, 25, 'the first failure: ENOTTY');
  t.match(state.stderr, `lfs hsm_state: get HSM state for '${m.mountpoint}/w/moved' failed: Inappropriate ioctl for device`);
  t.match(state.stderr, `lfs hsm_state: get HSM state for '${m.mountpoint}/w/sock' failed: No such device or address`);
  t.equal(state.stdout, `${m.mountpoint}/w/plain: (0x00000000)\n`, 'and goes on with the next file');
  const archive = await m.cli(['hsm_archive', `${m.mountpoint}/w/moved`]);
  t.equal(archive.code, 4);
  t.match(archive.stderr, `error: "${m.mountpoint}/w/moved" is not a regular file`);

  // Export skips them, counted; the line the CLI prints says why.
  const exported = await exportJson(m);
  t.equal(exported.code, 0, exported.stderr);
  t.match(exported.job, { state: 'Succeeded', stats: { filesExported: 1, skippedLocalOnly: 3 } }, 'moved, linked and sock');
  t.same(await blobNames(m.store), ['d/f.txt', 'w', 'w/plain'], 'no blob for them');
  const line = await m.cli(['export', m.mountpoint]);
  t.match(line.stdout, /skipped 3 \(not a regular file, directory or symlink: local only: FIFOs and sockets\)/);

  // A remount from the same cache keeps them, and the FIFO still works.
  t.equal((await m.unmount()).code, 0);
  const again = await m.remount();
  t.equal(again.code, 0, again.stderr);
  t.same(await kinds(m, ['moved', 'linked', 'sock']), ['moved: fifo 600 daemon:bin', 'linked: fifo 600 daemon:bin', 'sock: socket 700 nobody:nogroup']);
  t.equal(await sh(`cd "$MNT/w" && (echo after-remount > linked &) && cat moved`), 'after-remount\n');
});
