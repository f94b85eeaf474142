// Mount-table facts read from /proc (never by touching the mount itself): is a path mounted, and the kernel
// read-ahead of our FUSE mount.
import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';

interface MountInfo {
  majorMinor: string;
  mountpoint: string;
  fstype: string;
}

/** Mounts as /proc/self/mountinfo lists them (octal escapes in paths decoded). */
export function mountTable(): MountInfo[] {
  let text: string;
  try {
    text = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const f = line.split(' ');
      const dash = f.indexOf('-');
      return { majorMinor: f[2]!, mountpoint: unescape(f[4]!), fstype: f[dash + 1] ?? '' };
    });
}

export function isMounted(mountpoint: string): boolean {
  const want = resolve(mountpoint);
  return mountTable().some((m) => m.mountpoint === want);
}

/** Raises the read-ahead of the FUSE mount (measured: ~1 GB/s sequential reads at 1024 KiB). Best effort. */
export function tuneReadAhead(mountpoint: string, kib: number, log: (line: string) => void): void {
  const want = resolve(mountpoint);
  const entry = mountTable().find((m) => m.mountpoint === want && m.fstype.startsWith('fuse'));
  if (!entry) return;
  try {
    writeFileSync(`/sys/class/bdi/${entry.majorMinor}/read_ahead_kb`, String(kib));
  } catch (err) {
    log(`could not raise read_ahead_kb of ${mountpoint} (${(err as Error).message}); sequential reads may be slower`);
  }
}
