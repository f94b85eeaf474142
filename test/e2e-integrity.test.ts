// End to end (issue 16): Content-MD5 on a real kernel FUSE mount and a real Azurite. An exported blob carries the
// MD5 of its bytes (read back with the SDK, and shown as user.hsm.md5); a restore whose body has a byte flipped in
// flight by a fault proxy is caught by the digest: once, it is refetched and right; always, the restore fails with
// EIO, the file stays released and status counts the mismatches; a cache file corrupted on disk after hydration
// is reported by `blobhsm verify` with exit 1; --no-verify-md5 restores without the check.
import t from 'tap';
import { createHash, randomBytes } from 'node:crypto';
import { open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createAzureStore } from '../src/blob/azure-store.js';
import { startAzurite } from './helpers/azurite.js';
import { startFaultProxy } from './helpers/fault-proxy.js';
import { mountContainer, type MountFixture } from './helpers/mount.js';
import { S, exportJson, readBlob, states } from './helpers/write-checks.js';

const azurite = await startAzurite();
t.teardown(() => azurite.stop());
const proxy = await startFaultProxy(azurite.port, azurite.connectionString);
t.teardown(() => proxy.close());
const viaProxy = { ...azurite, connectionString: proxy.connectionString };

const MiB = 1024 * 1024;
const md5 = (b: Buffer) => createHash('md5').update(b).digest('base64');

interface Integrity {
  verifyMd5: boolean;
  verified: number;
  unverified: number;
  mismatches: number;
}
async function integrity(m: MountFixture): Promise<Integrity> {
  const r = await m.cli(['status', '--json', m.mountpoint]);
  return (JSON.parse(r.stdout) as { integrity: Integrity }).integrity;
}

/** The SDK straight to Azurite (not through the proxy). */
const direct = (container: string) => createAzureStore({ container, connectionString: azurite.connectionString, env: {} });

t.test('export: the blob carries the Content-MD5 of its bytes; user.hsm.md5 shows it', async (t) => {
  const m = await mountContainer(t, azurite, []);
  const small = Buffer.from('small file\n');
  const big = randomBytes(20 * MiB + 333); // three 8 MiB blocks
  await writeFile(join(m.mountpoint, 'small.txt'), small);
  await writeFile(join(m.mountpoint, 'big.bin'), big);
  const job = await exportJson(m);
  t.equal(job.job.state, 'Succeeded');
  for (const [name, data] of [['small.txt', small], ['big.bin', big]] as const) {
    const info = await direct(m.container).head(name);
    t.equal(info.contentMd5, md5(data), `${name}: Content-MD5 is the MD5 of the file`);
    t.equal(md5((await readBlob(m.store, name))!.data), md5(data), `${name}: and of the blob's bytes`);
    const x = await m.sh(`getfattr -n user.hsm.md5 --only-values "$MNT/${name}"`);
    t.equal(x.stdout, md5(data), `${name}: user.hsm.md5`);
  }
});

t.test('a byte flipped in flight: caught, refetched once; always flipped: EIO, still released, counted', async (t) => {
  const once = randomBytes(3 * MiB);
  const always = randomBytes(2 * MiB);
  const m = await mountContainer(t, viaProxy, [
    { name: 'once.bin', data: once },
    { name: 'always.bin', data: always },
  ]);
  t.equal((await m.sh('getfattr -n user.hsm.md5 --only-values "$MNT/once.bin"')).stdout, md5(once), 'the digest is known from the listing');

  // (hsm_restore, not a reader: a reader served while the restore runs gets its bytes before the whole-file check.)
  const flippedOnce = proxy.inject({ op: 'read', blob: 'once.bin', fault: { kind: 'flip', at: 1000 }, times: 1 });
  const restore = await m.cli(['hsm_restore', '--wait', join(m.mountpoint, 'once.bin')]);
  t.equal(restore.code, 0, restore.stderr);
  t.equal(flippedOnce.applied, 1);
  t.same(await states(m, ['once.bin']), { 'once.bin': S.CLEAN }, 'restored after the refetch');
  t.equal(md5(await readFile(join(m.mountpoint, 'once.bin'))), md5(once), 'with the right bytes');
  t.match(await integrity(m), { verifyMd5: true, verified: 1, mismatches: 1 });

  const flipped = proxy.inject({ op: 'read', blob: 'always.bin', fault: { kind: 'flip', at: 77 } });
  t.teardown(() => proxy.clear());
  const failed = await m.cli(['hsm_restore', '--wait', join(m.mountpoint, 'always.bin')]);
  t.not(failed.code, 0, 'hsm_restore fails');
  t.match(failed.stderr, /Input\/output error|EIO/, 'with EIO');
  t.ok(flipped.applied >= 2, `both attempts were flipped (${flipped.applied} reads)`);
  t.same(await states(m, ['always.bin']), { 'always.bin': S.RELEASED }, 'the file stays released');
  t.match(await integrity(m), { verified: 1, mismatches: 3 });
  const log = await m.sh('cat "$BLOBHSM_STATE_DIR"/logs/*.log');
  t.match(log.stdout, new RegExp(`blob always\\.bin has Content-MD5 ${md5(always).replace(/[+/]/g, '\\$&')} but the bytes hash to \\S+ again after a refetch`), 'the log names blob, expected and actual digest');
  const cacheBytes = JSON.parse((await m.cli(['status', '--json', m.mountpoint])).stdout).cacheBytes as number;
  t.ok(cacheBytes < 3 * MiB + 64 * 1024, `the bad copy's space was given back (cache holds ${cacheBytes} bytes)`);
  proxy.clear();
  t.equal(md5(await readFile(join(m.mountpoint, 'always.bin'))), md5(always), 'once the fault ends the file reads right');
});

t.test('blobhsm verify finds a cache file corrupted on disk after hydration', async (t) => {
  const data = randomBytes(MiB + 5);
  const m = await mountContainer(t, azurite, [
    { name: 'd/rot.bin', data },
    { name: 'd/fine.txt', data: 'fine\n' },
  ]);
  t.equal(md5(await readFile(join(m.mountpoint, 'd/rot.bin'))), md5(data));
  await readFile(join(m.mountpoint, 'd/fine.txt'));
  await m.cli(['hsm_state', join(m.mountpoint, 'd/rot.bin')]); // lets the restore record its last range
  const clean = await m.cli(['verify', m.mountpoint]);
  t.equal(clean.code, 0, clean.stdout + clean.stderr);
  t.match(clean.stdout, /verified 2 files: 2 ok, 0 mismatches/);
  // A bad sector: one byte of the cache file changes behind the filesystem's back.
  const files = (await m.sh(`find "${m.cacheDir}/data" -type f -size +1000k`)).stdout.trim().split('\n');
  t.equal(files.length, 1, 'one large cache file');
  const fh = await open(files[0]!, 'r+');
  await fh.write(Buffer.from([data[4096]! ^ 0xff]), 0, 1, 4096);
  await fh.close();
  const found = await m.cli(['verify', m.mountpoint, join(m.mountpoint, 'd')]);
  t.equal(found.code, 1, 'exit 1 on a mismatch');
  t.match(found.stdout, new RegExp(`mismatch: ${join(m.mountpoint, 'd/rot.bin')}: the blob's Content-MD5 is \\S+ but the cached data hashes to \\S+; drop the bad copy with blobhsm hsm_release`));
  t.match(found.stdout, /verified 2 files: 1 ok, 1 mismatches/);
  t.match(await integrity(m), { mismatches: 1 });
  const release = await m.cli(['hsm_release', join(m.mountpoint, 'd/rot.bin')]);
  t.equal(release.code, 0, release.stderr);
  t.equal(md5(await readFile(join(m.mountpoint, 'd/rot.bin'))), md5(data), 'after hsm_release the next read is right');
});

t.test('--no-verify-md5: restores without the check', async (t) => {
  const data = randomBytes(MiB);
  const m = await mountContainer(t, viaProxy, [{ name: 'plain.bin', data }], ['--no-verify-md5']);
  const flipped = proxy.inject({ op: 'read', blob: 'plain.bin', fault: { kind: 'flip', at: 5 } });
  t.teardown(() => proxy.clear());
  const bytes = await readFile(join(m.mountpoint, 'plain.bin'));
  t.ok(flipped.applied >= 1);
  t.not(md5(bytes), md5(data), 'the flipped byte is not caught (the check is off)');
  await m.cli(['hsm_state', join(m.mountpoint, 'plain.bin')]);
  t.match(await integrity(m), { verifyMd5: false, verified: 0, unverified: 1, mismatches: 0 });
});
