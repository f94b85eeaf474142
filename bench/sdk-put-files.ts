// A child process of bench/ingest-bench.ts: the SDK reference for small files (bench/sdk.ts putFiles) as a process
// of its own, paying what the CLI pays and the bench's in-process reference does not: node start, loading the SDK,
// a cold JIT. `node sdk-put-files.js DIR CONTAINER CONCURRENCY`, the connection string in
// AZURE_STORAGE_CONNECTION_STRING.
import { readdirSync } from 'node:fs';
import { container, putFiles } from './sdk.js';

const [dir, name, concurrency] = process.argv.slice(2);
const connectionString = process.env.AZURE_STORAGE_CONNECTION_STRING;
if (!dir || !name || !concurrency || !connectionString) {
  throw new Error('usage: AZURE_STORAGE_CONNECTION_STRING=... node sdk-put-files.js DIR CONTAINER CONCURRENCY');
}
await putFiles(container(connectionString, name), dir, readdirSync(dir).sort(), Number(concurrency));
