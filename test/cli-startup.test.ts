// Pins what the lean `lfs` path loads (src/cli/lfs-main.ts): `find | xargs -n 1 lfs hsm_restore` starts one
// process per file, so none of the Azure SDK, SQLite, fuse-native, commander, p-queue, job, daemon or store code may
// be reached from it; main (src/cli/main.ts) loads only the modules of the command it runs. Runs the real
// executable under a resolve hook that records every module it loads. Also: where Node has V8's compile cache
// (22.1+), every command keeps it under the user's cache directory (src/cli/compile-cache.ts).
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import nodeModule from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(import.meta.dirname, '..');
const BIN = join(ROOT, 'bin/blobhsm.js');
const RECORDER = join(ROOT, 'test/helpers/import-recorder.mjs');

const base = mkdtempSync(join(tmpdir(), 'blobhsm-startup-'));
t.teardown(() => rmSync(base, { recursive: true, force: true }));

/** Runs `blobhsm ARGS` and returns the repository-relative files (or package names) it loaded. */
function loadedBy(args: string[], input?: string): { code: number | null; stderr: string; loaded: string[] } {
  const log = join(base, `imports-${Math.random().toString(36).slice(2)}.log`);
  writeFileSync(log, '');
  const { NODE_OPTIONS: _tapLoader, ...env } = process.env;
  const r = spawnSync(process.execPath, ['--import', RECORDER, BIN, ...args], {
    env: { ...env, BLOBHSM_IMPORT_LOG: log, BLOBHSM_STATE_DIR: join(base, 'state') },
    input: input ?? '',
    encoding: 'utf8',
  });
  const loaded = readFileSync(log, 'utf8')
    .split('\n')
    .filter((url) => url.startsWith('file:'))
    .map((url) => {
      const path = fileURLToPath(url).slice(ROOT.length + 1);
      const pkg = /^node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(path);
      return pkg ? `package ${pkg[1]}` : path;
    });
  return { code: r.status, stderr: r.stderr, loaded: [...new Set(loaded)].sort() };
}

/**
 * What the lean path must never load: any package, and the layers behind the daemon (mount-checks.js, a reader
 * of /proc/self/mountinfo with no imports of its own, is allowed: the registry uses it to tell a dead mount; so is
 * namespace/blob-encoding.js, pure functions that config.js takes the default modes from).
 */
const FORBIDDEN = /^package |^dist\/src\/(blob|cache|emulator|fuse|jobs|vfs)\/|^dist\/src\/daemon\/(?!mount-checks\.js)|^dist\/src\/namespace\/(?!types\.js|blob-encoding\.js)|^dist\/src\/hsm\/(coordinator|hydrator|changelog)|^dist\/src\/cli\/(main|mount-command)\.js/;

t.test('the lfs commands load no package and none of the daemon layers', async (t) => {
  const commands: { args: string[]; input?: string }[] = [
    { args: ['hsm_state', join(base, 'nowhere')] },
    { args: ['hsm', 'state', join(base, 'nowhere')] },
    { args: ['lfs', 'hsm_restore', join(base, 'nowhere')] },
    { args: ['--json', 'hsm_action', join(base, 'nowhere')] },
    { args: ['lfs', 'hsm_release', '--filelist', '-'], input: `${join(base, 'nowhere')}\n` },
    { args: ['hsm_set', '--dirty', join(base, 'nowhere')] },
    { args: ['lfs', 'find', join(base, 'nowhere'), '-type', 'f', '--hsm-state', 'released'] },
    { args: ['lfs', 'df', join(base, 'nowhere')] },
  ];
  for (const { args, input } of commands) {
    const r = loadedBy(args, input);
    t.ok(r.loaded.includes('dist/src/cli/lfs-main.js'), `${args.join(' ')}: runs the lean entry`);
    t.ok(r.loaded.includes(args.includes('find') || args.includes('df') ? 'dist/src/cli/lfs-find-command.js' : 'dist/src/cli/hsm-command.js'), `${args.join(' ')}: reaches the command`);
    t.same(r.loaded.filter((f) => FORBIDDEN.test(f)), [], `${args.join(' ')}: loads only ${r.loaded.join(', ')}`);
    t.not(r.code, 0, `${args.join(' ')}: fails for a path outside any mount (${r.stderr.trim()})`);
  }
});

t.test('the other commands still go through main (the recorder sees heavy imports)', async (t) => {
  const r = loadedBy(['--help']);
  t.equal(r.code, 0, r.stderr);
  t.ok(r.loaded.includes('dist/src/cli/main.js'));
  t.ok(r.loaded.includes('package commander'), 'commander is loaded outside the lean path');
});

t.test('a command of main loads its own modules only: version and ingest never load the mount command', async (t) => {
  const version = loadedBy(['version']);
  t.equal(version.code, 0, version.stderr);
  t.same(version.loaded.filter((f) => /^package (?!commander)|^dist\/src\/(blob|ingest|jobs|fuse)\/|^dist\/src\/daemon\/(?!mount-checks\.js)|cli\/mount-command/.test(f)), [], `version: loads only ${version.loaded.join(', ')}`);
  // A dry run of a missing source (no service asked): fails on the source, after loading what ingest runs on.
  const ingest = loadedBy(['ingest', join(base, 'nowhere'), '--container', 'abc', '--dry-run', '--json']);
  t.ok(ingest.loaded.includes('dist/src/ingest/ingester.js'), `ingest reaches the ingester (${ingest.stderr.trim()})`);
  t.same(ingest.loaded.filter((f) => /cli\/mount-command|^dist\/src\/(jobs|fuse)\/|^dist\/src\/daemon\/(?!mount-checks\.js)/.test(f)), [], 'ingest: no mount, job, FUSE or daemon module');
  const help = loadedBy(['mount', '--help']);
  t.equal(help.code, 0, help.stderr);
  t.ok(help.loaded.includes('dist/src/cli/mount-command.js'), 'mount loads its command');
});

t.test('the compile cache: under XDG_CACHE_HOME/blobhsm where Node has one (22.1+), none on Node 20, none when disabled', async (t) => {
  const { NODE_OPTIONS: _tapLoader, NODE_COMPILE_CACHE: _own, NODE_DISABLE_COMPILE_CACHE: _off, ...env } = process.env;
  const version = (cacheHome: string, extra: NodeJS.ProcessEnv = {}) => {
    const r = spawnSync(process.execPath, [BIN, 'version'], { env: { ...env, XDG_CACHE_HOME: cacheHome, ...extra }, encoding: 'utf8' });
    t.equal(r.status, 0, r.stderr);
    t.match(r.stdout, /^blobhsm \d/, 'the command still runs');
  };
  const cached = (cacheHome: string) => {
    const dir = join(cacheHome, 'blobhsm', 'compile-cache');
    // One directory per Node version and V8 flags, holding one file per module compiled.
    return existsSync(dir) ? readdirSync(dir).flatMap((v) => readdirSync(join(dir, v))) : [];
  };
  const on = join(base, 'cache-on');
  version(on);
  version(on);
  const hasCache = typeof (nodeModule as { enableCompileCache?: unknown }).enableCompileCache === 'function';
  if (hasCache) t.ok(cached(on).length >= 10, `the modules of \`version\` are cached (${cached(on).length} entries)`);
  else t.notOk(existsSync(join(on, 'blobhsm')), `Node ${process.version} has no compile cache: nothing is written`);
  const off = join(base, 'cache-off');
  version(off, { NODE_DISABLE_COMPILE_CACHE: '1' });
  t.notOk(existsSync(join(off, 'blobhsm', 'compile-cache')), 'NODE_DISABLE_COMPILE_CACHE=1 turns it off');
  const own = join(base, 'cache-own');
  version(join(base, 'cache-unused'), { NODE_COMPILE_CACHE: own });
  t.notOk(existsSync(join(base, 'cache-unused', 'blobhsm', 'compile-cache')), 'NODE_COMPILE_CACHE takes precedence');
  if (hasCache) t.ok(existsSync(own), 'and Node writes its cache there');
});
