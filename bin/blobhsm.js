#!/usr/bin/env node
// The blobhsm executable: raise libuv's thread pool before any async fs use (FUSE handlers do fs work on it).
process.env.UV_THREADPOOL_SIZE ??= '64';
// A closed pipe (`blobhsm changelog MNT | head`) ends the command quietly, as it ends other Unix tools.
process.stdout.on('error', (err) => {
  if (err.code === 'EPIPE') process.exit(0);
  throw err;
});
const { main } = await import('../dist/src/cli/main.js');
process.exitCode = await main(process.argv.slice(2));
