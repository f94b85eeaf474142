// `blobhsm export MOUNTPOINT [--prefix P]... [--no-wait] [--json]` and `blobhsm jobs [cancel] MOUNTPOINT`.
import { describeError } from '../errors.js';
import type { ExportJobSummary, JobSummary } from '../jobs/job-runner.js';
import { LOCAL_ONLY_REASON } from '../namespace/file-types.js';
import { importStatsLine } from './import-command.js';
import { callMount } from './daemon-call.js';
import type { CliIo } from './io.js';
import { EXIT_FAILURE } from './io.js';
import { exportUpdate, startProgress } from './progress.js';

function statsLine(j: JobSummary): string {
  if (j.kind === 'import') return importStatsLine(j);
  const s = j.stats;
  return (
    `${j.id} ${j.state}: discovered ${s.filesDiscovered} files (${s.bytesDiscovered} bytes), exported ${s.filesExported} ` +
    `(${s.bytesExported} bytes), failed ${s.filesFailed}, conflicts ${s.conflicts}` +
    (s.directoriesRenamed ? `, directories renamed on the service ${s.directoriesRenamed}` : '') +
    (s.skippedLocalOnly ? `, skipped ${s.skippedLocalOnly} (${LOCAL_ONLY_REASON}: FIFOs and sockets)` : '')
  );
}

export async function runExport(mountpoint: string, opts: { prefix?: string[]; wait?: boolean; json?: boolean }, io: CliIo): Promise<number> {
  const wait = opts.wait !== false;
  const bar = await startProgress(io.stderr, { label: 'exporting', unit: 'bytes', json: opts.json || !wait });
  try {
    const job = (await callMount(mountpoint, io.env, 'export', { prefixes: opts.prefix ?? ['/'], wait }, (event) =>
      bar.update(exportUpdate((event as ExportJobSummary).stats)),
    )) as ExportJobSummary;
    if (wait) bar.update(exportUpdate(job.stats));
    await bar.stop();
    if (opts.json) io.stdout.write(JSON.stringify(job) + '\n');
    else {
      io.stdout.write(statsLine(job) + '\n');
      for (const p of job.conflictPaths) io.stdout.write(`conflict: ${p} (not overwritten: the blob changed since it was imported or archived, or holds the only copy of a released file renamed away; the daemon log says which; the file stays dirty)\n`);
      for (const f of job.failures) io.stdout.write(`failed: ${f.path}: ${f.error}\n`);
    }
    return !wait || job.state === 'Succeeded' ? 0 : EXIT_FAILURE;
  } catch (err) {
    await bar.stop();
    io.stderr.write(`blobhsm export: ${describeError(err)}\n`);
    return EXIT_FAILURE;
  }
}

export async function runJobs(mountpoint: string, opts: { cancel?: boolean; json?: boolean }, io: CliIo): Promise<number> {
  try {
    if (opts.cancel) {
      const j = (await callMount(mountpoint, io.env, 'jobs_cancel')) as JobSummary | null;
      io.stdout.write(j ? `cancelling ${j.id}\n` : 'no job is running\n');
      return 0;
    }
    const jobs = (await callMount(mountpoint, io.env, 'jobs')) as JobSummary[];
    if (opts.json) io.stdout.write(JSON.stringify(jobs) + '\n');
    else if (jobs.length === 0) io.stdout.write('no jobs\n');
    else for (const j of jobs) io.stdout.write(statsLine(j) + '\n');
    return 0;
  } catch (err) {
    io.stderr.write(`blobhsm jobs: ${describeError(err)}\n`);
    return EXIT_FAILURE;
  }
}
