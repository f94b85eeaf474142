#!/usr/bin/env node
// The blobhsm executable: raise libuv's thread pool before any async fs use (FUSE handlers do fs work on it).
process.env.UV_THREADPOOL_SIZE ??= '64';
// A closed pipe (`blobhsm changelog MNT | head`) ends the command quietly, as it ends other Unix tools.
process.stdout.on('error', (err) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});
// Node 22+: modules load from V8's compile cache (src/cli/compile-cache.ts); before the command's modules load.
(await import('../dist/src/cli/compile-cache.js')).enableCompileCache();
const argv = process.argv.slice(2);
// The lfs commands run once per file in shell loops: they load only the lean entry (no commander, SDK, SQLite).
const lean = await import('../dist/src/cli/lfs-main.js');
const io = lean.processIo();
if (lean.isLfsArgv(argv)) process.exitCode = await lean.runLfsMain(argv, io);
else {
  const { main } = await import('../dist/src/cli/main.js');
  process.exitCode = await main(argv, io);
}
