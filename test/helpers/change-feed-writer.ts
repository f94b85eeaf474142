// Test helper: writes a blob change feed into Azurite's `$blobchangefeed` container the way Azure lays it out
// (Azurite never writes one, but stores these blobs: DESIGN.md "Change feed"): `meta/segments.json`, hourly segment
// manifests, and per-shard Avro object container files as append blobs, appended block by block.
import { randomBytes } from 'node:crypto';
import { BlobServiceClient, type ContainerClient } from '@azure/storage-blob';
import avro from 'avsc';
import { AVRO_BLOCK_TYPE, AVRO_HEADER_TYPE } from '../../src/blob/change-feed.js';

/** The event record schema (a subset of the service's schema version 4, same field names and unions). */
export const CHANGE_EVENT_SCHEMA = {
  type: 'record',
  name: 'BlobChangeEvent',
  namespace: 'com.microsoft.azure.storage.blob',
  fields: [
    { name: 'schemaVersion', type: 'int' },
    { name: 'topic', type: 'string' },
    { name: 'subject', type: 'string' },
    { name: 'eventType', type: { type: 'enum', name: 'BlobChangeEventType', symbols: ['UnspecifiedEventType', 'BlobCreated', 'BlobDeleted', 'BlobPropertiesUpdated', 'BlobSnapshotCreated', 'Control', 'BlobTierChanged', 'BlobAsyncOperationInitiated', 'BlobMetadataUpdated', 'RestorePointMarkerCreated'] } },
    { name: 'eventTime', type: 'string' },
    { name: 'id', type: 'string' },
    {
      name: 'data',
      type: {
        type: 'record',
        name: 'BlobChangeEventData',
        fields: [
          { name: 'api', type: 'string' },
          { name: 'clientRequestId', type: 'string' },
          { name: 'requestId', type: 'string' },
          { name: 'etag', type: 'string' },
          { name: 'contentType', type: 'string' },
          { name: 'contentLength', type: 'long' },
          { name: 'blobType', type: 'string' },
          { name: 'url', type: 'string' },
          { name: 'sequencer', type: 'string' },
          { name: 'storageDiagnostics', type: { type: 'map', values: 'string' } },
        ],
      },
    },
  ],
} as const;

const eventType = avro.Type.forSchema(CHANGE_EVENT_SCHEMA as never);
const headerType = AVRO_HEADER_TYPE;
const blockType = AVRO_BLOCK_TYPE;

export interface FeedEvent {
  eventType: 'BlobCreated' | 'BlobDeleted' | 'BlobPropertiesUpdated' | 'Control';
  container: string;
  blob: string;
  etag?: string;
  contentLength?: number;
  sequencer: bigint;
  eventTime?: Date;
}

/** Path parts of a segment time: `2026/12/01/1000`. */
export function segmentPath(time: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${time.getUTCFullYear()}/${p(time.getUTCMonth() + 1)}/${p(time.getUTCDate())}/${p(time.getUTCHours())}00`;
}

export class ChangeFeedWriter {
  readonly client: ContainerClient;
  private readonly syncs = new Map<string, Buffer>();

  constructor(connectionString: string) {
    this.client = BlobServiceClient.fromConnectionString(connectionString).getContainerClient('$blobchangefeed');
  }

  async init(): Promise<void> {
    await this.client.createIfNotExists();
  }

  async setLastConsumable(time: Date): Promise<void> {
    await this.putJson('meta/segments.json', { version: 0, lastConsumable: time.toISOString(), storageDiagnostics: { version: 0 } });
  }

  /** Writes (or rewrites) a segment manifest with `shards` shards; returns the shard paths. */
  async writeSegment(time: Date, shards: number, status: 'Publishing' | 'Finalized'): Promise<string[]> {
    const seg = segmentPath(time);
    const paths = Array.from({ length: shards }, (_, i) => `log/${String(i).padStart(2, '0')}/${seg}/`);
    await this.putJson(`idx/segments/${seg}/meta.json`, {
      version: 0,
      begin: time.toISOString(),
      intervalSecs: 3600,
      status,
      config: { version: 0, configVersionEtag: '0x8d7', numShards: shards, recordsFormat: 'avro', formatSchemaVersion: 4, shardDistFnVersion: 1 },
      chunkFilePaths: paths.map((p) => `$blobchangefeed/${p}`),
      storageDiagnostics: { version: 0 },
    });
    return paths;
  }

  /**
   * Opens the current hour's segment with one shard (Publishing), makes that hour the last consumable one, and
   * returns the path of the shard's chunk file number `chunk`, for append().
   */
  async openCurrentHour(chunk = 0): Promise<string> {
    const hour = new Date();
    hour.setUTCMinutes(0, 0, 0);
    const [shard] = await this.writeSegment(hour, 1, 'Publishing');
    await this.setLastConsumable(hour);
    return `${shard}${String(chunk).padStart(5, '0')}.avro`;
  }

  /** Appends one Avro block holding `events` to a chunk file (created with its header on first use). */
  async append(chunk: string, events: FeedEvent[]): Promise<void> {
    const blob = this.client.getAppendBlobClient(chunk);
    let sync = this.syncs.get(chunk);
    if (!sync) {
      sync = randomBytes(16);
      this.syncs.set(chunk, sync);
      await blob.create();
      const header = headerType.toBuffer({
        magic: Buffer.from('Obj\x01', 'latin1'),
        meta: { 'avro.schema': Buffer.from(JSON.stringify(CHANGE_EVENT_SCHEMA)), 'avro.codec': Buffer.from('null') },
        sync,
      });
      await blob.appendBlock(header, header.length);
    }
    const data = Buffer.concat(events.map((e) => eventType.toBuffer(record(e))));
    const block = blockType.toBuffer({ count: events.length, data, sync });
    await blob.appendBlock(block, block.length);
  }

  /** Appends only the first `bytes` of a block (a writer caught mid-append), then returns the rest to append. */
  async appendPartial(chunk: string, events: FeedEvent[], bytes: number): Promise<() => Promise<void>> {
    const sync = this.syncs.get(chunk);
    if (!sync) throw new Error('appendPartial needs a chunk created by append');
    const data = Buffer.concat(events.map((e) => eventType.toBuffer(record(e))));
    const block = blockType.toBuffer({ count: events.length, data, sync });
    const blob = this.client.getAppendBlobClient(chunk);
    await blob.appendBlock(block.subarray(0, bytes), bytes);
    return async () => void (await blob.appendBlock(block.subarray(bytes), block.length - bytes));
  }

  private async putJson(name: string, value: unknown): Promise<void> {
    const body = Buffer.from(JSON.stringify(value));
    await this.client.getBlockBlobClient(name).upload(body, body.length);
  }
}

function record(e: FeedEvent): unknown {
  return {
    schemaVersion: 4,
    topic: '/subscriptions/0/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/devstoreaccount1',
    subject: `/blobServices/default/containers/${e.container}/blobs/${e.blob}`,
    eventType: e.eventType,
    eventTime: (e.eventTime ?? new Date()).toISOString(),
    id: randomBytes(16).toString('hex'),
    data: {
      api: e.eventType === 'BlobDeleted' ? 'DeleteBlob' : 'PutBlob',
      clientRequestId: '',
      requestId: randomBytes(8).toString('hex'),
      etag: e.etag ?? '',
      contentType: 'application/octet-stream',
      contentLength: e.contentLength ?? 0,
      blobType: 'BlockBlob',
      url: '',
      sequencer: e.sequencer.toString(16).padStart(48, '0'),
      storageDiagnostics: { bid: '0' },
    },
  };
}
