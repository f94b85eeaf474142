#!/usr/bin/env node
// The blobhsm executable: raise libuv's thread pool before any async fs use (FUSE handlers do fs work on it).
process.env.UV_THREADPOOL_SIZE ??= '64';
const { main } = await import('../dist/src/cli/main.js');
process.exitCode = await main(process.argv.slice(2));
