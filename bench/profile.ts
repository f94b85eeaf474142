// Bench profiles: how much data each workload moves. `quick` (default) fits in 10 minutes on a 2-core machine;
// `full` moves more and repeats the throughput measurements; `smoke` is a one-minute check of the harness itself
// (its figures mean little).
export interface Profile {
  name: 'quick' | 'full' | 'smoke';
  /** Blobs in the imported namespace, all in one directory (the `ls -l` and stat workloads use it). */
  namespaceBlobs: number;
  /** Size of each of those blobs (the small-file workload reads the first `smallFiles` of them). */
  smallFileBytes: number;
  smallFiles: number;
  /** Parallel readers of the small-file workload and the SDK small-GET reference. */
  smallConcurrency: number;
  /** The large file: cold/warm sequential reads, random reads, the write and its export. */
  largeBytes: number;
  /** Stats timed in the stat-rate workload. */
  statCount: number;
  /** Random reads per block size and state. */
  randomReads: number;
  /** [range size in MiB, ranges in flight] tried for the SDK parallel download (the best is the reference). */
  downloadPlans: Array<[number, number]>;
  /** Repetitions of each reference throughput measurement (the best is kept). */
  repeats: number;
  /** Seeding concurrency (bounded: Azurite is CPU-bound). */
  seedConcurrency: number;
  /** Dirty files created for the export-scaling workload, and their size. */
  dirtyFiles: number;
  dirtyFileBytes: number;
  /** Files in the small namespace of the export-scaling comparison. */
  smallNamespaceBlobs: number;
  /** New files of the small-file write row (written in 4 KiB writes; with and without writeback cache). */
  smallWriteFiles: number;
  smallWriteBytes: number;
  /** Files of the CLI start-up row (`xargs -n 1 blobhsm hsm_state` against `xargs -n 1 node -e 0`). */
  cliFiles: number;
}

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

export const PROFILES: Record<Profile['name'], Profile> = {
  quick: {
    name: 'quick',
    namespaceBlobs: 10_000,
    smallFileBytes: 8 * 1024,
    smallFiles: 2_000,
    smallConcurrency: 8,
    largeBytes: 1 * GiB,
    statCount: 10_000,
    randomReads: 200,
    downloadPlans: [[4, 8], [16, 8], [64, 8]],
    repeats: 1,
    seedConcurrency: 16,
    dirtyFiles: 10,
    dirtyFileBytes: 256 * 1024,
    smallNamespaceBlobs: 10,
    smallWriteFiles: 500,
    smallWriteBytes: 64 * 1024,
    cliFiles: 1000,
  },
  smoke: {
    name: 'smoke',
    namespaceBlobs: 600,
    smallFileBytes: 8 * 1024,
    smallFiles: 200,
    smallConcurrency: 8,
    largeBytes: 64 * MiB,
    statCount: 600,
    randomReads: 50,
    downloadPlans: [[4, 8], [64, 8]],
    repeats: 1,
    seedConcurrency: 16,
    dirtyFiles: 10,
    dirtyFileBytes: 64 * 1024,
    smallNamespaceBlobs: 10,
    smallWriteFiles: 100,
    smallWriteBytes: 64 * 1024,
    cliFiles: 100,
  },
  full: {
    name: 'full',
    namespaceBlobs: 20_000,
    smallFileBytes: 8 * 1024,
    smallFiles: 4_000,
    smallConcurrency: 8,
    largeBytes: 1 * GiB,
    statCount: 20_000,
    randomReads: 1_000,
    downloadPlans: [[4, 4], [4, 8], [4, 16], [16, 4], [16, 8], [16, 16], [64, 4], [64, 8], [64, 16]],
    repeats: 3,
    seedConcurrency: 16,
    dirtyFiles: 10,
    dirtyFileBytes: 256 * 1024,
    smallNamespaceBlobs: 10,
    smallWriteFiles: 1000,
    smallWriteBytes: 64 * 1024,
    cliFiles: 1000,
  },
};

/** `--profile scale` (bench/scale.ts): the synthetic million-blob runs instead of the Azurite workloads. */
export interface ScaleArgs {
  treeBlobs: number;
  wideBlobs: number;
}

/** The FUSE bindings blobhsm is measured on (`--fuse` of `blobhsm mount`), in this order. */
export const BINDINGS = ['fuse3', 'fuse2'] as const;
export type Binding = (typeof BINDINGS)[number];

export function parseArgs(argv: string[]): { profile: Profile; skipRclone: boolean; bindings: Binding[]; out?: string; scale?: ScaleArgs } {
  let name: string = 'quick';
  let bindings: Binding[] = [...BINDINGS];
  let skipRclone = false;
  let out: string | undefined;
  const scale: ScaleArgs = { treeBlobs: 1_000_000, wideBlobs: 100_000 };
  const count = (flag: string, v: string | undefined): number => {
    if (!v || !/^\d+$/.test(v) || Number(v) < 10) throw new Error(`${flag} needs a blob count of at least 10 (got '${v ?? ''}')`);
    return Number(v);
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--profile') name = argv[++i] ?? '';
    else if (a.startsWith('--profile=')) name = a.slice('--profile='.length);
    else if (a === '--no-rclone') skipRclone = true;
    else if (a === '--tree-blobs') scale.treeBlobs = count(a, argv[++i]);
    else if (a === '--wide-blobs') scale.wideBlobs = count(a, argv[++i]);
    else if (a === '--out') out = argv[++i];
    else if (a === '--bindings') {
      const list = (argv[++i] ?? '').split(',').filter(Boolean);
      const bad = list.filter((b) => !(BINDINGS as readonly string[]).includes(b));
      if (!list.length || bad.length) throw new Error(`--bindings takes a comma-separated list of ${BINDINGS.join(', ')} (got '${list.join(',')}')`);
      bindings = BINDINGS.filter((b) => list.includes(b));
    }
    else if (a === '--help' || a === '-h') {
      process.stdout.write(
        'usage: npm run bench -- [--profile quick|full|smoke] [--no-rclone] [--bindings fuse3,fuse2] [--out results.json]\n' +
          '       npm run bench -- --profile scale [--tree-blobs N (1000000)] [--wide-blobs N (100000)] [--out results.json]\n',
      );
      process.exit(0);
    } else throw new Error(`unknown argument '${a}' (try --help)`);
  }
  if (name === 'scale') return { profile: PROFILES.quick, skipRclone: true, bindings, out, scale };
  if (name !== 'quick' && name !== 'full' && name !== 'smoke') throw new Error(`unknown profile '${name}': quick, full, smoke or scale`);
  return { profile: PROFILES[name], skipRclone, bindings, out };
}

export { MiB, GiB };
