// An in-memory RangeStore for tests (the persistent one lives in the SQLite MetaStore).
import type { ByteRange, RangeStore } from '../namespace/types.js';

export class MemoryRangeStore implements RangeStore {
  private readonly byIno = new Map<number, { generation: number; ranges: ByteRange[] }>();
  /** addRange calls so far (tests assert persisted progress). */
  adds = 0;

  ranges(ino: number, generation: number): ByteRange[] {
    const rec = this.byIno.get(ino);
    if (!rec || rec.generation !== generation) return [];
    return rec.ranges.map(([s, e]) => [s, e] as ByteRange);
  }

  addRange(ino: number, generation: number, range: ByteRange): void {
    this.adds++;
    let rec = this.byIno.get(ino);
    if (!rec || rec.generation !== generation) {
      rec = { generation, ranges: [] };
      this.byIno.set(ino, rec);
    }
    const all = [...rec.ranges, [range[0], range[1]] as ByteRange].filter(([s, e]) => e > s).sort((a, b) => a[0] - b[0]);
    const merged: ByteRange[] = [];
    for (const [s, e] of all) {
      const last = merged[merged.length - 1];
      if (last && s <= last[1]) last[1] = Math.max(last[1], e);
      else merged.push([s, e]);
    }
    rec.ranges = merged;
  }

  clearRanges(ino: number): void {
    this.byIno.delete(ino);
  }
}
