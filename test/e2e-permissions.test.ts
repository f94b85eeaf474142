// End to end: nobody gets in where they don't belong. As root, a mount is closed to other users unless asked
// (--allow-other), and then the kernel enforces the permissions shown, with directories that are not
// world-writable: another uid (runuser -u nobody) can read but not replace (`mv -f`) or delete a file of an
// imported directory. --file-mode/--dir-mode/--umask set the modes of entries without permissions. Every file the
// daemon makes is 0600 and every directory 0700 whatever the umask; a secret given as a flag is hidden from ps.
// hsm_set of a privileged flag is decided by the control socket's peer credentials: nobody, writing uid 0 into
// its request, is refused; root is allowed.
import t, { type Test } from 'tap';
import { execFile, spawn } from 'node:child_process';
import { chmodSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { startAzurite, withContainer, EMULATOR_KEY } from './helpers/azurite.js';
import { BIN, mountContainer, seed, type CliResult, type MountFixture } from './helpers/mount.js';
import { sandbox } from './helpers/sandbox.js';
import { mountAt } from '../src/daemon/mount-checks.js';
import { MountRegistry } from '../src/control/registry.js';
import { requestAs } from './helpers/control-as.js';

const azurite = await startAzurite();
t.teardown(() => azurite.stop());

const tree = [
  { name: 'pub/world.txt', data: 'hello\n' },
  { name: 'pub/shared.txt', data: 'shared\n', metadata: { permissions: '0644' } },
];

/** Runs a shell command as the unprivileged user `nobody`. */
function asNobody(m: MountFixture, command: string): Promise<CliResult> {
  return m.sh(`runuser -u nobody -- /bin/sh -c '${command}'`);
}

/** A mount whose path other users can reach (mkdtemp makes the fixture's base 0700), and a drop box for `nobody`. */
async function sharedMount(t: Test, args: string[]): Promise<{ m: MountFixture; drop: string }> {
  const m = await mountContainer(t, azurite, tree, args);
  chmodSync(dirname(m.mountpoint), 0o755);
  const drop = join(dirname(m.mountpoint), 'drop');
  mkdirSync(drop);
  chmodSync(drop, 0o777);
  return { m, drop };
}

async function attack(t: Test, m: MountFixture, drop: string): Promise<void> {
  const world = join(m.mountpoint, 'pub/world.txt');
  const mv = await asNobody(m, `echo evil > ${drop}/evil && mv -f ${drop}/evil ${world}`);
  t.not(mv.code, 0, 'mv -f over the file is refused');
  t.match(mv.stderr, /Permission denied/);
  const rm = await asNobody(m, `rm -f ${world}`);
  t.not(rm.code, 0, 'rm -f is refused');
  t.match(rm.stderr, /Permission denied/);
  const create = await asNobody(m, `echo x > ${join(m.mountpoint, 'pub/new.txt')}`);
  t.not(create.code, 0, 'creating a file in the directory is refused');
  t.equal((await m.sh(`cat "${world}"`)).stdout, 'hello\n', 'the file is intact');
  const state = await m.cli(['hsm_state', world]);
  t.notMatch(state.stdout, /dirty/, 'and not dirty: export would upload nothing');
}

t.test('a root mount without --allow-other: other users cannot even enter', async (t) => {
  const { m, drop } = await sharedMount(t, []);
  const opts = mountAt(m.mountpoint)!.superOptions.split(',');
  t.notOk(opts.includes('allow_other'));
  const read = await asNobody(m, `cat ${join(m.mountpoint, 'pub/world.txt')}`);
  t.not(read.code, 0);
  t.match(read.stderr, /Permission denied/);
  await attack(t, m, drop);
});

t.test('--allow-other: others read, but cannot replace or delete a file of an imported directory', async (t) => {
  const { m, drop } = await sharedMount(t, ['--allow-other']);
  const opts = mountAt(m.mountpoint)!.superOptions.split(',');
  t.ok(opts.includes('allow_other') && opts.includes('default_permissions'), 'allow_other with default_permissions');
  const pub = await stat(join(m.mountpoint, 'pub'));
  t.equal(pub.mode & 0o7777, 0o755, 'an implicit directory is 0755, owned by root');
  t.equal(pub.uid, 0);
  const read = await asNobody(m, `cat ${join(m.mountpoint, 'pub/world.txt')}`);
  t.equal(read.code, 0, read.stderr);
  t.equal(read.stdout, 'hello\n', 'nobody can read a 0644 file: the mount is open to them');
  await attack(t, m, drop);
});

t.test('--file-mode, --dir-mode and --umask set the modes of entries whose blob has none', async (t) => {
  const { m } = await sharedMount(t, ['--allow-other', '--file-mode', '0664', '--dir-mode', '0775', '--umask', '0027']);
  t.equal((await stat(join(m.mountpoint, 'pub'))).mode & 0o7777, 0o750);
  t.equal((await stat(join(m.mountpoint, 'pub/world.txt'))).mode & 0o7777, 0o640);
  t.equal((await stat(join(m.mountpoint, 'pub/shared.txt'))).mode & 0o7777, 0o644, "a blob's own permissions are kept");
  const list = await asNobody(m, `ls ${join(m.mountpoint, 'pub')}`);
  t.not(list.code, 0, 'others cannot list a 0750 directory');
  const bad = await m.cli(['mount', join(dirname(m.mountpoint), 'drop'), '--container', m.container, '--dir-mode', '999']);
  t.equal(bad.code, 4);
  t.match(bad.stderr, /invalid --dir-mode '999': octal permissions/);
});

/** Every path under `dir` (itself excluded) whose mode lets group or others in. */
function openToOthers(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    const st = statSync(path);
    if (st.mode & 0o077) out.push(`${path} ${(st.mode & 0o7777).toString(8)}`);
    if (st.isDirectory()) out.push(...openToOthers(path));
  }
  return out;
}

t.test('the daemon makes its files 0600 and directories 0700 whatever the umask and the cache directory mode', async (t) => {
  const store = await withContainer(t, azurite);
  await seed(store, [{ name: 'd/f.txt', data: 'f' }]);
  const s = sandbox(t, azurite.connectionString);
  const cacheDir = join(s.base, 'cache');
  mkdirSync(cacheDir, { mode: 0o777 });
  chmodSync(cacheDir, 0o777);
  const sh = (command: string) =>
    new Promise<CliResult>((done) =>
      execFile('/bin/sh', ['-c', command], { env: s.env }, (err, stdout, stderr) =>
        done({ code: err ? Number((err as { code?: unknown }).code ?? 1) : 0, stdout: String(stdout), stderr: String(stderr) }),
      ),
    );
  const blobhsm = `umask 000; "${process.execPath}" "${BIN}"`;
  const r = await sh(`${blobhsm} mount "${s.mountpoint}" --container ${store.container} --cache-dir "${cacheDir}"`);
  t.equal(r.code, 0, r.stderr);
  const w = await sh(`umask 000; echo new > "${s.mountpoint}/d/new.txt" && cat "${s.mountpoint}/d/f.txt" && ${blobhsm} import "${s.mountpoint}" --conflict-mode Skip`);
  t.equal(w.code, 0, w.stderr);
  t.equal(statSync(cacheDir).mode & 0o777, 0o700, 'the cache directory the user made open is closed');
  t.same(openToOthers(cacheDir), [], 'meta.db, its WAL, cache data, job logs');
  t.same(openToOthers(s.stateDir), [], 'registry, socket, logs');
  t.ok(readdirSync(cacheDir).includes('meta.db-wal'), 'the WAL was checked too');
});

t.test('a secret given as a flag is hidden from ps, with a warning; --foreground serves until unmounted', async (t) => {
  const store = await withContainer(t, azurite);
  await seed(store, [{ name: 'f.txt', data: 'f' }]);
  const s = sandbox(t, '');
  const child = spawn(
    process.execPath,
    [BIN, 'mount', s.mountpoint, '--foreground', '--container', store.container, '--cache-dir', join(s.base, 'cache'), '--connection-string', azurite.connectionString],
    { env: { ...s.env, AZURE_STORAGE_CONNECTION_STRING: '' } },
  );
  let stderr = '';
  const mounted = new Promise<void>((done) =>
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
      if (/mounted container /.test(stderr)) done(); // a plain or a JSON log line (pino: "msg":"mounted ...")
    }),
  );
  const exited = new Promise<number | null>((done) => child.on('exit', (code) => done(code)));
  await Promise.race([mounted, exited]);
  const cmdline = readFileSync(`/proc/${child.pid}/cmdline`, 'utf8').split('\0').join(' ');
  t.notMatch(cmdline, new RegExp(EMULATOR_KEY.slice(0, 16).replace(/[+/]/g, '\\$&')), 'the account key is not in argv');
  t.notMatch(cmdline, /AccountKey/);
  t.match(cmdline, /--connection-string <hidden>/);
  const ps = await new Promise<string>((done) => execFile('ps', ['-o', 'args=', '-p', String(child.pid)], (_e, out) => done(String(out))));
  t.notMatch(ps, /AccountKey/, 'nor in ps');
  t.match(stderr, /warning: the value of --connection-string was visible .*prefer AZURE_STORAGE_CONNECTION_STRING/);
  t.notMatch(stderr, /AccountKey=/, 'nor in its messages');
  const off = await s.cli(['unmount', s.mountpoint]);
  t.equal(off.code, 0, off.stderr);
  t.equal(await exited, 0, 'the foreground process ends after the unmount');
});

t.test('hsm_set of a privileged flag: nobody claiming uid 0 in the request is refused, root is allowed', async (t) => {
  const { m } = await sharedMount(t, []);
  const state = m.env.BLOBHSM_STATE_DIR!;
  const socket = new MountRegistry(state).socketPathFor(m.mountpoint);
  // Opened to nobody for this test only: the daemon makes its socket 0600 in a 0700 directory.
  for (const dir of [state, dirname(socket)]) chmodSync(dir, 0o755);
  chmodSync(socket, 0o666);
  const forged = { method: 'hsm_set', params: { paths: ['/pub/world.txt'], set: 0x40, clear: 0, uid: 0 } };
  const [reply] = (await requestAs('nobody', socket, forged)) as Array<{ result: Array<{ ok: boolean; code?: string }> }>;
  t.same(reply!.result.map((r) => [r.ok, r.code]), [[false, 'EPERM']], 'nobody is refused whatever uid it claims');
  const world = join(m.mountpoint, 'pub/world.txt');
  t.equal((await m.cli(['hsm_state', world])).stdout, `${world}: (0x0000000d) released exists archived, archive_id:1\n`, 'unchanged');
  const root = await m.cli(['hsm_set', '--lost', world]);
  t.equal(root.code, 0, root.stderr);
  t.equal((await m.cli(['hsm_state', world])).stdout, `${world}: (0x0000004d) released exists archived lost_from_hsm, archive_id:1\n`, 'root may');
});
