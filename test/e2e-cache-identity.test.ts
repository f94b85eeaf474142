// End to end: a cache directory holds one namespace. Two Azurite instances (two endpoints) with the same container
// name, reached through AZURE_STORAGE_CONNECTION_STRING, get two default cache directories and never see each
// other's files; pointing one at the other's cache is refused naming both; the same account reached with an
// account key instead of the connection string reuses its cache (no second import).
import t from 'tap';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startAzurite, EMULATOR_ACCOUNT, EMULATOR_KEY } from './helpers/azurite.js';
import { seed } from './helpers/mount.js';
import { sandbox } from './helpers/sandbox.js';
import { createAzureStore } from '../src/blob/azure-store.js';

const [one, two] = await Promise.all([startAzurite(), startAzurite()]);
t.teardown(async () => {
  await one.stop();
  await two.stop();
});
const container = 'same-name';
for (const [azurite, name] of [[one, 'only-on-one.txt'], [two, 'only-on-two.txt']] as const) {
  const store = createAzureStore({ container, connectionString: azurite.connectionString, env: {} });
  await store.createContainer();
  await seed(store, [{ name, data: name }]);
}

t.test('two endpoints, one container name: two caches, each mount shows its own account only', async (t) => {
  const s = sandbox(t, one.connectionString);
  const mount = (cs: string, extra: string[] = []) => s.cli(['mount', s.mountpoint, '--container', container, ...extra], { AZURE_STORAGE_CONNECTION_STRING: cs });

  let r = await mount(one.connectionString);
  t.equal(r.code, 0, r.stderr);
  t.same(await readdir(s.mountpoint), ['only-on-one.txt']);
  await writeFile(join(s.mountpoint, 'unexported.txt'), 'written on one, never exported\n');
  t.equal((await s.cli(['unmount', s.mountpoint])).code, 0);
  const [cacheOfOne] = s.cacheDirs();

  r = await mount(two.connectionString);
  t.equal(r.code, 0, r.stderr);
  t.same(await readdir(s.mountpoint), ['only-on-two.txt'], "the second endpoint's tree only: nothing of the first cache");
  t.equal((await s.cli(['unmount', s.mountpoint])).code, 0);
  t.equal(s.cacheDirs().length, 2, 'one default cache directory per endpoint');

  const refused = await mount(two.connectionString, ['--cache-dir', join(s.cacheHome, 'blobhsm', cacheOfOne!)]);
  t.equal(refused.code, 4, 'a usage error found by the daemon exits 4, as one found by the CLI');
  t.match(
    refused.stderr,
    new RegExp(
      `holds container '${container}' of account '${EMULATOR_ACCOUNT}' at http://127\\.0\\.0\\.1:${one.port}/${EMULATOR_ACCOUNT}, ` +
        `not container '${container}' of account '${EMULATOR_ACCOUNT}' at http://127\\.0\\.0\\.1:${two.port}/${EMULATOR_ACCOUNT}: pass another --cache-dir`,
    ),
    'refused, naming both',
  );

  // The first account again, now with an account key instead of the connection string: the same cache.
  r = await s.cli(['mount', s.mountpoint, '--container', container, '--account', EMULATOR_ACCOUNT, '--blob-endpoint', `${one.blobEndpoint}/`], {
    AZURE_STORAGE_CONNECTION_STRING: '',
    AZURE_STORAGE_KEY: EMULATOR_KEY,
  });
  t.equal(r.code, 0, r.stderr);
  t.equal(s.cacheDirs().length, 2, 'no third cache directory');
  t.same((await readdir(s.mountpoint)).sort(), ['only-on-one.txt', 'unexported.txt']);
  t.equal(await readFile(join(s.mountpoint, 'unexported.txt'), 'utf8'), 'written on one, never exported\n', 'the unexported file is where it belongs');
  const status = JSON.parse((await s.cli(['status', '--json', s.mountpoint])).stdout) as { requests: Record<string, number> };
  t.equal(status.requests.list ?? 0, 0, 'the namespace is reused, not imported again');
});
