// Which source files `blobhsm ingest` may read with blocking calls: those on a local disk or memory filesystem,
// known by the filesystem type statfs(2) reports, asked once per device. There a small file is in the page cache or
// one device read away, and four system calls of microseconds each cost less than four thread-pool round trips.
// A network, cluster or FUSE filesystem (NFS, SMB, Lustre, a FUSE mount...) can take milliseconds per call, so its
// files keep the asynchronous reads that run in parallel and never hold up the event loop.
import { statfsSync } from 'node:fs';

/** statfs f_type values of local filesystems (linux/magic.h; zfs from OpenZFS). */
const LOCAL_FILESYSTEM_TYPES = new Set([
  0xef53, // ext2, ext3, ext4
  0x58465342, // xfs
  0x9123683e, // btrfs
  0x01021994, // tmpfs
  0x858458f6, // ramfs
  0xf2f52010, // f2fs
  0x2fc12fc1, // zfs
  0x794c7630, // overlayfs (container images; its layers are local)
]);

export function isLocalFilesystemType(type: number): boolean {
  return LOCAL_FILESYSTEM_TYPES.has(type);
}

/** Answers per device (st_dev) whether its filesystem is local; a path whose statfs fails counts as not local. */
export class LocalFilesystems {
  private readonly byDevice = new Map<bigint, boolean>();

  constructor(private readonly statfsType: (path: string) => number = (path) => statfsSync(path).type) {}

  isLocal(dev: bigint, path: string): boolean {
    let local = this.byDevice.get(dev);
    if (local === undefined) {
      try {
        local = isLocalFilesystemType(this.statfsType(path));
      } catch {
        local = false;
      }
      this.byDevice.set(dev, local);
    }
    return local;
  }
}
