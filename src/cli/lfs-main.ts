// The lean entry of the `lfs`-compatible commands (`blobhsm hsm_state ...`, `blobhsm hsm state ...`,
// `blobhsm lfs ...`): a shell loop runs one of these per file (`find | xargs -n 1 lfs hsm_restore`), so this
// module and what it imports must stay small. It must never import (directly or through another module) the
// Azure SDK, SQLite, fuse-native, commander, p-queue or job code: it only parses argv and talks to the daemon over
// the control socket. test/cli-startup.test.ts pins the modules this path loads.
import { runLfs } from './hsm-command.js';
import type { CliIo } from './io.js';
import { LFS_COMMANDS, listCommandsText, usageText, type LfsCommand } from './lfs-args.js';

/** The commands `lfs --list-commands` names, in lfs.c's cmdlist order. */
const TOP_COMMANDS = ['find', 'df', ...LFS_COMMANDS, 'help', '--list-commands'];

/** The help text of one command (lfs's pc_help), or undefined for a name lfs does not know. */
export async function commandHelp(name: string): Promise<string | undefined> {
  if (name === 'find' || name === 'df') {
    const { DF_USAGE, FIND_USAGE } = await import('./lfs-find-args.js');
    return name === 'find' ? FIND_USAGE : DF_USAGE;
  }
  if (name === 'help') return 'help: Provide help on a command.\nusage: help [COMMAND]';
  if (name === '--list-commands') return 'list commands supported by lfs\nusage: --list-commands';
  const hsm = name.startsWith('hsm_') ? name : `hsm_${name.replace(/^hsm /, '')}`;
  return (LFS_COMMANDS as readonly string[]).includes(hsm) ? usageText(hsm as LfsCommand, name.startsWith('hsm_') ? 'underscore' : 'hsm') : undefined;
}

/**
 * `lfs help [COMMAND]` as libcfs's Parser_help: without a command the short usage on stdout; with one its help on
 * stderr, `COMMAND: Unknown command.` for a name lfs does not know; exit 0 either way.
 */
async function runLfsHelp(args: readonly string[], io: CliIo): Promise<number> {
  if (args.length === 0) {
    io.stdout.write("usage: lfs [COMMAND] [OPTIONS]... [ARGS]\nTry 'lfs help <COMMAND>' or 'lfs --list-commands' for more information\n");
    return 0;
  }
  const name = args.join(' ');
  const help = await commandHelp(name);
  io.stderr.write(help === undefined ? `${name}: Unknown command.\n` : `${name}: ${help}\n`);
  return 0;
}

/** True when argv is an `lfs` command line: `lfs ...`, `hsm_*`, `hsm <sub>`, also after lfs's leading `--json`. */
export function isLfsArgv(argv: readonly string[]): boolean {
  if (argv[0] === 'lfs') return true;
  return (argv.find((a) => a !== '--json') ?? '').startsWith('hsm');
}

/** Runs an `lfs` command line (see isLfsArgv) and returns its exit status. */
export async function runLfsMain(argv: readonly string[], io: CliIo): Promise<number> {
  const args = argv[0] === 'lfs' ? argv.slice(1) : [...argv];
  if (args[0] === 'help') return runLfsHelp(args.slice(1), io);
  if (args[0] === '--list-commands') {
    io.stdout.write(listCommandsText(TOP_COMMANDS));
    return 0;
  }
  if (args[0] === 'hsm' && args[1] === '--list-commands') {
    io.stdout.write(listCommandsText(LFS_COMMANDS.map((c) => c.slice('hsm_'.length))));
    return 0;
  }
  // find and df load their modules only when run: every module costs the hsm_* start-up a little.
  if (args[0] === 'find') return (await import('./lfs-find-command.js')).runLfsFind(args.slice(1), io);
  if (args[0] === 'df') return (await import('./lfs-find-command.js')).runLfsDf(args.slice(1), io);
  return runLfs(args, io);
}

export { processIo } from './io.js';
