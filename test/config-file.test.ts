// --config-file (issue 9): the blobfuse2-style YAML layout maps onto the mount flags, every bad key or value is
// refused naming the file, line and key, secrets may come from files, and flags > environment > file.
import t from 'tap';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfigFile, layerConfigFile } from '../src/cli/config-file.js';
import { buildMountConfig } from '../src/cli/mount-command.js';
import { resolveAzureCredentials } from '../src/blob/azure-store.js';

const dir = mkdtempSync(join(tmpdir(), 'blobhsm-config-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const file = (text: string) => {
  const path = join(dir, `c${n++}.yaml`);
  writeFileSync(path, text);
  return path;
};

t.test('every section maps onto the mount flags', async (t) => {
  writeFileSync(join(dir, 'key'), 'c2VjcmV0\n');
  const path = file(`# a blobhsm mount
read-only: true
foreground: true
allow-other: true
azstorage:
  type: block
  mode: key
  account-name: myaccount
  account-key-file: key
  container: data
  subdirectory: projects/2024
  endpoint: http://127.0.0.1:10000/myaccount
  timeout-sec: 45
file_cache:
  path: cache
  max-size-mb: 2048
libfuse:
  options: [noatime, max_read=65536]
  debug: false
metrics:
  listen: 127.0.0.1:9464
auto_export:
  enabled: true
  min-age-sec: 10
  interval-sec: 5
`);
  const flags = loadConfigFile(path);
  t.same(flags, {
    readOnly: true,
    foreground: true,
    allowOther: true,
    account: 'myaccount',
    accountKey: 'c2VjcmV0',
    container: 'data',
    prefix: 'projects/2024',
    blobEndpoint: 'http://127.0.0.1:10000/myaccount',
    timeout: '45',
    cacheDir: join(dir, 'cache'),
    cacheSize: '2048M',
    o: ['noatime', 'max_read=65536'],
    debug: false,
    metrics: '127.0.0.1:9464',
    autoExport: true,
    autoExportMinAge: '10',
    autoExportInterval: '5',
  });
  const config = buildMountConfig('/mnt/x', layerConfigFile({}, flags, {}), {}, resolveAzureCredentials);
  t.equal(config.cacheSize, 2048 * 1024 * 1024);
  t.equal(config.prefix, 'projects/2024/');
  t.equal(config.requestTimeoutSeconds, 45);
  t.same(config.fuseOptions, ['noatime', 'max_read=65536']);
  t.same(config.autoExport, { enabled: true, minAgeSeconds: 10, intervalSeconds: 5 });
  t.same(config.metrics, { host: '127.0.0.1', port: 9464 });
  t.same(config.storage, { container: 'data', account: 'myaccount', accountKey: 'c2VjcmV0', blobEndpoint: 'http://127.0.0.1:10000/myaccount' });
  t.same(loadConfigFile(file('libfuse:\n  options: "ro, noatime"\n')), { o: ['ro', 'noatime'] });
  t.same(loadConfigFile(file('# nothing yet\n')), {});
  t.same(loadConfigFile(file('auto_import:\n  enabled: true\n  maximum-errors: 5\n')), { autoImport: true, maximumErrors: '5' });
  t.throws(() => loadConfigFile(file('auto_import:\n  maximum-errors: -7\n')), /maximum-errors/);
});

t.test('bad keys and values name the file, the line and the key', async (t) => {
  const cases: Array<[string, RegExp]> = [
    ['azstorage:\n  container: data\n  acount-name: x\n', /c\d+\.yaml:3: unknown key 'azstorage\.acount-name'; azstorage takes container, subdirectory, account-name/],
    ['cache-dir: /x\n', /:1: unknown key 'cache-dir'; the top level takes read-only, foreground, allow-other/],
    ['file_cache:\n  max-size-mb: lots\n', /:2: 'file_cache\.max-size-mb': invalid size 'lotsM'/],
    ['read-only: yes please\n', /:1: 'read-only' must be true or false/],
    ['azstorage:\n  container: Bad_Name\n', /:2: 'azstorage\.container': invalid container name 'Bad_Name'/],
    ['azstorage:\n  subdirectory: a/../b\n', /:2: 'azstorage\.subdirectory': invalid --prefix/],
    ['azstorage: data\n', /:1: 'azstorage' must be a section/],
    ['azstorage:\n  mode: password\n', /:2: azstorage\.mode 'password' is not one of key, sas/],
    ['azstorage:\n  mode: key\n  account-name: a\n', /:2: azstorage\.mode 'key' needs account-key or account-key-file/],
    ['azstorage:\n  mode: azcli\n  sas: x\n', /mode 'azcli' uses your Azure login, but the file also sets azstorage\.sas/],
    ['azstorage:\n  type: adls\n', /azstorage\.type 'adls' is not supported/],
    ['azstorage:\n  account-key: a\n  account-key-file: b\n', /:3: 'azstorage\.account-key-file' and 'azstorage\.account-key' both set/],
    ['azstorage:\n  sas-file: missing\n', /:2: 'azstorage\.sas-file': cannot read .*missing/],
    ['azstorage:\n  container: a\n  container: b\n', /not valid YAML \(Map keys must be unique/],
    ['- a\n- b\n', /must be a mapping of sections/],
    ['metrics:\n  listen: 9464\n', /:2: 'metrics\.listen': invalid --metrics '9464': HOST:PORT/],
    ['libfuse:\n  options: [1, {a: b}]\n', /'libfuse\.options' must be a list of option strings/],
  ];
  for (const [text, message] of cases) {
    const path = file(text);
    t.throws(() => loadConfigFile(path), { name: 'UsageError', message }, JSON.stringify(text));
  }
  t.throws(() => loadConfigFile(join(dir, 'nope.yaml')), { message: /cannot read the config file .*nope\.yaml: .*check --config-file/ });
});

t.test('precedence: flags > environment > file; secrets as one group', async (t) => {
  const fromFile = { container: 'filecontainer', account: 'fileacct', accountKey: 'filekey', blobEndpoint: 'http://file', cacheDir: '/file/cache' };
  t.same(layerConfigFile({}, fromFile, {}), fromFile, 'the file alone');
  t.same(layerConfigFile({ container: 'flagcontainer', cacheDir: '/flag' }, fromFile, { AZURE_STORAGE_CONTAINER: 'envcontainer' }), {
    ...fromFile,
    container: 'flagcontainer',
    cacheDir: '/flag',
  });
  const envOver = layerConfigFile({}, fromFile, { AZURE_STORAGE_CONTAINER: 'envcontainer', AZURE_STORAGE_BLOB_ENDPOINT: 'http://env' });
  t.equal(envOver.container, undefined, 'the environment container stands above the file (buildMountConfig reads it)');
  t.equal(envOver.blobEndpoint, undefined);
  const config = buildMountConfig('/mnt/x', envOver, { AZURE_STORAGE_CONTAINER: 'envcontainer' }, resolveAzureCredentials);
  t.equal(config.storage.container, 'envcontainer');
  const envSecret = layerConfigFile({}, { ...fromFile, sasToken: 'filesas' }, { AZURE_STORAGE_CONNECTION_STRING: 'x' });
  t.equal(envSecret.accountKey, undefined, 'a secret in the environment drops the file secrets');
  t.equal(envSecret.sasToken, undefined);
  t.equal(envSecret.account, 'fileacct', 'names still come from the file');
  const flagSecret = layerConfigFile({ sasToken: 'flagsas' }, fromFile, {});
  t.equal(flagSecret.accountKey, undefined, 'a secret flag drops the file secrets');
  t.equal(flagSecret.sasToken, 'flagsas');
});
