// The issues' targets, as rows for one FUSE binding: for each workload the blobhsm figure, the reference it is held
// against (from the same run), the ratio, rclone's figure, the target and the verdict ("meets", "short", or
// "failed" when the workload could not be measured). Every workload gets a row; a short one says what was
// measured. Targets of issue 11 (the libfuse3 binding) where it sets one, of issue 6 otherwise.
import type { Binding, Profile } from './profile.js';
import { MiB } from './profile.js';
import type { SdkRefs } from './sdk-refs.js';
import type { DiskRefs } from './disk-refs.js';
import type { NullRefs } from './null-refs.js';
import type { RcloneOutcome } from './rclone.js';
import { fmtValue, isMeasurement, type Measurement, type Outcome, type Results, type Unit, type WorkloadId } from './results.js';
import { totalRequests, type Requests } from './blobhsm-mount.js';

export type Verdict = 'meets' | 'short' | 'failed' | 'n/a';

export interface Figure {
  value: number;
  unit: Unit;
}

export interface Row {
  id: WorkloadId;
  workload: string;
  blobhsm: Figure | { error: string };
  reference: (Figure & { label: string }) | null;
  /** blobhsm ÷ reference. */
  ratio: number | null;
  rclone: Figure | { error: string } | null;
  target: string;
  verdict: Verdict;
  requests?: Requests;
  /** What was measured besides the figure, and why a row is short. */
  notes: string[];
}

export interface References {
  sdk?: SdkRefs;
  disk?: DiskRefs;
  /** The fuse-native null filesystem (libfuse 2 through JavaScript): the fuse2 binding's ceiling. */
  nullFs?: NullRefs;
  /** The C low-level null filesystem (libfuse3, bench/null-ll.c): the FUSE ceiling. */
  nullLl?: NullRefs;
  errors: Record<string, string>;
}

interface Check {
  ok: boolean;
  /** Said when the check fails. */
  short: string;
}

const fig = (value: number, unit: Unit): Figure => ({ value, unit });
const reqCount = (m: Measurement, op: string) => m.requests?.[op] ?? 0;
const mib = (b: number | undefined) => (b === undefined || Number.isNaN(b) ? 'n/a' : `${(b / MiB).toFixed(1)} MiB`);

function zeroRequests(m: Measurement): Check {
  const n = m.requests ? totalRequests(m.requests) : NaN;
  return { ok: n === 0, short: `${Number.isNaN(n) ? 'unknown' : n} blob requests (${JSON.stringify(m.requests ?? {})})` };
}

function atLeast(ratio: number | null, k: number): Check {
  return { ok: ratio !== null && ratio >= k, short: `ratio ${ratio === null ? 'n/a' : ratio.toFixed(3)} < ${k}` };
}

function atMost(ratio: number | null, k: number): Check {
  return { ok: ratio !== null && ratio <= k, short: `ratio ${ratio === null ? 'n/a' : ratio.toFixed(3)} > ${k}` };
}

function fasterThanRclone(m: Measurement, peer: Outcome | undefined, higherIsBetter: boolean): Check {
  if (!isMeasurement(peer)) return { ok: false, short: 'no rclone figure to compare with' };
  const ok = higherIsBetter ? m.value > peer.value : m.value < peer.value;
  return { ok, short: `rclone ${fmtValue(peer.value, peer.unit)} is faster` };
}

/** Requests of exactly 1 MiB make up at least 90 % of them (the tail of a file may be shorter). */
function mostly1MiB(m: Measurement, kind: 'READ' | 'WRITE'): Check {
  const n = Number(m.detail?.[kind === 'READ' ? 'readRequests' : 'writeRequests']);
  const hist = String(m.detail?.[kind === 'READ' ? 'readSizes' : 'writeSizes'] ?? '');
  const oneMiB = Number(/(?:^|, )1048576×(\d+)/.exec(hist)?.[1] ?? 0);
  if (!(n > 0)) return { ok: false, short: `${kind} sizes unknown (${m.detail?.requestSizesError ?? 'no debug output'})` };
  return { ok: oneMiB >= 0.9 * n, short: `${kind} requests ${hist}, not 1 MiB` };
}

export function buildRows(p: Profile, refs: References, bh: Results, rc: RcloneOutcome | undefined, binding: Binding = 'fuse3'): Row[] {
  const rows: Row[] = [];
  const rcl = (id: WorkloadId): Row['rclone'] => {
    if (!rc) return null;
    if (!rc.available) return { error: 'unavailable' };
    const o = rc.results[id];
    if (!o) return null;
    return isMeasurement(o) ? fig(o.value, o.unit) : { error: o.error };
  };
  const add = (
    id: WorkloadId,
    workload: string,
    target: string,
    ref: (Figure & { label: string }) | null | undefined,
    checks: (m: Measurement, ratio: number | null) => Check[],
    notes: (m: Measurement) => string[] = () => [],
  ) => {
    const o: Outcome | undefined = bh[id];
    const reference = ref && Number.isFinite(ref.value) && ref.value > 0 ? ref : null;
    if (o === undefined && id === 'cli-xargs' && binding !== 'fuse3') {
      rows.push({ id, workload, blobhsm: { error: 'not measured' }, reference, ratio: null, rclone: rcl(id), target, verdict: 'n/a', notes: ['CLI start-up does not depend on the binding: measured on the first pass only'] });
      return;
    }
    if (!isMeasurement(o)) {
      rows.push({ id, workload, blobhsm: { error: o?.error ?? 'not run' }, reference, ratio: null, rclone: rcl(id), target, verdict: 'failed', notes: [] });
      return;
    }
    const ratio = reference ? o.value / reference.value : null;
    const results = checks(o, ratio);
    const failed = results.filter((c) => !c.ok);
    rows.push({
      id,
      workload,
      blobhsm: fig(o.value, o.unit),
      reference,
      ratio,
      rclone: rcl(id),
      target,
      verdict: results.length === 0 ? 'n/a' : failed.length ? 'short' : 'meets',
      requests: o.requests,
      notes: [...notes(o), ...failed.map((c) => `short: ${c.short}`)],
    });
  };
  const { sdk, disk, nullFs, nullLl } = refs;
  const peer = (id: WorkloadId) => (rc?.available ? rc.results[id] : undefined);
  // This binding's own ceiling: the C null fs for fuse3, the fuse-native one for fuse2 (shown beside the target).
  const ceiling = binding === 'fuse3' ? nullLl : nullFs;
  const ceilingName = binding === 'fuse3' ? 'C null fs' : 'fuse-native null fs';
  const vsCeiling = (m: Measurement, v: number | undefined) =>
    v === undefined || !Number.isFinite(v) ? [] : [`vs the ${ceilingName} (${fmtValue(v, m.unit)}): ${(m.value / v).toFixed(2)}×`];
  const N = p.namespaceBlobs;
  const lists = Math.ceil(N / 5000);

  add('import', `import of ${N} blobs with metadata`, `≥0.8× SDK listing; ≈${lists} list calls; 0 HEAD`,
    sdk && { ...fig(sdk.listPerSec, 'blobs/s'), label: 'SDK flat listing w/ metadata' },
    (m, r) => [atLeast(r, 0.8), { ok: reqCount(m, 'list') <= lists + 1, short: `${reqCount(m, 'list')} list calls` }, { ok: reqCount(m, 'head') === 0, short: `${reqCount(m, 'head')} HEAD requests` }],
    (m) => [`mount (incl. import) ${(Number(m.detail?.mountMs) / 1000).toFixed(1)} s; a ${p.smallNamespaceBlobs}-blob mount takes ${(Number(m.detail?.baselineMountMs) / 1000).toFixed(1)} s`]);
  const cli = bh['cli-xargs'];
  const cliFloor = isMeasurement(cli) ? Number(cli.detail?.nodeMsPerFile) : NaN;
  add('cli-xargs', `xargs -n 1 blobhsm hsm_state over ${p.cliFiles} files, per file`, '≤1.3× node -e 0; 0 requests',
    { ...fig(cliFloor, 'ms'), label: `xargs -n 1 node -e 0 × ${p.cliFiles}, per file` },
    (m, r) => [atMost(r, 1.3), zeroRequests(m)],
    (m) => [`${(Number(m.detail?.totalMs) / 1000).toFixed(1)} s for ${String(m.detail?.files)} files, node -e 0: ${(Number(m.detail?.nodeTotalMs) / 1000).toFixed(1)} s`]);
  add('lsl-cold', `ls -l of ${N} entries, fresh mount`, '≤1.0× fuse-native null fs; < rclone; 0 requests',
    nullFs && { ...fig(nullFs.lslMs, 'ms'), label: 'fuse-native null fs, fresh mount' },
    (m, r) => [atMost(r, 1.0), fasterThanRclone(m, peer('lsl-cold'), false), zeroRequests(m)],
    (m) => [...vsCeiling(m, ceiling?.lslMs), ...(nullFs ? [`the null fs saw ${JSON.stringify(nullFs.lslOps)} for one ls -l; getxattr names ${JSON.stringify(nullFs.lslXattrNames)}`] : [])]);
  add('lsl-warm', `ls -l of ${N} entries, repeated`, '≤1.0× fuse-native null fs; < rclone; 0 requests',
    nullFs && { ...fig(nullFs.lslWarmMs, 'ms'), label: 'fuse-native null fs, repeated' },
    (m, r) => [atMost(r, 1.0), fasterThanRclone(m, peer('lsl-warm'), false), zeroRequests(m)],
    (m) => vsCeiling(m, ceiling?.lslWarmMs));
  add('stat', `stat of ${p.statCount} files, uncached`, '≥1.0× fuse-native null fs; 0 requests',
    nullFs && { ...fig(nullFs.statPerSec, 'ops/s'), label: 'fuse-native null fs, fresh mount' },
    (m, r) => [atLeast(r, 1.0), zeroRequests(m)],
    (m) => vsCeiling(m, ceiling?.statPerSec));
  add('seq-cold', `cold sequential read, ${mib(p.largeBytes)}`, '≥0.8× SDK best parallel download; > rclone; fetched ≤1.05× size',
    sdk && { ...fig(sdk.downloadMiBps, 'MiB/s'), label: `SDK parallel download (${sdk.downloadPlan})` },
    (m, r) => [atLeast(r, 0.8), fasterThanRclone(m, peer('seq-cold'), true), { ok: (m.bytesFetched ?? Infinity) <= 1.05 * p.largeBytes, short: `fetched ${mib(m.bytesFetched)} for a ${mib(p.largeBytes)} file` }],
    (m) => [
      `fetched ${mib(m.bytesFetched)} in ${m.requests?.read ?? '?'} reads; first 1 MiB after ${Number(m.detail?.firstMiBMs).toFixed(0)} ms`,
      ...(sdk ? [`SDK download by range size × in flight: ${Object.entries(sdk.downloadByPlan).map(([k, v]) => `${k}: ${v.toFixed(0)}`).join(', ')} MiB/s`] : []),
      ...(disk ? [`cache-disk write ${disk.writeMiBps.toFixed(0)} MiB/s`] : []),
      ...vsCeiling(m, ceiling?.readMiBps),
    ]);
  const noMd5 = bh['seq-cold-no-md5'];
  const seqCold = bh['seq-cold'];
  add('seq-cold-no-md5', `cold sequential read, ${mib(p.largeBytes)}, --no-verify-md5`, 'verifying costs ≤5 %: the row above ≥0.95× this',
    isMeasurement(seqCold) ? { ...fig(seqCold.value, 'MiB/s'), label: 'the row above (Content-MD5 checked)' } : null,
    (m) => [{ ok: isMeasurement(seqCold) && seqCold.value >= 0.95 * m.value, short: `with the check ${isMeasurement(seqCold) ? ((seqCold.value / m.value) * 100).toFixed(0) : '?'} % of this` }]);
  add('ttfb', 'cold time to first byte (4 KiB read)', '≤1.5× one small ranged GET',
    sdk && { ...fig(sdk.rangedGet4kMs, 'ms'), label: 'SDK 4 KiB ranged GET (median)' },
    (_m, r) => [atMost(r, 1.5)],
    (m) => [
      `stat ${Number(m.detail?.statMs).toFixed(1)} ms, open ${Number(m.detail?.openMs).toFixed(1)} ms, first read ${Number(m.detail?.readMs).toFixed(1)} ms`,
      ...(sdk ? [`SDK 512 KiB ranged GET (blobhsm's first piece) median ${sdk.rangedGet512kMs.toFixed(1)} ms`] : []),
    ]);
  add('warm-page', 'warm re-read (page cache)', '≥0.8× page-cache read; 0 requests',
    disk && { ...fig(disk.pageCacheMiBps, 'MiB/s'), label: 'local page-cache read' },
    (m, r) => [atLeast(r, 0.8), zeroRequests(m)]);
  const droppedRef = disk && nullLl ? (disk.readMiBps < nullLl.readMiBps ? { v: disk.readMiBps, l: 'disk read' } : { v: nullLl.readMiBps, l: 'C null fs read' }) : undefined;
  add('warm-dropped', 'warm re-read (caches dropped)', '≥0.8× min(disk read, C null fs read); 0 requests; 1 MiB READs',
    droppedRef && { ...fig(droppedRef.v, 'MiB/s'), label: `min: ${droppedRef.l}` },
    (m, r) => [atLeast(r, 0.8), zeroRequests(m), mostly1MiB(m, 'READ')],
    (m) => [`READ sizes of a 16 MiB re-read on a --debug mount: ${m.detail?.readSizes ?? 'n/a'}`, ...(disk && nullLl ? [`disk read ${disk.readMiBps.toFixed(0)} MiB/s, C null fs read ${nullLl.readMiBps.toFixed(0)} MiB/s (READ sizes ${JSON.stringify(nullLl.readSizes)})`] : [])]);
  add('small-cold', `${p.smallFiles} small files, cold (c=${p.smallConcurrency})`, `≥0.7× SDK small GETs (c=${p.smallConcurrency})`,
    sdk && { ...fig(sdk.smallGetPerSec, 'files/s'), label: `SDK GETs/s at c=${sdk.smallGetConcurrency}` },
    (_m, r) => [atLeast(r, 0.7)],
    (m) => [`${m.requests?.read ?? '?'} blob reads`, ...(sdk ? [`SDK GETs at c=${Math.max(1, Math.floor(p.smallConcurrency / 2))}: ${sdk.smallGetHalfConcurrencyPerSec.toFixed(0)}/s`] : [])]);
  const rcWarm = rc?.available ? rc.results['small-warm'] : undefined;
  add('small-warm', `${p.smallFiles} small files, warm`, '≥10× rclone warm; 0 requests',
    isMeasurement(rcWarm) ? { ...fig(rcWarm.value, 'files/s'), label: 'rclone warm' } : null,
    (m, r) => [r === null ? { ok: false, short: 'no rclone figure to compare with' } : atLeast(r, 10), zeroRequests(m)],
    () => (nullFs ? [`null fs reads ${nullFs.smallReadPerSec.toFixed(0)} files/s`] : []));
  for (const [id, bs, ref] of [['rand4k-cold', '4 KiB', sdk?.rangedGet4kPerSec], ['rand64k-cold', '64 KiB', sdk?.rangedGet64kPerSec]] as const) {
    add(id, `random ${bs} reads, not hydrated`, 'no whole-file download per read (fetched ≤1.05× file)',
      ref !== undefined ? { ...fig(ref, 'reads/s'), label: `SDK ${bs} ranged GETs, 1 in flight` } : null,
      (m) => [{ ok: (m.bytesFetched ?? Infinity) <= 1.05 * p.largeBytes, short: `fetched ${mib(m.bytesFetched)} for ${m.detail?.reads} reads` }],
      (m) => {
        const peer = rc?.available ? rc.results[id] : undefined;
        return [
          `${m.detail?.reads} reads fetched ${mib(m.bytesFetched)} in ${m.requests?.read ?? '?'} requests; p50 ${Number(m.detail?.p50Ms).toFixed(1)} ms, p99 ${Number(m.detail?.p99Ms).toFixed(1)} ms`,
          ...(isMeasurement(peer) && peer.bytesFetched !== undefined ? [`rclone fetched ${mib(peer.bytesFetched)} for the same reads`] : []),
        ];
      });
  }
  const rcRand4k = peer('rand4k-hydrated');
  add('rand4k-hydrated', 'random 4 KiB reads, hydrated', '≥ rclone; 0 requests',
    isMeasurement(rcRand4k) ? { ...fig(rcRand4k.value, 'reads/s'), label: 'rclone' } : null,
    (m, r) => [r === null ? { ok: false, short: 'no rclone figure to compare with' } : atLeast(r, 1.0), zeroRequests(m)],
    (m) => [`p50 ${Number(m.detail?.p50Ms).toFixed(2)} ms, p99 ${Number(m.detail?.p99Ms).toFixed(2)} ms`, ...(disk ? [`local disk ${disk.rand4kPerSec.toFixed(0)} reads/s`] : [])]);
  add('rand64k-hydrated', 'random 64 KiB reads, hydrated', '0 requests (info: vs local disk)',
    disk && { ...fig(disk.rand64kPerSec, 'reads/s'), label: 'local disk random 64 KiB, caches dropped' },
    (m) => [zeroRequests(m)],
    (m) => [`p50 ${Number(m.detail?.p50Ms).toFixed(2)} ms, p99 ${Number(m.detail?.p99Ms).toFixed(2)} ms`]);
  add('write', `sequential write, ${mib(p.largeBytes)} (dd bs=1M conv=fsync)`, '≥0.9× disk write; > rclone; 1 MiB WRITEs',
    disk && { ...fig(disk.writeMiBps, 'MiB/s'), label: 'cache-disk write' },
    (m, r) => [atLeast(r, 0.9), fasterThanRclone(m, peer('write'), true), mostly1MiB(m, 'WRITE')],
    (m) => [
      `WRITE sizes of a 16 MiB dd on a --debug mount: ${m.detail?.writeSizes ?? 'n/a'}`,
      ...vsCeiling(m, ceiling?.writeMiBps),
      ...(nullLl?.writeback ? [`C null fs with writeback cache: ${nullLl.writeback.writeMiBps.toFixed(0)} MiB/s (without ${nullLl.writeMiBps.toFixed(0)})`] : []),
    ]);
  add('small-write', `${p.smallWriteFiles} new files of ${p.smallWriteBytes / 1024} KiB in 4 KiB writes`, '(info: vs the C null fs)',
    nullLl?.writeback && { ...fig(nullLl.writeback.smallWritePerSecNoWriteback, 'files/s'), label: 'C null fs' },
    () => [],
    () => (nullLl?.writeback ? [`C null fs with writeback cache: ${nullLl.writeback.smallWritePerSec.toFixed(0)} files/s`] : []));
  add('export-large', `export of the written ${mib(p.largeBytes)} file`, '≥0.8× SDK upload',
    sdk && { ...fig(sdk.uploadMiBps, 'MiB/s'), label: 'SDK upload (8 MiB blocks, c=8)' },
    (_m, r) => [atLeast(r, 0.8)],
    (m) => [`${(Number(m.detail?.ms) / 1000).toFixed(1)} s; Azurite received ${mib(m.bytesUploaded)}`]);
  const small = bh['export-dirty-small-ns'];
  add('export-dirty-large-ns', `export of ${p.dirtyFiles} dirty files in a ${N}-file namespace`, `≤1.5× the same in a ${p.smallNamespaceBlobs}-file namespace`,
    isMeasurement(small) ? { ...fig(small.value, 'ms'), label: `${p.smallNamespaceBlobs}-file namespace` } : null,
    (_m, r) => [atMost(r, 1.5)]);
  add('export-dirty-small-ns', `export of ${p.dirtyFiles} dirty files in a ${p.smallNamespaceBlobs}-file namespace`, '(reference of the row above)', null, () => []);
  return rows;
}

export function fmtFigure(f: Figure | { error: string } | null | undefined): string {
  if (!f) return '—';
  if ('error' in f) return f.error === 'unavailable' || f.error === 'not measured' ? f.error : 'failed';
  return fmtValue(f.value, f.unit);
}
