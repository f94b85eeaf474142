// The registry of running mounts (one JSON file per mount in the state directory): how the CLI finds the daemon
// serving a path, and what `blobhsm list` prints.
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync, realpathSync } from 'node:fs';
import { join, resolve, sep } from 'node:path';
import { FsError } from '../errors.js';

export interface MountRecord {
  mountpoint: string;
  container: string;
  prefix: string;
  description: string;
  cacheDir: string;
  socket: string;
  pid: number;
  startedAt: string;
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
    writeFileSync(join(this.dir(), `${MountRegistry.idOf(record.mountpoint)}.json`), JSON.stringify(record, null, 2), { mode: 0o600 });
  }

  unregister(mountpoint: string): void {
    rmSync(join(this.dir(), `${MountRegistry.idOf(mountpoint)}.json`), { force: true });
  }

  /** Live mounts; records of dead daemons are removed. */
  list(): MountRecord[] {
    const out: MountRecord[] = [];
    for (const f of readdirSync(this.dir())) {
      if (!f.endsWith('.json')) continue;
      const path = join(this.dir(), f);
      try {
        const rec = JSON.parse(readFileSync(path, 'utf8')) as MountRecord;
        if (isAlive(rec.pid)) out.push(rec);
        else rmSync(path, { force: true });
      } catch {
        rmSync(path, { force: true });
      }
    }
    return out.sort((a, b) => a.mountpoint.localeCompare(b.mountpoint));
  }

  get(mountpoint: string): MountRecord | undefined {
    const want = resolve(mountpoint);
    return this.list().find((r) => r.mountpoint === want);
  }

  /**
   * The mount holding a path, and the path inside it ('/...'). Uses the path as given (made absolute) and never
   * touches the mount, so it works for paths the kernel would answer slowly.
   */
  locate(path: string): { mount: MountRecord; inner: string } {
    let abs = resolve(path);
    try {
      // Resolve symlinks outside the mounts (e.g. /tmp → /private/tmp); the mount itself is not entered.
      const parent = realpathSync(resolve(abs, '..'));
      abs = join(parent, abs.slice(abs.lastIndexOf(sep) + 1));
    } catch {
      /* keep abs */
    }
    let best: MountRecord | undefined;
    for (const m of this.list()) {
      if ((abs === m.mountpoint || abs.startsWith(m.mountpoint + sep)) && (!best || m.mountpoint.length > best.mountpoint.length)) best = m;
    }
    if (!best) throw new FsError('ENOENT', `${path} is not inside a blobhsm mount (see blobhsm list)`);
    const inner = abs.slice(best.mountpoint.length) || '/';
    return { mount: best, inner };
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
