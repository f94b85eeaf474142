// End to end (issue 9): progress bars of export and hsm_restore --wait on a real mount of Azurite, drawn on a
// terminal (the commands run in this process through main() with an injected stderr that says isTTY) and silent
// with --json or on a pipe (the real executable as a child process).
import t from 'tap';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { main } from '../src/cli/main.js';
import type { CliIo } from '../src/cli/io.js';
import { startAzurite } from './helpers/azurite.js';
import { mountContainer } from './helpers/mount.js';

const azurite = await startAzurite();
t.teardown(() => azurite.stop());

function terminalIo(env: NodeJS.ProcessEnv): CliIo & { err: () => string; out: () => string } {
  const err: string[] = [];
  const out: string[] = [];
  return {
    stdout: { write: (s: string) => out.push(s), isTTY: false },
    stderr: { write: (s: string) => err.push(s), isTTY: true, columns: 200 } as CliIo['stderr'],
    env,
    err: () => err.join('').replace(/\x1b\[[0-9;?]*[A-Za-z]|\x1b[78]/g, ''),
    out: () => out.join(''),
  };
}

t.test('export and hsm_restore --wait draw bars on a terminal, nothing with --json or on a pipe', async (t) => {
  const blobs = Array.from({ length: 40 }, (_, i) => ({ name: `many/f${i}`, data: Buffer.alloc(64 * 1024, i) }));
  const m = await mountContainer(t, azurite, blobs);
  const w = await m.sh('cd "$MNT" && dd if=/dev/urandom of=big bs=1M count=48 status=none && echo small > small');
  t.equal(w.code, 0, w.stderr);

  const io = terminalIo(m.env);
  t.equal(await main(['export', m.mountpoint], io), 0, io.err());
  t.match(io.err(), /exporting [█░]+ 100% \| 48 MiB\/48 MiB \| [\d.]+ \S+\/s \| 2\/2 files\n$/, io.err());
  t.match(io.out(), /Succeeded: discovered 2 files/);

  const release = await m.cli(['hsm_release', ...blobs.map((b) => `${m.mountpoint}/${b.name}`)]);
  t.equal(release.code, 0, release.stderr);
  const restore = terminalIo(m.env);
  t.equal(await main(['hsm_restore', '--wait', ...blobs.map((b) => `${m.mountpoint}/${b.name}`)], restore), 0, restore.err());
  t.match(restore.err(), /restore [█░]+ 100% \| 2\.5 MiB\/2\.5 MiB \| [\d.]+ \S+\/s \| 40\/40 files\n$/, restore.err());

  const json = terminalIo(m.env);
  await m.sh('echo more > "$MNT/more"');
  t.equal(await main(['export', m.mountpoint, '--json'], json), 0);
  t.equal(json.err(), '', '--json: no bar');
  t.equal(JSON.parse(json.out()).stats.filesExported, 1);

  const piped = await m.cli(['hsm_release', `${m.mountpoint}/many/f0`]);
  t.equal(piped.code, 0);
  const pipedRestore = await m.cli(['hsm_restore', '--wait', `${m.mountpoint}/many/f0`]);
  t.equal(pipedRestore.code, 0);
  t.equal(pipedRestore.stderr, '', 'stderr is a pipe: no bar');
});

t.test('the import at the first mount draws a bar on a terminal; a remount draws none', async (t) => {
  const blobs = Array.from({ length: 25 }, (_, i) => ({ name: `d${i % 5}/f${i}`, data: 'x' }));
  const m = await mountContainer(t, azurite, blobs);
  const second = join(m.cacheDir, '..', 'second');
  mkdirSync(second);
  const args = ['mount', second, '--container', m.container, '--cache-dir', join(m.cacheDir, '..', 'cache2')];
  const first = terminalIo(m.env);
  t.equal(await main(args, first), 0, first.err());
  t.teardown(() => main(['unmount', second], terminalIo(m.env)));
  t.match(first.err(), /importing \| 25 blobs \| (?:[\d.]+|-) blobs\/s \| 25 imported\n$/, first.err());  // the rate is "-" when the whole import took under 1 ms
  t.match(first.out(), /^mounted /);
  t.equal(await main(['unmount', second], terminalIo(m.env)), 0);
  const again = terminalIo(m.env);
  t.equal(await main(args, again), 0, again.err());
  t.equal(again.err(), '', 'nothing to import: no bar');
});
