// Seeds the bench's containers on its Azurite with the SDK (bounded concurrency): N small blobs with blobhsm's
// metadata in one directory, the large blob, and a small namespace. The large blob's upload is timed (it is
// also an SDK upload measurement). Only the bench's own containers are created.
import { randomBytes } from 'node:crypto';
import { exportMetadata } from '../src/namespace/blob-encoding.js';
import type { Profile } from './profile.js';
import { MiB } from './profile.js';
import { BIG_DIR, CONTAINERS, LARGE_BLOB, SMALL_DIR, fileName } from './names.js';
import { container, pool, uploadBuffer } from './sdk.js';

export interface SeedResult {
  namespaceMs: number;
  namespaceBlobs: number;
  largeUploadMs: number;
  data: Buffer;
}

/** A deterministic-enough, incompressible buffer: 16 MiB of random bytes repeated. */
export function largeBuffer(bytes: number): Buffer {
  const unit = randomBytes(Math.min(bytes, 16 * MiB));
  const buf = Buffer.allocUnsafe(bytes);
  for (let off = 0; off < bytes; off += unit.length) unit.copy(buf, off, 0, Math.min(unit.length, bytes - off));
  return buf;
}

function fileMetadata(i: number): Record<string, string> {
  return exportMetadata({ kind: 'file', uid: 1000 + (i % 3), gid: 1000, mode: 0o100644, mtimeMs: 1_700_000_000_000 + i * 1000 });
}

export async function seed(cs: string, p: Profile, log: (line: string) => void): Promise<SeedResult> {
  for (const name of Object.values(CONTAINERS)) await container(cs, name).createIfNotExists();

  const ns = container(cs, CONTAINERS.namespace);
  const small = randomBytes(p.smallFileBytes);
  log(`seeding ${p.namespaceBlobs} blobs of ${p.smallFileBytes} bytes with metadata (concurrency ${p.seedConcurrency})...`);
  const t0 = performance.now();
  let done = 0;
  const progress = setInterval(() => log(`  ${done}/${p.namespaceBlobs} blobs`), 10_000);
  try {
    await pool(p.namespaceBlobs, p.seedConcurrency, async (i) => {
      await ns.getBlockBlobClient(`${BIG_DIR}/${fileName(i)}`).upload(small, small.length, {
        metadata: fileMetadata(i),
        abortSignal: AbortSignal.timeout(60_000),
      });
      done++;
    });
  } finally {
    clearInterval(progress);
  }
  const namespaceMs = performance.now() - t0;
  log(`  seeded in ${(namespaceMs / 1000).toFixed(1)} s`);

  const smallNs = container(cs, CONTAINERS.smallNamespace);
  await pool(p.smallNamespaceBlobs, 8, async (i) => {
    await smallNs.getBlockBlobClient(`${SMALL_DIR}/${fileName(i)}`).upload(small, small.length, { metadata: fileMetadata(i) });
  });

  log(`seeding the large blob (${(p.largeBytes / MiB).toFixed(0)} MiB)...`);
  const data = largeBuffer(p.largeBytes);
  const largeUploadMs = await uploadBuffer(container(cs, CONTAINERS.data), LARGE_BLOB, data, fileMetadata(0));
  return { namespaceMs, namespaceBlobs: p.namespaceBlobs, largeUploadMs, data };
}

/** Deletes the blobs under each [container, prefix] except the names in `keep`; how many went. */
export async function deleteBlobsUnder(cs: string, where: Array<[string, string]>, keep: Set<string>): Promise<number> {
  let n = 0;
  for (const [name, prefix] of where) {
    const c = container(cs, name);
    for await (const b of c.listBlobsFlat({ prefix })) {
      if (keep.has(b.name)) continue;
      await c.deleteBlob(b.name);
      n++;
    }
  }
  return n;
}
