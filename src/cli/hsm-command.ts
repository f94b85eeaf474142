// The `lfs hsm_*`-compatible commands (`blobhsm hsm_state ...`, `blobhsm hsm state ...`, `blobhsm lfs ...`):
// parse as lfs does, send the paths to the daemons serving them, print lfs's exact lines, exit as lfs exits.
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { describeError, errnoCodeOf, type FsErrorCode } from '../errors.js';
import { callDaemon } from '../control/client.js';
import {
  formatActionFailed,
  formatCannotStat,
  formatFilelistError,
  formatHsmAction,
  formatHsmActionError,
  formatHsmFlagsError,
  formatHsmState,
  formatHsmStateError,
  formatNotRegular,
  formatRequestFailed,
  hsmActionJson,
  hsmErrorJson,
  hsmStateJson,
  type HsmAction,
} from '../hsm/format.js';
import type { ActionState } from '../hsm/coordinator.js';
import type { HsmRequestProgress, PathResult } from '../daemon/control-methods.js';
import { hsmRequestUpdate, startProgress } from './progress.js';
import { LfsUsageError, parseFilelist, parseLfsArgs, reportUsage, usageText, type LfsRequest } from './lfs-args.js';
import { EXIT_USAGE, errnoNumber } from './exit-status.js';
import { locate } from './daemon-call.js';
import type { CliIo } from './io.js';

/** A path's answer, and whether its mount's daemon drops the kernel's pages itself (the libfuse3 binding). */
type Result = (PathResult | { path: string; ok: false; code: FsErrorCode; message: string }) & { daemonDropsPages?: boolean };

/** Sends each path to the daemon of its mount (grouped, one call per mount) and returns results in input order. */
async function perPath(paths: string[], io: CliIo, call: (socket: string, inner: string[]) => Promise<unknown>): Promise<Result[]> {
  const results: Result[] = new Array(paths.length);
  const groups = new Map<string, { indexes: number[]; inner: string[]; daemonDropsPages: boolean }>();
  paths.forEach((path, i) => {
    try {
      const { mount, inner } = locate(path, io.env);
      const g = groups.get(mount.socket) ?? { indexes: [], inner: [], daemonDropsPages: mount.binding === 'fuse3' };
      g.indexes.push(i);
      g.inner.push(inner);
      groups.set(mount.socket, g);
    } catch (err) {
      results[i] = { path, ok: false, code: errnoCodeOf(err), message: describeError(err) };
    }
  });
  for (const [socket, g] of groups) {
    try {
      const answers = (await call(socket, g.inner)) as PathResult[];
      g.indexes.forEach((index, k) => (results[index] = { ...answers[k]!, path: paths[index]!, daemonDropsPages: g.daemonDropsPages }));
    } catch (err) {
      for (const index of g.indexes) results[index] = { path: paths[index]!, ok: false, code: errnoCodeOf(err), message: describeError(err) };
    }
  }
  return results;
}

/**
 * After a release on a fuse2 mount, drops the kernel's cached pages of each file (the mount keeps file data cached
 * across opens) so that the next read reaches blobhsm and restores the file, as a read of a released Lustre file
 * does: llite drops its pages when it releases. (A libfuse3 mount's daemon does it itself, notify_inval_inode,
 * before it answers.) Best effort: `dd iflag=nocache count=0` is posix_fadvise(DONTNEED) on the whole file.
 */
async function dropPageCache(paths: string[]): Promise<void> {
  // One shell per 200 files (a process per file would cost more than the releases), four at a time.
  const script = 'for f do dd if="$f" iflag=nocache count=0 status=none; done';
  const drop = (batch: string[]) => new Promise<void>((resolve) => execFile('/bin/sh', ['-c', script, 'sh', ...batch], () => resolve()));
  let next = 0;
  const worker = async () => {
    for (let start = next; start < paths.length; start = next) {
      next += 200;
      await drop(paths.slice(start, start + 200));
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
}

function toAction(a: ActionState | null | undefined): HsmAction {
  if (!a) return { kind: 'NOOP' };
  return { kind: a.kind, status: a.status, bytesMoved: a.bytesMoved };
}

/** All of a stream as text (`--filelist -`: stdin may be a pipe, a socket or a file, so read it, never open it). */
async function readAll(stream: AsyncIterable<Buffer | string>): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  return Buffer.concat(chunks).toString('utf8');
}

export async function runLfs(argv: string[], io: CliIo): Promise<number> {
  let req: LfsRequest;
  try {
    req = parseLfsArgs(argv);
  } catch (err) {
    if (err instanceof LfsUsageError) return reportUsage(err, io);
    throw err;
  }
  const paths = [...req.files];
  if (req.filelist !== undefined) {
    try {
      paths.push(...parseFilelist(req.filelist === '-' ? await readAll(io.stdin ?? process.stdin) : await readFile(req.filelist, 'utf8')));
    } catch (err) {
      const code = errnoCodeOf(err);
      io.stderr.write(formatFilelistError(req.filelist, code) + '\n');
      return errnoNumber(code);
    }
  }
  const out = (line: string) => io.stdout.write(line + '\n');
  // After lfs's own line, a path outside every mount (ENOTTY, as lfs's ioctl) or a dead daemon (ENOTCONN) is
  // explained with what to do.
  const err = (line: string, r?: Result) => {
    io.stderr.write(line + '\n');
    if (r && !r.ok && (r.code === 'ENOTTY' || r.code === 'ENOTCONN')) io.stderr.write(`blobhsm: ${r.message}\n`);
  };
  let status = 0;
  const failed = (code: FsErrorCode) => {
    if (status === 0) status = errnoNumber(code);
  };

  switch (req.command) {
    case 'hsm_state':
    case 'hsm_action': {
      const method = req.command;
      const results = await perPath(paths, io, (socket, inner) => callDaemon(socket, method, { paths: inner }));
      for (const r of results) {
        if (!r.ok) {
          const code = r.code === 'ENOTREG' ? 'EINVAL' : r.code;
          if (req.json) out(JSON.stringify(hsmErrorJson(r.path, code)));
          else err(method === 'hsm_state' ? formatHsmStateError(r.path, code, req.name) : formatHsmActionError(r.path, code, req.name), r);
          failed(code);
        } else if (method === 'hsm_state') {
          out(req.json ? JSON.stringify(hsmStateJson(r.path, r.flags, r.archiveId)) : formatHsmState(r.path, r.flags, r.archiveId));
        } else {
          const action = toAction(r.action as ActionState | null);
          out(req.json ? JSON.stringify(hsmActionJson(r.path, action)) : formatHsmAction(r.path, action));
        }
      }
      return status;
    }
    case 'hsm_set':
    case 'hsm_clear': {
      const params = { set: req.setFlags ?? 0, clear: req.clearFlags ?? 0, archiveId: req.archiveId };
      const results = await perPath(paths, io, (socket, inner) => callDaemon(socket, 'hsm_set', { ...params, paths: inner }));
      for (const r of results) {
        if (r.ok) {
          if (req.json) out(JSON.stringify(hsmStateJson(r.path, r.flags, r.archiveId)));
          continue;
        }
        if (r.code === 'ENOTREG') {
          err(formatNotRegular(r.path));
          return EXIT_USAGE;
        }
        if (req.json) out(JSON.stringify(hsmErrorJson(r.path, r.code)));
        else err(formatHsmFlagsError(r.path, r.code, req.name), r);
        failed(r.code);
      }
      return status;
    }
    default: {
      const command = req.command;
      const wait = req.wait;
      const results = await perPath(paths, io, async (socket, inner) => {
        if (command === 'hsm_cancel') return callDaemon(socket, 'hsm_cancel', { paths: inner });
        const bar = wait ? await startProgress(io.stderr, { label: command.slice('hsm_'.length), unit: 'bytes', json: req.json }) : undefined;
        try {
          return await callDaemon(socket, 'hsm_request', { command, paths: inner, archiveId: req.archiveId, wait }, (event) =>
            bar?.update(hsmRequestUpdate(event as HsmRequestProgress)),
          );
        } finally {
          await bar?.stop();
        }
      });
      if (command === 'hsm_release') await dropPageCache(results.filter((r) => r.ok && !r.daemonDropsPages).map((r) => r.path));
      const notRegular = results.find((r) => !r.ok && r.code === 'ENOTREG');
      if (notRegular) {
        err(formatNotRegular(notRegular.path));
        out(usageText(command, req.spelling));
        return EXIT_USAGE;
      }
      for (const r of results) {
        if (r.ok) {
          if (req.json) out(JSON.stringify({ ok: true, ...hsmStateJson(r.path, r.flags, r.archiveId) }));
          continue;
        }
        const code = r.code as FsErrorCode;
        const queued = 'queued' in r && r.queued === true;
        if (req.json) out(JSON.stringify({ ...hsmErrorJson(r.path, code), detail: r.message, ...(queued ? { queued } : {}) }));
        else if (queued) err(formatActionFailed(req.name, command.slice('hsm_'.length), r.path, code, r.message));
        else if (code === 'ENOENT') err(formatCannotStat(r.path, code));
        else err(`${formatRequestFailed(r.path, code)}${wait ? ` (${r.message})` : ''}`, r);
        failed(code);
      }
      return status;
    }
  }
}
