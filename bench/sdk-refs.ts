// References measured with the Azure SDK on the bench's Azurite (in this driver process): parallel ranged
// download of the large blob (best of a few range sizes and concurrencies), upload with blobhsm's block size and
// concurrency, flat listing with metadata, small-GET rate at blobhsm's concurrency, and small ranged GET latency.
import type { Profile } from './profile.js';
import { MiB } from './profile.js';
import { BIG_DIR, CONTAINERS, LARGE_BLOB, fileName } from './names.js';
import { container, drain, pool, uploadBuffer } from './sdk.js';

export interface SdkRefs {
  /** Best parallel download throughput (MiB/s) and the plan that gave it ("64 MiB × 8"). */
  downloadMiBps: number;
  downloadPlan: string;
  /** Every plan tried: "4 MiB × 8" → MiB/s. The 4 MiB ones use blobhsm's hydration chunk size. */
  downloadByPlan: Record<string, number>;
  uploadMiBps: number;
  /** Blobs listed per second (flat, with metadata) and the list calls it took. */
  listPerSec: number;
  listCalls: number;
  listedBlobs: number;
  /** Small blob GETs per second at `smallConcurrency`, and at half that (blobhsm's demand lane is 4 wide). */
  smallGetPerSec: number;
  smallGetConcurrency: number;
  smallGetHalfConcurrencyPerSec: number;
  /** One 4 KiB ranged GET of the large blob: median latency (ms). */
  rangedGet4kMs: number;
  /** One 512 KiB ranged GET (blobhsm's first piece of a restore): median latency (ms). */
  rangedGet512kMs: number;
  /** Sequential ranged GETs per second (one in flight), 4 KiB and 64 KiB. */
  rangedGet4kPerSec: number;
  rangedGet64kPerSec: number;
}

async function parallelDownload(cs: string, size: number, pieceMiB: number, concurrency: number): Promise<number> {
  const PIECE = pieceMiB * MiB;
  const blob = container(cs, CONTAINERS.data).getBlobClient(LARGE_BLOB);
  const pieces = Math.ceil(size / PIECE);
  let bytes = 0;
  const t0 = performance.now();
  await pool(pieces, concurrency, async (i) => {
    const off = i * PIECE;
    const r = await blob.download(off, Math.min(PIECE, size - off), { abortSignal: AbortSignal.timeout(120_000) });
    const n = await drain(r.readableStreamBody);
    bytes += n; // after the await: `x += await y` would read x before waiting
  });
  const ms = performance.now() - t0;
  if (bytes !== size) throw new Error(`parallel download got ${bytes} of ${size} bytes`);
  return bytes / MiB / (ms / 1000);
}

async function rangedGets(cs: string, size: number, bs: number, count: number): Promise<{ medianMs: number; perSec: number }> {
  const blob = container(cs, CONTAINERS.data).getBlobClient(LARGE_BLOB);
  const lat: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    const off = Math.floor(((i * 7919) % 997) / 997 * (size / bs)) * bs;
    const s = performance.now();
    const r = await blob.download(off, bs, { abortSignal: AbortSignal.timeout(30_000) });
    await drain(r.readableStreamBody);
    lat.push(performance.now() - s);
  }
  const ms = performance.now() - t0;
  lat.sort((a, b) => a - b);
  return { medianMs: lat[Math.floor(lat.length / 2)]!, perSec: (count / ms) * 1000 };
}

export async function measureSdk(cs: string, p: Profile, data: Buffer, log: (line: string) => void): Promise<SdkRefs> {
  log('SDK: parallel ranged download of the large blob...');
  const byPlan: Record<string, number> = {};
  for (const [pieceMiB, c] of p.downloadPlans) {
    let best = 0;
    for (let r = 0; r < p.repeats; r++) best = Math.max(best, await parallelDownload(cs, p.largeBytes, pieceMiB, c));
    byPlan[`${pieceMiB} MiB × ${c}`] = best;
    log(`  ${pieceMiB} MiB ranges, ${c} in flight: ${best.toFixed(0)} MiB/s`);
  }
  const [bestPlan, bestRate] = Object.entries(byPlan).sort((a, b) => b[1] - a[1])[0]!;

  log('SDK: upload of the large buffer (8 MiB blocks, 8 in parallel)...');
  const scratch = container(cs, CONTAINERS.scratch);
  let uploadMiBps = 0;
  for (let r = 0; r < p.repeats; r++) {
    const ms = await uploadBuffer(scratch, `upload-${r}.bin`, data, {});
    uploadMiBps = Math.max(uploadMiBps, data.length / MiB / (ms / 1000));
    await scratch.getBlobClient(`upload-${r}.bin`).delete().catch(() => undefined);
  }
  log(`  ${uploadMiBps.toFixed(0)} MiB/s`);

  log('SDK: flat listing with metadata...');
  const ns = container(cs, CONTAINERS.namespace);
  let listPerSec = 0;
  let listCalls = 0;
  let listed = 0;
  for (let r = 0; r < p.repeats; r++) {
    let n = 0;
    let calls = 0;
    const t0 = performance.now();
    for await (const page of ns.listBlobsFlat({ includeMetadata: true }).byPage({ maxPageSize: 5000 })) {
      calls++;
      n += page.segment.blobItems.length;
    }
    const rate = (n / (performance.now() - t0)) * 1000;
    if (rate > listPerSec) [listPerSec, listCalls, listed] = [rate, calls, n];
  }
  log(`  ${listed} blobs in ${listCalls} calls: ${listPerSec.toFixed(0)} blobs/s`);

  log(`SDK: small blob GETs at concurrency ${p.smallConcurrency}...`);
  const count = Math.min(p.smallFiles, p.name === 'full' ? 1000 : 400);
  const smallGets = async (concurrency: number) => {
    let best = 0;
    for (let r = 0; r < p.repeats; r++) {
      const t0 = performance.now();
      await pool(count, concurrency, async (i) => {
        const res = await ns.getBlobClient(`${BIG_DIR}/${fileName(p.namespaceBlobs - 1 - i)}`).download(0, undefined, { abortSignal: AbortSignal.timeout(30_000) });
        await drain(res.readableStreamBody);
      });
      best = Math.max(best, (count / (performance.now() - t0)) * 1000);
    }
    return best;
  };
  const smallGetPerSec = await smallGets(p.smallConcurrency);
  const half = Math.max(1, Math.floor(p.smallConcurrency / 2));
  const smallGetHalfConcurrencyPerSec = await smallGets(half);
  log(`  ${smallGetPerSec.toFixed(0)} GETs/s (at ${half} in flight: ${smallGetHalfConcurrencyPerSec.toFixed(0)}/s)`);

  const r4 = await rangedGets(cs, p.largeBytes, 4096, 40);
  const r64 = await rangedGets(cs, p.largeBytes, 65536, 40);
  const r512 = await rangedGets(cs, p.largeBytes, 512 * 1024, 20);
  log(
    `SDK: ranged GET 4 KiB median ${r4.medianMs.toFixed(1)} ms (${r4.perSec.toFixed(0)}/s), 64 KiB ${r64.perSec.toFixed(0)}/s, ` +
      `512 KiB median ${r512.medianMs.toFixed(1)} ms`,
  );

  return {
    downloadMiBps: bestRate,
    downloadPlan: bestPlan,
    downloadByPlan: byPlan,
    uploadMiBps,
    listPerSec,
    listCalls,
    listedBlobs: listed,
    smallGetPerSec,
    smallGetConcurrency: p.smallConcurrency,
    smallGetHalfConcurrencyPerSec,
    rangedGet4kMs: r4.medianMs,
    rangedGet512kMs: r512.medianMs,
    rangedGet4kPerSec: r4.perSec,
    rangedGet64kPerSec: r64.perSec,
  };
}

export interface SdkDrift {
  rangedGet4kMs: [number, number];
  smallGetPerSec: [number, number];
  /** Relative change of the small-GET rate (a rate over 200 requests; the latency median is too jumpy), e.g. 0.3. */
  maxChange: number;
}

/**
 * Re-measures two cheap SDK references at the end of the run: when the machine's load changed during the run
 * (other work on the two cores), the references taken at the start no longer describe the end, and the output
 * says so.
 */
export async function measureSdkDrift(cs: string, p: Profile, start: SdkRefs): Promise<SdkDrift> {
  const r4 = await rangedGets(cs, p.largeBytes, 4096, 40);
  const ns = container(cs, CONTAINERS.namespace);
  const count = 200;
  const t0 = performance.now();
  await pool(count, p.smallConcurrency, async (i) => {
    const res = await ns.getBlobClient(`${BIG_DIR}/${fileName(p.namespaceBlobs - 1 - i)}`).download(0, undefined, { abortSignal: AbortSignal.timeout(30_000) });
    await drain(res.readableStreamBody);
  });
  const small = (count / (performance.now() - t0)) * 1000;
  const change = (a: number, b: number) => Math.abs(b - a) / Math.max(a, b);
  return {
    rangedGet4kMs: [start.rangedGet4kMs, r4.medianMs],
    smallGetPerSec: [start.smallGetPerSec, small],
    maxChange: change(start.smallGetPerSec, small),
  };
}
