// The peer: `rclone mount` of the same containers on the same Azurite with `--vfs-cache-mode full`, run through
// the same workloads as blobhsm where they apply. Installs Debian's rclone when missing. rclone 1.60 (Debian 12)
// cannot reach Azurite through account/key/endpoint (it builds https://ACCOUNT.ENDPOINT, so the request goes to
// the host "devstoreaccount1.http:"), so each remote is a container SAS URL signed with the emulator key.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ContainerSASPermissions, StorageSharedKeyCredential, generateBlobSASQueryParameters } from '@azure/storage-blob';
import { EMULATOR_ACCOUNT, EMULATOR_KEY } from '../src/emulator/emulator.js';
import type { Profile } from './profile.js';
import { assertRunning, breakMount, isMounted, onCleanup } from './cleanup.js';
import { dropCaches, ioDelta, procIo, run, sleep } from './proc.js';
import { ddWrite, firstByte, lsl, randRead, readMany, seqRead, statRate, writeMany } from './fs-workloads.js';
import { step, type Results } from './results.js';
import { BIG_DIR, CONTAINERS, LARGE_BLOB } from './names.js';

export interface RcloneOutcome {
  available: boolean;
  /** Why rclone was not measured (install failed, cannot talk to Azurite, ...). */
  reason?: string;
  version?: string;
  results: Results;
  notes: string[];
}

interface RcloneContext {
  profile: Profile;
  baseDir: string;
  blobEndpoint: string;
  azuritePid: number;
  log: (line: string) => void;
}

async function ensureRclone(log: (line: string) => void): Promise<{ version?: string; reason?: string }> {
  const v = await run('rclone', ['version'], { timeoutMs: 30_000 });
  if (v.code === 0) return { version: v.stdout.split('\n')[0]!.trim() };
  log('rclone is missing: apt-get install -y rclone ...');
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  let i = await run('apt-get', ['install', '-y', '-q', 'rclone'], { timeoutMs: 300_000, env });
  if (i.code !== 0) {
    await run('apt-get', ['update', '-q'], { timeoutMs: 300_000, env });
    i = await run('apt-get', ['install', '-y', '-q', 'rclone'], { timeoutMs: 300_000, env });
  }
  if (i.code !== 0) return { reason: `apt-get install rclone failed: ${(i.stderr || i.stdout).trim().split('\n').slice(-2).join(' ')}` };
  const v2 = await run('rclone', ['version'], { timeoutMs: 30_000 });
  return v2.code === 0 ? { version: v2.stdout.split('\n')[0]!.trim() } : { reason: 'rclone installed but `rclone version` fails' };
}

export function containerSasUrl(blobEndpoint: string, container: string): string {
  const cred = new StorageSharedKeyCredential(EMULATOR_ACCOUNT, EMULATOR_KEY);
  const sas = generateBlobSASQueryParameters(
    { containerName: container, permissions: ContainerSASPermissions.parse('racwdl'), expiresOn: new Date(Date.now() + 6 * 3600_000) },
    cred,
  ).toString();
  return `${blobEndpoint}/${container}?${sas}`;
}

interface RcloneMount {
  mountpoint: string;
  unmount(): Promise<void>;
}

async function mountRclone(ctx: RcloneContext, conf: string, remote: string, container: string, name: string): Promise<RcloneMount> {
  assertRunning(`an rclone mount of ${container}`);
  const mountpoint = join(ctx.baseDir, 'rclone-mnt', name);
  const cacheDir = join(ctx.baseDir, 'rclone-cache', name);
  rmSync(cacheDir, { recursive: true, force: true });
  mkdirSync(mountpoint, { recursive: true });
  mkdirSync(cacheDir, { recursive: true });
  const logFd = openSync(join(ctx.baseDir, `rclone-${name}.log`), 'a');
  let child: ChildProcess;
  try {
    child = spawn(
      'rclone',
      ['mount', `${remote}:${container}`, mountpoint, '--config', conf, '--vfs-cache-mode', 'full', '--cache-dir', cacheDir, '--log-level', 'NOTICE'],
      { stdio: ['ignore', logFd, logFd] },
    );
  } finally {
    closeSync(logFd);
  }
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const unmount = onCleanup(`rclone ${mountpoint}`, async () => {
    if (isMounted(mountpoint)) await run('fusermount', ['-u', mountpoint], { timeoutMs: 30_000 });
    if (!(await Promise.race([exited.then(() => true), sleep(30_000).then(() => false)]))) {
      child.kill('SIGTERM');
      if (!(await Promise.race([exited.then(() => true), sleep(10_000).then(() => false)]))) child.kill('SIGKILL');
    }
    if (isMounted(mountpoint)) breakMount(mountpoint);
    rmSync(cacheDir, { recursive: true, force: true });
  });
  const deadline = Date.now() + 30_000;
  while (!isMounted(mountpoint)) {
    if (child.exitCode !== null || Date.now() > deadline) {
      await unmount();
      throw new Error(`rclone mount of ${container} did not come up (see ${join(ctx.baseDir, `rclone-${name}.log`)})`);
    }
    await sleep(100);
  }
  return { mountpoint, unmount };
}

export async function runRclone(ctx: RcloneContext): Promise<RcloneOutcome> {
  const { profile: p, log } = ctx;
  const notes: string[] = [];
  const got = await ensureRclone(log);
  if (!got.version) return { available: false, reason: got.reason, results: {}, notes };
  const conf = join(ctx.baseDir, 'rclone.conf');
  writeFileSync(
    conf,
    `[ns]\ntype = azureblob\nsas_url = ${containerSasUrl(ctx.blobEndpoint, CONTAINERS.namespace)}\n\n` +
      `[data]\ntype = azureblob\nsas_url = ${containerSasUrl(ctx.blobEndpoint, CONTAINERS.data)}\n`,
    { mode: 0o600 },
  );
  const probe = await run('rclone', ['lsf', '--config', conf, '--max-depth', '1', '--low-level-retries', '1', '--retries', '1', `data:${CONTAINERS.data}`], { timeoutMs: 60_000 });
  if (probe.code !== 0 || !probe.stdout.includes(LARGE_BLOB)) {
    const why = probe.timedOut ? 'no answer within 60 s' : (probe.stderr || probe.stdout).trim().split('\n').slice(-2).join(' ');
    return { available: false, reason: `rclone cannot list the container on Azurite: ${why}`, version: got.version, results: {}, notes };
  }
  notes.push(`${got.version}; remotes are container SAS URLs on the bench's Azurite; rclone mount --vfs-cache-mode full, other options default`);
  log(`rclone: ${got.version}`);

  const results: Results = {};
  const azurite = () => procIo(ctx.azuritePid);
  const fetched = async <T>(fn: () => Promise<T>) => {
    const a0 = azurite();
    const v = await fn();
    return { v, bytes: ioDelta(a0, azurite())?.wchar ?? NaN };
  };
  const on = async <T>(remote: string, container: string, name: string, fn: (mnt: string) => Promise<T>): Promise<T> => {
    await dropCaches();
    const m = await mountRclone(ctx, conf, remote, container, name);
    try {
      return await fn(m.mountpoint);
    } finally {
      await m.unmount();
    }
  };

  log('rclone: ls -l, stat, small files...');
  await on('ns', CONTAINERS.namespace, 'ns-1', async (mnt) => {
    await step(results, 'lsl-cold', log, async () => ({ value: (await lsl(join(mnt, BIG_DIR))).ms, unit: 'ms', detail: { note: 'first ls -l lists the container' } }));
    await step(results, 'lsl-warm', log, async () => ({ value: (await lsl(join(mnt, BIG_DIR))).ms, unit: 'ms' }));
  }).catch((err) => log(`  rclone mount failed: ${(err as Error).message}`));
  await step(results, 'stat', log, () =>
    on('ns', CONTAINERS.namespace, 'ns-2', async (mnt) => ({ value: (await statRate(join(mnt, BIG_DIR), 0, p.statCount)).perSec, unit: 'ops/s' })),
  );
  await on('ns', CONTAINERS.namespace, 'ns-3', async (mnt) => {
    await step(results, 'small-cold', log, async () => {
      const r = await fetched(() => readMany(join(mnt, BIG_DIR), 0, p.smallFiles, p.smallConcurrency));
      return { value: r.v.perSec, unit: 'files/s', bytesFetched: r.bytes };
    });
    await step(results, 'small-warm', log, async () => ({ value: (await readMany(join(mnt, BIG_DIR), 0, p.smallFiles, p.smallConcurrency)).perSec, unit: 'files/s' }));
  }).catch((err) => log(`  rclone mount failed: ${(err as Error).message}`));

  log('rclone: sequential and random reads, write...');
  await on('data', CONTAINERS.data, 'data-1', async (mnt) => {
    const file = join(mnt, LARGE_BLOB);
    await step(results, 'seq-cold', log, async () => {
      const r = await fetched(() => seqRead(file, 600_000));
      return { value: r.v.MiBps, unit: 'MiB/s', bytesFetched: r.bytes, detail: { firstMiBMs: r.v.firstByteMs } };
    });
    await step(results, 'warm-page', log, async () => {
      let best = 0;
      for (let r = 0; r < Math.max(2, p.repeats); r++) best = Math.max(best, (await seqRead(file)).MiBps);
      return { value: best, unit: 'MiB/s' };
    });
    await step(results, 'warm-dropped', log, async () => {
      await dropCaches();
      return { value: (await seqRead(file)).MiBps, unit: 'MiB/s' };
    });
    for (const [id, bs, seed] of [['rand4k-hydrated', 4096, 11], ['rand64k-hydrated', 65536, 12]] as const) {
      await step(results, id, log, async () => {
        await dropCaches();
        const r = await randRead(file, p.largeBytes, bs, p.randomReads, seed);
        return { value: r.perSec, unit: 'reads/s', detail: { p50Ms: r.p50Ms, p99Ms: r.p99Ms } };
      });
    }
  }).catch((err) => log(`  rclone mount failed: ${(err as Error).message}`));
  await step(results, 'ttfb', log, () =>
    on('data', CONTAINERS.data, 'data-2', async (mnt) => ({ value: (await firstByte(join(mnt, LARGE_BLOB))).firstByteMs, unit: 'ms' })),
  );
  for (const [id, bs, seed, name] of [['rand4k-cold', 4096, 21, 'data-3'], ['rand64k-cold', 65536, 22, 'data-4']] as const) {
    await step(results, id, log, () =>
      on('data', CONTAINERS.data, name, async (mnt) => {
        const r = await fetched(() => randRead(join(mnt, LARGE_BLOB), p.largeBytes, bs, p.randomReads, seed));
        return { value: r.v.perSec, unit: 'reads/s', bytesFetched: r.bytes, detail: { p50Ms: r.v.p50Ms, p99Ms: r.v.p99Ms } };
      }),
    );
  }
  await on('data', CONTAINERS.data, 'data-5', async (mnt) => {
    await step(results, 'write', log, async () => {
      const r = await ddWrite(join(mnt, 'rclone-written.bin'), p.largeBytes, 600_000);
      return { value: r.MiBps, unit: 'MiB/s', detail: { note: 'into the VFS cache; the upload runs after close' } };
    });
    await step(results, 'small-write', log, async () => {
      const r = await writeMany(join(mnt, 'rclone-small-writes'), 's', p.smallWriteFiles, p.smallWriteBytes, 4096);
      return { value: r.perSec, unit: 'files/s' };
    });
  }).catch((err) => log(`  rclone mount failed: ${(err as Error).message}`));
  return { available: true, version: got.version, results, notes };
}
