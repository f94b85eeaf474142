// `blobhsm auto-export MOUNTPOINT [--enable|--disable] [--min-age S] [--interval S] [--json]`: shows auto-export's
// metrics (docs/SEMANTICS.md §3 names) after applying the changes given. Values are checked here first (exit 4 on a bad one),
// then again by the daemon. Runtime changes last until the unmount; mount flags set the start.
import { UsageError, describeError } from '../errors.js';
import { AUTO_EXPORT_DEFAULTS, checkAutoExportConfig, parseSeconds, type AutoExportConfig, type AutoExportMetrics } from '../jobs/auto-export.js';
import { callMount } from './daemon-call.js';
import { EXIT_USAGE } from './exit-status.js';
import type { CliIo } from './io.js';
import { EXIT_FAILURE } from './io.js';

export interface AutoExportFlags {
  enable?: boolean;
  disable?: boolean;
  minAge?: string;
  interval?: string;
  json?: boolean;
}

export function autoExportLines(m: AutoExportMetrics): string[] {
  const lines = [
    `auto-export ${m.enabled ? 'enabled' : 'disabled'} (${m.state}): files unchanged for ${m.minAgeSeconds} s, every ${m.intervalSeconds} s`,
    `totalFilesExported ${m.totalFilesExported}, totalMiBExported ${m.totalMiBExported}, iterationsCompleted ${m.iterationsCompleted}, ` +
      `lastSuccessfulIteration ${m.lastSuccessfulIteration ?? 'never'}`,
    `conflicts ${m.totalConflicts}, failures ${m.totalFailures}, iterations skipped (a manual job was running) ${m.iterationsSkipped}`,
  ];
  for (const p of m.conflictPaths) lines.push(`conflict: ${p} (left dirty; not tried again until it changes; see the daemon log)`);
  return lines;
}

export async function runAutoExport(mountpoint: string, flags: AutoExportFlags, io: CliIo): Promise<number> {
  let change: Partial<AutoExportConfig>;
  try {
    if (flags.enable && flags.disable) throw new UsageError('give --enable or --disable, not both');
    change = {
      ...(flags.enable ? { enabled: true } : flags.disable ? { enabled: false } : {}),
      ...(flags.minAge !== undefined ? { minAgeSeconds: parseSeconds(flags.minAge, '--min-age') } : {}),
      ...(flags.interval !== undefined ? { intervalSeconds: parseSeconds(flags.interval, '--interval') } : {}),
    };
    checkAutoExportConfig(AUTO_EXPORT_DEFAULTS, change);
  } catch (err) {
    io.stderr.write(`blobhsm auto-export: ${describeError(err)}\n`);
    return EXIT_USAGE;
  }
  try {
    const m = (await callMount(mountpoint, io.env, 'auto_export', {
      ...(change.enabled !== undefined ? { enable: change.enabled } : {}),
      ...(change.minAgeSeconds !== undefined ? { minAgeSeconds: change.minAgeSeconds } : {}),
      ...(change.intervalSeconds !== undefined ? { intervalSeconds: change.intervalSeconds } : {}),
    })) as AutoExportMetrics;
    if (flags.json) io.stdout.write(JSON.stringify(m) + '\n');
    else io.stdout.write(autoExportLines(m).join('\n') + '\n');
    return 0;
  } catch (err) {
    io.stderr.write(`blobhsm auto-export: ${describeError(err)}\n`);
    return err instanceof UsageError ? EXIT_USAGE : EXIT_FAILURE;
  }
}
