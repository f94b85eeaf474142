// `blobhsm unmount MOUNTPOINT [--lazy]` and `blobhsm unmount --all`: acts only on blobhsm's own mounts (fstype
// fuse.blobhsm in /proc/self/mountinfo), whoever runs it; anything else is refused and left mounted. A mount with
// open files is refused (EBUSY, with their number) unless --lazy; a mount whose daemon is gone is detached.
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { stateHome } from '../config.js';
import { callDaemon } from '../control/client.js';
import { MountRegistry, isAlive } from '../control/registry.js';
import { BLOBHSM_FSTYPE, isBlobhsmMount, mountAt } from '../daemon/mount-checks.js';
import { UsageError, describeError } from '../errors.js';
import type { CliIo } from './io.js';
import { EXIT_FAILURE } from './io.js';

export interface UnmountOptions {
  /** Detach at once even with open files; the daemon serves them until they are closed, then exits. */
  lazy?: boolean;
  /** Every mount in the caller's registry (blobfuse2's `unmount all`). */
  all?: boolean;
  /** How long to wait for the daemon to exit after the kernel unmount (default 60 s). */
  timeoutMs?: number;
}

export async function runUnmount(mountpoint: string | undefined, o: UnmountOptions, io: CliIo): Promise<number> {
  const registry = new MountRegistry(stateHome(io.env));
  if (o.all) {
    if (mountpoint) throw new UsageError('unmount takes a MOUNTPOINT or --all, not both');
    const records = registry.list();
    if (records.length === 0) {
      io.stdout.write('no blobhsm mounts\n');
      return 0;
    }
    let status = 0;
    for (const r of records) {
      const code = await unmountOne(r.mountpoint, o, registry, io);
      if (status === 0) status = code;
    }
    return status;
  }
  if (!mountpoint) throw new UsageError('unmount needs a MOUNTPOINT (or --all)');
  return unmountOne(resolve(mountpoint), o, registry, io);
}

async function unmountOne(mnt: string, o: UnmountOptions, registry: MountRegistry, io: CliIo): Promise<number> {
  const fail = (message: string) => {
    io.stderr.write(`blobhsm unmount: ${message}\n`);
    return EXIT_FAILURE;
  };
  const there = mountAt(mnt);
  if (!there) return fail(`${mnt} is not mounted`);
  if (!isBlobhsmMount(there)) {
    return fail(
      `${mnt} is not a blobhsm mount (it is ${there.fstype} from ${there.source}); blobhsm unmounts only its own ` +
        `mounts (fstype ${BLOBHSM_FSTYPE}) and left it mounted`,
    );
  }
  const record = registry.get(mnt);
  if (!record?.alive) {
    try {
      await detach(mnt);
    } catch (err) {
      return fail(`${mnt} has no running blobhsm daemon and could not be detached: ${describeError(err)}`);
    }
    registry.unregister(mnt);
    const why = record ? `its daemon (pid ${record.pid}) was not running` : 'no running blobhsm daemon is registered for it';
    io.stdout.write(`detached ${mnt} (${why}): files there were not reachable; mount it again to use them\n`);
    return 0;
  }
  let answer: { openFiles?: number };
  try {
    answer = ((await callDaemon(record.socket, 'unmount', { lazy: Boolean(o.lazy) })) ?? {}) as { openFiles?: number };
  } catch (err) {
    return fail(`${mnt}: ${describeError(err)}`);
  }
  const openFiles = answer.openFiles ?? 0;
  if (o.lazy && openFiles > 0) {
    io.stdout.write(`detached ${mnt}; its daemon (pid ${record.pid}) serves the ${openFiles} open file${openFiles === 1 ? '' : 's'} and exits once they are closed\n`);
    return 0;
  }
  const timeoutMs = o.timeoutMs ?? 60_000;
  const deadline = Date.now() + timeoutMs;
  while (isAlive(record.pid)) {
    if (Date.now() > deadline) {
      return fail(`${mnt} is unmounted but its daemon (pid ${record.pid}) is still running after ${timeoutMs / 1000} s (see its log)`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  io.stdout.write(`unmounted ${mnt}\n`);
  return 0;
}

/** Lazily detaches a blobhsm mount nobody serves (fusermount -uz; as root it could detach anything: callers check). */
function detach(mnt: string): Promise<void> {
  return new Promise((done, reject) =>
    execFile('fusermount', ['-uz', mnt], { timeout: 30_000 }, (err, _out, stderr) =>
      err ? reject(new Error(String(stderr).trim() || describeError(err))) : done(),
    ),
  );
}
