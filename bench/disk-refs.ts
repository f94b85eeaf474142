// Local disk references in the directory blobhsm's caches live in (same filesystem): sequential write with
// fsync (dd bs=1M), sequential read after dropping caches, page-cache read, and random reads after dropping
// caches. Every measurement runs in a child process.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Profile } from './profile.js';
import { dropCaches } from './proc.js';
import { ddWrite, randRead, seqRead } from './fs-workloads.js';

export interface DiskRefs {
  writeMiBps: number;
  readMiBps: number;
  pageCacheMiBps: number;
  rand4kPerSec: number;
  rand64kPerSec: number;
  cachesDropped: boolean;
}

export async function measureDisk(dir: string, p: Profile, log: (line: string) => void): Promise<DiskRefs> {
  const file = join(dir, 'disk-ref.bin');
  try {
    let writeMiBps = 0;
    let readMiBps = 0;
    let pageCacheMiBps = 0;
    let cachesDropped = true;
    for (let r = 0; r < p.repeats; r++) {
      rmSync(file, { force: true });
      writeMiBps = Math.max(writeMiBps, (await ddWrite(file, p.largeBytes)).MiBps);
      cachesDropped = (await dropCaches()) && cachesDropped;
      readMiBps = Math.max(readMiBps, (await seqRead(file)).MiBps);
      await seqRead(file); // make sure every page is cached
      pageCacheMiBps = Math.max(pageCacheMiBps, (await seqRead(file)).MiBps);
    }
    await dropCaches();
    const rand4k = await randRead(file, p.largeBytes, 4096, p.randomReads, 1);
    const rand64k = await randRead(file, p.largeBytes, 65536, p.randomReads, 2);
    log(
      `disk: write ${writeMiBps.toFixed(0)} MiB/s (fsync), read ${readMiBps.toFixed(0)} MiB/s (caches dropped), ` +
        `page cache ${pageCacheMiBps.toFixed(0)} MiB/s, random 4 KiB ${rand4k.perSec.toFixed(0)}/s, 64 KiB ${rand64k.perSec.toFixed(0)}/s`,
    );
    return { writeMiBps, readMiBps, pageCacheMiBps, rand4kPerSec: rand4k.perSec, rand64kPerSec: rand64k.perSec, cachesDropped };
  } finally {
    rmSync(file, { force: true });
  }
}
