// The per-file state (as rclone's vfscache Item) and the one door every data-moving action goes through: hsm_*
// requests, export jobs, auto-export, eviction and the truncate of a released file run as scheduled actions; import
// jobs and the VFS read the same per-file state to decide (busy, writers) and change it (opens, writes).
//
// Concurrency contract (the user-facing side is docs/SEMANTICS.md §5):
// - One JavaScript thread: code between two awaits runs alone. Every check-then-act on a file's state (its flags
//   in the metadata store, its opens and writes, its action) happens in one synchronous stretch, with no await
//   between the check and the act. A function that awaits re-reads what it checked before acting on it.
// - Order of acquisition (the "locks" are queues; a task takes them in this order and never the reverse, so they
//   cannot deadlock): 1. the file's chain (one action per file at a time, in request order), 2. a global slot
//   (at most `concurrency` actions run at once). A task holding a global slot never waits for a file's chain.
//   Restores run in the Hydrator's own lanes; an action never holds a slot while it waits for another file.
// - Nothing but a scheduled action (or the VFS's content-change bookkeeping below, and the import job's
//   synchronous page under the same busy check) changes a file's HSM flags, and every change is a named
//   transition of src/hsm/flags.ts.
// - From the kernel and libfuse, not from here: operations that change one name or one inode's content are
//   serialised by the kernel's inode and directory locks (i_rwsem); an unlinked open file is renamed to
//   `.fuse_hidden*` by libfuse, so its data stays reachable until the last close.
import PQueue from 'p-queue';
import { FsError } from '../errors.js';

export type ActionKind = 'ARCHIVE' | 'RESTORE' | 'RELEASE' | 'REMOVE';

/** Who asked for an action (logs and `hsm_action` details). */
export type ActionOrigin = 'request' | 'export job' | 'auto-export' | 'eviction' | 'truncate';

export interface ActionState {
  kind: ActionKind;
  /** 'waiting' until the action has its file's turn and one of the `concurrency` slots. */
  status: 'waiting' | 'running';
  bytesMoved: number;
  startedMs: number;
  /** hsm_cancel (or shutdown) asked for it: a waiting action never runs, a running one is aborted (ECANCELED). */
  cancelled?: boolean;
}

/** One action in a file's chain. */
export interface ScheduledAction extends ActionState {
  readonly origin: ActionOrigin;
  /** Aborted by hsm_cancel, by the caller's signal, or by shutdown. */
  readonly abort: AbortController;
}

/** How many actions run at once (behind `blobhsm status`). */
export interface ActionStats {
  concurrency: number;
  running: number;
  waiting: number;
  /** The most that ever ran at once since the daemon started. */
  maxRunning: number;
}

/** Everything the mount knows about one file beyond its record in the metadata store. */
export class FileState {
  /** Open handles, and those open for writing. */
  opens = 0;
  writers = 0;
  /** Writes and truncates between Coordinator.beforeContentChange and contentChangeDone. */
  writesInFlight = 0;
  /** The current content change is already recorded durably (DIRTY, data version + 1): cleared by an archive. */
  changeRecorded = false;
  /**
   * Handles whose writes reach the cache file without beforeContentChange (Coordinator.allowDirectWrites): each
   * entry ends its grant and answers how many of its writes landed but were not reported yet.
   */
  readonly directWriters = new Set<() => number>();
  /** Actions queued for this file, the running one first. */
  readonly actions: ScheduledAction[] = [];
  /** The tail of the file's chain. */
  tail: Promise<unknown> | undefined;

  constructor(readonly ino: number) {}

  /** Nothing refers to this state any more (it can be forgotten). */
  get idle(): boolean {
    return this.opens === 0 && this.writesInFlight === 0 && this.actions.length === 0 && !this.changeRecorded && this.directWriters.size === 0;
  }
}

export function cancelledError(reason = 'cancelled by hsm_cancel'): FsError {
  return new FsError('ECANCELED', reason);
}

/** One action that ran to its end (for the log): how long it ran, the bytes it moved, and its error if it failed. */
export interface FinishedAction {
  ino: number;
  kind: ActionKind;
  origin: ActionOrigin;
  ms: number;
  bytesMoved: number;
  error?: unknown;
}

export class ActionScheduler {
  /** Called when an action that ran (not one cancelled while waiting) finishes. */
  onFinished: ((a: FinishedAction) => void) | undefined;
  private readonly files = new Map<number, FileState>();
  private readonly queue: PQueue;
  private running = 0;
  private maxRunning = 0;
  private closed: string | undefined;

  constructor(concurrency = 8) {
    this.queue = new PQueue({ concurrency });
  }

  stats(): ActionStats {
    return { concurrency: this.queue.concurrency, running: this.running, waiting: this.queue.size, maxRunning: this.maxRunning };
  }

  /** The file's state, created on first use. */
  file(ino: number): FileState {
    let f = this.files.get(ino);
    if (!f) this.files.set(ino, (f = new FileState(ino)));
    return f;
  }

  /** The file's state if the mount holds any. */
  peek(ino: number): FileState | undefined {
    return this.files.get(ino);
  }

  /** Drops the state of a file that has none left to keep. */
  release(f: FileState): void {
    if (f.idle && this.files.get(f.ino) === f) this.files.delete(f.ino);
  }

  /** The file's running (or first waiting) action. */
  current(ino: number): ScheduledAction | undefined {
    return this.files.get(ino)?.actions[0];
  }

  /** Open, writing, or with an action queued or running. */
  busy(ino: number): boolean {
    const f = this.files.get(ino);
    return !!f && (f.opens > 0 || f.writesInFlight > 0 || f.actions.length > 0);
  }

  /**
   * Runs `run` as the file's next action: after every action queued for it before (the chain), in one of the
   * global slots. Registered synchronously, so a check done by the caller just before stays true until the action
   * is visible to everyone (busy, hsm_action, hsm_cancel). `signal` aborts it as hsm_cancel does.
   */
  schedule<T>(
    ino: number,
    kind: ActionKind,
    origin: ActionOrigin,
    run: (action: ScheduledAction) => Promise<T>,
    signal?: AbortSignal,
  ): Promise<T> {
    if (this.closed) return Promise.reject(new FsError('ECANCELED', this.closed));
    const f = this.file(ino);
    const action: ScheduledAction = { kind, origin, status: 'waiting', bytesMoved: 0, startedMs: Date.now(), abort: new AbortController() };
    const onAbort = () => this.cancelAction(action, signal!.reason instanceof Error ? signal!.reason.message : 'cancelled');
    if (signal?.aborted) onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    f.actions.push(action);
    const slot = async (): Promise<T> => {
      if (action.cancelled) throw cancelledError();
      action.status = 'running';
      this.running++;
      this.maxRunning = Math.max(this.maxRunning, this.running);
      const started = Date.now();
      const finished = (error?: unknown) =>
        this.onFinished?.({ ino, kind, origin, ms: Date.now() - started, bytesMoved: action.bytesMoved, ...(error === undefined ? {} : { error }) });
      try {
        const result = await run(action);
        finished();
        return result;
      } catch (err) {
        finished(err);
        throw err;
      } finally {
        this.running--;
      }
    };
    const turn = async (): Promise<T> => {
      try {
        if (action.cancelled) throw cancelledError();
        return (await this.queue.add(slot)) as T;
      } catch (err) {
        throw action.cancelled && !(err instanceof FsError && err.code === 'ECANCELED') ? cancelledError() : err;
      } finally {
        signal?.removeEventListener('abort', onAbort);
        f.actions.splice(f.actions.indexOf(action), 1);
      }
    };
    const prev = f.tail ?? Promise.resolve();
    const done = prev.then(turn, turn);
    const tail = done.catch(() => undefined);
    f.tail = tail;
    void tail.then(() => {
      if (f.tail === tail) {
        f.tail = undefined;
        this.release(f);
      }
    });
    return done;
  }

  /** Cancels every action of a file (a waiting one never runs, a running one is aborted). False when it has none. */
  cancel(ino: number, reason = 'cancelled by hsm_cancel'): boolean {
    const f = this.files.get(ino);
    if (!f || f.actions.length === 0) return false;
    for (const a of f.actions) this.cancelAction(a, reason);
    return true;
  }

  private cancelAction(a: ScheduledAction, reason: string): void {
    a.cancelled = true;
    a.abort.abort(cancelledError(reason));
  }

  /** Resolves when every queued action has finished. */
  async idle(): Promise<void> {
    for (;;) {
      const tails = [...this.files.values()].map((f) => f.tail).filter((t) => t !== undefined);
      if (tails.length === 0) break;
      await Promise.all(tails);
    }
    await this.queue.onIdle();
  }

  /**
   * Shutdown: refuses new actions, cancels the waiting ones, aborts the running ones and waits until all have
   * settled (their files stay in the state the cancel leaves: dirty files stay dirty, released ones released).
   */
  async close(reason = 'the mount is shutting down'): Promise<void> {
    this.closed ??= reason;
    for (const f of this.files.values()) for (const a of f.actions) this.cancelAction(a, reason);
    await this.idle();
  }
}
