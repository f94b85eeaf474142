// Progress bars for long commands (import at mount, import and export jobs, hsm_* --wait over many files): a
// cli-progress bar on the stream when it is a terminal, with counts, bytes, rate and ETA; nothing at all when the
// stream is not a terminal or the command prints JSON. cli-progress is loaded only when a bar is drawn, so the
// lean lfs path (src/cli/lfs-main.ts) loads no package for a non-interactive run.
import type { ExportStats } from '../jobs/job-runner.js';
import type { ImportStats } from '../namespace/importer.js';
import type { HsmRequestProgress } from '../daemon/control-methods.js';

/** The stream a bar draws on (process.stderr, or an injected one in tests). */
export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

/** One update: how far (`value` of `total`, in `unit`), and the words after the counts. */
export interface ProgressUpdate {
  value: number;
  /** Unknown (a listing still walking): the bar shows the count and rate, no percentage or ETA. */
  total?: number;
  detail?: string;
}

export interface Progress {
  update(u: ProgressUpdate): void;
  /** Draws the last state and ends the line; safe to call twice. */
  stop(): Promise<void>;
}

export interface ProgressOptions {
  label: string;
  /** 'bytes' shows KiB/MiB/GiB and a byte rate; otherwise the word after the counts ('files', 'blobs'). */
  unit: string;
  /** The command prints JSON: no bar. */
  json?: boolean;
  /** Milliseconds since some origin (for the rate; Date.now by default). */
  now?: () => number;
}

const SILENT: Progress = { update: () => undefined, stop: async () => undefined };

/** Whether a bar would be drawn on this stream. */
export function wantsProgress(stream: ProgressStream, json = false): boolean {
  return stream.isTTY === true && !json;
}

/** 1536 → '1.5 KiB'; `decimals` fixes the digits after the point (default: 1 below 10, else 0). */
export function formatBytes(n: number, decimals?: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(decimals ?? (v < 10 ? 1 : 0))} ${units[i]}`;
}

/** The counts part of the line: '3/10 files', '1.5 MiB/4.0 MiB', '12000 blobs'. */
export function formatCounts(unit: string, value: number, total: number | undefined): string {
  if (unit === 'bytes') return total === undefined ? formatBytes(value) : `${formatBytes(value)}/${formatBytes(total)}`;
  return total === undefined ? `${value} ${unit}` : `${value}/${total} ${unit}`;
}

/** Items or bytes per second since the start: '2.5 MiB/s', '120 files/s'. */
export function formatRate(unit: string, value: number, elapsedMs: number): string {
  if (elapsedMs <= 0) return unit === 'bytes' ? '- B/s' : `- ${unit}/s`;
  const perSecond = (value * 1000) / elapsedMs;
  return unit === 'bytes' ? `${formatBytes(Math.round(perSecond))}/s` : `${perSecond.toFixed(perSecond < 10 ? 1 : 0)} ${unit}/s`;
}

/**
 * A bar on `stream`, or a silent one when the stream is no terminal or `json` is set. Loads cli-progress only
 * when it draws.
 */
export async function startProgress(stream: ProgressStream, o: ProgressOptions): Promise<Progress> {
  if (!wantsProgress(stream, o.json)) return SILENT;
  const { default: cliProgress } = await import('cli-progress');
  const now = o.now ?? Date.now;
  const started = now();
  let known = false;
  const bar = new cliProgress.SingleBar(
    {
      stream: stream as NodeJS.WriteStream,
      format: (options, params, payload: { counts: string; rate: string; detail: string }) => {
        const head = `${o.label} ${known ? `${cliProgress.Format.BarFormat(params.progress, options)} ${Math.floor(params.progress * 100)}% ` : ''}`;
        const eta = known && params.value > 0 && params.value < params.total ? ` | ETA ${cliProgress.Format.TimeFormat(params.eta, options, 5)}` : '';
        return `${head}| ${payload.counts} | ${payload.rate}${eta}${payload.detail ? ` | ${payload.detail}` : ''}`;
      },
      hideCursor: false,
      clearOnComplete: false,
      barsize: 24,
      etaBuffer: 20,
    },
    cliProgress.Presets.shades_classic,
  );
  let stopped = false;
  const payload = (u: ProgressUpdate) => ({
    counts: formatCounts(o.unit, u.value, u.total),
    rate: formatRate(o.unit, u.value, now() - started),
    detail: u.detail ?? '',
  });
  bar.start(1, 0, payload({ value: 0 }));
  return {
    update: (u) => {
      if (stopped) return;
      known = u.total !== undefined && u.total > 0;
      bar.setTotal(known ? u.total! : Math.max(1, u.value));
      bar.update(u.value, payload(u));
    },
    stop: async () => {
      if (stopped) return;
      stopped = true;
      bar.stop();
    },
  };
}

/**
 * A bar that appears with its first update (the mount's import runs only at the first mount, so a remount draws
 * nothing); updates and stop keep their order.
 */
export function progressOnDemand(stream: ProgressStream, o: ProgressOptions): Progress {
  if (!wantsProgress(stream, o.json)) return SILENT;
  let bar: Promise<Progress> | undefined;
  let stopped = false;
  return {
    update: (u) => {
      if (stopped) return;
      bar ??= startProgress(stream, o);
      void bar.then((b) => b.update(u));
    },
    stop: async () => {
      stopped = true;
      await bar?.then((b) => b.stop());
    },
  };
}

/** An export job's summary as a bar: bytes committed and staged of the discovered bytes; files in the detail. */
export function exportUpdate(s: ExportStats): ProgressUpdate {
  const done = s.filesExported + s.filesFailed + s.conflicts;
  return {
    value: s.bytesExported + (s.bytesUploading ?? 0),
    total: s.bytesDiscovered,
    detail: `${done}/${s.filesDiscovered} files${s.conflicts ? `, ${s.conflicts} conflicts` : ''}${s.filesFailed ? `, ${s.filesFailed} failed` : ''}`,
  };
}

/** An import's statistics as a bar: blobs walked (the listing's length is unknown until it ends). */
export function importUpdate(s: Pick<ImportStats, 'totalBlobsWalked' | 'totalBlobsImported' | 'totalConflicts'>): ProgressUpdate {
  return {
    value: s.totalBlobsWalked,
    detail: `${s.totalBlobsImported} imported${s.totalConflicts ? `, ${s.totalConflicts} conflicts` : ''}`,
  };
}

/** hsm_restore/hsm_archive/... --wait: bytes of the files done and moving, files in the detail. */
export function hsmRequestUpdate(p: HsmRequestProgress): ProgressUpdate {
  return { value: p.bytesDone, total: p.bytesTotal, detail: `${p.finished}/${p.total} files` };
}
