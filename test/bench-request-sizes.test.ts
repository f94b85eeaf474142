// The bench's reading of FUSE debug output (bench/blobhsm-workloads.ts parseRequestSizes): the READ and WRITE
// sizes the request-size targets are judged on, from libfuse's request/reply lines (libfuse 2 and 3 print both).
import t from 'tap';
import { parseRequestSizes } from '../bench/blobhsm-workloads.js';

t.test('WRITE sizes from the request lines, READ sizes from the replies to READ requests', async (t) => {
  const log = [
    'unique: 2, opcode: LOOKUP (1), nodeid: 1, insize: 52, pid: 77',
    '   unique: 2, success, outsize: 144',
    'unique: 4, opcode: WRITE (16), nodeid: 5, insize: 1048656, pid: 77',
    'write[0] 1048576 bytes to 0 flags: 0x8001', // libfuse 2's high-level line: not counted twice
    '   unique: 4, success, outsize: 24',
    'unique: 6, opcode: WRITE (16), nodeid: 5, insize: 1048656, pid: 77',
    'unique: 8, opcode: WRITE (16), nodeid: 5, insize: 4176, pid: 77',
    '   unique: 6, success, outsize: 24',
    'unique: 10, opcode: READ (15), nodeid: 5, insize: 80, pid: 0',
    'unique: 12, opcode: READ (15), nodeid: 5, insize: 80, pid: 0',
    '   unique: 12, success, outsize: 131088',
    '   unique: 10, success, outsize: 1048592',
    '   unique: 8, success, outsize: 24', // a WRITE's reply is not a READ size
    'unique: 14, opcode: READ (15), nodeid: 5, insize: 80, pid: 0',
    '   unique: 14, error: -5 (Input/output error), outsize: 16', // a failed READ has no size
  ].join('\n');
  t.same(parseRequestSizes(log), {
    writeRequests: 3,
    write4k: 1, // ≤ 4 KiB
    writeSizes: '1048576×2, 4096×1',
    readRequests: 2,
    readSizes: '131072×1, 1048576×1', // most frequent first, ties in the order seen
  });
});

t.test('a small WRITE counts as a 4 KiB write; no debug output says so', async (t) => {
  t.equal(parseRequestSizes('unique: 3, opcode: WRITE (16), nodeid: 2, insize: 1104, pid: 1').write4k, 1);
  t.same(parseRequestSizes(''), { writeRequests: 0, write4k: 0, writeSizes: 'none seen', readRequests: 0, readSizes: 'none seen' });
});
