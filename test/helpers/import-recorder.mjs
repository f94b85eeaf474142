// Loaded with `node --import` by test/cli-startup.test.ts: appends the URL of every module the process loads to
// $BLOBHSM_IMPORT_LOG: through import (a resolve hook: ESM, and CommonJS packages reached through import) and
// through require (the CommonJS resolver: packages loaded with createRequire, such as the Azure SDK, and theirs).
import { appendFileSync } from 'node:fs';
import Module, { register } from 'node:module';
import { isAbsolute } from 'node:path';
import { pathToFileURL } from 'node:url';

const hooks = `
import { appendFileSync } from 'node:fs';
export async function resolve(specifier, context, next) {
  const result = await next(specifier, context);
  appendFileSync(process.env.BLOBHSM_IMPORT_LOG, result.url + '\\n');
  return result;
}`;
register(`data:text/javascript,${encodeURIComponent(hooks)}`);

const resolveFilename = Module._resolveFilename;
Module._resolveFilename = function (...args) {
  const filename = resolveFilename.apply(this, args);
  if (isAbsolute(filename)) appendFileSync(process.env.BLOBHSM_IMPORT_LOG, pathToFileURL(filename).href + '\n');
  return filename;
};
