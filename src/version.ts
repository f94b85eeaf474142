// The package's own version, read from the package.json that ships beside the code (src/ when run from source,
// dist/src/ when built or installed), so `blobhsm version` and `--version` never drift from the package.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let cached: string | undefined;

/** The version field of blobhsm's package.json (the first package.json named blobhsm above this module). */
export function packageVersion(): string {
  if (cached) return cached;
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    const candidate = join(dir, 'package.json');
    if (existsSync(candidate)) {
      const pkg = JSON.parse(readFileSync(candidate, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'blobhsm' && pkg.version) return (cached = pkg.version);
    }
    if (dirname(dir) === dir) throw new Error(`blobhsm's package.json was not found above ${fileURLToPath(import.meta.url)}`);
  }
}
