// `blobhsm list`: the mounts, their container, cache directory, daemon PID and whether the daemon is alive.
import { stateHome } from '../config.js';
import { MountRegistry } from '../control/registry.js';
import type { CliIo } from './io.js';

export function runList(io: CliIo, json = false): number {
  const mounts = new MountRegistry(stateHome(io.env)).list();
  if (json) {
    io.stdout.write(JSON.stringify(mounts) + '\n');
    return 0;
  }
  if (mounts.length === 0) {
    io.stdout.write('no blobhsm mounts\n');
    return 0;
  }
  const daemon = (m: { alive: boolean; mountpoint: string }) => (m.alive ? 'alive' : `dead (run blobhsm unmount ${m.mountpoint})`);
  const rows = [
    ['MOUNTPOINT', 'CONTAINER', 'PREFIX', 'CACHE DIR', 'PID', 'DAEMON'],
    ...mounts.map((m) => [m.mountpoint, m.container, m.prefix || '-', m.cacheDir, String(m.pid), daemon(m)]),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) io.stdout.write(r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ') + '\n');
  return 0;
}
