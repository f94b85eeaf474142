// Loaded with `node --import` by test/cli-startup.test.ts: registers a resolve hook that appends the URL of every
// module the process loads (ESM and CommonJS packages reached through import) to $BLOBHSM_IMPORT_LOG.
import { register } from 'node:module';

const hooks = `
import { appendFileSync } from 'node:fs';
export async function resolve(specifier, context, next) {
  const result = await next(specifier, context);
  appendFileSync(process.env.BLOBHSM_IMPORT_LOG, result.url + '\\n');
  return result;
}`;
register(`data:text/javascript,${encodeURIComponent(hooks)}`);
