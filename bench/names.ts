// Names shared by the seeder, the workloads and the probes: containers, paths inside them, file names.
/** The namespace's files: f000000, f000001, ... all in one directory. */
export function fileName(i: number): string {
  return `f${String(i).padStart(6, '0')}`;
}

export const CONTAINERS = {
  /** N small blobs in `big/` (import, ls -l, stat, small files, export in a large namespace). */
  namespace: 'bench-ns',
  /** One large blob (`large.bin`): sequential and random reads; the write lands here too. */
  data: 'bench-data',
  /** A few small blobs in `small/`: export in a small namespace. */
  smallNamespace: 'bench-ns-small',
  /** The SDK upload reference writes here (never mounted). */
  scratch: 'bench-scratch',
} as const;

export const BIG_DIR = 'big';
export const SMALL_DIR = 'small';
export const LARGE_BLOB = 'large.bin';
