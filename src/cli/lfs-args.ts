// Pure parser for the `lfs hsm_*`-compatible commands (and the `lfs hsm <sub>` spellings), modelled on
// lustre/utils/lfs.c: the same long and short options, GNU getopt_long rules (options anywhere, `--` ends them,
// unique long prefixes, `--opt=value`, clustered short options), and the same usage texts. A usage problem
// throws LfsUsageError: the caller prints `detail` (if any) on stderr, `usage` on stdout, and exits 4.
import { UsageError } from '../errors.js';
import { EXIT_USAGE } from './exit-status.js';
import { maskOf, type HsmFlagName } from '../hsm/flags.js';

export type LfsCommand =
  | 'hsm_state'
  | 'hsm_action'
  | 'hsm_set'
  | 'hsm_clear'
  | 'hsm_archive'
  | 'hsm_release'
  | 'hsm_restore'
  | 'hsm_remove'
  | 'hsm_cancel';

export const LFS_COMMANDS: readonly LfsCommand[] = [
  'hsm_state',
  'hsm_action',
  'hsm_set',
  'hsm_clear',
  'hsm_archive',
  'hsm_release',
  'hsm_restore',
  'hsm_remove',
  'hsm_cancel',
];

/** `hsm_state` (lfs hsm_state) or `hsm` (lfs hsm state): selects the usage text and lfs's argv[0]. */
export type LfsSpelling = 'underscore' | 'hsm';

export interface LfsRequest {
  command: LfsCommand;
  /** lfs's argv[0] for this command, used in error lines: `hsm_state`, or `state` for `lfs hsm state`. */
  name: string;
  spelling: LfsSpelling;
  /** Paths from the command line, in order. */
  files: string[];
  /** `--filelist F` (`-` = stdin): more paths, NUL or newline separated, read by the caller (see parseFilelist). */
  filelist?: string;
  /** hsm_set: the flags to set (never 0). */
  setFlags?: number;
  /** hsm_clear: the flags to clear (never 0). */
  clearFlags?: number;
  /** hsm_set `--archive-id N`, hsm_archive/hsm_remove `--archive N`. */
  archiveId?: number;
  /** `--data DATA`: opaque data lfs passes to the copy tool; accepted and carried, blobhsm does not use it. */
  data?: string;
  /** Ours: block until the request is done (Lustre returns once it is queued). */
  wait: boolean;
  /** Ours: JSON lines instead of lfs text. */
  json: boolean;
}

/**
 * A usage error: `detail` goes to stderr (when set), then `usage` to stdout; exit status 4. With `requested`
 * (`--help`, `-h`) the usage alone is printed and the exit status is 0.
 */
export class LfsUsageError extends UsageError {
  constructor(
    readonly usage: string,
    readonly detail?: string,
    readonly requested = false,
  ) {
    super(detail ?? usage.split('\n')[0] ?? 'usage error');
  }
}

/** Prints a usage error (or requested help) as lfs does and returns the exit status. */
export function reportUsage(err: LfsUsageError, out: { stdout: { write(s: string): unknown }; stderr: { write(s: string): unknown } }): number {
  if (err.detail) out.stderr.write(err.detail + '\n');
  out.stdout.write(err.usage + '\n');
  return err.requested ? 0 : EXIT_USAGE;
}

/**
 * lfs's `--list-commands` (libcfs Parser_list_commands with an 81-byte buffer and 4 columns): names padded to 20
 * characters (a longer one cut to 19 and a space), four to a line, the last line as far as it goes.
 */
export function listCommandsText(names: readonly string[]): string {
  const width = 20;
  const cells = names.map((n) => (n.length < width ? n.padEnd(width) : n.slice(0, width - 1) + ' '));
  const lines: string[] = [];
  for (let i = 0; i < cells.length; i += 4) lines.push(cells.slice(i, i + 4).join(''));
  return lines.map((l) => l + '\n').join('');
}

// ---------------------------------------------------------------------------------------------------------
// Usage texts: lfs.c's cmdlist / hsm_cmdlist help strings, byte for byte (tabs included), then one line
// naming the options blobhsm adds. `--mntpath MOUNTPATH FID` is left out of hsm_remove: blobhsm has no FIDs.

const DESCRIPTION: Record<LfsCommand, string> = {
  hsm_state: 'Display the HSM information for given files.',
  hsm_set: 'Set HSM user flag on specified files.',
  hsm_clear: 'Clear HSM user flag on specified files.',
  hsm_action: 'Display current HSM request for given files.',
  hsm_archive: 'Archive file to external storage.',
  hsm_restore: 'Restore file from external storage.',
  hsm_release: 'Release files from Lustre.',
  hsm_remove: 'Remove file copy from external storage.',
  hsm_cancel: 'Cancel requests related to specified files.',
};

const USAGE_UNDERSCORE: Record<LfsCommand, string> = {
  hsm_state: 'usage: hsm_state FILE',
  hsm_set: 'usage: hsm_set [--norelease] [--noarchive] [--dirty] [--exists]\n\t\t [--archived] [--lost] [--archive-id NUM] FILE',
  hsm_clear: 'usage: hsm_clear [--norelease] [--noarchive] [--dirty] [--exists]\n\t\t   [--archived] [--lost] FILE',
  hsm_action: 'usage: hsm_action FILE',
  hsm_archive: 'usage: hsm_archive [--filelist FILELIST] [--data DATA]\n\t\t     [--archive NUM] FILE',
  hsm_restore: 'usage: hsm_restore [--filelist FILELIST] [--data DATA] FILE',
  hsm_release: 'usage: hsm_release [--filelist FILELIST] [--data DATA] FILE',
  hsm_remove: 'usage: hsm_remove [--filelist FILELIST] [--data DATA]\n\t\t    [--archive NUM] FILE',
  hsm_cancel: 'usage: hsm_cancel [--filelist FILELIST] [--data DATA] FILE',
};

const USAGE_HSM: Record<LfsCommand, string> = {
  hsm_state: 'usage: hsm state FILE',
  hsm_set: 'usage: hsm set [--norelease] [--noarchive] [--dirty] [--exists] [--archived] [--lost] [--archive-id NUM] FILE',
  hsm_clear: 'usage: hsm clear [--norelease] [--noarchive] [--dirty] [--exists] [--archived] [--lost] FILE',
  hsm_action: 'usage: hsm action FILE',
  hsm_archive: 'usage: hsm archive [--filelist FILELIST] [--data DATA]\n\t\t     [--archive NUM] FILE',
  hsm_restore: 'usage: hsm restore [--filelist FILELIST] [--data DATA] FILE',
  hsm_release: 'usage: hsm release [--filelist FILELIST] [--data DATA] FILE',
  hsm_remove: 'usage: hsm remove [--filelist FILELIST] [--data DATA]\n\t\t    [--archive NUM] FILE',
  hsm_cancel: 'usage: hsm cancel [--filelist FILELIST] [--data DATA] FILE',
};

type CommandClass = 'query' | 'flags' | 'request';

const CLASS: Record<LfsCommand, CommandClass> = {
  hsm_state: 'query',
  hsm_action: 'query',
  hsm_set: 'flags',
  hsm_clear: 'flags',
  hsm_archive: 'request',
  hsm_release: 'request',
  hsm_restore: 'request',
  hsm_remove: 'request',
  hsm_cancel: 'request',
};

const EXTRA_OPTIONS: Record<CommandClass, string> = {
  query: 'blobhsm options: [--filelist FILELIST] [--json]',
  flags: 'blobhsm options: [--filelist FILELIST] [--json]',
  request: 'blobhsm options: [--wait] [--json]',
};

/** The help lfs prints on stdout for a usage error (description, usage lines), plus blobhsm's own options. */
export function usageText(command: LfsCommand, spelling: LfsSpelling = 'underscore'): string {
  const usage = (spelling === 'hsm' ? USAGE_HSM : USAGE_UNDERSCORE)[command];
  return `${DESCRIPTION[command]}\n${usage}\n${EXTRA_OPTIONS[CLASS[command]]}`;
}

/** The command list printed for `lfs hsm` without (or with an unknown) sub-command, or for no command at all. */
export function commandListText(spelling: LfsSpelling = 'underscore'): string {
  const lines = LFS_COMMANDS.map((c) => {
    const name = spelling === 'hsm' ? c.slice('hsm_'.length) : c;
    return `  ${name.padEnd(12)}${DESCRIPTION[c]}`;
  });
  const head = spelling === 'hsm' ? 'usage: hsm <command> [options] FILE...' : 'usage: <command> [options] FILE...';
  return `${head}\n${lines.join('\n')}`;
}

// ---------------------------------------------------------------------------------------------------------
// A small getopt_long.

interface OptSpec {
  long: string;
  short?: string;
  hasArg: boolean;
  /** Which request field it sets. */
  key: string;
}

const FLAG_OPTS: OptSpec[] = [
  { long: 'archived', short: 'A', hasArg: false, key: 'ARCHIVED' },
  { long: 'noarchive', short: 'a', hasArg: false, key: 'NOARCHIVE' },
  { long: 'dirty', short: 'd', hasArg: false, key: 'DIRTY' },
  { long: 'exists', short: 'e', hasArg: false, key: 'EXISTS' },
  { long: 'help', short: 'h', hasArg: false, key: 'help' },
  { long: 'archive-id', short: 'i', hasArg: true, key: 'archiveId' },
  { long: 'lost', short: 'l', hasArg: false, key: 'LOST' },
  { long: 'norelease', short: 'r', hasArg: false, key: 'NORELEASE' },
  { long: 'filelist', hasArg: true, key: 'filelist' },
  { long: 'json', hasArg: false, key: 'json' },
];

const REQUEST_OPTS: OptSpec[] = [
  { long: 'archive', short: 'a', hasArg: true, key: 'archiveId' },
  { long: 'data', short: 'D', hasArg: true, key: 'data' },
  { long: 'help', short: 'h', hasArg: false, key: 'help' },
  { long: 'filelist', short: 'l', hasArg: true, key: 'filelist' },
  { long: 'mntpath', short: 'm', hasArg: true, key: 'mntpath' },
  { long: 'wait', hasArg: false, key: 'wait' },
  { long: 'json', hasArg: false, key: 'json' },
];

const QUERY_OPTS: OptSpec[] = [
  { long: 'filelist', hasArg: true, key: 'filelist' },
  { long: 'json', hasArg: false, key: 'json' },
  // Only the exact word (query operands are not parsed as options): a file named --help is `-- --help`.
  { long: 'help', hasArg: false, key: 'help' },
];

interface ParsedOpt {
  spec: OptSpec;
  value?: string;
  /** The argv element it came from (lfs prints it in "unrecognized option"). */
  arg: string;
}

class BadOption extends Error {
  constructor(readonly arg: string) {
    super(`unrecognized option '${arg}'`);
  }
}

function findLong(specs: OptSpec[], name: string, arg: string): OptSpec {
  const exact = specs.find((s) => s.long === name);
  if (exact) return exact;
  const prefixed = specs.filter((s) => name.length > 0 && s.long.startsWith(name));
  if (prefixed.length !== 1) throw new BadOption(arg); // unknown or ambiguous
  return prefixed[0]!;
}

/**
 * GNU getopt_long with argument permutation. `strict` false (hsm_state, hsm_action, which take no lfs options)
 * recognises only the exact spelling of our own options and takes everything else as a file, as lfs does.
 */
function getopt(args: readonly string[], specs: OptSpec[], strict: boolean): { opts: ParsedOpt[]; operands: string[] } {
  const opts: ParsedOpt[] = [];
  const operands: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--') {
      operands.push(...args.slice(i + 1));
      break;
    }
    if (!strict) {
      const spec = specs.find((s) => `--${s.long}` === arg || (s.hasArg && arg.startsWith(`--${s.long}=`)));
      if (!spec) operands.push(arg);
      else if (!spec.hasArg) opts.push({ spec, arg });
      else if (arg.includes('=')) opts.push({ spec, value: arg.slice(arg.indexOf('=') + 1), arg });
      else if (i + 1 < args.length) opts.push({ spec, value: args[++i]!, arg });
      else throw new BadOption(arg);
      continue;
    }
    if (arg.startsWith('--')) {
      const eq = arg.indexOf('=');
      const name = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
      const spec = findLong(specs, name, arg);
      if (!spec.hasArg) {
        if (eq >= 0) throw new BadOption(arg);
        opts.push({ spec, arg });
      } else if (eq >= 0) {
        opts.push({ spec, value: arg.slice(eq + 1), arg });
      } else {
        if (i + 1 >= args.length) throw new BadOption(arg);
        opts.push({ spec, value: args[++i]!, arg });
      }
      continue;
    }
    if (arg.startsWith('-') && arg !== '-') {
      for (let j = 1; j < arg.length; j++) {
        const spec = specs.find((s) => s.short === arg[j]);
        if (!spec) throw new BadOption(arg);
        if (!spec.hasArg) {
          opts.push({ spec, arg });
          continue;
        }
        if (j + 1 < arg.length) {
          opts.push({ spec, value: arg.slice(j + 1), arg });
        } else {
          if (i + 1 >= args.length) throw new BadOption(arg);
          opts.push({ spec, value: args[++i]!, arg });
        }
        break;
      }
      continue;
    }
    operands.push(arg);
  }
  return { opts, operands };
}

const UINT32_MAX = 0xffffffff;

function parseArchiveId(value: string): number | undefined {
  if (!/^\d+$/.test(value)) return undefined;
  const n = Number(value);
  return n <= UINT32_MAX ? n : undefined;
}

// ---------------------------------------------------------------------------------------------------------

/**
 * Parses argv after the program name: `['hsm_state', 'a', 'b']`, `['hsm', 'state', 'a']`,
 * `['hsm_set', '--norelease', 'f']`, `['--json', 'hsm_state', 'f']`. Throws LfsUsageError.
 */
export function parseLfsArgs(argv: readonly string[]): LfsRequest {
  let rest = [...argv];
  let leadingJson = false;
  while (rest[0] === '--json') {
    leadingJson = true;
    rest = rest.slice(1);
  }
  const first = rest[0];
  if (first === undefined) throw new LfsUsageError(commandListText('underscore'));

  let command: LfsCommand;
  let name: string;
  let spelling: LfsSpelling;
  if (first === 'hsm') {
    const sub = rest[1];
    if (sub === undefined) throw new LfsUsageError(commandListText('hsm'));
    const candidate = `hsm_${sub}` as LfsCommand;
    if (!LFS_COMMANDS.includes(candidate)) {
      throw new LfsUsageError(
        commandListText('hsm'),
        `lfs hsm: '${sub}' is not a valid command. See 'lfs hsm --list-commands'.`,
      );
    }
    command = candidate;
    name = sub;
    spelling = 'hsm';
    rest = rest.slice(2);
  } else {
    if (!LFS_COMMANDS.includes(first as LfsCommand)) {
      throw new LfsUsageError(
        commandListText('underscore'),
        `lfs: '${first}' is not a valid command. See 'lfs --list-commands'.`,
      );
    }
    command = first as LfsCommand;
    name = first;
    spelling = 'underscore';
    rest = rest.slice(1);
  }

  const usage = usageText(command, spelling);
  const fail = (detail?: string): never => {
    throw new LfsUsageError(usage, detail);
  };
  const cls = CLASS[command];
  const specs = cls === 'query' ? QUERY_OPTS : cls === 'flags' ? FLAG_OPTS : REQUEST_OPTS;

  let parsed: { opts: ParsedOpt[]; operands: string[] };
  try {
    parsed = getopt(rest, specs, cls !== 'query');
  } catch (err) {
    if (err instanceof BadOption) return fail(`lfs: unrecognized option '${err.arg}'`);
    throw err;
  }

  const req: LfsRequest = { command, name, spelling, files: parsed.operands, wait: false, json: leadingJson };
  let mask = 0;
  for (const { spec, value, arg } of parsed.opts) {
    switch (spec.key) {
      case 'help':
        throw new LfsUsageError(usage, undefined, true);
      case 'json':
        req.json = true;
        break;
      case 'wait':
        req.wait = true;
        break;
      case 'data':
        req.data = value!;
        break;
      case 'filelist':
        req.filelist = value!;
        break;
      case 'mntpath':
        return fail(`lfs: '${arg}' (a list of FIDs) is not supported by blobhsm: name the files`);
      case 'archiveId': {
        if (cls === 'request' && command !== 'hsm_archive' && command !== 'hsm_remove') {
          return fail('error: -a is supported only when archiving or removing');
        }
        const id = parseArchiveId(value!);
        if (id === undefined) return fail(`lfs: invalid archive_id: '${value!}'`);
        // hsm_clear accepts --archive-id and ignores it, as lfs does.
        if (command !== 'hsm_clear') req.archiveId = id;
        break;
      }
      default:
        mask |= maskOf([spec.key as HsmFlagName]);
    }
  }

  if (cls === 'flags') {
    // "User should have specified a flag"
    if (mask === 0) return fail();
    if (command === 'hsm_set') req.setFlags = mask;
    else req.clearFlags = mask;
  }
  // lfs prints the usage for a query or flags command without files; a request without files or a file list
  // would return 0 having done nothing: blobhsm prints the usage for every command.
  if (req.files.length === 0 && req.filelist === undefined) return fail();
  return req;
}

/**
 * The paths in a `--filelist` file: one a line, the newline chopped (nothing else trimmed, as lfs does), or
 * NUL-separated when the text holds a NUL (`find -print0`; a path can hold a newline but never a NUL). Empty
 * entries are skipped (lfs would fail on them with "Cannot stat : No such file or directory").
 */
export function parseFilelist(text: string): string[] {
  return text.split(text.includes('\0') ? '\0' : '\n').filter((line) => line.length > 0);
}
