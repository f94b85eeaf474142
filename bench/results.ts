// The shape of what the bench measures: one Outcome per workload id for each target (blobhsm, rclone), and the
// helper that records a workload's outcome without letting one failure stop the run (a failure is reported).
import type { Requests } from './blobhsm-mount.js';

export type Unit = 'MiB/s' | 'ms' | 'ops/s' | 'blobs/s' | 'events/s' | 'files/s' | 'reads/s' | 'MiB' | 'µs/entry';

export interface Measurement {
  /** The workload's main figure. */
  value: number;
  unit: Unit;
  /** Requests to the blob service during the workload, by operation (blobhsm only). */
  requests?: Requests;
  /** Bytes Azurite sent (fetched by the client) / received during the workload (from Azurite's /proc I/O). */
  bytesFetched?: number;
  bytesUploaded?: number;
  detail?: Record<string, number | string | boolean>;
}

export type Outcome = Measurement | { error: string };
export type Results = Record<string, Outcome>;

export const WORKLOADS = [
  'import',
  'cli-xargs',
  'lsl-cold',
  'lsl-warm',
  'stat',
  'seq-cold',
  'seq-cold-no-md5',
  'ttfb',
  'warm-page',
  'warm-dropped',
  'small-cold',
  'small-warm',
  'rand4k-cold',
  'rand64k-cold',
  'rand4k-hydrated',
  'rand64k-hydrated',
  'write',
  'small-write',
  'export-large',
  'export-dirty-large-ns',
  'export-dirty-small-ns',
] as const;
export type WorkloadId = (typeof WORKLOADS)[number];

export function isMeasurement(o: Outcome | undefined): o is Measurement {
  return o !== undefined && 'value' in o;
}

export function describeError(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Runs one workload step, storing its measurement or its error under `id`; the run goes on either way. */
export async function step(results: Results, id: WorkloadId, log: (line: string) => void, fn: () => Promise<Measurement>): Promise<Measurement | undefined> {
  try {
    const m = await fn();
    results[id] = m;
    const req = m.requests ? ` requests ${JSON.stringify(m.requests)}` : '';
    const fetched = m.bytesFetched !== undefined ? ` fetched ${(m.bytesFetched / 1048576).toFixed(1)} MiB` : '';
    log(`  ${id}: ${fmtValue(m.value, m.unit)}${req}${fetched}`);
    return m;
  } catch (err) {
    results[id] = { error: describeError(err) };
    log(`  ${id}: FAILED: ${describeError(err)}`);
    return undefined;
  }
}

export function fmtValue(v: number, unit: Unit): string {
  const digits = v >= 100 ? 0 : v >= 10 ? 1 : 2;
  return `${v.toFixed(digits)} ${unit}`;
}
