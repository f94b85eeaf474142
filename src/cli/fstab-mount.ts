// `mount -t fuse.blobhsm SOURCE MOUNTPOINT -o OPTIONS` and /etc/fstab lines of type fuse.blobhsm: mount(8) runs
// /sbin/mount.fuse (fuse3), which runs `blobhsm SOURCE MOUNTPOINT -o OPTIONS`. This module recognises that call and
// turns SOURCE and the -o list into the flags of `blobhsm mount`: blobhsm's own options (config_file=,
// cache_dir=, ...), mount(8)'s generic options (dropped), and the rest, passed to FUSE.
import { UsageError } from '../errors.js';
import type { MountFlags } from './mount-command.js';

/** blobhsm options accepted inside -o (`cache_dir=...` or `cache-dir=...`), and the flag each one sets. */
const VALUE_OPTIONS: Record<string, keyof MountFlags> = {
  config_file: 'configFile',
  container: 'container',
  prefix: 'prefix',
  subdirectory: 'prefix',
  account: 'account',
  account_name: 'account',
  blob_endpoint: 'blobEndpoint',
  endpoint: 'blobEndpoint',
  cache_dir: 'cacheDir',
  cache_size: 'cacheSize',
  timeout: 'timeout',
  auto_export_min_age: 'autoExportMinAge',
  auto_export_interval: 'autoExportInterval',
  metrics: 'metrics',
  log_level: 'logLevel',
  log_file: 'logFile',
  namespace: 'namespace',
  id_map: 'idMap',
};
const SWITCH_OPTIONS: Record<string, keyof MountFlags> = { ro: 'readOnly', auto_export: 'autoExport', debug: 'debug' };
const SECRET_OPTIONS = new Set(['account_key', 'sas', 'sas_token', 'connection_string']);
/** mount(8)'s own options (and the defaults mount.fuse adds), which mean nothing to FUSE here. */
const MOUNT_ONLY = new Set(['defaults', 'auto', 'noauto', 'user', 'users', 'nouser', 'owner', 'group', '_netdev', 'nofail', 'rw', 'dev', 'suid', 'exec']);

/**
 * The mount(8) helper call: `SOURCE MOUNTPOINT` or `SOURCE MOUNTPOINT -o OPTIONS`, where SOURCE is not a blobhsm
 * command. Any other argv is a command line (so a mistyped command still gets the usage error).
 */
export function isMountHelperCall(argv: readonly string[], commands: ReadonlySet<string>): boolean {
  const [source, mountpoint] = argv;
  if (!source || !mountpoint || source.startsWith('-') || commands.has(source)) return false;
  if (!mountpoint.startsWith('/')) return false;
  return argv.length === 2 || (argv.length === 4 && argv[2] === '-o');
}

/**
 * SOURCE is `CONTAINER`, `CONTAINER/PREFIX`, or `blobhsm`/`none` when the container comes from config_file= or
 * the environment. Returns the mountpoint and the flags for runMount.
 */
export function mountHelperFlags(argv: readonly string[]): { mountpoint: string; flags: MountFlags } {
  const [source, mountpoint, , optionText = ''] = argv as [string, string, string?, string?];
  const flags: MountFlags = {};
  if (source !== 'blobhsm' && source !== 'none') {
    const slash = source.indexOf('/');
    flags.container = slash < 0 ? source : source.slice(0, slash);
    if (slash >= 0 && source.slice(slash + 1)) flags.prefix = source.slice(slash + 1);
  }
  const fuse: string[] = [];
  for (const option of optionText.split(',').map((o) => o.trim()).filter(Boolean)) {
    const eq = option.indexOf('=');
    const rawName = eq < 0 ? option : option.slice(0, eq);
    const name = rawName.replace(/^--/, '').replaceAll('-', '_');
    const value = eq < 0 ? undefined : option.slice(eq + 1);
    if (SECRET_OPTIONS.has(name)) {
      throw new UsageError(`-o ${rawName}=...: secrets in mount options are visible in ps and /etc/fstab; put ${name.replaceAll('_', '-')} in the config file (config_file=FILE, azstorage section) or the environment`);
    }
    if (name in VALUE_OPTIONS) {
      if (!value) throw new UsageError(`-o ${rawName} needs a value (${rawName}=...)`);
      (flags as Record<string, unknown>)[VALUE_OPTIONS[name]!] = value;
    } else if (name in SWITCH_OPTIONS && value === undefined) {
      (flags as Record<string, unknown>)[SWITCH_OPTIONS[name]!] = true;
    } else if (MOUNT_ONLY.has(option) || option.startsWith('x-') || option.startsWith('comment=')) {
      continue;
    } else {
      fuse.push(option);
    }
  }
  if (fuse.length) flags.o = fuse;
  return { mountpoint, flags };
}
