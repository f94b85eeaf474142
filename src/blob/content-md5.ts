// Content-MD5: the whole-blob digest Azure stores with a blob (base64 of the 16 MD5 bytes, as the service shows
// it). This module owns hashing a buffer, a local file or a growing prefix of one, and spelling digests one way.
// It never reads a blob: the stores do. (A staged upload hashes its blocks off the main thread: md5-threads.ts.)
import { createHash, type Hash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';

/** Azure's spelling of an MD5 digest: base64 of the 16 bytes (what the portal and `az` show). */
export function formatMd5(digest: Uint8Array): string {
  return Buffer.from(digest).toString('base64');
}

/** The digest a store reports (`contentMD5` bytes), or undefined when the blob has none. */
export function md5FromService(bytes: Uint8Array | undefined): string | undefined {
  return bytes && bytes.length === 16 ? formatMd5(bytes) : undefined;
}

/** The bytes to send as `blobContentMD5` for a digest in our spelling. */
export function md5ToService(md5: string): Uint8Array {
  return new Uint8Array(Buffer.from(md5, 'base64'));
}

export function md5Of(data: Uint8Array): string {
  return formatMd5(md5Bytes(data));
}

/** The 16 MD5 bytes of data. */
export function md5Bytes(data: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('md5').update(data).digest());
}

const READ_SIZE = 1024 * 1024;

/** MD5 of bytes [from, to) of an open file, added to `hash`; fails if the file ends early. */
async function hashRange(fh: FileHandle, hash: Hash, from: number, to: number, buf: Buffer): Promise<void> {
  for (let pos = from; pos < to; ) {
    const want = Math.min(buf.length, to - pos);
    const { bytesRead } = await fh.read(buf, 0, want, pos);
    if (bytesRead === 0) throw Object.assign(new Error(`the file ends at ${pos}, before ${to}`), { code: 'ESHORT' });
    hash.update(bytesRead === buf.length ? buf : buf.subarray(0, bytesRead));
    pos += bytesRead;
  }
}

/** MD5 of the first `size` bytes of a local file (the whole file when size is omitted). */
export async function md5OfFile(path: string, size?: number): Promise<string> {
  const fh = await open(path, 'r');
  try {
    const end = size ?? (await fh.stat()).size;
    const hash = createHash('md5');
    await hashRange(fh, hash, 0, end, Buffer.allocUnsafe(Math.max(1, Math.min(READ_SIZE, end))));
    return formatMd5(hash.digest());
  } finally {
    await fh.close();
  }
}

/**
 * The MD5 of a file that is filled in any order (a restore), hashed as its prefix grows: `advance(to)` hashes
 * bytes [hashed, to) from the file (they are in the page cache: just written), one pass at a time, so when the
 * last byte arrives only what follows the last contiguous prefix is left to read. `digest(size)` finishes.
 */
export class PrefixHasher {
  private readonly hash = createHash('md5');
  private hashed = 0;
  private running: Promise<void> = Promise.resolve();
  private failed: unknown;

  constructor(private readonly path: string) {}

  /** Bytes hashed so far. */
  get position(): number {
    return this.hashed;
  }

  /** Hashes the file up to `to` (bytes [0, to) must be present); calls queue behind each other. */
  advance(to: number): Promise<void> {
    this.running = this.running.then(async () => {
      if (this.failed || to <= this.hashed) return;
      try {
        const fh = await open(this.path, 'r');
        try {
          await hashRange(fh, this.hash, this.hashed, to, Buffer.allocUnsafe(Math.min(READ_SIZE, to - this.hashed)));
        } finally {
          await fh.close();
        }
        this.hashed = to;
      } catch (err) {
        this.failed = err;
      }
    });
    return this.running;
  }

  /** The digest of bytes [0, size): hashes what is left first. */
  async digest(size: number): Promise<string> {
    await this.advance(size);
    if (this.failed) throw this.failed;
    return formatMd5(this.hash.digest());
  }
}
