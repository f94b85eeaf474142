// `blobhsm ingest SRC... --container NAME [--prefix P]`: loads local trees straight into a container in the
// encoding an export writes (src/ingest/ingester.ts), resumable through a journal. Parses and checks the flags
// (exit 4 on a bad one), builds the store with the same credential options as `mount`, draws the progress bar,
// prints the summary (or --json) and keeps the per-file log.
import { createHash } from 'node:crypto';
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { join, resolve } from 'node:path';
import { Command } from 'commander';
import { UsageError, describeError } from '../errors.js';
import { normalisePrefix, parseSize, stateHome } from '../config.js';
import type { AzureBlobStore } from '../blob/azure-store.js';
import { readSecretFlags } from './secret-args.js';
import type { IngestJournal } from '../ingest/journal.js';
import type { Ingester, IngestLogRecord, IngestProgress, IngestSummary } from '../ingest/ingester.js';
import { addStorageOptions, storageConfigFromFlags, type StorageFlags } from './storage-options.js';
import { formatRate, startProgress, wantsProgress, type Progress } from './progress.js';
import { EXIT_USAGE } from './exit-status.js';
import { EXIT_FAILURE, type CliIo } from './io.js';

interface IngestFlags extends StorageFlags {
  prefix?: string;
  allowExisting?: boolean;
  dryRun?: boolean;
  journal?: string;
  log?: string;
  concurrency?: string;
  blockSize?: string;
  blockConcurrency?: string;
  largeFiles?: string;
  singleRequestMax?: string;
  maximumErrors?: string;
  timeout?: string;
  json?: boolean;
  progress?: boolean;
}

/** Defaults sized from bench/ measurements on Azurite (see README, Ingest). */
export const INGEST_DEFAULTS = {
  concurrency: 16,
  blockSize: 8 * 1024 * 1024,
  blockConcurrency: 8,
  largeFiles: 2,
  singleRequestMax: 8 * 1024 * 1024,
};

export function ingestCommandSpec(): Command {
  const command = new Command('ingest')
    .description('load local trees into a container in the AMLFS encoding (resumable; never overwrites a blob)')
    .argument('<src...>', 'files or directories (SRC/ puts the contents of SRC under the prefix, as rsync does)');
  return addStorageOptions(command, 'blob name prefix to write under')
    .option('--allow-existing', 'add to a container (or prefix) that already has blobs; existing blobs are never overwritten')
    .option('--dry-run', 'walk and report what would be written; write nothing')
    .option('--journal <file>', 'the SQLite journal that makes a rerun skip what is committed (default: one per destination and sources)')
    .option('--log <file>', 'per-file log of errors, conflicts and skipped entries, one JSON line each')
    .option('--concurrency <n>', `files uploaded at once (default ${INGEST_DEFAULTS.concurrency})`)
    .option('--block-size <size>', 'staged block size for large files (default 8M)')
    .option('--block-concurrency <n>', `blocks of one large file staged at once (default ${INGEST_DEFAULTS.blockConcurrency})`)
    .option('--large-files <n>', `large files uploaded at once (default ${INGEST_DEFAULTS.largeFiles})`)
    .option('--single-request-max <size>', 'files up to this size go up in one request (default 8M)')
    .option('--maximum-errors <n>', 'errors tolerated before stopping: 0 (default), N, or -1 for unlimited')
    .option('--timeout <seconds>', 'per-request timeout to the blob service (default 30)')
    .option('--json', 'print the summary as JSON')
    .option('--no-progress', 'no progress bar');
}

function positiveInt(value: string | undefined, what: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (!/^\d+$/.test(value.trim()) || Number(value) < 1) throw new UsageError(`invalid ${what} '${value}': a whole number, 1 or more`);
  return Number(value);
}

function maximumErrorsOf(value: string | undefined): number {
  if (value === undefined) return 0;
  if (!/^-?\d+$/.test(value.trim()) || Number(value) < -1) {
    throw new UsageError(`invalid --maximum-errors '${value}': an integer, 0 or more, or -1 for unlimited`);
  }
  return Number(value);
}

/** The journal's default place: one per destination and set of sources, under the state directory. */
export function defaultJournalPath(destination: string, sources: readonly string[], env: NodeJS.ProcessEnv): string {
  const id = createHash('sha256').update(`${destination}\n${sources.join('\n')}`).digest('hex').slice(0, 16);
  return join(stateHome(env), 'ingest', `${id}.sqlite`);
}

export function ingestSummaryLines(s: IngestSummary): string[] {
  const st = s.stats;
  const mib = (st.bytes / 1024 / 1024).toFixed(1);
  const secs = s.elapsedMs / 1000;
  const entries = st.files + st.directories + st.symlinks;
  const lines = [
    `ingest ${s.state}${s.dryRun ? ' (dry run: nothing written)' : ''}: ${st.files} files (${mib} MiB), ${st.directories} directories, ` +
      `${st.symlinks} symlinks ${s.dryRun ? 'to write' : 'written'}; already ingested ${st.alreadyIngested}, skipped ${st.skipped}, ` +
      `preexisting directories ${st.preexistingDirectories}, conflicts ${st.conflicts}, errors ${st.errors} ` +
      `in ${secs.toFixed(1)} s (${(entries / Math.max(secs, 0.001)).toFixed(0)} entries/s, ${(st.bytes / 1024 / 1024 / Math.max(secs, 0.001)).toFixed(1)} MiB/s)`,
  ];
  if (s.conflictNames.length > 0) lines.push(`conflicts (not overwritten): ${s.conflictNames.join(' ')}${st.conflicts > s.conflictNames.length ? ' ...' : ''}`);
  if (s.error) lines.push(`error: ${s.error}`);
  return lines;
}

/** Opens the log file on the first record (a clean run leaves none). */
function lazyLog(path: string): { write: (r: IngestLogRecord) => void; close: () => Promise<boolean> } {
  let stream: WriteStream | undefined;
  return {
    write: (r) => {
      if (!stream) {
        mkdirSync(resolve(path, '..'), { recursive: true, mode: 0o700 });
        stream = createWriteStream(path, { flags: 'a', mode: 0o600 });
      }
      stream.write(JSON.stringify(r) + '\n');
    },
    close: () => (stream ? new Promise<boolean>((done) => stream!.end(() => done(true))) : Promise.resolve(false)),
  };
}

export async function runIngest(sources: string[], flags: IngestFlags, io: CliIo): Promise<number> {
  // Loaded here, not with the command's flags: `blobhsm --help` and the other commands need neither the SDK nor SQLite.
  const [{ createAzureStore }, { IngestJournal }, { Ingester }] = await Promise.all([
    import('../blob/azure-store.js'),
    import('../ingest/journal.js'),
    import('../ingest/ingester.js'),
  ]);
  await readSecretFlags(flags, io);
  let ingester: Ingester;
  let store: AzureBlobStore;
  let journal: IngestJournal;
  let logPath: string;
  const abort = new AbortController();
  let log: ReturnType<typeof lazyLog>;
  let bar: Progress | undefined;
  try {
    const storage = storageConfigFromFlags(flags, io.env);
    const prefix = normalisePrefix(flags.prefix);
    const timeout = Number(flags.timeout ?? 30);
    if (!(timeout > 0)) throw new UsageError(`invalid --timeout '${flags.timeout}': a positive number of seconds`);
    const blockSize = flags.blockSize ? parseSize(flags.blockSize) : INGEST_DEFAULTS.blockSize;
    if (blockSize < 64 * 1024 || blockSize > 4000 * 1024 * 1024) throw new UsageError(`invalid --block-size '${flags.blockSize}': 64K to 4000M`);
    const singleRequestMax = flags.singleRequestMax ? parseSize(flags.singleRequestMax) : INGEST_DEFAULTS.singleRequestMax;
    if (singleRequestMax > 256 * 1024 * 1024) throw new UsageError(`invalid --single-request-max '${flags.singleRequestMax}': at most 256M`);
    const options = {
      fileConcurrency: positiveInt(flags.concurrency, '--concurrency', INGEST_DEFAULTS.concurrency),
      blockConcurrency: positiveInt(flags.blockConcurrency, '--block-concurrency', INGEST_DEFAULTS.blockConcurrency),
      largeFileConcurrency: positiveInt(flags.largeFiles, '--large-files', INGEST_DEFAULTS.largeFiles),
      maximumErrors: maximumErrorsOf(flags.maximumErrors),
    };
    store = createAzureStore({ ...storage, timeoutMs: timeout * 1000, env: io.env });
    const resolvedSources = sources.map((s) => (s.endsWith('/') ? resolve(s) + '/' : resolve(s)));
    const destination = `${store.auth.blobEndpoint}/${storage.container}/${prefix}`;
    const journalPath = resolve(flags.journal ?? defaultJournalPath(destination, resolvedSources, io.env));
    logPath = resolve(flags.log ?? journalPath.replace(/\.sqlite$/, '') + `-${new Date().toISOString().replace(/[-:.]/g, '')}.jsonl`);
    journal = IngestJournal.open(journalPath, destination, { create: !flags.dryRun });
    log = lazyLog(logPath);
    const quiet = Boolean(flags.json) || flags.progress === false;
    const drawing = wantsProgress(io.stderr, quiet);
    bar = await startProgress(io.stderr, { label: 'ingest', unit: 'bytes', json: quiet });
    const startedMs = Date.now();
    const onProgress = (p: IngestProgress) => {
      const s = p.stats;
      const done = s.files + s.directories + s.symlinks + s.alreadyIngested + s.skipped + s.preexistingDirectories + s.conflicts + s.errors;
      const entries = p.total ? `${done}/${p.total.entries}` : `${done}`;
      bar?.update({
        value: p.bytesSent,
        ...(p.total ? { total: p.total.bytes } : {}),
        detail: `${entries} entries, ${formatRate('files', done, Date.now() - startedMs)}`,
      });
    };
    ingester = new Ingester({
      store,
      journal,
      sources: resolvedSources,
      prefix,
      ...options,
      blockSize,
      singleRequestMaxBytes: singleRequestMax,
      changeRetries: 2,
      survey: drawing,
      dryRun: Boolean(flags.dryRun),
      allowExisting: Boolean(flags.allowExisting),
      signal: abort.signal,
      log: (r) => log.write(r),
      // Updates only for a bar: without one they would be built for nothing.
      ...(drawing ? { onProgress } : {}),
    });
  } catch (err) {
    io.stderr.write(`blobhsm ingest: ${describeError(err)}\n`);
    return EXIT_USAGE;
  }
  const onSignal = () => {
    if (abort.signal.aborted) process.exit(130);
    io.stderr.write('\nblobhsm ingest: interrupted; stopping (committed blobs are in the journal, a rerun finishes the rest)\n');
    abort.abort(new Error('interrupted'));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let summary: IngestSummary;
  try {
    summary = await ingester.run();
  } catch (err) {
    io.stderr.write(`blobhsm ingest: ${describeError(err)}\n`);
    return err instanceof UsageError ? EXIT_USAGE : EXIT_FAILURE;
  } finally {
    await bar?.stop();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    journal.close();
    await store.close();
  }
  const logged = await log.close();
  if (flags.json) io.stdout.write(JSON.stringify({ ...summary, ...(logged ? { logFile: logPath } : {}) }) + '\n');
  else {
    for (const line of ingestSummaryLines(summary)) io.stdout.write(line + '\n');
    if (logged) io.stdout.write(`details: ${logPath}\n`);
  }
  if (summary.state === 'Canceled') return 130;
  return summary.state === 'Completed' && summary.stats.errors === 0 && summary.stats.conflicts === 0 ? 0 : EXIT_FAILURE;
}
