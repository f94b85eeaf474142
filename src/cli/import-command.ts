// `blobhsm import MOUNTPOINT [--prefix P]... [--conflict-mode MODE] [--maximum-errors N] [--no-wait] [--json]`:
// an AMLFS-style import job (docs/SEMANTICS.md §3) run by the mount's daemon. Options are checked here first (exit 4 on a bad
// one), then again by the daemon.
import { UsageError, describeError } from '../errors.js';
import { checkImportOptions, type ImportJobOptions, type ImportJobSummary } from '../jobs/job-runner.js';
import { callMount } from './daemon-call.js';
import { EXIT_USAGE } from './exit-status.js';
import type { CliIo } from './io.js';
import { EXIT_FAILURE } from './io.js';
import { importUpdate, startProgress } from './progress.js';

export interface ImportFlags {
  prefix?: string[];
  conflictMode?: string;
  maximumErrors?: string;
  pageSize?: string;
  wait?: boolean;
  json?: boolean;
}

export function importStatsLine(j: ImportJobSummary): string {
  const s = j.stats;
  const pre = s.preexistingFiles + s.preexistingDirectories + s.preexistingSymlinks;
  return (
    `${j.id} ${j.state}: walked ${s.totalBlobsWalked} blobs, imported ${s.totalBlobsImported} (${s.importedFiles} files, ` +
    `${s.importedDirectories} directories, ${s.importedSymlinks} symlinks), preexisting ${pre}, conflicts ${s.totalConflicts}, ` +
    `errors ${s.totalErrors}`
  );
}

function integer(value: string | undefined, what: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^-?\d+$/.test(value.trim())) throw new UsageError(`invalid ${what} '${value}': an integer`);
  return Number(value);
}

export async function runImport(mountpoint: string, flags: ImportFlags, io: CliIo): Promise<number> {
  const wait = flags.wait !== false;
  let options: ImportJobOptions;
  try {
    const maximumErrors = integer(flags.maximumErrors, 'maximum errors');
    const pageSize = integer(flags.pageSize, 'page size');
    options = {
      ...(flags.prefix ? { prefixes: flags.prefix } : {}),
      ...(flags.conflictMode !== undefined ? { conflictMode: flags.conflictMode } : {}),
      ...(maximumErrors !== undefined ? { maximumErrors } : {}),
      ...(pageSize !== undefined ? { pageSize } : {}),
    };
    checkImportOptions(options);
  } catch (err) {
    io.stderr.write(`blobhsm import: ${describeError(err)}\n`);
    return EXIT_USAGE;
  }
  const bar = await startProgress(io.stderr, { label: 'importing', unit: 'blobs', json: flags.json || !wait });
  try {
    const job = (await callMount(mountpoint, io.env, 'import', { ...options, wait }, (event) =>
      bar.update(importUpdate((event as ImportJobSummary).stats)),
    )) as ImportJobSummary;
    if (wait) bar.update(importUpdate(job.stats));
    await bar.stop();
    if (flags.json) io.stdout.write(JSON.stringify(job) + '\n');
    else {
      io.stdout.write(importStatsLine(job) + '\n');
      if (job.error) io.stdout.write(`error: ${job.error}\n`);
      if (job.logFile && (job.stats.totalConflicts > 0 || job.stats.totalErrors > 0 || job.stats.totalWarnings > 0)) {
        io.stdout.write(`details: ${job.logFile}\n`);
      }
    }
    return !wait || job.state === 'Succeeded' ? 0 : EXIT_FAILURE;
  } catch (err) {
    await bar.stop();
    io.stderr.write(`blobhsm import: ${describeError(err)}\n`);
    return err instanceof UsageError ? EXIT_USAGE : EXIT_FAILURE;
  }
}
