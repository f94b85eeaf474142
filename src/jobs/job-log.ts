// JobLog: where an import job or an auto-import phase writes its JSON lines (one per conflict, warning, error,
// deletion): a local file in the cache directory, and, with `--logging-container`, an append blob in that container
// (AMLFS's logging container) named `<container>/<log name>.jsonl`, appended as the job runs.
//
// Lines reach the blob in batches (every `flushMs`, or when 1 MiB is waiting) and once more at close; a failed
// append is logged once per failure streak and retried with the next batch, keeping at most `maxPendingBytes`
// (older lines are dropped then, and the drop is said in the daemon log). Nothing here ever fails the job: the local
// file stays the complete record.
import { createWriteStream, mkdirSync, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import type { BlobStore } from '../blob/blob-store.js';
import { describeError } from '../errors.js';

export interface JobLogOptions {
  /** Directory of the local file (none when absent). */
  dir?: string;
  /** File name without `.jsonl` (a job id, `auto-import-FullSync-<time>`, ...). */
  name: string;
  /** The logging container, and the mount's container name (the blob's folder). */
  container?: { store: BlobStore; folder: string };
  /** The daemon log, for this module's own failures. */
  log: (line: string) => void;
  flushMs?: number;
  maxPendingBytes?: number;
}

const BATCH_BYTES = 1024 * 1024;

export class JobLog {
  /** The local file, when there is one. */
  readonly file: string | undefined;
  /** The blob in the logging container, when there is one. */
  readonly blob: string | undefined;
  private readonly stream: WriteStream | undefined;
  private pending: string[] = [];
  private pendingBytes = 0;
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();
  private failing = false;

  constructor(private readonly o: JobLogOptions) {
    if (o.dir) {
      try {
        mkdirSync(o.dir, { recursive: true, mode: 0o700 });
        this.file = join(o.dir, `${o.name}.jsonl`);
        this.stream = createWriteStream(this.file, { flags: 'a', mode: 0o600 });
        this.stream.on('error', (err) => o.log(`${o.name}: cannot write ${this.file}: ${describeError(err)}`));
      } catch (err) {
        o.log(`${o.name}: cannot create its log in ${o.dir}: ${describeError(err)}`);
        this.file = undefined;
      }
    }
    if (o.container) this.blob = `${o.container.folder}/${o.name}.jsonl`;
  }

  write(line: string): void {
    this.stream?.write(line + '\n');
    if (!this.o.container) return;
    this.pending.push(line + '\n');
    this.pendingBytes += Buffer.byteLength(line) + 1;
    const max = this.o.maxPendingBytes ?? 16 * BATCH_BYTES;
    let dropped = 0;
    while (this.pendingBytes > max && this.pending.length > 1) {
      this.pendingBytes -= Buffer.byteLength(this.pending.shift()!);
      dropped++;
    }
    if (dropped) this.o.log(`${this.o.name}: the logging container is behind: ${dropped} older lines not sent (the local log has them)`);
    if (this.pendingBytes >= BATCH_BYTES) void this.flush();
    else this.timer ??= setTimeout(() => void this.flush(), this.o.flushMs ?? 2000).unref();
  }

  /** Sends what is waiting to the logging container (one append per call, at most 1 MiB each). */
  flush(): Promise<void> {
    this.flushing = this.flushing.then(() => this.sendPending());
    return this.flushing;
  }

  async close(): Promise<void> {
    await this.flush();
    if (this.stream) await new Promise<void>((resolve) => this.stream!.end(resolve));
  }

  private async sendPending(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const target = this.o.container;
    if (!target) return;
    while (this.pending.length > 0) {
      const batch: string[] = [];
      let bytes = 0;
      while (this.pending.length > 0 && (batch.length === 0 || bytes + Buffer.byteLength(this.pending[0]!) <= BATCH_BYTES)) {
        const line = this.pending.shift()!;
        bytes += Buffer.byteLength(line);
        batch.push(line);
      }
      try {
        await target.store.append(this.blob!, Buffer.from(batch.join('')));
        this.pendingBytes -= bytes;
        if (this.failing) this.o.log(`${this.o.name}: the logging container accepts lines again`);
        this.failing = false;
      } catch (err) {
        this.pending.unshift(...batch);
        if (!this.failing) this.o.log(`${this.o.name}: appending to ${target.store.description}/${this.blob} failed (retried with the next lines): ${describeError(err)}`);
        this.failing = true;
        this.timer ??= setTimeout(() => void this.flush(), this.o.flushMs ?? 2000).unref();
        return;
      }
    }
  }
}
