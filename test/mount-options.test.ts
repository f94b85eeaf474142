// The -o options check (src/fuse/mount-options.ts): what is handled by blobhsm, passed to libfuse, refused.
import t from 'tap';
import { parseMountOptions } from '../src/fuse/mount-options.js';
import { UsageError } from '../src/errors.js';

t.test('handled options set the choice; libfuse options pass unchanged, in order', async (t) => {
  t.same(parseMountOptions([]), { allowOther: false, nonempty: false, readOnly: false, debug: false, passed: [] });
  const c = parseMountOptions(['allow_other', 'noatime', 'ro', 'max_read=65536', 'default_permissions', 'nonempty', ' ', 'uid=1000']);
  t.same(c, { allowOther: true, nonempty: true, readOnly: true, debug: false, passed: ['noatime', 'max_read=65536', 'nonempty', 'uid=1000'] });
  t.equal(parseMountOptions(['debug']).debug, true);
});

t.test('unknown, misused and refused options are usage errors naming the option', async (t) => {
  const refuses = (opts: string[], pattern: RegExp) => t.throws(() => parseMountOptions(opts), { name: UsageError.name, message: pattern }, opts.join(','));
  refuses(['bogusopt'], /unknown mount option '-o bogusopt': libfuse does not know it\. Accepted: allow_other/);
  refuses(['noatime=1'], /'-o noatime=1': noatime takes no value/);
  refuses(['max_read'], /'-o max_read': max_read needs a value/);
  refuses(['max_read='], /'-o max_read=' needs a value/);
  refuses(['fsname=x'], /not allowed: blobhsm names its mounts itself/);
  refuses(['subtype=x'], /fuse\.blobhsm/);
  refuses(['suid'], /always nosuid/);
  refuses(['dev'], /always nodev/);
});
