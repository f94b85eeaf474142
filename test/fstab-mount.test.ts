// The mount(8) helper call (issue 9): which argv is one, and how SOURCE and -o map onto the mount flags.
import t from 'tap';
import { isMountHelperCall, mountHelperFlags } from '../src/cli/fstab-mount.js';

const commands = new Set(['mount', 'unmount', 'list']);

t.test('only `SOURCE /MOUNTPOINT [-o OPTIONS]` with a SOURCE that is no command is a helper call', async (t) => {
  t.ok(isMountHelperCall(['data', '/mnt/x', '-o', 'ro'], commands));
  t.ok(isMountHelperCall(['data/sub', '/mnt/x'], commands));
  t.notOk(isMountHelperCall(['mount', '/mnt/x', '-o', 'ro'], commands), 'a command');
  t.notOk(isMountHelperCall(['moutn', 'mnt'], commands), 'a relative path is a mistyped command, not a mount');
  t.notOk(isMountHelperCall(['data', '/mnt/x', '--foreground'], commands));
  t.notOk(isMountHelperCall(['--help'], commands));
});

t.test('SOURCE and -o become mount flags; mount(8) options are dropped; the rest goes to FUSE', async (t) => {
  t.same(mountHelperFlags(['data/projects/2024', '/mnt/x', '-o', 'config_file=/etc/b.yaml,cache-dir=/c,ro,noatime,_netdev,nofail,dev,suid,x-systemd.automount,max_read=65536']), {
    mountpoint: '/mnt/x',
    flags: { container: 'data', prefix: 'projects/2024', configFile: '/etc/b.yaml', cacheDir: '/c', readOnly: true, o: ['noatime', 'max_read=65536'] },
  });
  t.same(mountHelperFlags(['blobhsm', '/mnt/x', '-o', '--config-file=/etc/b.yaml,auto_export']), {
    mountpoint: '/mnt/x',
    flags: { configFile: '/etc/b.yaml', autoExport: true },
  }, "blobfuse2's --config-file= spelling; SOURCE blobhsm leaves the container to the file");
  t.throws(() => mountHelperFlags(['data', '/mnt/x', '-o', 'account_key=abc']), { message: /secrets in mount options are visible in ps and \/etc\/fstab; put account-key in the config file/ });
  t.throws(() => mountHelperFlags(['data', '/mnt/x', '-o', 'cache_dir']), { message: /-o cache_dir needs a value/ });
});
