// The daemon's log (issue 9): JSON lines at the chosen level, structured fields for events, secrets scrubbed from
// messages and fields, blobfuse2's level names accepted.
import t from 'tap';
import { createDaemonLog } from '../src/daemon/logger.js';
import { parseLogLevel } from '../src/config.js';

function capture() {
  const lines: string[] = [];
  return { stream: { write: (s: string) => lines.push(s) }, records: () => lines.join('').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) };
}

t.test('JSON lines with levels, events and scrubbed secrets', async (t) => {
  const c = capture();
  const key = 'c2VjcmV0LWtleS0xMjM0NQ==';
  const { log } = createDaemonLog({ level: 'info', stream: c.stream, secrets: [key] });
  log('mounted container at http://x');
  log(`restore of /a failed: AccountKey=${key};`, { event: 'hsm_action', level: 'error', path: '/a', cause: `bad key ${key}`, bytesMoved: 5 });
  log('exported /b', { event: 'export', level: 'debug', path: '/b' });
  log('sig in a url https://h/c?sv=1&sig=abcdef123', { event: 'job', level: 'warn' });
  const records = c.records();
  t.equal(records.length, 3, 'debug is below info');
  t.match(records[0], { level: 30, msg: 'mounted container at http://x', pid: process.pid });
  t.match(records[0]!.time, /^\d{4}-\d\d-\d\dT/);
  t.match(records[1], { level: 50, event: 'hsm_action', path: '/a', bytesMoved: 5 });
  t.notMatch(JSON.stringify(records), key, 'the key appears nowhere');
  t.match(records[1]!.cause, /bad key <redacted>/);
  t.match(records[2]!.msg, /sig=<redacted>/);
});

t.test('--log-level names', async (t) => {
  t.equal(parseLogLevel('debug'), 'debug');
  t.equal(parseLogLevel('log_warning'), 'warn');
  t.throws(() => parseLogLevel('loud'), { message: /invalid --log-level 'loud': one of error, warn, info, debug/ });
});
