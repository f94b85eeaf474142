// End to end: `blobhsm unmount` touches only blobhsm's own mounts. A tmpfs (mounted by this test under its own
// temporary directory) is refused and stays mounted; a mount with a file open is refused with EBUSY and the
// writer keeps writing; --lazy detaches at once, the writer still finishes and the daemon then shuts down cleanly
// (both bindings); --all unmounts every mount of the caller's registry; a mount whose daemon died is listed as
// dead, explained by the lfs commands, and detached.
import t from 'tap';
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startAzurite } from './helpers/azurite.js';
import { mountContainer, seed, type MountFixture } from './helpers/mount.js';
import { withContainer } from './helpers/azurite.js';
import { mountAt } from '../src/daemon/mount-checks.js';
import { isAlive } from '../src/control/registry.js';

const azurite = await startAzurite();
t.teardown(() => azurite.stop());

/** A shell holding `file` open for writing: writes "one", then one line per `go` on stdin; reports each write. */
class Writer {
  readonly child: ChildProcessWithoutNullStreams;
  private out = '';
  private waiters: Array<() => void> = [];
  readonly exited: Promise<number | null>;
  constructor(file: string) {
    this.child = spawn('/bin/sh', ['-c', 'exec 3>"$1"; echo one >&3 && echo wrote-one; while read line; do echo "$line" >&3 && echo "wrote-$line" || echo "failed-$line"; done', 'sh', file]);
    this.child.stdout.on('data', (c: Buffer) => {
      this.out += c.toString();
      for (const w of this.waiters.splice(0)) w();
    });
    this.exited = new Promise((done) => this.child.on('exit', (code) => done(code)));
  }
  /** Resolves once the writer printed `line` (or exited). */
  async saw(line: string): Promise<boolean> {
    let gone = false;
    void this.exited.then(() => {
      gone = true;
      for (const w of this.waiters.splice(0)) w();
    });
    while (!this.out.split('\n').includes(line) && !gone) await new Promise<void>((r) => this.waiters.push(r));
    return this.out.split('\n').includes(line);
  }
  write(word: string): void {
    this.child.stdin.write(word + '\n');
  }
  async close(): Promise<number | null> {
    this.child.stdin.end();
    return this.exited;
  }
}

/** Waits until a process is gone (the daemon exits after its cleanups); bounded by the test's own timeout. */
async function gone(pid: number): Promise<void> {
  while (isAlive(pid)) await new Promise((r) => setTimeout(r, 50));
}

function ourFstype(m: MountFixture): string | undefined {
  return mountAt(m.mountpoint)?.fstype;
}

t.test('a tmpfs the test mounted is refused and stays mounted, for MOUNTPOINT and its files alike', async (t) => {
  const base = mkdtempSync(join(tmpdir(), 'blobhsm-tmpfs-'));
  const dir = join(base, 'tmpfs');
  mkdirSync(dir);
  const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'blobhsm-test-tmpfs', dir]);
  t.equal(mounted.status, 0, String(mounted.stderr));
  t.teardown(() => {
    // Only what this test mounted.
    if (mountAt(dir)?.source === 'blobhsm-test-tmpfs') spawnSync('umount', [dir]);
    rmSync(base, { recursive: true, force: true });
  });
  writeFileSync(join(dir, 'keep.txt'), 'kept\n');
  // Any fixture gives the environment of a blobhsm user (state dir, credentials).
  const m = await mountContainer(t, azurite, []);
  for (const args of [['unmount', dir], ['unmount', '--lazy', dir]]) {
    const r = await m.cli(args);
    t.not(r.code, 0, `${args.join(' ')} fails`);
    t.match(r.stderr, new RegExp(`${dir} is not a blobhsm mount \\(it is tmpfs from blobhsm-test-tmpfs\\).*left it mounted`));
    t.equal(mountAt(dir)?.fstype, 'tmpfs', 'still mounted');
  }
  t.equal(readFileSync(join(dir, 'keep.txt'), 'utf8'), 'kept\n', 'and its files are there');
  const notMounted = await m.cli(['unmount', base]);
  t.not(notMounted.code, 0);
  t.match(notMounted.stderr, /is not mounted/);
  t.equal(ourFstype(m), 'fuse.blobhsm', 'our own mount carries fstype fuse.blobhsm');
  const opts = mountAt(m.mountpoint)!.superOptions.split(',');
  t.ok(opts.includes('default_permissions'), 'permissions are enforced by the kernel');
  t.notOk(opts.includes('allow_other'), 'allow_other only when asked');
});

t.test('a busy mount is refused with EBUSY and the writer keeps writing; then it unmounts', async (t) => {
  const m = await mountContainer(t, azurite, [{ name: 'd/a.txt', data: 'a' }]);
  const pid = m.daemonPid()!;
  const file = join(m.mountpoint, 'w.txt');
  const writer = new Writer(file);
  t.ok(await writer.saw('wrote-one'));
  const r = await m.cli(['unmount', m.mountpoint]);
  t.equal(r.code, 1);
  t.match(r.stderr, /Device or resource busy \(1 open file\).*--lazy/);
  t.equal(ourFstype(m), 'fuse.blobhsm', 'still mounted');
  t.ok(isAlive(pid), 'the daemon still serves');
  writer.write('two');
  t.ok(await writer.saw('wrote-two'), 'the writer writes after the refused unmount');
  t.equal(await writer.close(), 0);
  t.equal(await readFile(file, 'utf8'), 'one\ntwo\n');
  const status = JSON.parse((await m.cli(['status', '--json', m.mountpoint])).stdout) as { openFiles: number };
  t.equal(status.openFiles, 0);
  const done = await m.cli(['unmount', m.mountpoint]);
  t.equal(done.code, 0, done.stderr);
  t.match(done.stdout, /^unmounted /);
  t.equal(ourFstype(m), undefined);
  t.notOk(isAlive(pid), 'the daemon has exited');
});

for (const binding of ['fuse3', 'fuse2']) {
  t.test(`--lazy (${binding}) detaches at once; the writer finishes and the daemon exits cleanly when it closes; nothing is lost`, async (t) => {
    const m = await mountContainer(t, azurite, [], ['--fuse', binding]);
    const pid = m.daemonPid()!;
    const file = join(m.mountpoint, 'lazy.txt');
    const writer = new Writer(file);
    t.ok(await writer.saw('wrote-one'));
    const r = await m.cli(['unmount', '--lazy', m.mountpoint]);
    t.equal(r.code, 0, r.stderr);
    t.match(r.stdout, /detached .*serves the 1 open file and exits once they are closed/);
    t.equal(ourFstype(m), undefined, 'detached from the namespace');
    t.ok(isAlive(pid));
    writer.write('two');
    t.ok(await writer.saw('wrote-two'), 'the open file keeps working');
    t.equal(await writer.close(), 0);
    await gone(pid);
    // Its cleanups ran (a daemon that died leaves both behind): the cache lock is released, the registry entry gone.
    t.notOk(existsSync(join(m.cacheDir, 'daemon.pid')), 'the cache directory lock is released');
    t.equal((await m.cli(['list'])).stdout, 'no blobhsm mounts\n', 'its registry entry is gone');
    const again = await m.remount();
    t.equal(again.code, 0, again.stderr);
    t.equal(await readFile(file, 'utf8'), 'one\ntwo\n', 'what the writer wrote after the detach is kept');
  });
}

t.test('unmount --all unmounts every mount of the registry; a second call finds none', async (t) => {
  const m = await mountContainer(t, azurite, []);
  const store2 = await withContainer(t, azurite);
  await seed(store2, [{ name: 'x', data: 'x' }]);
  const second = join(m.mountpoint, '..', 'second');
  mkdirSync(second);
  const r = await m.cli(['mount', second, '--container', store2.container, '--cache-dir', join(m.cacheDir, '..', 'cache2')]);
  t.equal(r.code, 0, r.stderr);
  t.teardown(() => void m.cli(['unmount', second]));
  const listed = JSON.parse((await m.cli(['list', '--json'])).stdout) as Array<{ mountpoint: string; alive: boolean }>;
  t.same(listed.map((l) => l.alive), [true, true]);
  const all = await m.cli(['unmount', '--all']);
  t.equal(all.code, 0, all.stderr);
  t.equal(all.stdout.split('\n').filter((l) => l.startsWith('unmounted ')).length, 2);
  t.equal(ourFstype(m), undefined);
  t.equal(mountAt(second), undefined);
  t.equal((await m.cli(['unmount', '--all'])).stdout, 'no blobhsm mounts\n');
  const both = await m.cli(['unmount', '--all', m.mountpoint]);
  t.equal(both.code, 4, 'MOUNTPOINT and --all together are a usage error');
});

t.test('a mount whose daemon died: list says dead, lfs says ENOTCONN and what to run, unmount detaches it', async (t) => {
  const m = await mountContainer(t, azurite, [{ name: 'f.txt', data: 'f' }]);
  const pid = m.daemonPid()!;
  process.kill(pid, 'SIGKILL');
  await gone(pid);
  const list = await m.cli(['list']);
  t.match(list.stdout, new RegExp(`${m.mountpoint} .* ${pid} +dead \\(run blobhsm unmount ${m.mountpoint}\\)`));
  const state = await m.cli(['hsm_state', join(m.mountpoint, 'f.txt')]);
  t.equal(state.code, 107);
  t.match(state.stderr, /get HSM state for '.*f\.txt' failed: Transport endpoint is not connected\n/);
  t.match(state.stderr, new RegExp(`run blobhsm unmount ${m.mountpoint}, then mount it again`));
  const r = await m.cli(['unmount', m.mountpoint]);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, new RegExp(`detached ${m.mountpoint} \\(its daemon \\(pid ${pid}\\) was not running\\)`));
  t.equal(ourFstype(m), undefined);
  t.equal((await m.cli(['list'])).stdout, 'no blobhsm mounts\n');
});
