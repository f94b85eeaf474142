// `blobhsm unmount MOUNTPOINT`: asks the daemon to unmount and waits until it has exited cleanly; a mount whose
// daemon is gone is detached with fusermount.
import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';
import { stateHome } from '../config.js';
import { callDaemon } from '../control/client.js';
import { MountRegistry, isAlive } from '../control/registry.js';
import { isMounted } from '../daemon/mount-checks.js';
import { describeError } from '../errors.js';
import type { CliIo } from './io.js';
import { EXIT_FAILURE } from './io.js';

export async function runUnmount(mountpoint: string, io: CliIo, timeoutMs = 60_000): Promise<number> {
  const mnt = resolve(mountpoint);
  const registry = new MountRegistry(stateHome(io.env));
  const record = registry.get(mnt);
  if (!record) {
    if (!isMounted(mnt)) {
      io.stderr.write(`blobhsm unmount: ${mnt} is not mounted\n`);
      return EXIT_FAILURE;
    }
    try {
      execFileSync('fusermount', ['-uz', mnt], { stdio: 'pipe' });
      io.stdout.write(`detached ${mnt} (its daemon was gone)\n`);
      return 0;
    } catch (err) {
      io.stderr.write(`blobhsm unmount: ${mnt} has no blobhsm daemon and fusermount failed: ${describeError(err)}\n`);
      return EXIT_FAILURE;
    }
  }
  try {
    await callDaemon(record.socket, 'unmount');
  } catch (err) {
    io.stderr.write(`blobhsm unmount: ${describeError(err)}\n`);
    return EXIT_FAILURE;
  }
  const deadline = Date.now() + timeoutMs;
  while (isAlive(record.pid)) {
    if (Date.now() > deadline) {
      io.stderr.write(`blobhsm unmount: the daemon (pid ${record.pid}) is still running after ${timeoutMs / 1000} s; files may be busy (check with fuser -m ${mnt})\n`);
      return EXIT_FAILURE;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  io.stdout.write(`unmounted ${mnt}\n`);
  return 0;
}
