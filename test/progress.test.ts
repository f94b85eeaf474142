// Progress bars (issue 9): drawn with cli-progress on a terminal (an injected stream with isTTY), with counts,
// bytes, rate and ETA; nothing at all on a pipe or with --json.
import t from 'tap';
import { formatBytes, formatCounts, formatRate, startProgress, type ProgressStream } from '../src/cli/progress.js';

function capture(isTTY: boolean): ProgressStream & { text: () => string } {
  const chunks: string[] = [];
  return { isTTY, columns: 160, write: (s: string) => chunks.push(s), text: () => chunks.join('') };
}
/** What a terminal shows: the text with the cursor and line escape codes removed. */
const visible = (s: string) => s.replace(/\x1b\[[0-9;?]*[A-Za-z]|\x1b[78]/g, '');

t.test('formatting: bytes, counts and rates', async (t) => {
  t.equal(formatBytes(512), '512 B');
  t.equal(formatBytes(1536), '1.5 KiB');
  t.equal(formatBytes(300 * 1024 * 1024), '300 MiB');
  t.equal(formatCounts('files', 3, 10), '3/10 files');
  t.equal(formatCounts('blobs', 12000, undefined), '12000 blobs');
  t.equal(formatCounts('bytes', 1024 * 1024, 4 * 1024 * 1024), '1.0 MiB/4.0 MiB');
  t.equal(formatRate('bytes', 10 * 1024 * 1024, 4000), '2.5 MiB/s');
  t.equal(formatRate('files', 300, 2000), '150 files/s');
  t.equal(formatRate('files', 3, 0), '- files/s');
});

t.test('a terminal gets a bar with percentage, counts, rate and ETA; the last state stays on screen', async (t) => {
  const stream = capture(true);
  let clock = 1000;
  const bar = await startProgress(stream, { label: 'exporting', unit: 'bytes', now: () => clock });
  clock = 3000;
  bar.update({ value: 4 * 1024 * 1024, total: 16 * 1024 * 1024, detail: '1/3 files' });
  clock = 5000;
  bar.update({ value: 8 * 1024 * 1024, total: 16 * 1024 * 1024, detail: '2/3 files' });
  bar.stop();
  bar.stop();
  const out = visible(stream.text());
  t.match(out, /exporting [█░]{24} 50% \| 8\.0 MiB\/16 MiB \| 2\.0 MiB\/s \| ETA \S+ \| 2\/3 files\n$/, out);
  t.ok(stream.text().includes('\x1b['), 'drawn with terminal control codes (cli-progress), in place');
});

t.test('an unknown total shows the count and rate only', async (t) => {
  const stream = capture(true);
  let clock = 0;
  const bar = await startProgress(stream, { label: 'importing', unit: 'blobs', now: () => clock });
  clock = 2000;
  bar.update({ value: 5000, detail: '4990 imported' });
  bar.stop();
  const out = visible(stream.text());
  t.match(out, /importing \| 5000 blobs \| 2500 blobs\/s \| 4990 imported\n$/, out);
  t.notMatch(out, /ETA|%/);
});

t.test('silent on a pipe and with --json', async (t) => {
  for (const [stream, json] of [[capture(false), false], [capture(true), true]] as const) {
    const bar = await startProgress(stream, { label: 'exporting', unit: 'files', json });
    bar.update({ value: 1, total: 2 });
    bar.stop();
    t.equal(stream.text(), '', `isTTY ${stream.isTTY}, json ${json}`);
  }
});
