// Help and usage errors of the command line, run in-process through main() with captured streams: every command
// answers --help with exit 0, `blobhsm help CMD`, lfs's `help` and `--list-commands` (libcfs parser layout), one
// exit status (4) for usage errors, and a path outside every mount named as such.
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { main } from '../src/cli/main.js';
import { listCommandsText } from '../src/cli/lfs-args.js';

const state = mkdtempSync(join(tmpdir(), 'blobhsm-help-'));
t.teardown(() => rmSync(state, { recursive: true, force: true }));

async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(argv, {
    stdout: { write: (s: string) => (out += s) },
    stderr: { write: (s: string) => (err += s) },
    env: { BLOBHSM_STATE_DIR: state, XDG_CACHE_HOME: state },
  });
  return { code, out, err };
}

t.test('every command answers --help with exit 0, naming the program', async (t) => {
  for (const cmd of ['mount', 'unmount', 'list', 'status', 'export', 'import', 'jobs', 'changelog', 'auto-export']) {
    const r = await run(cmd, '--help');
    t.equal(r.code, 0, `${cmd} --help`);
    t.match(r.out, new RegExp(`^Usage: blobhsm ${cmd}`), `${cmd}: usage names the program`);
    const h = await run('help', cmd);
    t.equal(h.code, 0, `help ${cmd}`);
    t.equal(h.out, r.out, `help ${cmd} prints the same`);
  }
  const top = await run('--help');
  t.equal(top.code, 0);
  t.match(top.out, /^Usage: blobhsm /);
});

t.test('the lfs commands: --help prints the usage and exits 0; blobhsm help CMD too', async (t) => {
  for (const argv of [['hsm_state', '--help'], ['hsm', 'state', '--help'], ['lfs', 'hsm_restore', '--help'], ['hsm_set', '-h'], ['help', 'hsm_state']]) {
    const r = await run(...argv);
    t.equal(r.code, 0, argv.join(' '));
    t.match(r.out, /usage: hsm[_ ]\w+ /, argv.join(' '));
    t.equal(r.err, '');
  }
  const noFile = await run('hsm_state');
  t.equal(noFile.code, 4, 'no FILE: a usage error, exit 4');
});

t.test("lfs help and lfs --list-commands as libcfs's parser prints them", async (t) => {
  const help = await run('lfs', 'help');
  t.equal(help.code, 0);
  t.equal(help.out, "usage: lfs [COMMAND] [OPTIONS]... [ARGS]\nTry 'lfs help <COMMAND>' or 'lfs --list-commands' for more information\n");
  const one = await run('lfs', 'help', 'hsm_state');
  t.equal(one.code, 0);
  t.equal(one.err, 'hsm_state: Display the HSM information for given files.\nusage: hsm_state FILE\nblobhsm options: [--filelist FILELIST] [--json]\n');
  const unknown = await run('lfs', 'help', 'setstripe');
  t.equal(unknown.code, 0);
  t.equal(unknown.err, 'setstripe: Unknown command.\n');
  const list = await run('lfs', '--list-commands');
  t.equal(list.code, 0);
  const lines = list.out.split('\n');
  t.equal(lines[0], 'find'.padEnd(20) + 'df'.padEnd(20) + 'hsm_state'.padEnd(20) + 'hsm_action'.padEnd(20), 'four names of 20 characters a line');
  t.equal(lines.at(-2), '--list-commands'.padEnd(20), 'the last line as far as it goes');
  t.equal(listCommandsText(['a-name-longer-than-twenty']), 'a-name-longer-than- \n', 'a long name is cut to 19 and a space');
  t.match((await run('lfs', 'hsm', '--list-commands')).out, /^state {15}action {14}set {17}clear {15}\n/);
});

t.test('one exit status for usage errors; a path outside every mount says so', async (t) => {
  for (const argv of [['bogus'], ['unmount'], ['mount'], ['status'], ['mount', '/x', '-o', 'bogusopt', '--container', 'abc']]) {
    const r = await run(...argv);
    t.equal(r.code, 4, `${argv.join(' ')}: exit 4`);
  }
  const outside = await run('hsm_state', '/etc/passwd');
  t.equal(outside.code, 25, 'ENOTTY, as lfs on a file of another filesystem');
  t.equal(outside.err, "lfs hsm_state: get HSM state for '/etc/passwd' failed: Inappropriate ioctl for device\nblobhsm: /etc/passwd is not inside a blobhsm mount (blobhsm list shows the mounts)\n");
});
