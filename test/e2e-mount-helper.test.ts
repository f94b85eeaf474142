// End to end (issue 9): `mount -t fuse.blobhsm SOURCE MOUNTPOINT -o OPTIONS` and an fstab line of type fuse.blobhsm
// mount a container of a real Azurite through mount(8) → /sbin/mount.fuse → `blobhsm`, with the credentials from a
// --config-file (none in the environment); the systemd unit template's ExecStart serves a mount in the
// foreground and SIGTERM unmounts it.
//
// Everything runs inside a private mount namespace (unshare -m): `blobhsm` is put on mount.fuse's search path by
// bind-mounting this test's own directory over /usr/local/sbin there only, and every mount the test makes lives
// and dies in that namespace, never in the machine's.
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { startAzurite, EMULATOR_ACCOUNT, EMULATOR_KEY } from './helpers/azurite.js';
import { withContainer } from './helpers/azurite.js';
import { BIN, seed } from './helpers/mount.js';

const ROOT = resolve(import.meta.dirname, '..');
const unshare = spawnSync('unshare', ['-m', 'true']);
if (unshare.status !== 0) {
  t.plan(0, `unshare -m is not available here (${String(unshare.stderr).trim()}): the mount helper test needs a private mount namespace`);
  process.exit(0);
}

const azurite = await startAzurite();
t.teardown(() => azurite.stop());

t.test('mount -t fuse.blobhsm, an fstab line and the systemd unit mount a container configured by a config file', async (t) => {
  const store = await withContainer(t, azurite);
  await seed(store, [
    { name: 'hello.txt', data: 'hello from blob\n', metadata: { permissions: '0644' } },
    { name: 'sub/deep.txt', data: 'deep\n' },
  ]);
  const base = mkdtempSync(join(tmpdir(), 'blobhsm-helper-'));
  const sbin = join(base, 'sbin');
  mkdirSync(sbin);
  // mount(8) runs helpers with no PATH: the wrapper names node by its absolute path.
  writeFileSync(join(sbin, 'blobhsm'), `#!/bin/sh\nexec ${process.execPath} ${BIN} "$@"\n`);
  chmodSync(join(sbin, 'blobhsm'), 0o755);
  const config = join(base, 'blobhsm.yaml');
  writeFileSync(
    config,
    `azstorage:\n  mode: key\n  account-name: ${EMULATOR_ACCOUNT}\n  account-key: ${EMULATOR_KEY}\n  endpoint: ${azurite.blobEndpoint}\n  container: ${store.container}\n`,
    { mode: 0o600 },
  );
  const fstab = join(base, 'fstab');
  const mnt = (n: string) => join(base, n);
  for (const n of ['a', 'b', 'c']) mkdirSync(mnt(n));
  // SOURCE names the container; cache_dir= is a blobhsm option; noatime goes to FUSE; _netdev and nofail are
  // mount(8)'s and are dropped.
  writeFileSync(fstab, `blobhsm ${mnt('b')} fuse.blobhsm config_file=${config},cache_dir=${join(base, 'cache-b')},_netdev,nofail 0 0\n`);
  const unit = readFileSync(join(ROOT, 'bin', 'systemd', 'blobhsm@.service'), 'utf8');
  const execStart = /^ExecStart=(.*)$/m.exec(unit)![1]!;
  const escaped = spawnSync('systemd-escape', ['--path', mnt('c')], { encoding: 'utf8' });
  const instance = escaped.status === 0 ? escaped.stdout.trim() : mnt('c').slice(1).replaceAll('/', '-');
  writeFileSync(join(base, `${instance}.yaml`), readFileSync(config));
  // The unit's command with this test's paths for %f and /etc/blobhsm/%i.yaml (%i keeps systemd-escape's
  // backslashes: quoted for the shell).
  t.match(execStart, '/etc/blobhsm/%i.yaml');
  const unitCommand = execStart.replaceAll('/etc/blobhsm/%i.yaml', `'${join(base, `${instance}.yaml`)}'`).replaceAll('%f', mnt('c'));

  const { NODE_OPTIONS: _tapLoader, AZURE_STORAGE_CONNECTION_STRING: _cs, ...inherited } = process.env;
  const env = {
    ...inherited,
    PATH: `${sbin}:${inherited.PATH ?? '/usr/bin:/bin'}`,
    BLOBHSM_STATE_DIR: join(base, 'state'),
    XDG_CACHE_HOME: join(base, 'xdg-cache'),
    XDG_DATA_HOME: join(base, 'xdg-data'),
  };
  const script = `
set -u
mount --bind ${sbin} /usr/local/sbin || exit 99
step() { echo "== $*"; }
step mount-t; mount -t fuse.blobhsm ${store.container} ${mnt('a')} -o config_file=${config},cache_dir=${join(base, 'cache-a')},noatime; echo "rc=$?"
step fstype; awk '$5 == "${mnt('a')}" { for (i = 7; i <= NF; i++) if ($i == "-") { print $(i+1); break } }' /proc/self/mountinfo
step read-a; cat ${mnt('a')}/hello.txt
step state-a; blobhsm hsm_state ${mnt('a')}/sub/deep.txt
step unmount-a; blobhsm unmount ${mnt('a')}; echo "rc=$?"
step fstab; mount --fstab ${fstab} ${mnt('b')}; echo "rc=$?"
step read-b; cat ${mnt('b')}/sub/deep.txt
step unmount-b; blobhsm unmount ${mnt('b')}; echo "rc=$?"
step unit; ${unitCommand} 2>${base}/unit.log & unit=$!
i=0; until grep -q ' ${mnt('c')} ' /proc/self/mountinfo || [ $i -ge 600 ] || ! kill -0 $unit 2>/dev/null; do i=$((i+1)); sleep 0.1; done
step read-c; cat ${mnt('c')}/hello.txt || cat ${base}/unit.log
kill -TERM $unit; wait $unit; echo "rc=$?"
step after; echo "mounts=$(awk -v b="${base}/" 'index($5, b) == 1' /proc/self/mountinfo | wc -l)"
`;
  const child = spawn('unshare', ['-m', '--propagation', 'private', '/bin/sh', '-c', script], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number | null>((r) => child.on('exit', (c) => r(c)));
  t.teardown(() => {
    // A daemon left by a failed run still holds its namespace (and so its mount): end it by its pid.
    for (const n of ['cache-a', 'cache-b', 'xdg-cache']) {
      const pidFile = join(base, n, 'daemon.pid');
      if (existsSync(pidFile)) {
        try {
          process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
    rmSync(base, { recursive: true, force: true });
  });
  t.equal(code, 0, err);
  const section = (name: string) => (out.split(`== ${name}\n`)[1] ?? '').split('\n== ')[0]! + '\n';
  t.match(section('mount-t'), /\nrc=0\n$/, `mount -t fuse.blobhsm: ${out}\n${err}`);
  t.equal(section('fstype').trim(), 'fuse.blobhsm');
  t.equal(section('read-a'), 'hello from blob\n');
  t.match(section('state-a'), /sub\/deep\.txt: \(0x0000000d\) released exists archived, archive_id:1/);
  t.match(section('unmount-a'), /rc=0/);
  t.match(section('fstab'), /rc=0/, 'the fstab line mounts');
  t.equal(section('read-b'), 'deep\n');
  t.match(section('unmount-b'), /rc=0/);
  t.match(section('read-c'), /^hello from blob\nrc=0\n$/, `the unit's ExecStart serves the mount (${execStart})`);
  t.match(out, /rc=0\n== after/, 'SIGTERM ends the unit command with status 0');
  t.match(section('after'), /^mounts=0$/m, 'nothing stays mounted');
});
