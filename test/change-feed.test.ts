// ChangeFeedReader against a change feed written into a real Azurite (test/helpers/change-feed-writer.ts).
import t from 'tap';
import { createAzureStore } from '../src/blob/azure-store.js';
import {
  CHANGE_FEED_CONTAINER,
  ChangeFeedReader,
  ChangeFeedUnavailable,
  compareSequencers,
  segmentTime,
  type ChangeFeedCursor,
} from '../src/blob/change-feed.js';
import { startAzurite } from './helpers/azurite.js';
import { ChangeFeedWriter, segmentPath, type FeedEvent } from './helpers/change-feed-writer.js';

const azurite = await startAzurite({ inMemory: true });
t.teardown(() => azurite.stop());

const feed = createAzureStore({ container: CHANGE_FEED_CONTAINER, connectionString: azurite.connectionString, env: {}, retries: 1 });
const writer = new ChangeFeedWriter(azurite.connectionString);

const hour0 = new Date(Date.UTC(2026, 11, 1, 9));
const hour1 = new Date(Date.UTC(2026, 11, 1, 10));
let seq = 1n;
const ev = (blob: string, eventType: FeedEvent['eventType'] = 'BlobCreated', container = 'data'): FeedEvent => ({
  eventType,
  container,
  blob,
  etag: `0x8D${(seq + 100n).toString(16)}`,
  contentLength: 10,
  sequencer: seq++,
});
const names = (events: Array<{ blobName: string; eventType: string }>) => events.map((e) => `${e.eventType}:${e.blobName}`);

t.test('pure helpers', async (t) => {
  t.same(segmentTime('idx/segments/2026/12/01/0900/meta.json'), hour0);
  t.equal(segmentTime('idx/segments/2026/12/01/meta.json'), undefined);
  t.ok(compareSequencers('0000000a', 'b') < 0);
  t.ok(compareSequencers('10', '0f') > 0);
  t.equal(compareSequencers('00ff', 'FF'), 0);
});

t.test('an account without a change feed says so', async (t) => {
  const reader = new ChangeFeedReader({ feed, container: 'data' });
  await t.rejects(reader.lastConsumable(), ChangeFeedUnavailable);
});

t.test('reads, tails appends, resumes from a persisted cursor, crosses segments', async (t) => {
  await writer.init();
  const [s0, s1] = await writer.writeSegment(hour0, 2, 'Publishing');
  await writer.setLastConsumable(hour0);
  const reader = new ChangeFeedReader({ feed, container: 'data' });

  const start = await reader.cursorAt(new Date(hour0.getTime() + 20 * 60_000));
  t.ok(start, 'a cursor at the segment holding that time');
  let cursor: ChangeFeedCursor = start!;
  t.equal(cursor.segment, `idx/segments/${segmentPath(hour0)}/meta.json`);

  // Nothing written yet: no events, the cursor stays before the first chunk.
  let polled = await reader.poll(cursor);
  t.same(polled.events, []);
  cursor = polled.cursor;

  await writer.append(`${s0}00000.avro`, [ev('a.txt'), ev('dir/b.txt'), { ...ev('x'), eventType: 'Control' }]);
  await writer.append(`${s1}00000.avro`, [ev('c.txt'), ev('other.txt', 'BlobCreated', 'another-container')]);
  polled = await reader.poll(cursor);
  t.same(names(polled.events), ['BlobCreated:a.txt', 'BlobCreated:dir/b.txt', 'BlobCreated:c.txt'], 'control records and other containers skipped');
  t.equal(polled.events[0]!.contentLength, 10);
  t.match(polled.events[0]!.sequencer, /^0+1$/);
  cursor = polled.cursor;

  // A block caught half-written is not decoded until it is complete.
  const finish = await writer.appendPartial(`${s0}00000.avro`, [ev('a.txt', 'BlobDeleted')], 5);
  polled = await reader.poll(cursor);
  t.same(polled.events, [], 'a partial block yields nothing');
  cursor = polled.cursor;
  await finish();

  // The cursor is JSON the caller persists: a new reader (a restarted daemon) resumes from it.
  const persisted = JSON.parse(JSON.stringify(cursor)) as ChangeFeedCursor;
  const restarted = new ChangeFeedReader({ feed, container: 'data' });
  polled = await restarted.poll(persisted);
  t.same(names(polled.events), ['BlobDeleted:a.txt'], 'resumed without repeating or missing an event');
  cursor = polled.cursor;

  // A new chunk in a shard, then the segment is finalized and the next hour's segment starts.
  await writer.append(`${s1}00001.avro`, [ev('d.txt')]);
  await writer.writeSegment(hour0, 2, 'Finalized');
  const [n0] = await writer.writeSegment(hour1, 1, 'Publishing');
  await writer.append(`${n0}00000.avro`, [ev('e.txt', 'BlobPropertiesUpdated')]);
  polled = await restarted.poll(cursor);
  t.same(names(polled.events), ['BlobCreated:d.txt'], 'the next segment is not read before lastConsumable reaches it');
  cursor = polled.cursor;
  await writer.setLastConsumable(hour1);
  polled = await restarted.poll(cursor);
  t.same(names(polled.events), ['BlobPropertiesUpdated:e.txt']);
  t.equal(polled.cursor.segment, `idx/segments/${segmentPath(hour1)}/meta.json`);
  cursor = polled.cursor;
  polled = await restarted.poll(cursor);
  t.same(polled.events, [], 'caught up');

  // maxEvents stops inside a block and resumes at its next record.
  await writer.append(`${n0}00000.avro`, [ev('f1'), ev('f2'), ev('f3')]);
  const first = await restarted.poll(polled.cursor, 2);
  t.same(names(first.events), ['BlobCreated:f1', 'BlobCreated:f2']);
  t.equal(first.more, true);
  const rest = await restarted.poll(first.cursor, 2);
  t.same(names(rest.events), ['BlobCreated:f3']);
  t.equal(rest.more, false);
});
