// Pure parser for `lfs find` and `lfs df` as blobhsm answers them, after lustre/utils/lfs.c: lfs find reads its
// options with getopt_long_only (`-type f` and `--type f` alike, unique prefixes, `--opt=value`, a `!` before an
// option negates it), sizes as llapi_parse_size does (default unit 512 bytes, suffixes b c k M G T P E, the unit
// is the margin), times as set_time does (days by default, s m h d w y, summed; `+N -M` gives a range).
// A usage problem throws LfsUsageError (detail on stderr, usage on stdout, exit 4).
import type { FindCriteria, ValueCriterion } from '../namespace/find.js';
import { FIND_STATES, type FindState } from '../hsm/flags.js';
import { LfsUsageError } from './lfs-args.js';

export const FIND_USAGE =
  'find files matching given attributes recursively in directory tree.\n' +
  'usage: find <directory|filename> ...\n' +
  '     [[!] --hsm-state [^]STATE[,...]] [[!] --mtime|-M [+-]N[smhdwy]]\n' +
  '     [--maxdepth|-D N] [--mindepth|-d N] [--print|-P] [--print0|-0]\n' +
  '     [[!] --size|-s [+-]N[bkMGTPE]] [[!] --type|-t <filetype>]\n' +
  '\t !: used before an option indicates \'NOT\' requested attribute\n' +
  '\t -: used before a value indicates less than requested value\n' +
  '\t +: used before a value indicates more than requested value\n' +
  '\t ^: used before a state indicates to exclude it\n' +
  `\tSTATE: ${Object.keys(FIND_STATES).join(', ')} (blobhsm)`;

export const DF_USAGE =
  'report filesystem disk space usage or inodes usage of each MDS and all OSDs or a batch belonging to a specific pool.\n' +
  'Usage: df [--inodes|-i] [--human-readable|-h] [path]';

export interface FindRequest {
  paths: string[];
  criteria: FindCriteria;
  print0: boolean;
}

export interface DfRequest {
  path?: string;
  inodes: boolean;
  human: boolean;
}

interface Spec {
  long: string;
  short?: string;
  hasArg: boolean;
}

const FIND_OPTS: Spec[] = [
  { long: 'hsm-state', hasArg: true },
  { long: 'maxdepth', short: 'D', hasArg: true },
  { long: 'mindepth', short: 'd', hasArg: true },
  { long: 'mtime', short: 'M', hasArg: true },
  { long: 'print', short: 'P', hasArg: false },
  { long: 'print0', short: '0', hasArg: false },
  { long: 'size', short: 's', hasArg: true },
  { long: 'type', short: 't', hasArg: true },
  { long: 'help', short: 'h', hasArg: false },
];

const DF_OPTS: Spec[] = [
  { long: 'inodes', short: 'i', hasArg: false },
  { long: 'human-readable', short: 'h', hasArg: false },
  { long: 'help', hasArg: false },
];

interface Token {
  option?: Spec;
  value?: string;
  negate: boolean;
  /** An operand (a path). */
  operand?: string;
}

/** getopt_long_only over argv: `-name` and `--name` are long options (unique prefixes), one-letter `-x` short. */
function tokens(argv: readonly string[], specs: Spec[], usage: string, command: string): Token[] {
  const out: Token[] = [];
  let args = argv;
  const bad = (arg: string): never => {
    throw new LfsUsageError(usage, `lfs ${command}: unrecognized option '${arg}'`);
  };
  let negate = false;
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '!') {
      negate = true;
      continue;
    }
    if (!arg.startsWith('-') || arg === '-') {
      if (negate) bad('!');
      out.push({ operand: arg, negate: false });
      continue;
    }
    const dashes = arg.startsWith('--') ? 2 : 1;
    const eq = arg.indexOf('=');
    const name = arg.slice(dashes, eq >= 0 ? eq : undefined);
    let spec: Spec | undefined;
    if (dashes === 1 && name.length === 1) spec = specs.find((s) => s.short === name);
    else {
      spec = specs.find((s) => s.long === name);
      if (!spec) {
        const prefixed = specs.filter((s) => s.long.startsWith(name));
        spec = prefixed.length === 1 ? prefixed[0] : undefined;
      }
    }
    if (!spec && dashes === 1 && eq < 0) {
      // Not a long option: a cluster of short ones (`-ih`), the last of which may take the next argument.
      const cluster = [...name].map((ch) => specs.find((s) => s.short === ch));
      if (cluster.every((s, k) => s && (!s.hasArg || k === cluster.length - 1))) {
        for (const s of cluster.slice(0, -1)) out.push({ option: s!, negate });
        args = [...args.slice(0, i), `-${name.slice(-1)}`, ...args.slice(i + 1)];
        i--;
        continue;
      }
    }
    if (!spec || (!spec.hasArg && eq >= 0)) return bad(arg);
    let value: string | undefined;
    if (spec.hasArg) {
      if (eq >= 0) value = arg.slice(eq + 1);
      else if (i + 1 < args.length) value = args[++i]!;
      else throw new LfsUsageError(usage, `lfs ${command}: option '${arg}' requires an argument`);
    }
    out.push({ option: spec, value, negate });
    negate = false;
  }
  if (negate) bad('!');
  return out;
}

const SIZE_UNITS: Record<string, number> = { b: 512, c: 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40, p: 2 ** 50, e: 2 ** 60 };

/** `--size [+-]N[.F][bckMGTPE][i|b]`, as llapi_parse_size with lfs find's default unit of 512 bytes. */
export function parseSize(text: string, negate: boolean): ValueCriterion | undefined {
  const m = /^([+-]?)(\d+)(?:\.(\d+))?(?:([bckmgtpe])(i?b|i)?)?$/i.exec(text);
  if (!m) return undefined;
  const units = m[4] ? SIZE_UNITS[m[4].toLowerCase()]! : 512;
  const fraction = m[3] ? Number(`0.${m[3]}`) : 0;
  const limit = Number(m[2]) * units + Math.floor(fraction * units);
  if (!Number.isSafeInteger(limit)) return undefined;
  return { sign: m[1] === '+' ? -1 : m[1] === '-' ? 1 : 0, limit, margin: units, negate };
}

const DAY = 24 * 60 * 60;
const TIME_UNITS: Record<string, number> = { s: 1, m: 60, h: 3600, d: DAY, '': DAY, w: 7 * DAY, y: 365 * DAY };

/**
 * `--mtime [+-]N[smhdwy]...` against `nowSec`, as lfs's set_time: components are summed, days by default; the
 * margin is a day, or the smallest unit given below a day (8 days for years, as lfs has it); a second --mtime
 * of the opposite sign makes a range (its margin the difference).
 */
export function parseTime(text: string, negate: boolean, nowSec: number, previous?: ValueCriterion): ValueCriterion | undefined {
  const m = /^([+-]?)((?:\d+[smhdwy])*(?:\d+)?)$/.exec(text);
  if (!m || m[2] === '') return undefined;
  let margin = DAY;
  let age = 0;
  for (const [, digits, unit] of m[2]!.matchAll(/(\d+)([smhdwy]?)/g)) {
    if (unit === 'y' && margin === DAY) margin *= 8;
    const seconds = TIME_UNITS[unit!]!;
    if (unit !== '' && seconds < margin) margin = seconds;
    age += Number(digits) * seconds;
  }
  if (age > nowSec) return undefined;
  const sign = m[1] === '+' ? 1 : m[1] === '-' ? -1 : 0;
  const limit = nowSec - age;
  if (previous && previous.sign * sign === -1) {
    return { sign: 0, limit: Math.max(limit, previous.limit), margin: Math.abs(limit - previous.limit), negate };
  }
  return { sign, limit, margin, negate };
}

function parseDepth(value: string, usage: string, option: string): number {
  if (!/^\d+$/.test(value)) throw new LfsUsageError(usage, `lfs find: bad ${option} '${value}': a number of levels`);
  return Number(value);
}

/** Parses `find ...` argv (after `lfs`). `nowSec` is the time --mtime counts back from. */
export function parseFindArgs(args: readonly string[], nowSec: number): FindRequest {
  const usage = FIND_USAGE;
  const fail = (detail?: string): never => {
    throw new LfsUsageError(usage, detail);
  };
  const req: FindRequest = { paths: [], criteria: {}, print0: false };
  const c = req.criteria;
  let optionsSeen = false;
  let pathsDone = false;
  for (const t of tokens(args, FIND_OPTS, usage, 'find')) {
    if (t.operand !== undefined) {
      if (pathsDone) fail(`err: find: filename|dirname must either precede options or follow options`);
      req.paths.push(t.operand);
      continue;
    }
    if (req.paths.length > 0 && !optionsSeen) pathsDone = true;
    optionsSeen = true;
    const value = t.value ?? '';
    switch (t.option!.long) {
      case 'help':
        throw new LfsUsageError(usage, undefined, true);
      case 'print':
        break;
      case 'print0':
        req.print0 = true;
        break;
      case 'type':
        if (!/^[bcdflps]$/.test(value)) fail(`lfs find: invalid type '${value}': one of b, c, d, f, l, p, s`);
        c.type = { letter: value, negate: t.negate };
        break;
      case 'size':
        c.size = parseSize(value, t.negate) ?? fail(`error: bad file size '${value}'`);
        break;
      case 'mtime':
        c.mtime = parseTime(value, t.negate, nowSec, c.mtime) ?? fail(`lfs find: bad time string '${value}'`);
        break;
      case 'maxdepth':
        c.maxDepth = parseDepth(value, usage, 'maxdepth');
        break;
      case 'mindepth':
        c.minDepth = parseDepth(value, usage, 'mindepth');
        break;
      case 'hsm-state': {
        const states = value.split(',').map((word) => {
          const exclude = word.startsWith('^') || word.startsWith('!');
          const state = exclude ? word.slice(1) : word;
          if (!Object.hasOwn(FIND_STATES, state)) {
            fail(`lfs find: unknown HSM state '${state}': one of ${Object.keys(FIND_STATES).join(', ')}`);
          }
          return { state: state as FindState, exclude };
        });
        c.hsmState = { states, negate: t.negate };
        break;
      }
    }
  }
  if (req.paths.length === 0) fail('lfs find: no directory or file given');
  return req;
}

/** Parses `df ...` argv (after `lfs`). */
export function parseDfArgs(args: readonly string[]): DfRequest {
  const req: DfRequest = { inodes: false, human: false };
  for (const t of tokens(args, DF_OPTS, DF_USAGE, 'df')) {
    if (t.operand !== undefined) {
      if (req.path !== undefined) throw new LfsUsageError(DF_USAGE, 'lfs df: one path at most');
      req.path = t.operand;
    } else if (t.option!.long === 'help') throw new LfsUsageError(DF_USAGE, undefined, true);
    else if (t.option!.long === 'inodes') req.inodes = true;
    else req.human = true;
  }
  return req;
}
