// ChangeFeedReader: reads an account's blob change feed (the `$blobchangefeed` container) from a cursor, as the
// Azure SDKs do, without them (@azure/storage-blob-changefeed is a preview on the deprecated core-http: it goes
// anonymous from ESM and crashes resuming at the end of a chunk; DESIGN.md "Change feed").
//
// Layout it reads (all through a BlobStore bound to `$blobchangefeed`):
// - `meta/segments.json`: `lastConsumable`, the start time of the newest segment that may be read.
// - `idx/segments/YYYY/MM/DD/hhmm/meta.json`, one manifest per hourly segment: `status` (`Finalized` once complete)
//   and `chunkFilePaths` (one shard per path, `$blobchangefeed/log/NN/YYYY/MM/DD/hhmm/`).
// - Each shard holds chunk files `00000.avro`, `00001.avro`, ...: Avro object container files (append blobs that grow
//   while their segment is open). Records are ordered per blob only (a blob always lands in one shard).
//
// The cursor (segment manifest, and per shard: chunk, byte offset of the next Avro block, records of that block
// already consumed) is a plain JSON value the caller persists together with what it did with the events, so a
// crash neither loses nor repeats an event. Only whole Avro blocks are decoded: a block still being appended is read
// again on the next poll. Control records and events of other containers are skipped; the caller deduplicates
// repeated records by `sequencer` (records may repeat).
//
// Reading never lists more than the segment index and the current shards: a poll reads each shard's current chunk
// from its cursor to its end with one ranged GET (plus one small GET for the chunk's Avro header).
import { inflateRawSync } from 'node:zlib';
import avro from 'avsc';
import { normalizeEtag, type BlobStore } from './blob-store.js';
import { BlobError } from '../errors.js';

export const CHANGE_FEED_CONTAINER = '$blobchangefeed';

/** One change of a blob of the watched container. */
export interface ChangeFeedEvent {
  eventType: string;
  /** Blob name inside the container. */
  blobName: string;
  eventTime: Date;
  etag?: string;
  contentLength?: number;
  /** Orders the changes of one blob (fixed-width hex; compare with compareSequencers). */
  sequencer?: string;
}

export interface ShardCursor {
  /** Shard path inside `$blobchangefeed`, e.g. `log/00/2026/12/01/1000/`. */
  shard: string;
  /** Chunk blob name being read, or null before the first chunk. */
  chunk: string | null;
  /** Byte offset of the next Avro block to read in `chunk`. */
  blockOffset: number;
  /** Records of that block already consumed. */
  eventIndex: number;
}

export interface ChangeFeedCursor {
  /** Manifest name of the segment being read (`idx/segments/.../meta.json`). */
  segment: string;
  shards: ShardCursor[];
}

export interface ChangeFeedPoll {
  events: ChangeFeedEvent[];
  /** The cursor after these events. */
  cursor: ChangeFeedCursor;
  /** Whether the reader stopped because of `maxEvents` (poll again at once) rather than at the end of the feed. */
  more: boolean;
}

/** Thrown when the account has no readable change feed (no `$blobchangefeed` or no `meta/segments.json`). */
export class ChangeFeedUnavailable extends Error {
  constructor(reason: string, options?: { cause?: unknown }) {
    super(`the change feed is not available: ${reason}`, options);
    this.name = 'ChangeFeedUnavailable';
  }
}

const SEGMENT_INDEX = 'idx/segments/';
const HEADER_PROBE = 16 * 1024;
const MAGIC = Buffer.from('Obj\x01', 'latin1');

/** The Avro object container file's header and block records (the Avro 1.x spec), for readers and test writers. */
export const AVRO_HEADER_TYPE = avro.Type.forSchema({
  type: 'record',
  name: 'org.apache.avro.file.Header',
  fields: [
    { name: 'magic', type: { type: 'fixed', name: 'Magic', size: 4 } },
    { name: 'meta', type: { type: 'map', values: 'bytes' } },
    { name: 'sync', type: { type: 'fixed', name: 'Sync', size: 16 } },
  ],
});
export const AVRO_BLOCK_TYPE = avro.Type.forSchema({
  type: 'record',
  name: 'org.apache.avro.file.Block',
  fields: [
    { name: 'count', type: 'long' },
    { name: 'data', type: 'bytes' },
    { name: 'sync', type: { type: 'fixed', name: 'Sync', size: 16 } },
  ],
});

interface ChunkHeader {
  type: avro.Type;
  codec: string;
  sync: Buffer;
  /** Offset of the first block. */
  end: number;
}

/** Segment time from a manifest name: `idx/segments/2026/12/01/1000/meta.json` → 2026-12-01T10:00Z. */
export function segmentTime(manifest: string): Date | undefined {
  const m = /^idx\/segments\/(\d{4})\/(\d{2})\/(\d{2})\/(\d{2})(\d{2})\/meta\.json$/.exec(manifest);
  if (!m) return undefined;
  return new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5])));
}

/** Orders two sequencers of one blob (hex strings, possibly of different widths). */
export function compareSequencers(a: string, b: string): number {
  const x = a.replace(/^0+/, '').toLowerCase();
  const y = b.replace(/^0+/, '').toLowerCase();
  if (x.length !== y.length) return x.length - y.length;
  return x < y ? -1 : x > y ? 1 : 0;
}

export interface ChangeFeedReaderOptions {
  /** A store bound to the account's `$blobchangefeed` container. */
  feed: BlobStore;
  /** The watched container: events of other containers are skipped. */
  container: string;
  signal?: AbortSignal;
}

export class ChangeFeedReader {
  private readonly subjectPrefix: string;
  private readonly headers = new Map<string, ChunkHeader>();

  constructor(private readonly o: ChangeFeedReaderOptions) {
    this.subjectPrefix = `/blobServices/default/containers/${o.container}/blobs/`;
  }

  /** The newest segment start that may be read, or undefined when the feed has none yet. */
  async lastConsumable(): Promise<Date | undefined> {
    const body = await this.readJson('meta/segments.json');
    if (body === undefined) {
      throw new ChangeFeedUnavailable(`no meta/segments.json in ${CHANGE_FEED_CONTAINER}`);
    }
    const value = (body as { lastConsumable?: unknown }).lastConsumable;
    if (typeof value !== 'string' || Number.isNaN(Date.parse(value))) return undefined;
    return new Date(value);
  }

  /**
   * A cursor at the start of the first segment that may hold events at or after `time` (segments are hourly and
   * their records' times may be 15 minutes off, so it starts 15 minutes earlier). Undefined: no segment yet.
   */
  async cursorAt(time: Date): Promise<ChangeFeedCursor | undefined> {
    const from = time.getTime() - 15 * 60_000;
    const segments = await this.segments();
    let chosen: string | undefined;
    for (const s of segments) {
      const t = segmentTime(s)!.getTime();
      if (t + 3600_000 <= from) continue;
      chosen = s;
      break;
    }
    chosen ??= segments.at(-1);
    return chosen ? this.segmentStart(chosen) : undefined;
  }

  /** Reads events after `cursor`, at most about `maxEvents` (whole Avro blocks, one shard at a time). */
  async poll(cursor: ChangeFeedCursor, maxEvents = 10_000): Promise<ChangeFeedPoll> {
    const events: ChangeFeedEvent[] = [];
    let current: ChangeFeedCursor = cursor;
    const lastConsumable = await this.lastConsumable();
    for (;;) {
      const manifest = await this.manifest(current.segment);
      if (!manifest) throw new ChangeFeedUnavailable(`segment manifest ${current.segment} is missing`);
      const shards: ShardCursor[] = [];
      let drained = true;
      for (const shard of mergeShards(current.shards, manifest.shards)) {
        if (events.length >= maxEvents) {
          shards.push(shard);
          drained = false;
          continue;
        }
        const next = await this.readShard(shard, events, maxEvents);
        shards.push(next.cursor);
        if (!next.atEnd) drained = false;
      }
      current = { segment: current.segment, shards };
      if (events.length >= maxEvents) return { events, cursor: current, more: true };
      if (!drained || !manifest.finalized) return { events, cursor: current, more: false };
      // The segment is complete and read: go on to the next one that may be read.
      const next = (await this.segments()).find((s) => s > current.segment);
      const nextTime = next ? segmentTime(next) : undefined;
      if (!next || !nextTime || (lastConsumable && nextTime > lastConsumable)) return { events, cursor: current, more: false };
      current = await this.segmentStart(next);
    }
  }

  /** Manifest names of every segment, oldest first. */
  private async segments(): Promise<string[]> {
    const names: string[] = [];
    for await (const page of this.o.feed.listPages({ prefix: SEGMENT_INDEX, signal: this.o.signal })) {
      for (const b of page) if (segmentTime(b.name)) names.push(b.name);
    }
    return names.sort();
  }

  private async segmentStart(segment: string): Promise<ChangeFeedCursor> {
    const manifest = await this.manifest(segment);
    return { segment, shards: (manifest?.shards ?? []).map(freshShard) };
  }

  private async manifest(segment: string): Promise<{ finalized: boolean; shards: string[] } | undefined> {
    const body = (await this.readJson(segment)) as { status?: unknown; chunkFilePaths?: unknown } | undefined;
    if (!body) return undefined;
    const paths = Array.isArray(body.chunkFilePaths) ? body.chunkFilePaths.filter((p): p is string => typeof p === 'string') : [];
    const shards = paths.map((p) => {
      const rel = p.startsWith(`${CHANGE_FEED_CONTAINER}/`) ? p.slice(CHANGE_FEED_CONTAINER.length + 1) : p;
      return rel.endsWith('/') ? rel : `${rel}/`;
    });
    return { finalized: body.status === 'Finalized', shards };
  }

  /** Appends the shard's new events to `out`; atEnd when its last chunk is read to its current end. */
  private async readShard(
    cursor: ShardCursor,
    out: ChangeFeedEvent[],
    maxEvents: number,
  ): Promise<{ cursor: ShardCursor; atEnd: boolean }> {
    const chunks: string[] = [];
    for await (const page of this.o.feed.listPages({ prefix: cursor.shard, signal: this.o.signal })) {
      for (const b of page) if (b.name.endsWith('.avro')) chunks.push(b.name);
    }
    chunks.sort();
    let c = cursor;
    if (c.chunk === null) {
      if (chunks.length === 0) return { cursor: c, atEnd: true };
      c = { ...c, chunk: chunks[0]!, blockOffset: 0, eventIndex: 0 };
    }
    for (;;) {
      c = await this.readChunk(c, out, maxEvents);
      if (out.length >= maxEvents) return { cursor: c, atEnd: false };
      const next = chunks.find((name) => name > c.chunk!);
      if (!next) return { cursor: c, atEnd: true };
      c = { shard: c.shard, chunk: next, blockOffset: 0, eventIndex: 0 };
    }
  }

  /** Decodes the whole blocks of `cursor.chunk` from its offset; returns the cursor after the last one read. */
  private async readChunk(cursor: ShardCursor, out: ChangeFeedEvent[], maxEvents: number): Promise<ShardCursor> {
    const chunk = cursor.chunk!;
    const header = await this.header(chunk);
    if (!header) return cursor; // header not fully written yet
    const start = Math.max(cursor.blockOffset, header.end);
    const body = await this.read(chunk, start, undefined);
    let pos = 0;
    let c: ShardCursor = { ...cursor, blockOffset: start };
    while (pos < body.length && out.length < maxEvents) {
      const block = AVRO_BLOCK_TYPE.decode(body, pos);
      if (block.offset < 0) break; // a block still being appended: read it on a later poll
      const value = block.value as { count: number; data: Buffer; sync: Buffer };
      if (!value.sync.equals(header.sync)) throw new Error(`${chunk}: Avro sync marker mismatch at byte ${start + pos}`);
      const records = decodeRecords(header, value.data, value.count, chunk);
      const skip = c.eventIndex;
      const room = maxEvents - out.length;
      const take = records.slice(skip, skip + room);
      for (const r of take) {
        const event = this.toEvent(r);
        if (event) out.push(event);
      }
      if (skip + take.length < records.length) {
        // Stopped inside the block: resume at its next record.
        return { ...c, eventIndex: skip + take.length };
      }
      pos = block.offset;
      c = { ...c, blockOffset: start + pos, eventIndex: 0 };
    }
    return c;
  }

  private async header(chunk: string): Promise<ChunkHeader | undefined> {
    const known = this.headers.get(chunk);
    if (known) return known;
    let probe = HEADER_PROBE;
    for (;;) {
      const buf = await this.read(chunk, 0, probe);
      if (buf.length < MAGIC.length) return undefined;
      if (!buf.subarray(0, 4).equals(MAGIC)) throw new Error(`${chunk} is not an Avro object container file`);
      const decoded = AVRO_HEADER_TYPE.decode(buf, 0);
      if (decoded.offset < 0) {
        if (buf.length < probe) return undefined;
        probe *= 4;
        continue;
      }
      const h = decoded.value as { meta: Record<string, Buffer>; sync: Buffer };
      const schema = JSON.parse(h.meta['avro.schema']?.toString('utf8') ?? 'null');
      const header: ChunkHeader = {
        type: avro.Type.forSchema(schema, { wrapUnions: false }),
        codec: h.meta['avro.codec']?.toString('utf8') || 'null',
        sync: Buffer.from(h.sync),
        end: decoded.offset,
      };
      if (header.codec !== 'null' && header.codec !== 'deflate') throw new Error(`${chunk}: unsupported Avro codec ${header.codec}`);
      if (this.headers.size > 256) this.headers.clear();
      this.headers.set(chunk, header);
      return header;
    }
  }

  private toEvent(record: unknown): ChangeFeedEvent | undefined {
    const r = record as { eventType?: unknown; subject?: unknown; eventTime?: unknown; data?: Record<string, unknown> | null };
    if (typeof r.eventType !== 'string' || r.eventType === 'Control') return undefined;
    if (typeof r.subject !== 'string' || !r.subject.startsWith(this.subjectPrefix)) return undefined;
    const data = r.data ?? {};
    const length = data.contentLength;
    return {
      eventType: r.eventType,
      blobName: r.subject.slice(this.subjectPrefix.length),
      eventTime: new Date(typeof r.eventTime === 'string' ? r.eventTime : 0),
      etag: typeof data.etag === 'string' && data.etag ? normalizeEtag(data.etag) : undefined,
      contentLength: typeof length === 'number' ? length : typeof length === 'bigint' ? Number(length) : undefined,
      sequencer: typeof data.sequencer === 'string' ? data.sequencer : undefined,
    };
  }

  private async readJson(name: string): Promise<unknown> {
    let buf: Buffer;
    try {
      buf = await this.read(name, 0, undefined);
    } catch (err) {
      if (err instanceof BlobError && err.kind === 'NotFound') return undefined;
      throw err;
    }
    try {
      return JSON.parse(buf.toString('utf8'));
    } catch (err) {
      throw new Error(`${CHANGE_FEED_CONTAINER}/${name} is not valid JSON`, { cause: err });
    }
  }

  private async read(name: string, offset: number, length: number | undefined): Promise<Buffer> {
    const stream = await this.o.feed.readRange(name, offset, length, { signal: this.o.signal });
    const parts: Buffer[] = [];
    for await (const part of stream) parts.push(part as Buffer);
    return Buffer.concat(parts);
  }
}

function freshShard(shard: string): ShardCursor {
  return { shard, chunk: null, blockOffset: 0, eventIndex: 0 };
}

/** The cursor's shards, plus any the manifest lists that the cursor does not know yet. */
function mergeShards(known: ShardCursor[], shards: string[]): ShardCursor[] {
  const byPath = new Map(known.map((s) => [s.shard, s]));
  return shards.map((s) => byPath.get(s) ?? freshShard(s));
}

function decodeRecords(header: ChunkHeader, data: Buffer, count: number, chunk: string): unknown[] {
  const raw = header.codec === 'deflate' ? inflateRawSync(data) : data;
  const records: unknown[] = [];
  let pos = 0;
  for (let i = 0; i < count; i++) {
    const r = header.type.decode(raw, pos);
    if (r.offset < 0) throw new Error(`${chunk}: truncated Avro record ${i} of ${count}`);
    records.push(r.value);
    pos = r.offset;
  }
  return records;
}
