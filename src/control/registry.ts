// The registry of mounts (one 0600 JSON file per mount in the 0700 state directory): how the CLI finds the daemon
// serving a path, and what `blobhsm list` prints. A record whose daemon died stays while its mount is still in
// the kernel's table (so commands can say the daemon is gone and what to run); it goes once the mount is gone.
// A record is written to a temporary file and renamed into place, so a reader sees the old record or the new one,
// never part of one; a record that cannot be read is skipped, never deleted (it may be a live mount's).
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync, realpathSync } from 'node:fs';
import { join, resolve, sep } from 'node:path';
import { FsError } from '../errors.js';
import { isBlobhsmMount, mountAt } from '../daemon/mount-checks.js';

export interface MountRecord {
  mountpoint: string;
  container: string;
  prefix: string;
  description: string;
  cacheDir: string;
  socket: string;
  pid: number;
  startedAt: string;
  /**
   * The FUSE binding serving it: with fuse3 the daemon drops the kernel's pages of a file it releases itself; with
   * fuse2 (and in records of older versions, without the field) the CLI has to.
   */
  binding?: 'fuse3' | 'fuse2';
}

export class MountRegistry {
  constructor(private readonly stateDir: string) {}

  private dir(): string {
    const d = join(this.stateDir, 'mounts');
    mkdirSync(d, { recursive: true, mode: 0o700 });
    return d;
  }

  static idOf(mountpoint: string): string {
    return createHash('sha256').update(resolve(mountpoint)).digest('hex').slice(0, 16);
  }

  socketPathFor(mountpoint: string): string {
    return join(this.dir(), `${MountRegistry.idOf(mountpoint)}.sock`);
  }

  register(record: MountRecord): void {
    const path = join(this.dir(), `${MountRegistry.idOf(record.mountpoint)}.json`);
    const temp = `${path}.tmp-${process.pid}`;
    writeFileSync(temp, JSON.stringify(record, null, 2), { mode: 0o600 });
    renameSync(temp, path);
  }

  /** Removes the record (and the socket a killed daemon left behind). */
  unregister(mountpoint: string): void {
    rmSync(join(this.dir(), `${MountRegistry.idOf(mountpoint)}.json`), { force: true });
    rmSync(this.socketPathFor(mountpoint), { force: true });
  }

  /** Mounts with a live daemon, and those whose daemon died while the mount stayed; other records are removed. */
  list(): Array<MountRecord & { alive: boolean }> {
    const out: Array<MountRecord & { alive: boolean }> = [];
    for (const f of readdirSync(this.dir())) {
      if (!f.endsWith('.json')) continue;
      const path = join(this.dir(), f);
      try {
        const rec = JSON.parse(readFileSync(path, 'utf8')) as MountRecord;
        const alive = isAlive(rec.pid);
        if (alive || isBlobhsmMount(mountAt(rec.mountpoint))) out.push({ ...rec, alive });
        else rmSync(path, { force: true });
      } catch {
        // Unreadable (another version's format, a damaged disk): not ours to delete; `blobhsm unmount` of its
        // mountpoint removes it.
        continue;
      }
    }
    return out.sort((a, b) => a.mountpoint.localeCompare(b.mountpoint));
  }

  get(mountpoint: string): (MountRecord & { alive: boolean }) | undefined {
    const want = resolve(mountpoint);
    return this.list().find((r) => r.mountpoint === want);
  }

  /**
   * The mount holding a path, and the path inside it ('/...'). Uses the path as given (made absolute) and never
   * touches the mount, so it works for paths the kernel would answer slowly.
   */
  locate(path: string): { mount: MountRecord & { alive: boolean }; inner: string } {
    let abs = resolve(path);
    try {
      // Resolve symlinks outside the mounts (e.g. /tmp → /private/tmp); the mount itself is not entered.
      const parent = realpathSync(resolve(abs, '..'));
      abs = join(parent, abs.slice(abs.lastIndexOf(sep) + 1));
    } catch {
      /* keep abs */
    }
    let best: (MountRecord & { alive: boolean }) | undefined;
    for (const m of this.list()) {
      if ((abs === m.mountpoint || abs.startsWith(m.mountpoint + sep)) && (!best || m.mountpoint.length > best.mountpoint.length)) best = m;
    }
    // As lfs's ioctl on a file of another filesystem: ENOTTY.
    if (!best) throw new FsError('ENOTTY', `${path} is not inside a blobhsm mount (blobhsm list shows the mounts)`);
    if (!best.alive) {
      throw new FsError(
        'ENOTCONN',
        `the blobhsm daemon of ${best.mountpoint} (pid ${best.pid}) is not running: run blobhsm unmount ${best.mountpoint}, then mount it again (its cache is kept)`,
      );
    }
    const inner = abs.slice(best.mountpoint.length) || '/';
    return { mount: best, inner };
  }
}

/** Whether a process runs (a zombie, dead but not yet reaped by its parent, does not). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    // /proc/PID/stat: "pid (comm) S ..."; comm may hold spaces and parentheses, the state follows the last ')'.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return true;
  }
}
