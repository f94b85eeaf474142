// Packaging (issue 9): `npm pack` in a copy of the sources builds dist/ through prepack and ships the CLI without
// tests or benchmarks; the tarball installs with `npm install -g --prefix` (install scripts run: the addon is built)
// and its `blobhsm` mounts the emulator's demo; `blobhsm
// version` and `blobhsm completion bash` answer; docker/compose.yaml's start command creates its container on a
// fresh Azurite and mounts it.
import t from 'tap';
import { execFile, spawn } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { parse } from 'yaml';
import { startAzurite, uniqueContainerName } from './helpers/azurite.js';
import { BIN, breakMount } from './helpers/mount.js';
import { createAzureStore } from '../src/blob/azure-store.js';
import { isMounted } from '../src/daemon/mount-checks.js';

const execFileAsync = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '..');
const { NODE_OPTIONS: _tapLoader, ...env } = process.env;
const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };

t.test('blobhsm version and completion bash', async (t) => {
  const v = await execFileAsync(process.execPath, [BIN, 'version'], { env });
  t.equal(v.stdout, `blobhsm ${pkg.version}\n`);
  const dashed = await execFileAsync(process.execPath, [BIN, '--version'], { env });
  t.equal(dashed.stdout.trim(), pkg.version);
  const c = await execFileAsync(process.execPath, [BIN, 'completion', 'bash'], { env });
  // The script completes in a real bash: the commands for the first word, the mount options after `mount`.
  const complete = async (words: string[]) => {
    const script = `${c.stdout}\nCOMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _blobhsm; printf '%s\\n' "\${COMPREPLY[@]}"`;
    return (await execFileAsync('bash', ['-c', script], { env })).stdout.split('\n').filter(Boolean);
  };
  t.same(await complete(['blobhsm', 'hsm_re']), ['hsm_release', 'hsm_restore', 'hsm_remove']);
  t.ok((await complete(['blobhsm', 'mount', '--cache-'])).includes('--cache-dir'));
  t.notOk((await complete(['blobhsm', 'import', '--'])).includes('--page-size'), 'hidden options are not offered');
  const zsh = await execFileAsync(process.execPath, [BIN, 'completion', 'zsh'], { env }).catch((e: { code: number; stderr: string }) => e);
  t.not((zsh as { code: number }).code, 0);
  t.match((zsh as { stderr: string }).stderr, /only 'bash' is supported/);
});

t.test('npm pack builds dist through prepack; the tarball installs (native parts built) and mounts', async (t) => {
  const base = mkdtempSync(join(tmpdir(), 'blobhsm-pack-'));
  t.teardown(() => {
    if (isMounted(mnt)) breakMount(mnt);
    rmSync(base, { recursive: true, force: true });
  });
  const mnt = join(base, 'mnt');
  // A copy of the sources without dist/, so the packed dist/ can only come from prepack (and the build here does
  // not rewrite the dist/ other tests are running from).
  const src = join(base, 'src-copy');
  mkdirSync(src);
  for (const entry of ['package.json', 'package-lock.json', 'tsconfig.json', 'README.md', 'src', 'bin', 'test', 'bench', 'docker']) {
    if (existsSync(join(ROOT, entry))) cpSync(join(ROOT, entry), join(src, entry), { recursive: true, filter: (p) => !p.includes('/native/build') });
  }
  symlinkSync(join(ROOT, 'node_modules'), join(src, 'node_modules'));
  const packed = await execFileAsync('npm', ['pack', '--json', '--pack-destination', base], { cwd: src, env, maxBuffer: 64 << 20 });
  const [info] = JSON.parse(packed.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
  const files = info!.files.map((f) => f.path);
  t.ok(files.includes('dist/src/cli/main.js'), 'dist/ is built and shipped');
  t.ok(files.includes('bin/blobhsm.js'));
  t.ok(files.includes('bin/systemd/blobhsm@.service'), 'the systemd unit template ships');
  t.same(
    files.filter((f) => /^src\//.test(f)),
    ['src/fuse/native/binding.gyp', 'src/fuse/native/blobhsm_fuse.c'],
    'the addon sources its install script builds ship, and no TypeScript sources',
  );
  t.same(files.filter((f) => /^(test|bench|dist\/test|dist\/bench)\//.test(f)), [], 'no tests or benchmarks');

  // Installs as `npm install -g` does, into a prefix of its own, with the install scripts (the libfuse3 addon,
  // better-sqlite3): what a user gets, mounted through that package's own CLI.
  const prefix = join(base, 'prefix');
  await execFileAsync('npm', ['install', '-g', join(base, info!.filename), '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund'], {
    env,
    maxBuffer: 64 << 20,
  });
  const installed = join(prefix, 'bin', 'blobhsm');
  const v = await execFileAsync(installed, ['version'], { env });
  t.equal(v.stdout, `blobhsm ${pkg.version}\n`, 'the installed blobhsm runs from its own dist/');
  t.ok(existsSync(join(prefix, 'lib', 'node_modules', 'blobhsm', 'src', 'fuse', 'native', 'build', 'Release', 'blobhsm_fuse.node')), 'the install script built the addon');

  mkdirSync(mnt);
  const own = { ...env, BLOBHSM_STATE_DIR: join(base, 'state'), XDG_CACHE_HOME: join(base, 'cache'), XDG_DATA_HOME: join(base, 'data') };
  const mounted = await execFileAsync(installed, ['mount', mnt, '--emulator', '--demo'], { env: own });
  t.match(mounted.stdout, /^mounted demo on /);
  const line = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.includes(` ${mnt} `)) ?? '';
  t.match(line, / - fuse\.blobhsm blobhsm .*max_read=1048576/, 'served by the libfuse3 binding of the installed package');
  t.match(readFileSync(join(mnt, 'README.txt'), 'utf8'), /blobhsm demo namespace/, 'a file reads through the mount (hydrated from the emulator)');
  const off = await execFileAsync(installed, ['unmount', mnt], { env: own });
  t.match(off.stdout, /^unmounted /);
  t.notOk(isMounted(mnt));
});

t.test("docker/compose.yaml's start command creates the container on a fresh Azurite and mounts it", async (t) => {
  const azurite = await startAzurite();
  t.teardown(() => azurite.stop());
  const compose = parse(readFileSync(join(ROOT, 'docker', 'compose.yaml'), 'utf8')) as {
    services: { blobhsm: { environment: Record<string, string>; command: string[] } };
  };
  const service = compose.services.blobhsm;
  const base = mkdtempSync(join(tmpdir(), 'blobhsm-compose-'));
  const mnt = join(base, 'mnt');
  const container = uniqueContainerName('compose');
  // The command as written, with this test's mountpoint for /mnt/blob (the image's path) and its own Azurite.
  const command = service.command[0]!.replaceAll('/mnt/blob', mnt);
  const child = spawn('/bin/sh', ['-c', command], {
    cwd: ROOT,
    env: {
      ...env,
      ...service.environment,
      AZURE_STORAGE_CONNECTION_STRING: azurite.connectionString,
      AZURE_STORAGE_CONTAINER: container,
      BLOBHSM_STATE_DIR: join(base, 'state'),
      XDG_CACHE_HOME: join(base, 'cache'),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  t.teardown(async () => {
    child.kill('SIGTERM');
    await exited;
    rmSync(base, { recursive: true, force: true });
  });
  // The foreground daemon logs a JSON record "mounted ..." once the mount answers.
  await new Promise<void>((done, fail) => {
    child.stderr.on('data', () => /"msg":"mounted /.test(stderr) && done());
    void exited.then((code) => fail(new Error(`the compose command exited (${code}): ${stderr}`)));
  });
  t.ok(isMounted(mnt), 'mounted');
  const store = createAzureStore({ container, connectionString: azurite.connectionString, env: {} });
  t.equal(await store.containerExists(), true, 'the container was created');
  child.kill('SIGTERM');
  t.equal(await exited, 0, 'SIGTERM unmounts and exits 0');
  t.notOk(isMounted(mnt));
});
