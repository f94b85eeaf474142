// The demo tree `blobhsm mount --emulator --demo` seeds into an empty container: AMLFS-style metadata, directory
// stubs, an implicit directory, a few MB of files and a symlink.
import { createHash } from 'node:crypto';
import type { BlobStore } from '../blob/blob-store.js';

const STUB = { hdi_isfolder: 'true' };

function bytes(seed: string, size: number): Buffer {
  const out = Buffer.alloc(size);
  let block = createHash('sha256').update(seed).digest();
  for (let off = 0; off < size; off += block.length) {
    block.copy(out, off);
    block = createHash('sha256').update(block).digest();
  }
  return out;
}

/** A FASTA file of about `size` bytes: one header line, then 60-base lines drawn deterministically from `seed`. */
function fasta(seed: string, size: number): Buffer {
  const line = 61;
  const lines = Math.floor(size / line);
  const random = bytes(seed, lines * 60);
  const out = Buffer.alloc(lines * line);
  for (let i = 0; i < lines; i++) {
    for (let j = 0; j < 60; j++) out[i * line + j] = 'ACGT'.charCodeAt(random[i * 60 + j]! & 3);
    out[i * line + 60] = 0x0a;
  }
  return Buffer.concat([Buffer.from(`>${seed} synthetic demo sequence\n`), out]);
}

interface DemoBlob {
  name: string;
  data: Buffer;
  metadata: Record<string, string>;
}

export function demoBlobs(): DemoBlob[] {
  const meta = (owner: string, group: string, permissions: string) => ({ owner, group, permissions, modtime: '2024-03-01 12:00:00 +0000' });
  return [
    { name: 'README.txt', data: Buffer.from('This is the blobhsm demo namespace.\nEvery file starts released; reading one restores it.\n'), metadata: meta('0', '0', '0644') },
    { name: 'datasets', data: Buffer.alloc(0), metadata: { ...STUB, ...meta('1000', '1000', '0755') } },
    { name: 'datasets/genome.fa', data: fasta('genome', 4 * 1024 * 1024), metadata: meta('1000', '1000', '0644') },
    { name: 'datasets/samples.csv', data: Buffer.from('id,value\n' + Array.from({ length: 2000 }, (_, i) => `${i},${(i * 7) % 13}`).join('\n') + '\n'), metadata: meta('1000', '1000', 'rw-r--r--') },
    { name: 'datasets/latest', data: Buffer.from('genome.fa'), metadata: { ftype: 'LNK', ...meta('1000', '1000', '0777') } },
    { name: 'shared', data: Buffer.alloc(0), metadata: { ...STUB, ...meta('0', '0', '1777') } },
    { name: 'shared/notes.md', data: Buffer.from('# Notes\n\nWrite here; `blobhsm export` sends changes back.\n'), metadata: meta('root', 'wheel', '0664') },
    { name: 'results/run-1/output.bin', data: bytes('run-1', 1024 * 1024), metadata: meta('1000', '1000', '0640') },
  ];
}

/** Seeds the demo tree when nothing is under the prefix; returns the number of blobs written (0 if not empty). */
export async function seedDemo(store: BlobStore, prefix: string): Promise<number> {
  for await (const page of store.listPages({ prefix, pageSize: 1 })) {
    if (page.length > 0) return 0;
  }
  const blobs = demoBlobs();
  for (const b of blobs) await store.upload(prefix + b.name, { data: b.data }, { metadata: b.metadata, ifNoneMatch: '*' });
  return blobs.length;
}
