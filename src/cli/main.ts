// The blobhsm command line: dispatches to one module per command and returns the exit status.
import { Command, CommanderError, Option } from 'commander';
import { UsageError, describeError } from '../errors.js';
import { processIo, type CliIo, EXIT_FAILURE } from './io.js';
import { hideSecretArgs } from './secret-args.js';
import { isLfsArgv, runLfsMain } from './lfs-main.js';
import { ingestCommandSpec, runIngest } from './ingest-command.js';
import { EXIT_USAGE } from './exit-status.js';
import { isMountHelperCall, mountHelperFlags } from './fstab-mount.js';
import { packageVersion } from '../version.js';

// Each command's module is loaded when that command runs: a command line pays for its own command only (the mount
// command's flags need the job and FUSE modules, and every module it loads costs start-up time).
const mountCommand = () => import('./mount-command.js');

export async function main(argv: string[], io: CliIo = processIo()): Promise<number> {
  const first = argv[0] ?? '';
  if (first === '__daemon') return (await mountCommand()).runDaemonChild();
  hideSecretArgs(argv, io);
  // `blobhsm help hsm_state` (and find, df): the lfs command's usage, as `hsm_state --help` prints it.
  if (first === 'help' && argv[1] !== undefined && isLfsArgv(argv.slice(1))) return runLfsMain([...argv.slice(1), '--help'], io);
  if (first === 'help' && (argv[1] === 'find' || argv[1] === 'df')) return runLfsMain(['lfs', argv[1], '--help'], io);
  // bin/blobhsm.js sends these to lfs-main.js without loading this module; main() keeps them for its callers.
  if (isLfsArgv(argv)) return runLfsMain(argv, io);

  let status = 0;
  const program = new Command('blobhsm')
    .description('an Azure Blob container as a Lustre-like HSM namespace')
    .version(packageVersion())
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) })
    .addHelpText(
      'after',
      '\nHSM commands (Lustre lfs compatible): hsm_state hsm_action hsm_set hsm_clear hsm_archive hsm_release\n' +
        'hsm_restore hsm_remove hsm_cancel, also as `blobhsm hsm <sub>` and `blobhsm lfs <command>`.\n',
    );

  program
    .command('unmount')
    .alias('umount')
    .argument('[mountpoint]')
    .option('--lazy', 'detach even with open files; the daemon serves them until they are closed')
    .option('--all', 'unmount every mount of yours (see blobhsm list)')
    .description('unmount a blobhsm mount (only fstype fuse.blobhsm) and wait for its daemon to finish')
    .action(async (mnt: string | undefined, o: { lazy?: boolean; all?: boolean }) => void (status = await (await import('./unmount-command.js')).runUnmount(mnt, o, io)));
  program
    .command('list')
    .option('--json')
    .description('list running mounts')
    .action(async (o: { json?: boolean }) => void (status = (await import('./list-command.js')).runList(io, o.json)));
  program
    .command('status')
    .argument('<mountpoint>')
    .option('--json', 'the daemon status as one JSON object (requests by operation, I/O, HSM queue, ...)')
    .description("a mount's daemon, cache, open files, HSM actions and blob request counters")
    .action(async (mnt: string, o: { json?: boolean }) => void (status = await (await import('./status-command.js')).runStatus(mnt, o, io)));
  program
    .command('changelog')
    .argument('<mountpoint>')
    .argument('[start]', 'first record index')
    .option('--follow', 'keep printing new records')
    .option('--json', 'one JSON object per record')
    .action(async (mnt: string, start: string | undefined, o) => void (status = await (await import('./changelog-command.js')).runChangelog(mnt, { ...o, from: start }, io)));
  program
    .command('changelog_register')
    .argument('<mountpoint>')
    .action(async (mnt: string) => void (status = await (await import('./changelog-command.js')).runChangelogRegister(mnt, io)));
  program
    .command('changelog_clear')
    .arguments('<mountpoint> <reader> <index>')
    .action(async (mnt: string, reader: string, index: string) => void (status = await (await import('./changelog-command.js')).runChangelogClear(mnt, reader, index, io)));
  program
    .command('export')
    .argument('<mountpoint>')
    .option('--prefix <path>', 'export only under this path (repeatable)', (v: string, prev: string[] = []) => [...prev, v])
    .option('--no-wait', 'return once the job has started')
    .option('--json', 'print the job summary as JSON')
    .description('archive every new and modified file to blob')
    .action(async (mnt: string, o) => void (status = await (await import('./export-command.js')).runExport(mnt, o, io)));
  program
    .command('import')
    .argument('<mountpoint>')
    .option('--prefix <path>', 'import only blob paths starting with this (repeatable, at most 100; default /)', (v: string, prev: string[] = []) => [...prev, v])
    .option('--conflict-mode <mode>', 'Fail (default), Skip, OverwriteIfDirty or OverwriteAlways')
    .option('--maximum-errors <n>', 'errors tolerated before the job fails: 0 (default), N, or -1 for unlimited')
    .addOption(new Option('--page-size <n>', 'listing page size (1-5000)').hideHelp())
    .option('--no-wait', 'return once the job has started')
    .option('--json', 'print the job summary as JSON')
    .description('import blobs added or changed in the container (an AMLFS import job)')
    .action(async (mnt: string, o) => void (status = await (await import('./import-command.js')).runImport(mnt, o, io)));
  program.addCommand(ingestCommandSpec().action(async (src: string[], flags) => void (status = await runIngest(src, flags, io))));
  program
    .command('auto-export')
    .argument('<mountpoint>')
    .option('--enable', 'start archiving new and modified files continuously')
    .option('--disable', 'stop (archives in flight are cancelled; those files stay dirty)')
    .option('--min-age <seconds>', 'export files whose content is unchanged for this long')
    .option('--interval <seconds>', 'seconds between iterations')
    .option('--json', 'print the metrics as JSON')
    .description('show or change auto-export (metrics: totalFilesExported, totalMiBExported, iterationsCompleted, ...)')
    .action(async (mnt: string, o) => void (status = await (await import('./auto-export-command.js')).runAutoExport(mnt, o, io)));
  program
    .command('verify')
    .argument('<mountpoint>')
    .argument('[paths...]', 'files or directories inside the mount (default: all of it)')
    .option('--json', 'print the summary as JSON')
    .description("re-hash hydrated clean files against their blob's Content-MD5; exit 1 on a mismatch")
    .action(async (mnt: string, paths: string[], o: { json?: boolean }) => void (status = await (await import('./verify-command.js')).runVerify(mnt, paths, o, io)));
  program
    .command('auto-import')
    .argument('<mountpoint>')
    .option('--enable', 'start following the container: Full Sync, then Blob Sync')
    .option('--disable', 'stop (the pass in flight is cancelled; whole pages are kept)')
    .option('--cancel', 'cancel the pass in flight; the next one runs an interval later')
    .option('--interval <seconds>', 'seconds between Blob Sync passes')
    .option('--prefix <path>', 'only blob paths starting with this (repeatable, at most 100)', (v: string, prev: string[] = []) => [...prev, v])
    .option('--source <source>', 'auto, change-feed or listing')
    .option('--conflict-mode <mode>', 'Skip, OverwriteIfDirty, OverwriteAlways or Fail')
    .option('--enable-deletions', 'apply blob deletions')
    .option('--no-deletions', 'do not apply blob deletions')
    .option('--maximum-errors <n>', 'errors a phase tolerates before auto-import stops as Failed: N, 0, or -1 for unlimited')
    .option('--json', 'print the metrics as JSON')
    .description('show or change auto-import (AMLFS metrics for Full Sync and Blob Sync)')
    .action(async (mnt: string, o) => void (status = await (await import('./auto-import-command.js')).runAutoImport(mnt, o, io)));
  program
    .command('jobs')
    .argument('<action-or-mountpoint>', "a mountpoint, or 'cancel'")
    .argument('[mountpoint]')
    .option('--json')
    .description('show the jobs of a mount, or `jobs cancel MOUNTPOINT`')
    .action(async (a: string, b: string | undefined, o: { json?: boolean }) => {
      const { runJobs } = await import('./export-command.js');
      status = a === 'cancel' && b ? await runJobs(b, { cancel: true }, io) : await runJobs(a, o, io);
    });

  program
    .command('version')
    .description("print blobhsm's version")
    .action(() => void io.stdout.write(`blobhsm ${packageVersion()}\n`));
  program
    .command('completion')
    .argument('<shell>', 'bash')
    .description('print a shell completion script: source <(blobhsm completion bash)')
    .action(async (shell: string) => void (status = (await import('./completion-command.js')).runCompletion(shell, program, (text) => io.stdout.write(text))));

  const otherNames = new Set(program.commands.flatMap((c) => [c.name(), ...c.aliases()]));
  if (!otherNames.has(first) || first === 'completion') {
    const { mountCommandSpec, runMount } = await mountCommand();
    program.addCommand(mountCommandSpec().action(async (mnt: string, flags) => void (status = await runMount(mnt, flags, io))));
    // Listed first in the help, where it always was.
    const commands = program.commands as Command[];
    commands.unshift(commands.pop()!);
  }

  // Commands added with addCommand (mount, ingest) do not inherit these: without them `mount --help` or a missing
  // argument would exit the process itself (and with status 1 instead of the usage status).
  for (const c of program.commands) {
    c.exitOverride().configureOutput({ writeOut: (s) => io.stdout.write(s), writeErr: (s) => io.stderr.write(s) });
  }

  try {
    // mount(8) through /sbin/mount.fuse: `blobhsm SOURCE MOUNTPOINT -o OPTIONS` (mount -t fuse.blobhsm, /etc/fstab).
    if (isMountHelperCall(argv, new Set(program.commands.flatMap((c) => [c.name(), ...c.aliases()])))) {
      const helper = mountHelperFlags(argv);
      return await (await mountCommand()).runMount(helper.mountpoint, helper.flags, io);
    }
    await program.parseAsync(argv, { from: 'user' });
    return status;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : EXIT_USAGE;
    if (err instanceof UsageError) {
      io.stderr.write(`blobhsm: ${err.message}\n`);
      return EXIT_USAGE;
    }
    io.stderr.write(`blobhsm: ${describeError(err)}\n`);
    return EXIT_FAILURE;
  }
}
