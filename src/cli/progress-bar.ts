// A one-line terminal progress bar (cli-progress) for commands that move many files: files/s, MiB/s and an ETA
// once the total is known. Draws only on a TTY; elsewhere it stays silent (the summary says it all).
import { SingleBar } from 'cli-progress';

export interface TransferProgress {
  files: number;
  bytes: number;
  /** Entries and bytes in all, once known. */
  total?: { files: number; bytes: number };
}

const MiB = 1024 * 1024;

function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return '?';
  const t = Math.max(0, Math.round(s));
  const h = Math.floor(t / 3600);
  const m = Math.floor((t % 3600) / 60);
  const sec = t % 60;
  return h > 0 ? `${h}h${String(m).padStart(2, '0')}m` : m > 0 ? `${m}m${String(sec).padStart(2, '0')}s` : `${sec}s`;
}

/** Rates since the start and the time left: the slower of the file-count and the byte estimates. */
export function transferRates(p: TransferProgress, elapsedMs: number): { filesPerSec: number; mibPerSec: number; etaSeconds: number } {
  const secs = Math.max(elapsedMs, 1) / 1000;
  const filesPerSec = p.files / secs;
  const bytesPerSec = p.bytes / secs;
  let etaSeconds = Infinity;
  if (p.total) {
    const byFiles = filesPerSec > 0 ? (p.total.files - p.files) / filesPerSec : Infinity;
    const byBytes = p.total.bytes === 0 ? 0 : bytesPerSec > 0 ? (p.total.bytes - p.bytes) / bytesPerSec : Infinity;
    etaSeconds = Math.max(0, byFiles, byBytes);
  }
  return { filesPerSec, mibPerSec: bytesPerSec / MiB, etaSeconds };
}

export class TransferProgressBar {
  private readonly bar: SingleBar | undefined;
  private readonly startMs: number;

  constructor(
    stream: NodeJS.WritableStream & { isTTY?: boolean },
    private readonly now: () => number = Date.now,
  ) {
    this.startMs = now();
    if (!stream.isTTY) return;
    this.bar = new SingleBar({
      stream,
      format: '{bar} {percentage}% | {files} files, {filesPerSec} files/s | {mib} MiB, {mibPerSec} MiB/s | ETA {remaining}',
      barsize: 24,
      hideCursor: true,
      fps: 5,
      noTTYOutput: false,
    });
    this.bar.start(1, 0, this.payload({ files: 0, bytes: 0 }));
  }

  private payload(p: TransferProgress) {
    const r = transferRates(p, this.now() - this.startMs);
    return {
      files: p.files,
      filesPerSec: r.filesPerSec.toFixed(0),
      mib: (p.bytes / MiB).toFixed(1),
      mibPerSec: r.mibPerSec.toFixed(1),
      remaining: formatSeconds(r.etaSeconds),
    };
  }

  update(p: TransferProgress): void {
    if (!this.bar) return;
    // Progress by bytes when there are any, else by entries.
    const total = p.total ? (p.total.bytes > 0 ? p.total.bytes : p.total.files) : 0;
    if (total > 0) this.bar.setTotal(total);
    const value = p.total && p.total.bytes === 0 ? p.files : p.bytes;
    this.bar.update(total > 0 ? Math.min(value, total) : 0, this.payload(p));
  }

  stop(): void {
    this.bar?.stop();
  }
}
