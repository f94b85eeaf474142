// `blobhsm auto-import MOUNTPOINT [--enable|--disable|--cancel] [--interval S] [--prefix P]... [--source S]
// [--conflict-mode M] [--enable-deletions|--no-deletions] [--maximum-errors N] [--json]`: shows auto-import's metrics (AMLFS names, Full
// Sync and Blob Sync apart) after applying the changes given. Values are checked here first (exit 4 on a bad one),
// then again by the daemon. Runtime changes last until the unmount; mount flags set the start.
import { UsageError, describeError } from '../errors.js';
import { parseSeconds } from '../jobs/auto-export.js';
import {
  AUTO_IMPORT_DEFAULTS,
  checkAutoImportConfig,
  type AutoImportConfig,
  type AutoImportMetrics,
  type AutoImportPhaseMetrics,
} from '../jobs/auto-import.js';
import { checkMaximumErrors } from '../jobs/job-runner.js';
import { callMount } from './daemon-call.js';
import { EXIT_USAGE } from './exit-status.js';
import type { CliIo } from './io.js';
import { EXIT_FAILURE } from './io.js';

export interface AutoImportFlags {
  enable?: boolean;
  disable?: boolean;
  cancel?: boolean;
  interval?: string;
  prefix?: string[];
  source?: string;
  conflictMode?: string;
  enableDeletions?: boolean;
  /** commander's --no-deletions */
  deletions?: boolean;
  maximumErrors?: string;
  json?: boolean;
}

function phaseLine(name: string, p: AutoImportPhaseMetrics): string {
  return (
    `${name}: totalBlobsWalked ${p.totalBlobsWalked} (${p.rateOfBlobWalk}/s), totalBlobsImported ${p.totalBlobsImported} ` +
    `(${p.rateOfBlobImport}/s), importedFiles ${p.importedFiles}, importedDirectories ${p.importedDirectories}, ` +
    `importedSymlinks ${p.importedSymlinks}, preexistingFiles ${p.preexistingFiles}, preexistingDirectories ` +
    `${p.preexistingDirectories}, preexistingSymlinks ${p.preexistingSymlinks}, totalConflicts ${p.totalConflicts}, ` +
    `totalErrors ${p.totalErrors}, deletions ${p.deletions}`
  );
}

export function autoImportLines(m: AutoImportMetrics): string[] {
  const lines = [
    `auto-import ${m.enabled ? 'enabled' : 'disabled'} (${m.state}${m.source ? `, from the ${m.source}` : ''}): prefixes ` +
      `${m.prefixes.join(' ')}, conflict mode ${m.conflictMode}, deletions ${m.enableDeletions ? 'enabled' : 'disabled'}, ` +
      `maximum errors ${m.maximumErrors === -1 ? 'unlimited' : m.maximumErrors}, every ${m.intervalSeconds} s`,
    phaseLine('Full Sync', m.fullSync),
    phaseLine('Blob Sync', m.blobSync),
    `lastTimeFullySynchronized ${m.lastTimeFullySynchronized ?? 'never'}, lastChangeFeedEventConsumedTime ` +
      `${m.lastChangeFeedEventConsumedTime ?? 'never'}, passes ${m.passesCompleted} (skipped while a job ran: ${m.passesSkipped})`,
  ];
  if (m.lastError) lines.push(`last error: ${m.lastError}`);
  if (m.logFile) lines.push(`log: ${m.logFile}`);
  return lines;
}

/** The configuration change the flags ask for (UsageError on a bad value). */
export function autoImportChange(flags: AutoImportFlags): Partial<AutoImportConfig> & { cancel?: boolean } {
  if ([flags.enable, flags.disable, flags.cancel].filter(Boolean).length > 1) throw new UsageError('give one of --enable, --disable, --cancel');
  if (flags.enableDeletions && flags.deletions === false) throw new UsageError('give --enable-deletions or --no-deletions, not both');
  const change: Partial<AutoImportConfig> = {
    ...(flags.enable ? { enabled: true } : flags.disable ? { enabled: false } : {}),
    ...(flags.interval !== undefined ? { intervalSeconds: parseSeconds(flags.interval, '--interval') } : {}),
    ...(flags.prefix ? { prefixes: flags.prefix } : {}),
    ...(flags.source !== undefined ? { source: flags.source as AutoImportConfig['source'] } : {}),
    ...(flags.conflictMode !== undefined ? { conflictMode: flags.conflictMode as AutoImportConfig['conflictMode'] } : {}),
    ...(flags.enableDeletions ? { enableDeletions: true } : flags.deletions === false ? { enableDeletions: false } : {}),
    ...(flags.maximumErrors !== undefined ? { maximumErrors: checkMaximumErrors(flags.maximumErrors, '--maximum-errors') } : {}),
  };
  checkAutoImportConfig(AUTO_IMPORT_DEFAULTS, change);
  return { ...change, ...(flags.cancel ? { cancel: true } : {}) };
}

export async function runAutoImport(mountpoint: string, flags: AutoImportFlags, io: CliIo): Promise<number> {
  let change: ReturnType<typeof autoImportChange>;
  try {
    change = autoImportChange(flags);
  } catch (err) {
    io.stderr.write(`blobhsm auto-import: ${describeError(err)}\n`);
    return EXIT_USAGE;
  }
  try {
    const { cancel, ...config } = change;
    const m = (await callMount(mountpoint, io.env, 'auto_import', { change: config, ...(cancel ? { cancel } : {}) })) as AutoImportMetrics;
    if (flags.json) io.stdout.write(JSON.stringify(m) + '\n');
    else io.stdout.write(autoImportLines(m).join('\n') + '\n');
    return 0;
  } catch (err) {
    io.stderr.write(`blobhsm auto-import: ${describeError(err)}\n`);
    return err instanceof UsageError ? EXIT_USAGE : EXIT_FAILURE;
  }
}
