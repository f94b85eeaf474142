// `blobhsm lfs find` and `blobhsm lfs df`: each is one request to the daemon of the mount (find streams the paths
// it matches in the metadata store, a page at a time), printed as lfs prints them. Part of the lean lfs path: no
// import beyond the control client (see src/cli/lfs-main.ts).
import { stateHome } from '../config.js';
import { callDaemon } from '../control/client.js';
import { MountRegistry, type MountRecord } from '../control/registry.js';
import type { DfResult } from '../daemon/control-methods.js';
import { describeError, errnoCodeOf } from '../errors.js';
import { formatDf, strerror } from '../hsm/format.js';
import { errnoNumber, EXIT_USAGE } from './exit-status.js';
import { LfsUsageError, reportUsage } from './lfs-args.js';
import { parseDfArgs, parseFindArgs } from './lfs-find-args.js';
import { locate } from './daemon-call.js';
import type { CliIo } from './io.js';

function usageFailure(err: unknown, io: CliIo): number {
  if (!(err instanceof LfsUsageError)) throw err;
  return reportUsage(err, io);
}

/** `lfs find DIR... [options]`: prints each match (newline or, with -print0, NUL terminated); exit as lfs does. */
export async function runLfsFind(args: readonly string[], io: CliIo): Promise<number> {
  let req;
  try {
    req = parseFindArgs(args, Math.floor(Date.now() / 1000));
  } catch (err) {
    return usageFailure(err, io);
  }
  const end = req.print0 ? '\0' : '\n';
  let status = 0;
  for (const path of req.paths) {
    // The matches come back relative to the start ('' for itself, '/a/b' below it), printed under the name given.
    const base = path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
    try {
      const { mount, inner } = locate(path, io.env);
      await callDaemon(mount.socket, 'find', { path: inner, criteria: req.criteria }, (event) => {
        const { paths } = event as { paths: string[] };
        io.stdout.write(paths.map((rel) => (rel === '' ? path : base + rel)).join(end) + end);
      });
    } catch (err) {
      const code = errnoCodeOf(err);
      io.stderr.write(`lfs find: failed for '${path}': ${code === 'EIO' ? describeError(err) : strerror(code)}\n`);
      if (status === 0) status = errnoNumber(code);
    }
  }
  return status;
}

/** `lfs df [-i] [-h] [PATH]`: the metadata store and the data cache of one mount, or of every mount. */
export async function runLfsDf(args: readonly string[], io: CliIo): Promise<number> {
  let req;
  try {
    req = parseDfArgs(args);
  } catch (err) {
    return usageFailure(err, io);
  }
  let mounts: MountRecord[];
  try {
    mounts = req.path === undefined ? new MountRegistry(stateHome(io.env)).list() : [locate(req.path, io.env).mount];
  } catch (err) {
    io.stderr.write(`lfs df: cannot open '${req.path}': ${strerror(errnoCodeOf(err))}\n`);
    return errnoNumber(errnoCodeOf(err));
  }
  let status = 0;
  for (const mount of mounts) {
    try {
      const df = (await callDaemon(mount.socket, 'df')) as DfResult;
      io.stdout.write(formatDf(df.container, df.mountpoint, df.mdt, df.ost, req) + '\n');
    } catch (err) {
      io.stderr.write(`lfs df: cannot query '${mount.mountpoint}': ${describeError(err)}\n`);
      if (status === 0) status = errnoNumber(errnoCodeOf(err));
    }
  }
  return status;
}
