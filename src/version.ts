// The package's own root and version, found from the package.json that ships beside the code (above src/ when run
// from source, above dist/src/ when built or installed), so `blobhsm version`, `--version` and the daemon's
// executable path never drift from the package, whichever of the two runs.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let cached: { root: string; version: string } | undefined;

function findPackage(): { root: string; version: string } {
  if (cached) return cached;
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    const candidate = join(dir, 'package.json');
    if (existsSync(candidate)) {
      const pkg = JSON.parse(readFileSync(candidate, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'blobhsm' && pkg.version) return (cached = { root: dir, version: pkg.version });
    }
    if (dirname(dir) === dir) throw new Error(`blobhsm's package.json was not found above ${fileURLToPath(import.meta.url)}`);
  }
}

/** The version field of blobhsm's package.json. */
export function packageVersion(): string {
  return findPackage().version;
}

/** The directory holding blobhsm's package.json (bin/, dist/ and, in a clone, src/ are below it). */
export function packageRoot(): string {
  return findPackage().root;
}
