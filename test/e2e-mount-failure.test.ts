// End to end: a mount that fails leaves nothing behind and says why. Each case (an unknown -o option, libfuse
// refusing an option after the kernel mount was made, a non-empty mountpoint, a wrong account key, an endpoint that
// never answers) exits non-zero with the real reason and leaves no kernel mount, no daemon, no registry entry and
// no cache directory. `-o nonempty` mounts over a directory with entries.
import t, { type Test } from 'tap';
import { createServer, type Socket } from 'node:net';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startAzurite, withContainer, EMULATOR_ACCOUNT, EMULATOR_KEY } from './helpers/azurite.js';
import { seed } from './helpers/mount.js';
import { processesOf, sandbox, type Sandbox } from './helpers/sandbox.js';
import { mountAt } from '../src/daemon/mount-checks.js';

const azurite = await startAzurite();
t.teardown(() => azurite.stop());

function nothingLeft(t: Test, s: Sandbox, cacheDir?: string): void {
  t.equal(mountAt(s.mountpoint), undefined, 'no kernel mount');
  t.same(processesOf(s.stateDir), [], 'no daemon');
  const mounts = join(s.stateDir, 'mounts');
  t.same(existsSync(mounts) ? readdirSync(mounts) : [], [], 'no registry entry (nor socket)');
  t.same(s.cacheDirs(), [], 'no default cache directory');
  if (cacheDir) t.notOk(existsSync(cacheDir), 'the --cache-dir it would have made is not there');
}

const store = await withContainer(t, azurite);
await seed(store, [{ name: 'a/b.txt', data: 'b' }]);

t.test('-o bogusopt: refused at once, naming the option, before anything is started', async (t) => {
  const s = sandbox(t, azurite.connectionString);
  const r = await s.cli(['mount', s.mountpoint, '--container', store.container, '-o', 'noatime,bogusopt']);
  t.equal(r.code, 4, 'a usage error');
  t.match(r.stderr, /unknown mount option '-o bogusopt': libfuse does not know it\. Accepted: allow_other, .*nonempty/);
  nothingLeft(t, s);
  t.notOk(existsSync(join(s.stateDir, 'logs')), 'not even a daemon log: nothing was started');
  const refused = await s.cli(['mount', s.mountpoint, '--container', store.container, '-o', 'subtype=other']);
  t.equal(refused.code, 4);
  t.match(refused.stderr, /'-o subtype=other' is not allowed: .*fuse\.blobhsm/);
});

t.test('libfuse refusing an option after the kernel mount: its own message, the log path, nothing left', async (t) => {
  const s = sandbox(t, azurite.connectionString);
  const cacheDir = join(s.base, 'cache');
  // uid= passes our check (libfuse knows it); libfuse's fuse_new rejects the value after fuse_mount mounted.
  const r = await s.cli(['mount', s.mountpoint, '--container', store.container, '--cache-dir', cacheDir, '-o', 'uid=abc']);
  t.equal(r.code, 1);
  // libfuse's own line: libfuse 3 (the default binding) and libfuse 2 word it differently.
  t.match(r.stderr, /blobhsm mount: .*libfuse said: fuse: (invalid parameter in option `uid=abc'|unknown option\(s\): `-o uid=abc')\n/);
  t.match(r.stderr, new RegExp(`the daemon's log is ${s.stateDir}/logs/[0-9a-f]+\\.log`));
  nothingLeft(t, s, cacheDir);
});

t.test('a non-empty mountpoint is refused before the import; -o nonempty mounts over it', async (t) => {
  const s = sandbox(t, azurite.connectionString);
  writeFileSync(join(s.mountpoint, 'there.txt'), 'local\n');
  const r = await s.cli(['mount', s.mountpoint, '--container', store.container]);
  t.equal(r.code, 4);
  t.match(r.stderr, /mountpoint .*mnt is not empty: use an empty directory, or pass -o nonempty/);
  nothingLeft(t, s);
  const over = await s.cli(['mount', s.mountpoint, '--container', store.container, '-o', 'nonempty']);
  t.equal(over.code, 0, over.stderr);
  t.same(readdirSync(s.mountpoint), ['a'], 'the container is shown, the local entry hidden');
  const off = await s.cli(['unmount', s.mountpoint]);
  t.equal(off.code, 0, off.stderr);
  t.same(readdirSync(s.mountpoint), ['there.txt'], 'and back after the unmount');
});

t.test('a wrong account key: the service says so, with what to check; nothing left', async (t) => {
  const s = sandbox(t, azurite.connectionString);
  const wrongKey = Buffer.from('not the key of this account, at all').toString('base64');
  const r = await s.cli(
    ['mount', s.mountpoint, '--container', store.container, '--account', EMULATOR_ACCOUNT, '--blob-endpoint', azurite.blobEndpoint],
    { AZURE_STORAGE_CONNECTION_STRING: '', AZURE_STORAGE_KEY: wrongKey },
  );
  t.equal(r.code, 1);
  t.match(r.stderr, /check the account key/);
  t.notMatch(r.stderr, new RegExp(wrongKey.slice(0, 12)), 'the key is not printed');
  t.notMatch(r.stderr, new RegExp(EMULATOR_KEY.slice(0, 12)));
  nothingLeft(t, s);
});

t.test('an endpoint that never answers: each retry is shown on stderr, then a clear failure; nothing left', async (t) => {
  const held: Socket[] = [];
  const silent = createServer((socket) => void held.push(socket));
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  t.teardown(() => {
    for (const c of held) c.destroy();
    silent.close();
  });
  const port = (silent.address() as { port: number }).port;
  const s = sandbox(t, azurite.connectionString);
  const r = await s.cli(
    ['mount', s.mountpoint, '--container', 'never-answers', '--account', EMULATOR_ACCOUNT, '--timeout', '1', '--blob-endpoint', `http://127.0.0.1:${port}/${EMULATOR_ACCOUNT}`],
    { AZURE_STORAGE_CONNECTION_STRING: '', AZURE_STORAGE_KEY: EMULATOR_KEY },
  );
  t.equal(r.code, 1);
  const retries = r.stderr.split('\n').filter((l) => /^blobhsm mount: .*attempt \d+ failed \(.*no answer within 1000 ms.*\); retrying in/.test(l));
  t.equal(retries.length, 4, `every retry is shown:\n${r.stderr}`);
  t.match(r.stderr, /check the endpoint and that the service is reachable/);
  nothingLeft(t, s);
});
