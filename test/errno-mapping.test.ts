// The one errno mapping (src/errors.ts) in both directions: an error to its errno, and an errno number reported by
// the libfuse3 addon (a direct write that failed in C) back to its name.
import t from 'tap';
import { constants } from 'node:os';
import { FsError, errnoCodeOf, errnoCodeOfNumber, errnoOf } from '../src/errors.js';

t.test('an errno number back to its name, and through errnoOf to the same number', async (t) => {
  for (const code of ['ENOSPC', 'EIO', 'EDQUOT', 'EROFS', 'EBADF'] as const) {
    const n = constants.errno[code];
    t.equal(errnoCodeOfNumber(n), code);
    t.equal(errnoOf(Object.assign(new Error(code), { code: errnoCodeOfNumber(n) })), n);
  }
});

t.test('a number that is no errno is EIO', async (t) => {
  t.equal(errnoCodeOfNumber(0), 'EIO');
  t.equal(errnoCodeOfNumber(-28), 'EIO');
  t.equal(errnoCodeOfNumber(99_999), 'EIO');
  t.equal(errnoCodeOfNumber(1.5), 'EIO');
});

t.test('errnoCodeOf keeps an FsError code and a Node error code', async (t) => {
  t.equal(errnoCodeOf(new FsError('ENOENT', 'x')), 'ENOENT');
  t.equal(errnoCodeOf(Object.assign(new Error('full'), { code: 'ENOSPC' })), 'ENOSPC');
  t.equal(errnoCodeOf(new Error('plain')), 'EIO');
});
