// resolveAzureCredentials: which credentials win, from options and environment, without touching the network.
// Also the pure helpers of azure-store: secret scrubbing and request classification.
import t from 'tap';
import {
  classifyRequest,
  createAzureStore,
  resolveAzureCredentials,
  scrubSecrets,
  toBlobError,
} from '../src/blob/azure-store.js';
import { UsageError } from '../src/errors.js';

const KEY = 'a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5==';
const CS = `DefaultEndpointsProtocol=https;AccountName=csacct;AccountKey=${KEY};EndpointSuffix=core.windows.net`;

t.test('explicit options come first', async (t) => {
  const env = {
    AZURE_STORAGE_CONNECTION_STRING: `DefaultEndpointsProtocol=https;AccountName=envacct;AccountKey=${KEY}`,
    AZURE_STORAGE_ACCOUNT: 'envacct',
    AZURE_STORAGE_KEY: 'envkey==',
  };
  t.match(resolveAzureCredentials({ connectionString: CS }, env), {
    kind: 'sharedKey',
    account: 'csacct',
    accountKey: KEY,
    blobEndpoint: 'https://csacct.blob.core.windows.net',
    source: 'option connectionString',
  });
  t.match(resolveAzureCredentials({ account: 'optacct', accountKey: 'optkey==' }, env), {
    kind: 'sharedKey',
    account: 'optacct',
    accountKey: 'optkey==',
    blobEndpoint: 'https://optacct.blob.core.windows.net',
  });
  t.match(resolveAzureCredentials({ account: 'optacct', sasToken: '?sv=1&sig=abc' }, env), {
    kind: 'sas',
    account: 'optacct',
    sasToken: 'sv=1&sig=abc',
  });
  t.match(resolveAzureCredentials({ accountKey: 'optkey==' }, env), { account: 'envacct', accountKey: 'optkey==' }, 'key option with the env account');
});

t.test('then the environment, in order', async (t) => {
  const full = {
    AZURE_STORAGE_CONNECTION_STRING: CS,
    AZURE_STORAGE_ACCOUNT: 'envacct',
    AZURE_STORAGE_KEY: 'k1==',
    AZURE_STORAGE_ACCESS_KEY: 'k2==',
    AZURE_STORAGE_SAS_TOKEN: 'sv=1&sig=s',
  };
  t.match(resolveAzureCredentials({}, full), { kind: 'sharedKey', account: 'csacct', source: 'env AZURE_STORAGE_CONNECTION_STRING' });
  const { AZURE_STORAGE_CONNECTION_STRING: _cs, ...noCs } = full;
  t.match(resolveAzureCredentials({}, noCs), { kind: 'sharedKey', account: 'envacct', accountKey: 'k1==', source: /AZURE_STORAGE_KEY/ });
  const { AZURE_STORAGE_KEY: _k, ...accessKey } = noCs;
  t.match(resolveAzureCredentials({}, accessKey), { kind: 'sharedKey', accountKey: 'k2==', source: /AZURE_STORAGE_ACCESS_KEY/ });
  const { AZURE_STORAGE_ACCESS_KEY: _k2, ...sasOnly } = accessKey;
  t.match(resolveAzureCredentials({}, sasOnly), { kind: 'sas', account: 'envacct', sasToken: 'sv=1&sig=s' });
  t.match(resolveAzureCredentials({}, { AZURE_STORAGE_ACCOUNT: 'envacct' }), {
    kind: 'token',
    account: 'envacct',
    blobEndpoint: 'https://envacct.blob.core.windows.net',
    source: 'env AZURE_STORAGE_ACCOUNT + DefaultAzureCredential',
  });
  t.match(resolveAzureCredentials({ account: 'optacct' }, {}), { kind: 'token', account: 'optacct', source: /option account/ });
  t.match(
    resolveAzureCredentials({ account: 'optacct' }, { AZURE_STORAGE_KEY: 'k1==' }),
    { kind: 'sharedKey', account: 'optacct', accountKey: 'k1==' },
    'an explicit account takes the env key',
  );
  t.match(
    resolveAzureCredentials({ account: 'other' }, { AZURE_STORAGE_CONNECTION_STRING: CS }),
    { kind: 'token', account: 'other' },
    'an env connection string for a different account is not used',
  );
  t.match(
    resolveAzureCredentials({ account: 'csacct' }, { AZURE_STORAGE_CONNECTION_STRING: CS }),
    { kind: 'sharedKey', account: 'csacct' },
    'an env connection string for the same account is used',
  );
  t.match(resolveAzureCredentials({}, { ...full, AZURE_STORAGE_CONNECTION_STRING: '  ' }), { account: 'envacct' }, 'blank values are unset');
});

t.test('endpoints', async (t) => {
  t.equal(
    resolveAzureCredentials({}, { AZURE_STORAGE_ACCOUNT: 'a', AZURE_STORAGE_KEY: 'k', AZURE_STORAGE_BLOB_ENDPOINT: 'http://127.0.0.1:1234/a/' })
      .blobEndpoint,
    'http://127.0.0.1:1234/a',
    'AZURE_STORAGE_BLOB_ENDPOINT, trailing slash dropped',
  );
  t.equal(
    resolveAzureCredentials(
      { blobEndpoint: 'https://custom.example' },
      { AZURE_STORAGE_ACCOUNT: 'a', AZURE_STORAGE_KEY: 'k', AZURE_STORAGE_BLOB_ENDPOINT: 'http://x' },
    ).blobEndpoint,
    'https://custom.example',
    'the option wins',
  );
  t.equal(
    resolveAzureCredentials({ connectionString: `AccountName=a;AccountKey=k;BlobEndpoint=http://127.0.0.1:9/a;` }, {}).blobEndpoint,
    'http://127.0.0.1:9/a',
    'the connection string BlobEndpoint',
  );
  t.equal(
    resolveAzureCredentials({ connectionString: `DefaultEndpointsProtocol=http;AccountName=a;AccountKey=k;EndpointSuffix=core.chinacloudapi.cn` }, {})
      .blobEndpoint,
    'http://a.blob.core.chinacloudapi.cn',
    'protocol and suffix',
  );
  t.match(resolveAzureCredentials({ connectionString: 'UseDevelopmentStorage=true' }, {}), {
    kind: 'sharedKey',
    account: 'devstoreaccount1',
    blobEndpoint: 'http://127.0.0.1:10000/devstoreaccount1',
  });
  t.match(
    resolveAzureCredentials({ connectionString: 'BlobEndpoint=https://acct9.blob.core.windows.net/;SharedAccessSignature=sv=1&sig=x' }, {}),
    { kind: 'sas', account: 'acct9', sasToken: 'sv=1&sig=x', blobEndpoint: 'https://acct9.blob.core.windows.net' },
    'a SAS connection string',
  );
});

t.test('missing credentials: a UsageError saying what to set, and never the secret', async (t) => {
  t.throws(() => resolveAzureCredentials({}, {}), UsageError);
  try {
    resolveAzureCredentials({}, {});
  } catch (err) {
    const msg = (err as Error).message;
    for (const name of ['AZURE_STORAGE_CONNECTION_STRING', 'AZURE_STORAGE_ACCOUNT', 'AZURE_STORAGE_KEY', 'AZURE_STORAGE_SAS_TOKEN']) {
      t.match(msg, name);
    }
  }
  t.throws(() => resolveAzureCredentials({ accountKey: 'k' }, {}), UsageError, 'a key without an account');
  t.throws(() => resolveAzureCredentials({ sasToken: 'sig=x' }, {}), UsageError, 'a SAS without an account or endpoint');
  try {
    resolveAzureCredentials({ connectionString: `AccountKey=${KEY}` }, {});
    t.fail('should throw');
  } catch (err) {
    t.ok(err instanceof UsageError);
    t.notMatch((err as Error).message, KEY, 'the key is not echoed');
  }
  t.throws(() => resolveAzureCredentials({ connectionString: 'AccountName=a' }, {}), UsageError, 'no key or SAS');
  t.throws(() => createAzureStore({ container: 'c', env: {} }), UsageError, 'createAzureStore too');
  t.throws(() => createAzureStore({ container: '', connectionString: CS, env: {} }), UsageError, 'no container');
});

t.test('a store built from credentials never shows the secret', async (t) => {
  const store = createAzureStore({ container: 'data', connectionString: CS, env: {} });
  t.equal(store.description, 'csacct/data (csacct.blob.core.windows.net)');
  t.same(store.auth, { kind: 'sharedKey', source: 'option connectionString', account: 'csacct', blobEndpoint: 'https://csacct.blob.core.windows.net' });
  t.notMatch(JSON.stringify(store.auth), KEY);
  const token = createAzureStore({ container: 'data', account: 'acct', env: {} });
  t.equal(token.auth.kind, 'token');
});

t.test('scrubSecrets', async (t) => {
  const text =
    `GET https://a.blob.core.windows.net/c/b?sv=2022&sig=abc%2Bdef%3D&se=x failed; ` +
    `cs DefaultEndpointsProtocol=https;AccountName=a;AccountKey=${KEY};EndpointSuffix=x; ` +
    `Authorization: SharedKey a:c2lnbmF0dXJl; SharedAccessSignature=sv=1&sig=zz; raw secret hunter2hunter2`;
  const out = scrubSecrets(text, ['hunter2hunter2']);
  for (const secret of ['abc%2Bdef%3D', KEY, 'c2lnbmF0dXJl', 'sig=zz', 'hunter2hunter2']) t.notMatch(out, secret);
  t.match(out, 'sig=<redacted>');
  t.match(out, 'AccountKey=<redacted>');
  t.match(out, 'SharedKey <redacted>');
  t.match(out, 'https://a.blob.core.windows.net/c/b?sv=2022', 'the rest stays readable');
  t.equal(scrubSecrets('no secrets here', ['abc']), 'no secrets here', 'short secrets are not blanked everywhere');
  const key = 'ab+cd/ef==ghijkl';
  t.notMatch(scrubSecrets(`url ${encodeURIComponent(key)}`, [key]), encodeURIComponent(key), 'URL-encoded form too');
});

t.test('toBlobError maps statuses and codes', async (t) => {
  const mk = (statusCode: number | undefined, code?: string, message = 'm') =>
    toBlobError(Object.assign(new Error(message), { statusCode, code }), 'op', 'x').error.kind;
  t.equal(mk(404, 'BlobNotFound'), 'NotFound');
  t.equal(mk(412, 'ConditionNotMet'), 'PreconditionFailed');
  t.equal(mk(409, 'BlobAlreadyExists'), 'AlreadyExists');
  t.equal(mk(409, 'BlobArchived'), 'Archived');
  t.equal(mk(409, 'BlobBeingRehydrated'), 'Archived');
  t.equal(mk(409, 'LeaseIdMissing'), 'PreconditionFailed');
  t.equal(mk(429), 'Throttled');
  t.equal(mk(503, 'ServerBusy'), 'Throttled');
  t.equal(mk(401), 'Unauthorized');
  t.equal(mk(403, 'AuthorizationPermissionMismatch'), 'Unauthorized');
  t.equal(mk(500, 'InternalError'), 'Transient');
  t.equal(mk(502), 'Transient');
  t.equal(mk(504), 'Transient');
  t.equal(mk(400, 'InvalidMetadata'), 'Invalid');
  t.equal(mk(undefined, 'ECONNRESET'), 'Transient');
  const refused = toBlobError(Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }), 'op', 'x');
  t.equal(refused.error.kind, 'Transient');
  t.equal(refused.notSent, true, 'a refused connection never reached the service');
  t.equal(toBlobError(Object.assign(new Error('x'), { code: 'ECONNRESET' }), 'op', 'x').notSent, false);
  const withSecret = toBlobError(Object.assign(new Error(`bad ?sig=SECRET123`), { statusCode: 403 }), 'op', 'x', ['SECRET123']);
  t.notMatch(withSecret.error.message, 'SECRET123');
});

t.test('classifyRequest names requests by operation', async (t) => {
  const base = 'http://127.0.0.1:1/devstoreaccount1/c';
  t.equal(classifyRequest('GET', `${base}?restype=container&comp=list&maxresults=2`), 'list');
  t.equal(classifyRequest('HEAD', `${base}/a/b`), 'head');
  t.equal(classifyRequest('GET', `${base}/a/b`), 'read');
  t.equal(classifyRequest('PUT', `${base}/a?comp=block&blockid=QQ%3D%3D`), 'stageBlock');
  t.equal(classifyRequest('PUT', `${base}/a?comp=blocklist`), 'commitBlockList');
  t.equal(classifyRequest('PUT', `${base}/a`), 'upload');
  t.equal(classifyRequest('PUT', `${base}/a?comp=metadata`), 'setMetadata');
  t.equal(classifyRequest('PUT', `${base}/a?comp=tier`), 'setTier');
  t.equal(classifyRequest('DELETE', `${base}/a`), 'delete');
  t.equal(classifyRequest('PUT', `${base}?restype=container`), 'createContainer');
  t.equal(classifyRequest('GET', `${base}?restype=container`), 'containerExists');
  t.equal(classifyRequest('DELETE', `${base}?restype=container`), 'deleteContainer');
});
