// `--config-file FILE`: a YAML file in blobfuse2's layout (`azstorage:`, `file_cache:`, `libfuse:` sections) that
// carries every mount option and credential reference. It is read into the same flags the command line gives,
// then layered under them: flags > environment > file. Every problem names the file, the line, the key and what
// to write instead; a key this table does not know is an error, never ignored.
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { LineCounter, isMap, isScalar, isSeq, parseDocument, type Node, type Pair } from 'yaml';
import { UsageError, describeError } from '../errors.js';
import { checkContainerName, normalisePrefix, parseListen, parseLogLevel, parseSize } from '../config.js';
import { parseSeconds } from '../jobs/auto-export.js';
import { checkMaximumErrors } from '../jobs/job-runner.js';
import type { MountFlags } from './mount-command.js';

type Kind = 'string' | 'boolean' | 'number' | 'list' | 'path' | 'secret-file';

interface KeySpec {
  flag: keyof MountFlags;
  kind: Kind;
  help: string;
  /** Converts the YAML value to the flag's value (throws UsageError on a bad one). */
  convert?: (value: string) => string;
}

/** The keys a config file may hold, by section ('' is the top level), and the mount flag each one sets. */
export const CONFIG_KEYS: Record<string, Record<string, KeySpec>> = {
  '': {
    'read-only': { flag: 'readOnly', kind: 'boolean', help: 'refuse every write (--read-only)' },
    foreground: { flag: 'foreground', kind: 'boolean', help: 'stay attached (--foreground)' },
    'allow-other': { flag: 'allowOther', kind: 'boolean', help: 'let other users in (--allow-other)' },
  },
  azstorage: {
    container: { flag: 'container', kind: 'string', help: 'blob container (--container)', convert: checkContainerName },
    subdirectory: { flag: 'prefix', kind: 'string', help: 'blob name prefix mounted as the root (--prefix)', convert: (v) => (normalisePrefix(v), v) },
    'account-name': { flag: 'account', kind: 'string', help: 'storage account (--account)' },
    'account-key': { flag: 'accountKey', kind: 'string', help: 'account key (keep the file 0600)' },
    'account-key-file': { flag: 'accountKey', kind: 'secret-file', help: 'a file holding the account key' },
    sas: { flag: 'sasToken', kind: 'string', help: 'SAS token (keep the file 0600)' },
    'sas-file': { flag: 'sasToken', kind: 'secret-file', help: 'a file holding the SAS token' },
    'connection-string': { flag: 'connectionString', kind: 'string', help: 'connection string (keep the file 0600)' },
    'connection-string-file': { flag: 'connectionString', kind: 'secret-file', help: 'a file holding the connection string' },
    endpoint: { flag: 'blobEndpoint', kind: 'string', help: 'blob service endpoint URL (--blob-endpoint)' },
    namespace: { flag: 'namespace', kind: 'string', help: 'hns or flat instead of detecting it (--namespace)' },
    'id-map': { flag: 'idMap', kind: 'path', help: 'HNS owners/groups → uid/gid (--id-map)' },
    'timeout-sec': { flag: 'timeout', kind: 'number', help: 'per-request timeout in seconds (--timeout)', convert: (v) => String(parseSeconds(v, 'timeout')) },
  },
  file_cache: {
    path: { flag: 'cacheDir', kind: 'path', help: 'cache and metadata directory (--cache-dir)' },
    'max-size-mb': { flag: 'cacheSize', kind: 'number', help: 'cache bound in MiB (--cache-size)', convert: (v) => (parseSize(`${v}M`), `${v}M`) },
  },
  libfuse: {
    options: { flag: 'o', kind: 'list', help: 'extra FUSE mount options, a list or comma separated (-o)' },
    debug: { flag: 'debug', kind: 'boolean', help: 'FUSE debug output (--debug)' },
    'attribute-expiration-sec': { flag: 'attrTimeout', kind: 'number', help: 'kernel attribute/entry cache in seconds (--attr-timeout)', convert: (v) => String(parseSeconds(v, 'attribute-expiration-sec')) },
  },
  logging: {
    level: { flag: 'logLevel', kind: 'string', help: 'error, warn, info or debug (--log-level)', convert: (v) => parseLogLevel(v) },
    'file-path': { flag: 'logFile', kind: 'path', help: 'the JSON-lines log file (--log-file)' },
  },
  metrics: {
    listen: { flag: 'metrics', kind: 'string', help: 'HOST:PORT for /metrics and /healthz (--metrics)', convert: (v) => (parseListen(v), v) },
  },
  auto_export: {
    enabled: { flag: 'autoExport', kind: 'boolean', help: 'archive new and modified files continuously (--auto-export)' },
    'min-age-sec': { flag: 'autoExportMinAge', kind: 'number', help: '--auto-export-min-age', convert: (v) => String(parseSeconds(v, 'min-age-sec')) },
    'interval-sec': { flag: 'autoExportInterval', kind: 'number', help: '--auto-export-interval', convert: (v) => String(parseSeconds(v, 'interval-sec')) },
  },
  auto_import: {
    enabled: { flag: 'autoImport', kind: 'boolean', help: 'follow the container continuously (--auto-import)' },
    'interval-sec': { flag: 'autoImportInterval', kind: 'number', help: '--auto-import-interval', convert: (v) => String(parseSeconds(v, 'interval-sec')) },
    prefixes: { flag: 'autoImportPrefix', kind: 'list', help: 'blob paths to follow (--auto-import-prefix)' },
    source: { flag: 'autoImportSource', kind: 'string', help: 'auto, change-feed or listing (--auto-import-source)' },
    'enable-deletions': { flag: 'enableDeletions', kind: 'boolean', help: 'apply blob deletions (--enable-deletions)' },
    'conflict-mode': { flag: 'conflictMode', kind: 'string', help: 'Skip, OverwriteIfDirty, OverwriteAlways or Fail (--conflict-mode)' },
    'maximum-errors': { flag: 'maximumErrors', kind: 'number', help: 'errors a phase tolerates, -1 unlimited (--maximum-errors)', convert: (v) => String(checkMaximumErrors(v, 'maximum-errors')) },
    'logging-container': { flag: 'loggingContainer', kind: 'string', help: 'container receiving job logs (--logging-container)', convert: checkContainerName },
  },
};

/** azstorage.mode: which credential the file must carry (blobfuse2's names; azcli/msi/spn use DefaultAzureCredential). */
const MODES: Record<string, Array<keyof MountFlags> | null> = {
  key: ['accountKey'],
  sas: ['sasToken'],
  'connection-string': ['connectionString'],
  azcli: null,
  msi: null,
  spn: null,
};

/** A problem in the config file (a UsageError: exit status and handling as for a bad flag). */
export class ConfigFileError extends UsageError {}

/** Reads and checks a config file; returns the flags it sets (only those it names). */
export function loadConfigFile(file: string): Partial<MountFlags> {
  const path = resolve(file);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigFileError(`cannot read the config file ${path}: ${describeError(err)}; check --config-file`, { cause: err });
  }
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true });
  const at = (node: Node | null | undefined) => (node?.range ? `${path}:${lines.linePos(node.range[0]).line}` : path);
  if (doc.errors.length) {
    const e = doc.errors[0]!;
    throw new ConfigFileError(`${path}:${e.linePos?.[0]?.line ?? '?'}: not valid YAML (${e.message.split('\n')[0]}); fix the file`);
  }
  const root = doc.contents;
  if (root === null || (isScalar(root) && root.value === null)) return {};
  if (!isMap(root)) throw new ConfigFileError(`${at(root)}: the config file must be a mapping of sections (azstorage:, file_cache:, libfuse:, ...)`);
  const flags: Partial<MountFlags> = {};
  const setBy = new Map<keyof MountFlags, string>();
  let mode: { value: string; where: string } | undefined;

  const take = (section: string, pair: Pair): void => {
    const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
    const name = section ? `${section}.${key}` : key;
    const where = at(pair.key as Node);
    if (section === 'azstorage' && key === 'mode') {
      const value = isScalar(pair.value) ? String(pair.value.value) : '';
      if (!(value in MODES)) throw new ConfigFileError(`${where}: azstorage.mode '${value}' is not one of ${Object.keys(MODES).join(', ')}`);
      mode = { value, where };
      return;
    }
    if (section === 'azstorage' && key === 'type') {
      const value = isScalar(pair.value) ? String(pair.value.value) : '';
      if (value !== 'block') throw new ConfigFileError(`${where}: azstorage.type '${value}' is not supported: blobhsm mounts block blob containers (type: block)`);
      return;
    }
    const spec = CONFIG_KEYS[section]?.[key];
    if (!spec) {
      const known = Object.keys(CONFIG_KEYS[section] ?? {}).join(', ');
      throw new ConfigFileError(`${where}: unknown key '${name}'${known ? `; ${section || 'the top level'} takes ${known}` : ''} (see README "Config file")`);
    }
    const previous = setBy.get(spec.flag);
    if (previous) throw new ConfigFileError(`${where}: '${name}' and '${previous}' both set ${spec.help}; keep one`);
    setBy.set(spec.flag, name);
    const value = pair.value as Node | null;
    const bad = (what: string) => new ConfigFileError(`${at(value ?? (pair.key as Node))}: '${name}' must be ${what} (${spec.help})`);
    try {
      (flags as Record<string, unknown>)[spec.flag] = convertValue(spec, value, bad, dirname(path));
    } catch (err) {
      if (err instanceof ConfigFileError || !(err instanceof UsageError)) throw err;
      throw new ConfigFileError(`${at(value)}: '${name}': ${err.message}`, { cause: err });
    }
  };

  for (const item of root.items) {
    const key = isScalar(item.key) ? String(item.key.value) : String(item.key);
    if (key in CONFIG_KEYS && key !== '') {
      if (!isMap(item.value)) throw new ConfigFileError(`${at(item.key as Node)}: '${key}' must be a section (a mapping of keys)`);
      for (const pair of item.value.items) take(key, pair);
    } else take('', item);
  }

  if (mode) {
    const needs = MODES[mode.value];
    const secrets: Array<keyof MountFlags> = ['accountKey', 'sasToken', 'connectionString'];
    const given = secrets.filter((s) => flags[s] !== undefined);
    if (needs === null && given.length) {
      throw new ConfigFileError(`${mode.where}: azstorage.mode '${mode.value}' uses your Azure login, but the file also sets ${given.map((g) => setBy.get(g)).join(', ')}; remove one`);
    }
    if (needs && !needs.every((n) => flags[n] !== undefined)) {
      throw new ConfigFileError(`${mode.where}: azstorage.mode '${mode.value}' needs ${mode.value === 'key' ? 'account-key or account-key-file' : mode.value === 'sas' ? 'sas or sas-file' : 'connection-string or connection-string-file'} in azstorage`);
    }
  }
  return flags;
}

function convertValue(spec: KeySpec, node: Node | null, bad: (what: string) => Error, baseDir: string): unknown {
  const scalar = isScalar(node) ? node.value : undefined;
  switch (spec.kind) {
    case 'boolean':
      if (typeof scalar !== 'boolean') throw bad('true or false');
      return scalar;
    case 'number':
      if (typeof scalar !== 'number' && typeof scalar !== 'string') throw bad('a number');
      return spec.convert ? spec.convert(String(scalar)) : String(scalar);
    case 'list': {
      if (isSeq(node)) {
        return node.items.map((item) => {
          if (!isScalar(item) || typeof item.value !== 'string') throw bad('a list of option strings');
          return item.value;
        });
      }
      if (typeof scalar !== 'string') throw bad('a list of option strings, or one comma-separated string');
      return scalar.split(',').map((s) => s.trim()).filter(Boolean);
    }
    case 'path':
      if (typeof scalar !== 'string' || !scalar) throw bad('a path (relative paths are relative to the config file)');
      return resolve(baseDir, scalar);
    case 'secret-file': {
      if (typeof scalar !== 'string' || !scalar) throw bad('the path of a file holding the secret');
      const file = resolve(baseDir, scalar);
      let secret: string;
      try {
        secret = readFileSync(file, 'utf8').trim();
      } catch (err) {
        throw new UsageError(`cannot read ${file}: ${describeError(err)}`, { cause: err });
      }
      if (!secret) throw new UsageError(`${file} is empty`);
      return secret;
    }
    case 'string':
      if (typeof scalar !== 'string' && typeof scalar !== 'number') throw bad('a string');
      return spec.convert ? spec.convert(String(scalar)) : String(scalar);
  }
}

/** The environment variables that stand above the file for a flag (flags > environment > file). */
const ENV_FOR: Partial<Record<keyof MountFlags, string[]>> = {
  container: ['AZURE_STORAGE_CONTAINER'],
  account: ['AZURE_STORAGE_ACCOUNT'],
  blobEndpoint: ['AZURE_STORAGE_BLOB_ENDPOINT'],
};
const SECRET_FLAGS: Array<keyof MountFlags> = ['connectionString', 'accountKey', 'sasToken'];
const SECRET_ENV = ['AZURE_STORAGE_CONNECTION_STRING', 'AZURE_STORAGE_KEY', 'AZURE_STORAGE_ACCESS_KEY', 'AZURE_STORAGE_SAS_TOKEN'];

/**
 * Layers the file under the flags and the environment: a file value is used only when neither its flag nor its
 * environment variable is set. Secrets go as one group: a secret in the flags or the environment (connection
 * string, key or SAS) drops every secret of the file, so that one credential source is ever in play.
 */
export function layerConfigFile(flags: MountFlags, file: Partial<MountFlags>, env: NodeJS.ProcessEnv): MountFlags {
  const merged: MountFlags = { ...flags };
  const secretAbove = SECRET_FLAGS.some((f) => flags[f] !== undefined) || SECRET_ENV.some((v) => env[v]);
  for (const [flag, value] of Object.entries(file) as Array<[keyof MountFlags, unknown]>) {
    if (flags[flag] !== undefined) continue;
    if (SECRET_FLAGS.includes(flag) && secretAbove) continue;
    if (ENV_FOR[flag]?.some((v) => env[v])) continue;
    (merged as Record<string, unknown>)[flag] = value;
  }
  return merged;
}
