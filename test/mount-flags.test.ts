// Mount flags that are not about the config file: --export-concurrency reaches the MountConfig, a bad value is a
// UsageError naming the flag; the credential flags come from cli/storage-options.ts (shared with ingest).
import t from 'tap';
import { buildMountConfig } from '../src/cli/mount-command.js';
import { storageConfigFromFlags } from '../src/cli/storage-options.js';
import { resolveAzureCredentials } from '../src/blob/azure-store.js';

t.test('--export-concurrency', async (t) => {
  const env = { AZURE_STORAGE_CONNECTION_STRING: 'UseDevelopmentStorage=true' };
  t.equal(buildMountConfig('/tmp/x', { container: 'abc', exportConcurrency: '16' }, env, resolveAzureCredentials).exportConcurrency, 16);
  t.equal(buildMountConfig('/tmp/x', { container: 'abc' }, env, resolveAzureCredentials).exportConcurrency, undefined);
  for (const bad of ['0', '-1', '2.5', 'many', '1000']) {
    t.throws(() => buildMountConfig('/tmp/x', { container: 'abc', exportConcurrency: bad }, env, resolveAzureCredentials), /invalid --export-concurrency/, bad);
  }
});

t.test('storage flags: the container is checked, a key needs an account', async (t) => {
  t.throws(() => storageConfigFromFlags({}, {}), /no container given/);
  t.throws(() => storageConfigFromFlags({ container: 'A_B' }, {}), /invalid container name/);
  t.throws(() => storageConfigFromFlags({ container: 'abc', accountKey: 'k' }, {}), /need --account/);
  t.same(storageConfigFromFlags({ container: 'abc', accountKey: 'k' }, { AZURE_STORAGE_ACCOUNT: 'acct' }), { container: 'abc', accountKey: 'k' });
  t.equal(storageConfigFromFlags({}, { AZURE_STORAGE_CONTAINER: 'from-env' }).container, 'from-env');
});

t.test('--maximum-errors (auto-import) reaches the MountConfig; bad values and a missing --auto-import are usage errors', async (t) => {
  const env = { AZURE_STORAGE_CONNECTION_STRING: 'UseDevelopmentStorage=true' };
  const build = (flags: Record<string, unknown>) => buildMountConfig('/tmp/x', { container: 'abc', ...flags }, env, resolveAzureCredentials);
  t.equal(build({ autoImport: true, maximumErrors: '3' }).autoImport?.maximumErrors, 3);
  t.equal(build({ autoImport: true }).autoImport?.maximumErrors, -1, 'unlimited by default');
  for (const bad of ['-2', '2.5', 'many']) t.throws(() => build({ autoImport: true, maximumErrors: bad }), new RegExp(`invalid --maximum-errors '${bad}'`), bad);
  t.throws(() => build({ maximumErrors: '3' }), /--maximum-errors need --auto-import/);
});
