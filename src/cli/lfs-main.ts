// The lean entry of the `lfs`-compatible commands (`blobhsm hsm_state ...`, `blobhsm hsm state ...`,
// `blobhsm lfs ...`): a shell loop runs one of these per file (`find | xargs -n 1 lfs hsm_restore`), so this
// module and what it imports must stay small. It must never import (directly or through another module) the
// Azure SDK, SQLite, fuse-native, commander, p-queue or job code: it only parses argv and talks to the daemon over
// the control socket. test/cli-startup.test.ts pins the modules this path loads.
import { runLfs } from './hsm-command.js';
import type { CliIo } from './io.js';

/** True when argv is an `lfs` command line: `lfs ...`, `hsm_*`, `hsm <sub>`, also after lfs's leading `--json`. */
export function isLfsArgv(argv: readonly string[]): boolean {
  if (argv[0] === 'lfs') return true;
  return (argv.find((a) => a !== '--json') ?? '').startsWith('hsm');
}

/** Runs an `lfs` command line (see isLfsArgv) and returns its exit status. */
export async function runLfsMain(argv: readonly string[], io: CliIo): Promise<number> {
  const args = argv[0] === 'lfs' ? argv.slice(1) : [...argv];
  // find and df load their modules only when run: every module costs the hsm_* start-up a little.
  if (args[0] === 'find') return (await import('./lfs-find-command.js')).runLfsFind(args.slice(1), io);
  if (args[0] === 'df') return (await import('./lfs-find-command.js')).runLfsDf(args.slice(1), io);
  return runLfs(args, io);
}

export { processIo } from './io.js';
