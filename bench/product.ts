// The built product the run drives: a snapshot of dist/src, dist/bench, bin/, package.json, bench/null-ll.c and the libfuse3 addon (node_modules
// linked) taken at the start, so a rebuild of dist/ by someone else during the run cannot change or break what
// is measured halfway through. The CLI, the probe and the null filesystem are all started from the snapshot.
import { cpSync, existsSync, mkdirSync, symlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository (dist/bench/product.js → ../../). */
export const REPO = fileURLToPath(new URL('../../', import.meta.url));

let root = REPO;

/** Copies the built product into `dir` and makes every later path point there. */
export function snapshotProduct(dir: string): string {
  mkdirSync(join(dir, 'dist'), { recursive: true });
  mkdirSync(join(dir, 'bench'), { recursive: true });
  for (const part of ['dist/src', 'dist/bench', 'bin', 'package.json', 'bench/null-ll.c']) cpSync(join(REPO, part), join(dir, part), { recursive: true });
  // The libfuse3 addon (src/fuse/lowlevel.ts addonPath looks for it there): without it every mount falls back to
  // fuse2, and `--fuse fuse3` is refused.
  const addon = 'src/fuse/native/build/Release/blobhsm_fuse.node';
  if (existsSync(join(REPO, addon))) {
    mkdirSync(dirname(join(dir, addon)), { recursive: true });
    cpSync(join(REPO, addon), join(dir, addon));
  }
  symlinkSync(join(REPO, 'node_modules'), join(dir, 'node_modules'), 'dir');
  root = dir;
  return dir;
}

export const productPaths = {
  bin: () => join(root, 'bin', 'blobhsm.js'),
  probe: () => join(root, 'dist', 'bench', 'probe.js'),
  nullFs: () => join(root, 'dist', 'bench', 'null-fs.js'),
  nullLlSource: () => join(root, 'bench', 'null-ll.c'),
};
