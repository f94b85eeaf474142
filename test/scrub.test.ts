// blobhsm verify's daemon side (src/daemon/scrub.ts) on the real stack: hydrated clean files are re-hashed against
// their blob's Content-MD5; a byte changed on disk after the restore is a mismatch; released, dirty and never
// archived files are skipped, a blob without a digest is reported as unverified; each inode is checked once.
import t from 'tap';
import { openSync, writeSync, closeSync } from 'node:fs';
import { md5Of } from '../src/blob/content-md5.js';
import { MemoryBlobStore } from '../src/blob/memory-store.js';
import { scrubFiles } from '../src/daemon/scrub.js';
import { makeStack } from './helpers/stack.js';

t.test('scrub: ok, mismatch after on-disk corruption, skipped and unverified files', async (t) => {
  const store = new MemoryBlobStore();
  store.putDirect('d/nodigest.bin', 'no digest here', {}, { contentMd5: null });
  const s = await makeStack({ store, blobs: { 'd/good.bin': 'good bytes', 'd/bad.bin': 'bytes to rot', 'released.bin': 'x' } });
  t.teardown(() => s.cleanup());
  for (const p of ['/d/good.bin', '/d/bad.bin', '/d/nodigest.bin']) await s.readFile(p);
  await s.createFile('/d/new.txt', 'never archived');
  await s.settle();
  const bad = s.inode('/d/bad.bin');
  t.equal(bad.contentMd5, md5Of(Buffer.from('bytes to rot')), 'the digest came from the listing');
  // A bad sector: one byte of the cache file changes behind the filesystem's back.
  const fd = openSync(s.cache.pathFor(bad.ino, bad.generation), 'r+');
  writeSync(fd, Buffer.from('B'), 0, 1, 0);
  closeSync(fd);

  const counts = { verified: 0, unverified: 0, mismatches: 0 };
  const summary = await scrubFiles({ meta: s.meta, cache: s.cache, counts, paths: ['/'] });
  t.match(summary, { files: 5, ok: 1, mismatches: 1, unverified: 1, skipped: 2 });
  t.same(
    summary.problems.map((p) => [p.path, p.outcome, p.reason ?? p.actual]),
    [
      ['/d/bad.bin', 'mismatch', md5Of(Buffer.from('Bytes to rot'))],
      ['/d/new.txt', 'skipped', 'never archived'],
      ['/d/nodigest.bin', 'unverified', 'its blob has no Content-MD5'],
      ['/released.bin', 'skipped', 'released: no local data'],
    ],
  );
  t.equal(summary.problems[0]!.expected, bad.contentMd5);
  t.same(counts, { verified: 1, unverified: 1, mismatches: 1 }, 'counted for status');
  t.equal(s.inode('/d/bad.bin').hsmFlags, bad.hsmFlags, 'a scrub changes no state');
  const one = await scrubFiles({ meta: s.meta, cache: s.cache, counts, paths: ['/d/good.bin'] });
  t.match(one, { files: 1, ok: 1, problems: [] }, 'a single path');
  await t.rejects(scrubFiles({ meta: s.meta, cache: s.cache, counts, paths: ['/nope'] }), { code: 'ENOENT' });
});
