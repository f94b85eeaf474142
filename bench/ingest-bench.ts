// `npm run bench:ingest [-- --files N] [--large-mib N] [--large-rounds N] [--small-rounds N] [--rsync-rounds N] [--writer-rounds N] [--no-rclone] [--only small|writers|large|rsync]`: bulk loading, on one Azurite started here
// (in memory, own loopback port), each figure held against a reference from the same run:
// - `blobhsm ingest` of the small-file set (files/s) vs single-PUT SDK uploads of the same files at the same
//   concurrency from this process, each into a fresh container (deleted once measured; one untimed SDK upload of the
//   set first: the one Azurite slows as it fills and runs cold at first), for --small-rounds rounds
//   (default 3; medians), with the same SDK loop as a process of its own (bench/sdk-put-files.ts) as a second,
//   informational figure: ingest runs between the two, whose order alternates; and vs `rclone copy` (same transfers);
// - `blobhsm ingest` of one large file (MiB/s) vs the SDK's parallel block upload of the same file from disk
//   (`uploadFile`, 8 MiB blocks, 8 in flight), with the SDK's upload of the file already in memory (`uploadData`) as
//   a second figure; the three alternate for --large-rounds rounds (default 3) and each figure is the median;
// - 8 parallel writers (dd conv=fsync of different files) into a mount vs one writer, and vs the same into the
//   cache disk, in alternating order for --writer-rounds rounds (default 3; medians), each write right after an
//   untimed one of its size on the cache disk (this VM is slow to reuse pages untouched for a while);
// - `rsync -a` of the small-file set into a mount vs into a local directory, each into a fresh directory, in
//   alternating order for --rsync-rounds rounds (default 1; medians), and a second `rsync -a` (files sent).
// `--only small` runs the small-file row alone (no large file, no mount), `--only writers` the parallel-writers
// rows alone, `--only large` the large-file row alone, `--only rsync` the rsync rows alone. Prints the rows as the
// main bench does and writes them as JSON under bench/results/.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startEmulator } from '../src/emulator/emulator.js';
import { onCleanup, runBench, startBench } from './cleanup.js';
import { procCpu, run, runOk } from './proc.js';
import { blobhsmCli, mountBlobhsm, requestDelta, type BlobhsmEnv } from './blobhsm-mount.js';
import { container, putFiles, serviceClient, BLOCK_SIZE, UPLOAD_CONCURRENCY } from './sdk.js';
import { containerSasUrl } from './rclone.js';
import { publish } from './report.js';
import { REPO, snapshotProduct } from './product.js';
import type { Row, Verdict } from './targets.js';
import type { Unit } from './results.js';

const SMALL_BYTES = 10 * 1024;
const INGEST_CONCURRENCY = 16;
const WRITERS = 8;

type Only = 'small' | 'writers' | 'large' | 'rsync';
type Options = { files: number; largeMiB: number; largeRounds: number; smallRounds: number; rsyncRounds: number; writerRounds: number; rclone: boolean; only: Only | null };

function parse(argv: string[]): Options {
  const o: Options = { files: 2000, largeMiB: 512, largeRounds: 3, smallRounds: 3, rsyncRounds: 1, writerRounds: 3, rclone: true, only: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--files') o.files = Number(argv[++i]);
    else if (a === '--large-mib') o.largeMiB = Number(argv[++i]);
    else if (a === '--large-rounds') o.largeRounds = Number(argv[++i]);
    else if (a === '--small-rounds') o.smallRounds = Number(argv[++i]);
    else if (a === '--rsync-rounds') o.rsyncRounds = Number(argv[++i]);
    else if (a === '--writer-rounds') o.writerRounds = Number(argv[++i]);
    else if (a === '--no-rclone') o.rclone = false;
    else if (a === '--only') {
      const what = argv[++i];
      if (what !== 'small' && what !== 'writers' && what !== 'large' && what !== 'rsync') {
        throw new Error(`--only takes 'small' (the small-file row alone), 'writers' (the parallel-writers rows alone), 'large' (the large-file row alone) or 'rsync' (the rsync rows alone), not '${what ?? ''}'`);
      }
      o.only = what;
    } else throw new Error(`unknown argument '${a}': --files N, --large-mib N, --large-rounds N, --small-rounds N, --rsync-rounds N, --writer-rounds N, --no-rclone, --only small|writers|large|rsync`);
  }
  const rounds = [o.largeRounds, o.smallRounds, o.rsyncRounds, o.writerRounds];
  if (!(o.files > 0 && o.largeMiB > 0 && rounds.every((r) => Number.isInteger(r) && r > 0))) {
    throw new Error('--files and --large-mib need positive numbers, --large-rounds, --small-rounds, --rsync-rounds and --writer-rounds positive integers');
  }
  return o;
}

function row(id: string, workload: string, value: number, unit: Unit, reference: { value: number; label: string } | null, target: string, verdict: (ratio: number | null) => Verdict, extra: Partial<Row> = {}): Row {
  const ratio = reference && reference.value > 0 ? value / reference.value : null;
  return {
    id: id as Row['id'],
    workload,
    blobhsm: { value, unit },
    reference: reference ? { ...reference, unit } : null,
    ratio,
    rclone: null,
    target,
    verdict: verdict(ratio),
    notes: [],
    ...extra,
  };
}
const atLeast = (k: number) => (r: number | null): Verdict => (r !== null && r >= k ? 'meets' : 'short');
const atMost = (k: number) => (r: number | null): Verdict => (r !== null && r <= k ? 'meets' : 'short');
const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
const list = (xs: number[], digits = 0) => xs.map((x) => x.toFixed(digits)).join(', ');

/**
 * The small-file ingest row: `blobhsm ingest` vs SDK single PUTs at the same concurrency, each into a fresh
 * container, `smallRounds` times in alternating order (the one Azurite slows as it fills, which would favour
 * whichever goes first); medians are reported. Then rclone copy once.
 */
async function ingestRows(o: Options, env: BlobhsmEnv, connectionString: string, blobEndpoint: string, azuritePid: number, small: string, fresh: (name: string) => Promise<string>, rows: Row[], log: (line: string) => void): Promise<void> {
  const service = serviceClient(connectionString);
  const names = Array.from({ length: o.files }, (_, i) => `f${String(i).padStart(6, '0')}`);
  const sdkRates: number[] = [];
  const sdkProcessRates: number[] = [];
  const cliWall: number[] = [];
  const cliInside: number[] = [];
  let requests: Record<string, number> = {};
  // Azurite's CPU seconds during each upload of the set (the load each figure put on the one server).
  const azurite = { sdk: [] as number[], sdkProcess: [] as number[], ingest: [] as number[] };
  // Each upload goes into a fresh container, deleted as soon as it is measured (untimed): the one in-memory Azurite
  // slows as it holds more blobs, so a figure taken beside the round's earlier uploads was slower than one taken
  // first (2026-12-01 21:44, the SDK loop three times a round, 4 rounds, containers deleted at the round's end:
  // Azurite's CPU per upload 2.9-3.7 s first, 4.1-4.9 s third; deleted after each upload: 3.0-3.4 s in every place).
  const measured = async (what: keyof typeof azurite, name: string, upload: () => Promise<void>) => {
    await fresh(name);
    const a0 = procCpu(azuritePid);
    await upload();
    const a1 = procCpu(azuritePid);
    if (a0 && a1) azurite[what].push(a1.self - a0.self);
    await service.getContainerClient(name).delete();
  };
  const sdkRound = (round: number) =>
    measured('sdk', `sdk-small-${round}`, async () => {
      const t = performance.now();
      await putFiles(container(connectionString, `sdk-small-${round}`), small, names, INGEST_CONCURRENCY);
      sdkRates.push(o.files / ((performance.now() - t) / 1000));
    });
  // The same SDK loop as a process of its own (node start, SDK load and a cold JIT, as the CLI has): informational.
  const sdkProcessRound = (round: number) =>
    measured('sdkProcess', `sdk-process-small-${round}`, async () => {
      const script = join(dirname(fileURLToPath(import.meta.url)), 'sdk-put-files.js');
      const r = await run(process.execPath, [script, small, `sdk-process-small-${round}`, String(INGEST_CONCURRENCY)], { env: { ...process.env, AZURE_STORAGE_CONNECTION_STRING: connectionString }, timeoutMs: 600_000 });
      if (r.code !== 0) throw new Error(`the SDK process failed (${r.code}): ${r.stderr}`);
      sdkProcessRates.push(o.files / (r.ms / 1000));
    });
  const ingestRound = (round: number) =>
    measured('ingest', `ingest-small-${round}`, async () => {
      const ing = await blobhsmCli(env, ['ingest', `${small}/`, '--container', `ingest-small-${round}`, '--journal', join(env.baseDir, `small-${round}.sqlite`), '--concurrency', String(INGEST_CONCURRENCY), '--json'], 600_000);
      if (ing.code !== 0) throw new Error(`ingest failed (${ing.code}): ${ing.stderr}`);
      const summary = JSON.parse(ing.stdout) as { elapsedMs: number; requests: Record<string, number> };
      cliWall.push(o.files / (ing.ms / 1000));
      cliInside.push(o.files / (summary.elapsedMs / 1000));
      requests = summary.requests;
    });
  // One untimed upload of the set first: a fresh Azurite (and this process's SDK) run cold at first, and the first
  // round's first figure paid for it (21:46: Azurite's CPU 4.5 s for that upload, 3.0-3.4 s for each later one).
  log('small files, warm-up (untimed SDK upload of the set)');
  await measured('sdk', 'warm-up-small', () => putFiles(container(connectionString, 'warm-up-small'), small, names, INGEST_CONCURRENCY));
  azurite.sdk.length = 0;
  for (let round = 1; round <= o.smallRounds; round++) {
    // Ingest between the two SDK figures; which of them goes first alternates.
    log(`small files, round ${round}/${o.smallRounds} (${round % 2 ? 'SDK first' : 'SDK process first'}):`);
    await (round % 2 ? sdkRound : sdkProcessRound)(round);
    await ingestRound(round);
    await (round % 2 ? sdkProcessRound : sdkRound)(round);
    log(`  SDK ${sdkRates.at(-1)!.toFixed(0)} files/s (as its own process ${sdkProcessRates.at(-1)!.toFixed(0)}), ingest ${cliWall.at(-1)!.toFixed(0)} files/s (${cliInside.at(-1)!.toFixed(0)} inside the run)`);
  }
  const ingRate = median(cliWall);
  const smallRow = row('ingest-small', `ingest of ${o.files} small files (c=${INGEST_CONCURRENCY})`, ingRate, 'files/s', { value: median(sdkRates), label: `SDK single PUTs, c=${INGEST_CONCURRENCY}` }, '≥0.9× SDK at equal concurrency; faster than rclone copy', atLeast(0.9), { requests });
  smallRow.notes.push(
    `medians of ${o.smallRounds} rounds in alternating order; wall time of the CLI process (node start included): ${list(cliWall)} files/s; inside the run ${list(cliInside)} (median ${median(cliInside).toFixed(0)})`,
    `SDK single PUTs: ${list(sdkRates)} files/s`,
    `the same SDK loop as a process of its own (node start, SDK load, cold JIT; informational): ${list(sdkProcessRates)} files/s (median ${median(sdkProcessRates).toFixed(0)}; ingest ${(ingRate / median(sdkProcessRates)).toFixed(2)}× it)`,
  );
  if (azurite.ingest.length > 0) smallRow.notes.push(`Azurite's CPU per upload of the set: SDK ${list(azurite.sdk, 2)} s; ingest ${list(azurite.ingest, 2)} s; SDK process ${list(azurite.sdkProcess, 2)} s`);
  if (o.rclone && (await run('rclone', ['version'], { timeoutMs: 30_000 })).code === 0) {
    await fresh('rclone-small');
    const conf = join(env.baseDir, 'rclone.conf');
    writeFileSync(conf, `[az]\ntype = azureblob\nsas_url = ${containerSasUrl(blobEndpoint, 'rclone-small')}\n`);
    const rc = await run('rclone', ['--config', conf, 'copy', small, 'az:rclone-small', '--transfers', String(INGEST_CONCURRENCY), '--checkers', String(INGEST_CONCURRENCY)], { timeoutMs: 600_000 });
    if (rc.code === 0) {
      smallRow.rclone = { value: o.files / (rc.ms / 1000), unit: 'files/s' };
      if (smallRow.verdict === 'meets' && smallRow.rclone.value > ingRate) smallRow.verdict = 'short';
    } else smallRow.rclone = { error: `rclone copy exit ${rc.code}: ${rc.stderr.trim().split('\n').pop()}` };
  } else smallRow.notes.push('rclone not measured');
  rows.push(smallRow);
}


/**
 * The large-file row: `blobhsm ingest` vs the SDK's `uploadFile` of the same file (it reads the file inside its
 * clock, as ingest must), and the SDK's `uploadData` of the file read into memory before its clock starts (a second,
 * informational figure). Neither SDK upload computes an MD5; ingest computes two (the blob's Content-MD5, each
 * block's transactional MD5) on its hashing threads. The three alternate, `largeRounds` times; medians are reported.
 */
async function largeFileRow(o: Options, env: BlobhsmEnv, connectionString: string, azuritePid: number, largeDir: string, fresh: (name: string) => Promise<string>, rows: Row[], log: (line: string) => void): Promise<void> {
  const path = join(largeDir, 'large.bin');
  const rate = (ms: number) => o.largeMiB / (ms / 1000);
  const fromFile: number[] = [];
  const fromMemory: number[] = [];
  const cliWall: number[] = [];
  const cliInside: number[] = [];
  // CPU seconds of each upload: the uploading client's (the SDK runs in this process, ingest in a child) and Azurite's.
  const cpu = { sdkFile: [] as UploadCpu[], ingest: [] as UploadCpu[] };
  const measured = async <T>(client: 'self' | 'children', into: UploadCpu[], upload: () => Promise<T>): Promise<T> => {
    const [a0, c0, t0] = [procCpu(azuritePid), procCpu('self'), performance.now()];
    const result = await upload();
    const [a1, c1, wallS] = [procCpu(azuritePid), procCpu('self'), (performance.now() - t0) / 1000];
    if (a0 && a1 && c0 && c1) into.push({ client: c1[client] - c0[client], azurite: a1.self - a0.self, wallS });
    return result;
  };
  let requests: Record<string, number> = {};
  for (let round = 1; round <= o.largeRounds; round++) {
    log(`large file, round ${round}/${o.largeRounds}:`);
    const byFile = container(connectionString, await fresh(`sdk-large-file-${round}`));
    let t = performance.now();
    await measured('self', cpu.sdkFile, () => byFile.getBlockBlobClient('large.bin').uploadFile(path, { blockSize: BLOCK_SIZE, concurrency: UPLOAD_CONCURRENCY }));
    fromFile.push(rate(performance.now() - t));
    const largeData = readFileSync(path);
    const byData = container(connectionString, await fresh(`sdk-large-data-${round}`));
    t = performance.now();
    await byData.getBlockBlobClient('large.bin').uploadData(largeData, { blockSize: BLOCK_SIZE, concurrency: UPLOAD_CONCURRENCY });
    fromMemory.push(rate(performance.now() - t));
    const name = await fresh(`ingest-large-${round}`);
    const ing = await measured('children', cpu.ingest, () => blobhsmCli(env, ['ingest', path, '--container', name, '--journal', join(env.baseDir, `large-${round}.sqlite`), '--json'], 600_000));
    if (ing.code !== 0) throw new Error(`ingest failed (${ing.code}): ${ing.stderr}`);
    const summary = JSON.parse(ing.stdout) as { elapsedMs: number; requests: Record<string, number> };
    cliWall.push(rate(ing.ms));
    cliInside.push(rate(summary.elapsedMs));
    requests = summary.requests;
    log(`  SDK uploadFile ${fromFile.at(-1)!.toFixed(0)} MiB/s, SDK uploadData ${fromMemory.at(-1)!.toFixed(0)} MiB/s, ingest ${cliWall.at(-1)!.toFixed(0)} MiB/s (${cliInside.at(-1)!.toFixed(0)} inside the run)`);
  }
  const value = median(cliWall);
  const largeRow = row('ingest-large', `ingest of a ${o.largeMiB} MiB file`, value, 'MiB/s', { value: median(fromFile), label: 'SDK uploadFile of the same file, 8 MiB blocks, c=8' }, '≥0.9× SDK parallel upload', atLeast(0.9), { requests });
  largeRow.notes.push(
    `medians of ${o.largeRounds} alternating rounds; wall time of the CLI process (node start included): ${list(cliWall)} MiB/s; inside the run ${list(cliInside)} (median ${median(cliInside).toFixed(0)})`,
    `SDK uploadFile: ${list(fromFile)} MiB/s`,
    `SDK uploadData of the file read into memory before its clock starts: ${list(fromMemory)} MiB/s (median ${median(fromMemory).toFixed(0)}; ${(value / median(fromMemory)).toFixed(2)}× it)`,
    'neither SDK upload computes an MD5; ingest computes the blob\'s Content-MD5 and each block\'s transactional MD5',
  );
  const cpuNote = cpuBound(cpu.sdkFile, cpu.ingest);
  if (cpuNote) largeRow.notes.push(cpuNote);
  rows.push(largeRow);
}

/** CPU seconds of one upload: the uploading client's and Azurite's, over its wall time. */
type UploadCpu = { client: number; azurite: number; wallS: number };

/**
 * What the CPU the uploads used allows on 2 cores: an upload's wall time is at least (client + Azurite CPU) / 2
 * (both on the 2 cores, nothing else running). The ratio of ingest's floor to uploadFile's is the ratio ingest could
 * reach by using the cores as well as the SDK does. Medians of the rounds.
 */
function cpuBound(sdk: UploadCpu[], ingest: UploadCpu[]): string | undefined {
  if (sdk.length === 0 || ingest.length === 0) return undefined;
  const m = (xs: UploadCpu[], k: keyof UploadCpu) => median(xs.map((x) => x[k]));
  const [sc, sa, sw] = [m(sdk, 'client'), m(sdk, 'azurite'), m(sdk, 'wallS')];
  const [ic, ia, iw] = [m(ingest, 'client'), m(ingest, 'azurite'), m(ingest, 'wallS')];
  const [sdkFloor, ingestFloor] = [(sc + sa) / 2, (ic + ia) / 2];
  return (
    `CPU per upload (medians): uploadFile ${sc.toFixed(2)} s in the client + ${sa.toFixed(2)} s in Azurite over ${sw.toFixed(2)} s of wall time (floor on 2 cores ${sdkFloor.toFixed(2)} s, ${((100 * sdkFloor) / sw).toFixed(0)} % of it); ` +
    `ingest ${ic.toFixed(2)} s in the CLI + ${ia.toFixed(2)} s in Azurite over ${iw.toFixed(2)} s (floor ${ingestFloor.toFixed(2)} s, ${((100 * ingestFloor) / iw).toFixed(0)} %); ` +
    `using the cores as well as uploadFile does, ingest would reach ${(sdkFloor / ingestFloor).toFixed(2)}× it`
  );
}

async function main(): Promise<number> {
  const o = parse(process.argv.slice(2));
  const { started, t0, log, baseDir } = startBench('ingest');
  snapshotProduct(join(baseDir, 'product'));
  const emu = await startEmulator({ dataDir: join(baseDir, 'azurite'), inMemory: true });
  onCleanup('Azurite', () => emu.stop(5000));
  const env: BlobhsmEnv = { baseDir, connectionString: emu.connectionString };
  const loadStart = loadavg()[0]!;
  log(`Azurite on ${emu.blobEndpoint}; ${o.files} small files of ${SMALL_BYTES} bytes, large file ${o.largeMiB} MiB; load ${loadStart.toFixed(1)}`);

  // The source trees.
  const small = join(baseDir, 'src-small');
  mkdirSync(small);
  for (let i = 0; i < o.files; i++) writeFileSync(join(small, `f${String(i).padStart(6, '0')}`), Buffer.alloc(SMALL_BYTES, i & 0xff));
  const largeDir = join(baseDir, 'src-large');
  mkdirSync(largeDir);
  if (o.only !== 'rsync' && o.only !== 'small') await runOk('dd', ['if=/dev/urandom', `of=${join(largeDir, 'large.bin')}`, 'bs=1M', `count=${o.largeMiB}`, 'status=none'], { timeoutMs: 300_000 });
  const service = serviceClient(emu.connectionString);
  const fresh = async (name: string) => {
    await service.getContainerClient(name).create();
    return name;
  };
  const rows: Row[] = [];

  if (o.only === null || o.only === 'small') await ingestRows(o, env, emu.connectionString, emu.blobEndpoint, emu.pid, small, fresh, rows, log);
  if (o.only === null || o.only === 'large') await largeFileRow(o, env, emu.connectionString, emu.pid, largeDir, fresh, rows, log);
  const finish = (binding: string) => {
    const elapsedS = (performance.now() - t0) / 1000;
    publish({ title: `blobhsm ingest bench (mount rows on ${binding})`, profile: 'ingest', repoRoot: REPO, started, elapsedS, loadStart, rows, rcloneNote: o.rclone ? 'rclone copy (same transfers)' : 'skipped', data: { options: o, binding } });
    return 0;
  };
  if (o.only === 'large' || o.only === 'small') return finish('no mount');
  await fresh('writers');
  const m = await mountBlobhsm(env, 'writers', 'writers', 'writers');
  let binding = 'unknown binding';
  try {
    // The daemon's log names the binding it mounted with (`--fuse auto` falls back to fuse-native without the addon).
    binding = (m.logPath && / with (fuse\w+) /.exec(readFileSync(m.logPath, 'utf8'))?.[1]) || binding;
    log(`  mounted with ${binding}`);
    if (o.only === null || o.only === 'writers') await writerRows(m.mountpoint, baseDir, join(largeDir, 'large.bin'), o, rows, log);
    if (o.only === null || o.only === 'rsync') await rsyncRows(o, m, small, baseDir, rows, log);
  } finally {
    await m.unmount();
  }
  return finish(binding);
}

/** 8 parallel writers (dd conv=fsync of different files) into the mount vs one, and vs the same into the cache disk. */
async function writerRows(mountpoint: string, baseDir: string, source: string, o: Options, rows: Row[], log: (line: string) => void): Promise<void> {
  const each = Math.max(1, Math.floor(o.largeMiB / WRITERS));
  const ddAll = async (dir: string, count: number, mib: number) => {
    const script = Array.from({ length: count }, (_, i) => `dd if=${source} of=${dir}/w${i} bs=1M count=${mib} conv=fsync status=none &`).join(' ') + ' wait';
    const r = await runOk('sh', ['-c', script], { timeoutMs: 600_000 });
    return (count * mib) / (r.ms / 1000);
  };
  // Each timed write starts on page-cache pages just used: this VM makes pages untouched for a while slow to use
  // again (about 10 µs each: bench/README.md), which hit whichever side wrote first after a delete. So an untimed
  // file of the same size is written and deleted on the cache disk just before, and each write's files are deleted
  // once it is measured, on the disk and in the mount alike.
  const warm = join(baseDir, 'writers-warm-up');
  const measured = async (dir: string, count: number, mib: number) => {
    await runOk('sh', ['-c', `dd if=${source} of=${warm} bs=1M count=${count * mib} status=none && rm -f ${warm}`], { timeoutMs: 600_000 });
    mkdirSync(dir);
    const rate = await ddAll(dir, count, mib);
    rmSync(dir, { recursive: true });
    return rate;
  };
  const rate = { disk1: [] as number[], disk8: [] as number[], mnt1: [] as number[], mnt8: [] as number[] };
  const disk = async () => {
    rate.disk1.push(await measured(join(baseDir, 'disk-writers'), 1, each * WRITERS));
    rate.disk8.push(await measured(join(baseDir, 'disk-writers'), WRITERS, each));
  };
  const mount = async () => {
    rate.mnt1.push(await measured(join(mountpoint, 'writers'), 1, each * WRITERS));
    rate.mnt8.push(await measured(join(mountpoint, 'writers'), WRITERS, each));
  };
  for (let round = 1; round <= o.writerRounds; round++) {
    log(`writers, round ${round}/${o.writerRounds} (${round % 2 ? 'disk first' : 'mount first'}): 1 and ${WRITERS} writers`);
    for (const side of round % 2 ? [disk, mount] : [mount, disk]) await side();
    log(`  disk ${rate.disk1.at(-1)!.toFixed(0)} and ${rate.disk8.at(-1)!.toFixed(0)} MiB/s, mount ${rate.mnt1.at(-1)!.toFixed(0)} and ${rate.mnt8.at(-1)!.toFixed(0)} MiB/s`);
  }
  const [disk1, disk8, mnt1, mnt8] = [rate.disk1, rate.disk8, rate.mnt1, rate.mnt8].map(median) as [number, number, number, number];
  const r8 = row('writers-8', `${WRITERS} parallel writers into the mount (${each} MiB each, conv=fsync)`, mnt8, 'MiB/s', { value: disk8, label: `${WRITERS} writers into the cache disk` }, '≥0.8× the disk', atLeast(0.8));
  r8.notes.push(`medians of ${o.writerRounds} rounds in alternating order, each write after an untimed one of its size on the disk: mount ${list(rate.mnt8)} MiB/s, disk ${list(rate.disk8)} MiB/s; one writer into the mount: ${list(rate.mnt1)} MiB/s (median ${mnt1.toFixed(0)}; ${(mnt8 / mnt1).toFixed(2)}× for 8), into the disk: ${list(rate.disk1)} MiB/s`);
  rows.push(r8);
  rows.push(row('writers-1', `1 writer into the mount (${each * WRITERS} MiB, conv=fsync)`, mnt1, 'MiB/s', { value: disk1, label: '1 writer into the cache disk' }, '(reference of the row above)', () => 'n/a'));
}

/**
 * `rsync -a` of the small-file set into the mount vs into a local directory, each into a fresh directory,
 * `rsyncRounds` times in alternating order (medians); then a second `rsync -a` into the first round's directory
 * must send nothing.
 */
async function rsyncRows(o: Options, m: Awaited<ReturnType<typeof mountBlobhsm>>, small: string, baseDir: string, rows: Row[], log: (line: string) => void): Promise<void> {
  const localMs: number[] = [];
  const mountMs: number[] = [];
  let requests: Record<string, number> = {};
  const intoLocal = async (round: number) => {
    localMs.push((await runOk('rsync', ['-a', `${small}/`, `${join(baseDir, `rsync-local-${round}`)}/`], { timeoutMs: 600_000 })).ms);
  };
  const intoMount = async (round: number) => {
    const r0 = await m.requests();
    mountMs.push((await runOk('rsync', ['-a', `${small}/`, `${join(m.mountpoint, `rsync-${round}`)}/`], { timeoutMs: 900_000 })).ms);
    requests = requestDelta(r0, await m.requests());
  };
  for (let round = 1; round <= o.rsyncRounds; round++) {
    log(`rsync -a, round ${round}/${o.rsyncRounds} (${round % 2 ? 'local first' : 'mount first'}):`);
    if (round % 2) {
      await intoLocal(round);
      await intoMount(round);
    } else {
      await intoMount(round);
      await intoLocal(round);
    }
    log(`  local ${localMs.at(-1)!.toFixed(0)} ms, mount ${mountMs.at(-1)!.toFixed(0)} ms`);
  }
  const again = await runOk('rsync', ['-a', '--stats', `${small}/`, `${join(m.mountpoint, 'rsync-1')}/`], { timeoutMs: 900_000 });
  const sent = Number(/Number of regular files transferred: ([\d,]+)/.exec(again.stdout)?.[1]?.replace(/,/g, '') ?? NaN);
  const rrow = row('rsync', `rsync -a of ${o.files} small files into the mount`, median(mountMs), 'ms', { value: median(localMs), label: 'rsync -a into a local directory' }, '≤3× local', atMost(3), { requests });
  if (o.rsyncRounds > 1) {
      rrow.notes.push(`medians of ${o.rsyncRounds} rounds in alternating order: mount ${list(mountMs)} ms, local ${list(localMs)} ms`);
  }
  rows.push(rrow);
  const second = row('rsync-again', 'second rsync -a (files sent again)', again.ms, 'ms', null, '0 files sent', () => (sent === 0 ? 'meets' : 'short'));
  second.notes.push(`${sent} files sent again (${again.ms.toFixed(0)} ms)`);
  rows.push(second);
}

await runBench(main);
