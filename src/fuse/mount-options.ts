// The `-o` mount options blobhsm accepts, checked before anything is imported or mounted: libfuse's own options
// (names as libfuse 2.9 parses them), minus those blobhsm sets itself or refuses for safety. Pure, no FUSE import.
import { UsageError } from '../errors.js';

/** Options taken as given (flags, and `name=value` options by name). */
const PASSED_FLAGS = new Set([
  'allow_root', 'noatime', 'atime', 'relatime', 'noexec', 'exec', 'nodev', 'nosuid', 'sync', 'async', 'dirsync',
  'kernel_cache', 'auto_cache', 'noauto_cache', 'direct_io', 'hard_remove', 'use_ino', 'readdir_ino', 'intr',
  'big_writes', 'async_read', 'sync_read', 'atomic_o_trunc', 'no_remote_lock', 'large_read',
]);
const PASSED_VALUES = new Set([
  'max_read', 'max_write', 'max_readahead', 'max_background', 'congestion_threshold', 'entry_timeout', 'attr_timeout',
  'negative_timeout', 'ac_attr_timeout', 'uid', 'gid', 'umask', 'remember', 'intr_signal',
]);
/** Options blobhsm handles itself (taken out of the list). */
const HANDLED = new Set(['allow_other', 'default_permissions', 'nonempty', 'ro', 'rw', 'debug']);
/** Options that would break what blobhsm promises, with the reason. */
const REFUSED: Record<string, string> = {
  fsname: 'blobhsm names its mounts itself (fsname blobhsm, fstype fuse.blobhsm: that is how unmount knows them)',
  subtype: 'blobhsm names its mounts itself (fstype fuse.blobhsm: that is how unmount knows them)',
  suid: 'blobhsm mounts are always nosuid (blob metadata must not create set-user-ID programs)',
  dev: 'blobhsm mounts are always nodev',
  fd: 'set by libfuse',
  user_id: 'set by libfuse',
  group_id: 'set by libfuse',
  rootmode: 'set by libfuse',
  blkdev: 'blobhsm is not a block-device filesystem',
  blksize: 'blobhsm is not a block-device filesystem',
  modules: 'FUSE stacking modules are not supported',
};

export interface MountOptionChoice {
  /** `-o allow_other` (or `--allow-other`): users other than the mounting one may enter (permissions enforced). */
  allowOther: boolean;
  /** `-o nonempty`: mount over a directory that has entries (hidden while mounted; also passed to libfuse). */
  nonempty: boolean;
  /** `-o ro`. */
  readOnly: boolean;
  debug: boolean;
  /** The remaining options, passed to libfuse unchanged. */
  passed: string[];
}

/** Checks `-o` options (already split on commas); every unknown or refused one is a UsageError naming it. */
export function parseMountOptions(options: readonly string[]): MountOptionChoice {
  const choice: MountOptionChoice = { allowOther: false, nonempty: false, readOnly: false, debug: false, passed: [] };
  for (const raw of options) {
    const opt = raw.trim();
    if (!opt) continue;
    const eq = opt.indexOf('=');
    const name = eq < 0 ? opt : opt.slice(0, eq);
    if (HANDLED.has(name) && eq < 0) {
      if (name === 'allow_other') choice.allowOther = true;
      else if (name === 'nonempty') {
        choice.nonempty = true;
        choice.passed.push(name); // libfuse 2 checks the mountpoint itself
      }
      else if (name === 'ro') choice.readOnly = true;
      else if (name === 'debug') choice.debug = true;
      continue;
    }
    if (name in REFUSED) throw new UsageError(`mount option '-o ${opt}' is not allowed: ${REFUSED[name]}`);
    if (eq < 0 ? PASSED_FLAGS.has(name) : PASSED_VALUES.has(name)) {
      if (eq >= 0 && opt.slice(eq + 1) === '') throw new UsageError(`mount option '-o ${opt}' needs a value (${name}=N)`);
      choice.passed.push(opt);
      continue;
    }
    const known = PASSED_VALUES.has(name) ? `${name} needs a value (${name}=N)` : PASSED_FLAGS.has(name) ? `${name} takes no value` : 'libfuse does not know it';
    throw new UsageError(
      `unknown mount option '-o ${opt}': ${known}. Accepted: ${[...HANDLED].filter((n) => n !== 'rw').join(', ')}, ` +
        `${[...PASSED_FLAGS].join(', ')}, ${[...PASSED_VALUES].map((n) => `${n}=N`).join(', ')}`,
    );
  }
  return choice;
}
