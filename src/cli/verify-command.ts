// `blobhsm verify MOUNTPOINT [PATH...] [--json]`: re-hashes hydrated clean files against their blob's Content-MD5
// (src/daemon/scrub.ts) and reports every mismatch; exit 1 when there is one.
import { describeError } from '../errors.js';
import type { ScrubSummary } from '../daemon/scrub.js';
import { callMount, locate } from './daemon-call.js';
import type { CliIo } from './io.js';
import { EXIT_FAILURE } from './io.js';

export async function runVerify(mountpoint: string, paths: string[], opts: { json?: boolean }, io: CliIo): Promise<number> {
  try {
    const { mount } = locate(mountpoint, io.env);
    const inner = paths.map((p) => {
      const at = locate(p, io.env);
      if (at.mount.mountpoint !== mount.mountpoint) throw new Error(`${p} is not inside ${mount.mountpoint}`);
      return at.inner;
    });
    const summary = (await callMount(mountpoint, io.env, 'verify', { paths: inner.length ? inner : ['/'] })) as ScrubSummary;
    if (opts.json) io.stdout.write(JSON.stringify(summary) + '\n');
    else {
      const abs = (p: string) => (p === '/' ? mount.mountpoint : mount.mountpoint + p);
      for (const r of summary.problems) {
        if (r.outcome === 'mismatch') {
          io.stdout.write(
            `mismatch: ${abs(r.path)}: the blob's Content-MD5 is ${r.expected} but the cached data hashes to ${r.actual}; ` +
              `drop the bad copy with blobhsm hsm_release ${abs(r.path)} (the next read fetches it again)\n`,
          );
        } else if (paths.length > 0) io.stdout.write(`${r.outcome}: ${abs(r.path)}: ${r.reason}\n`);
      }
      io.stdout.write(
        `verified ${summary.files} files: ${summary.ok} ok, ${summary.mismatches} mismatches, ` +
          `${summary.unverified} without a digest, ${summary.skipped} skipped (released, dirty or never archived)\n`,
      );
    }
    return summary.mismatches > 0 ? EXIT_FAILURE : 0;
  } catch (err) {
    io.stderr.write(`blobhsm verify: ${describeError(err)}\n`);
    return EXIT_FAILURE;
  }
}
