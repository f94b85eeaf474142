// MD5 off the main thread, for staged uploads. This module owns a small pool of worker threads that hash block
// bytes, the running whole-blob MD5 (one per upload, kept on one thread and fed the blocks in order), and the
// block buffers an upload reads into: SharedArrayBuffers, so a thread hashes the very bytes the main thread sends,
// without a copy, and a buffer is handed out again only after its block was both sent and hashed (its bytes never
// change between hashing and sending). It never talks to a service: the stores do.
//
// Why (measured, README "Ingest"): hashing every byte twice on the main thread (the blob's Content-MD5 and each
// block's transactional MD5) was 55 % of an ingest's CPU, serialised with the HTTP work.
//
// Threads start on first use and are unref'd while idle, so a pool nobody closed never holds a process open;
// close() ends them. A pool with 0 threads hashes on the calling thread (same results, same ordering rules).
import { createHash, type Hash } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';

/** A hashing thread failed, exited or was closed while work was pending; the upload using it fails with this. */
export class HashThreadError extends Error {
  override readonly name = 'HashThreadError';
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, { cause: options.cause });
  }
}

export interface Md5ThreadsOptions {
  /** Hashing threads (default: the machine's parallelism, at most 4). 0 hashes on the calling thread. */
  threads?: number;
}

/** The running MD5 of one upload's bytes, fed in order. */
export interface RunningMd5 {
  /** Adds the next bytes; resolves once they are hashed (only then may their buffer be reused). */
  update(data: Uint8Array): Promise<void>;
  /** The 16 digest bytes of everything added; the running hash is then finished. */
  digest(): Promise<Uint8Array>;
  /** Drops the running hash without a digest (a failed upload). */
  discard(): void;
}

type Request =
  | { op: 'md5'; id: number; data: Uint8Array }
  | { op: 'update'; id: number; stream: number; data: Uint8Array }
  | { op: 'digest'; id: number; stream: number }
  | { op: 'discard'; stream: number };
type Reply = { id: number; digest?: Uint8Array; error?: string };

// The thread's whole program, evaluated by the Worker, so it needs no file of its own (the same module works from
// dist/ and from the TypeScript sources under the test loader). Workers inherit the process's flags, so the code
// must run as a CommonJS script and as an ES module (\`--input-type=module\`): dynamic imports only.
const THREAD_SOURCE = `
Promise.all([import('node:worker_threads'), import('node:crypto')]).then(([{ parentPort }, { createHash }]) => {
  const running = new Map();
  parentPort.on('message', (m) => {
    try {
      if (m.op === 'md5') {
        parentPort.postMessage({ id: m.id, digest: new Uint8Array(createHash('md5').update(m.data).digest()) });
      } else if (m.op === 'update') {
        let h = running.get(m.stream);
        if (!h) running.set(m.stream, (h = createHash('md5')));
        h.update(m.data);
        parentPort.postMessage({ id: m.id });
      } else if (m.op === 'digest') {
        const h = running.get(m.stream) || createHash('md5');
        running.delete(m.stream);
        parentPort.postMessage({ id: m.id, digest: new Uint8Array(h.digest()) });
      } else if (m.op === 'discard') {
        running.delete(m.stream);
      } else {
        parentPort.postMessage({ id: m.id, error: 'unknown request ' + String(m.op) });
      }
    } catch (err) {
      if (m && typeof m.id === 'number') parentPort.postMessage({ id: m.id, error: String((err && err.stack) || err) });
    }
  });
});
`;

/**
 * The bytes as a thread can read them in place: a plain Uint8Array over the SharedArrayBuffer (a Buffer is cloned
 * as a copy: 0.39 ms per 8 MiB against 0.014 ms, measured). Bytes not in a SharedArrayBuffer are copied (the view's
 * bytes only, not the whole buffer under it).
 */
function shareable(data: Uint8Array): Uint8Array {
  return data.buffer instanceof SharedArrayBuffer
    ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
    : new Uint8Array(data);
}

interface Pending {
  resolve(reply: Reply): void;
  reject(err: HashThreadError): void;
}

/** One hashing thread: requests in, replies by id; ref'd only while it has work. */
class HashThread {
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private failure: HashThreadError | undefined;
  /** Running hashes open on this thread (placement weight). */
  streams = 0;

  constructor(readonly index: number) {
    this.worker = new Worker(THREAD_SOURCE, { eval: true, name: `blobhsm-md5-${index}` });
    this.worker.on('message', (reply: Reply) => {
      const p = this.pending.get(reply.id);
      if (!p) return;
      this.pending.delete(reply.id);
      if (this.pending.size === 0) this.worker.unref();
      if (reply.error !== undefined) p.reject(new HashThreadError(`MD5 thread ${this.index}: ${reply.error}`));
      else p.resolve(reply);
    });
    this.worker.on('error', (err) => this.fail(new HashThreadError(`MD5 thread ${this.index} failed: ${err.message}`, { cause: err })));
    this.worker.on('exit', (code) => this.fail(new HashThreadError(`MD5 thread ${this.index} exited (code ${code})`)));
    // After the listeners: adding a 'message' listener refs the worker again.
    this.worker.unref();
  }

  get load(): number {
    return this.pending.size;
  }

  get failed(): HashThreadError | undefined {
    return this.failure;
  }

  request(req: Request & { id: number }): Promise<Reply> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise<Reply>((resolve, reject) => {
      if (this.pending.size === 0) this.worker.ref();
      this.pending.set(req.id, { resolve, reject });
      this.worker.postMessage(req);
    });
  }

  post(req: Request): void {
    if (!this.failure) this.worker.postMessage(req);
  }

  private fail(err: HashThreadError): void {
    this.failure ??= err;
    for (const p of this.pending.values()) p.reject(this.failure);
    this.pending.clear();
  }

  async close(): Promise<void> {
    this.fail(new HashThreadError(`MD5 thread ${this.index} closed with work pending`));
    await this.worker.terminate();
  }
}

/**
 * A pool of MD5 threads, owned by whoever creates it (a store makes its own unless given one); close() ends the
 * threads. Block digests go to the least busy thread; a running hash stays on one thread (the one with the fewest
 * running hashes), so its updates are hashed in the order they were made.
 */
export class Md5Threads {
  readonly size: number;
  private threads: HashThread[] = [];
  private nextId = 1;
  private nextStream = 1;
  private closed = false;

  constructor(options: Md5ThreadsOptions = {}) {
    const wanted = options.threads ?? Math.min(4, availableParallelism());
    if (!Number.isSafeInteger(wanted) || wanted < 0) throw new RangeError(`Md5Threads: bad thread count ${wanted}`);
    this.size = wanted;
  }

  /** Threads running now (they start on first use). */
  get started(): number {
    return this.threads.length;
  }

  private pick(by: (t: HashThread) => number): HashThread {
    if (this.closed) throw new HashThreadError('the MD5 threads are closed');
    if (this.threads.length < this.size) {
      this.threads = Array.from({ length: this.size }, (_, i) => this.threads[i] ?? new HashThread(i));
    }
    const live = this.threads.filter((t) => !t.failed);
    if (live.length === 0) throw this.threads[0]!.failed!;
    return live.reduce((best, t) => (by(t) < by(best) ? t : best));
  }

  /** The 16 MD5 bytes of one block (a block's transactional Content-MD5). */
  async md5(data: Uint8Array): Promise<Uint8Array> {
    if (this.size === 0) return inlineDigest(createHash('md5').update(data));
    const reply = await this.pick((t) => t.load).request({ op: 'md5', id: this.nextId++, data: shareable(data) });
    return new Uint8Array(reply.digest!);
  }

  /** A running MD5 for bytes fed in order (a blob's Content-MD5). */
  running(): RunningMd5 {
    if (this.size === 0) return inlineRunning();
    const thread = this.pick((t) => t.streams);
    const stream = this.nextStream++;
    thread.streams++;
    let open = true;
    const finish = () => {
      if (open) thread.streams--;
      open = false;
    };
    return {
      update: async (data) => {
        if (!open) throw new HashThreadError('update of a finished running MD5');
        await thread.request({ op: 'update', id: this.nextId++, stream, data: shareable(data) });
      },
      digest: async () => {
        if (!open) throw new HashThreadError('digest of a finished running MD5');
        finish();
        const reply = await thread.request({ op: 'digest', id: this.nextId++, stream });
        return new Uint8Array(reply.digest!);
      },
      discard: () => {
        if (!open) return;
        finish();
        thread.post({ op: 'discard', stream });
      },
    };
  }

  /** Ends the threads; work still pending fails with HashThreadError. Later use fails too. */
  async close(): Promise<void> {
    this.closed = true;
    const threads = this.threads;
    this.threads = [];
    await Promise.all(threads.map((t) => t.close()));
  }
}

function inlineDigest(hash: Hash): Uint8Array {
  return new Uint8Array(hash.digest());
}

function inlineRunning(): RunningMd5 {
  let hash: Hash | undefined = createHash('md5');
  const open = (): Hash => {
    if (!hash) throw new HashThreadError('use of a finished running MD5');
    return hash;
  };
  return {
    update: async (data) => {
      open().update(data);
    },
    digest: async () => {
      const d = inlineDigest(open());
      hash = undefined;
      return d;
    },
    discard: () => {
      hash = undefined;
    },
  };
}

/**
 * Block buffers over SharedArrayBuffers, reused: `take(n)` waits while `count` are out (an upload's memory stays
 * `count` blocks), `give(view)` hands one back once its block was sent and hashed. A buffer is allocated at the
 * size first asked for (a 1 KiB file does not get an 8 MiB buffer); one too small for a later request is replaced.
 */
export class SharedBlockBuffers {
  private readonly free: SharedArrayBuffer[] = [];
  private readonly waiting: Array<(buf: SharedArrayBuffer) => void> = [];
  private out = 0;

  constructor(private readonly count: number) {
    if (!Number.isSafeInteger(count) || count < 1) throw new RangeError(`SharedBlockBuffers: bad count ${count}`);
  }

  async take(length: number): Promise<Buffer> {
    let sab: SharedArrayBuffer | undefined;
    if (this.out < this.count) {
      this.out++;
      sab = this.free.pop();
    } else {
      sab = await new Promise<SharedArrayBuffer>((resolve) => this.waiting.push(resolve));
    }
    if (!sab || sab.byteLength < length) sab = new SharedArrayBuffer(length);
    return Buffer.from(sab, 0, length);
  }

  /** Returns a buffer `take` gave out (any view of it). */
  give(view: Uint8Array): void {
    const sab = view.buffer as SharedArrayBuffer;
    const next = this.waiting.shift();
    if (next) next(sab);
    else {
      this.out--;
      this.free.push(sab);
    }
  }
}
