// The Azure SDK as the bench uses it (references and seeding): a service client for the bench's Azurite, a
// bounded-concurrency pool, and a block blob upload with blobhsm's block size and concurrency.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import { exportMetadata } from '../src/namespace/blob-encoding.js';

/** blobhsm's upload parameters (src/blob/azure-store.ts defaults), so the SDK reference is like for like. */
export const BLOCK_SIZE = 8 * 1024 * 1024;
export const UPLOAD_CONCURRENCY = 8;

export function serviceClient(connectionString: string): BlobServiceClient {
  return BlobServiceClient.fromConnectionString(connectionString, { retryOptions: { maxTries: 4, tryTimeoutInMs: 120_000 } });
}

export function container(connectionString: string, name: string): ContainerClient {
  return serviceClient(connectionString).getContainerClient(name);
}

/** Runs fn(i) for i in [0, count) with at most `concurrency` in flight; rejects on the first failure. */
export async function pool(count: number, concurrency: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  let failed: unknown;
  const worker = async () => {
    while (failed === undefined) {
      const i = next++;
      if (i >= count) return;
      try {
        await fn(i);
      } catch (err) {
        failed ??= err;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  if (failed !== undefined) throw failed;
}

/** The small-file reference: every named file of `dir` read and sent as one Put Blob with the export metadata, at
 * `concurrency` uploads at once (bench/ingest-bench.ts, in its own process and through bench/sdk-put-files.ts). */
export async function putFiles(c: ContainerClient, dir: string, names: readonly string[], concurrency: number): Promise<void> {
  await pool(names.length, concurrency, async (i) => {
    const data = readFileSync(join(dir, names[i]!));
    await c.getBlockBlobClient(names[i]!).upload(data, data.length, { metadata: exportMetadata({ kind: 'file', uid: 0, gid: 0, mode: 0o644, mtimeMs: Date.now() }) });
  });
}

/** Uploads a buffer as a block blob (staged blocks + commit with metadata); ms taken. */
export async function uploadBuffer(c: ContainerClient, name: string, data: Buffer, metadata: Record<string, string>): Promise<number> {
  const t0 = performance.now();
  await c.getBlockBlobClient(name).uploadData(data, {
    blockSize: BLOCK_SIZE,
    concurrency: UPLOAD_CONCURRENCY,
    metadata,
    abortSignal: AbortSignal.timeout(600_000),
  });
  return performance.now() - t0;
}

/** Reads a readable stream to its end, counting bytes (the data is dropped). */
export async function drain(stream: NodeJS.ReadableStream | undefined): Promise<number> {
  if (!stream) return 0;
  let n = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) n += chunk.length;
  return n;
}
