// Helpers of the write-path end-to-end tests (e2e-write, e2e-crash): HSM states of many files in one CLI call,
// blobs read back with the store, the metadata export must write for a local file, and export job polling.
import { stat, lstat } from 'node:fs/promises';
import { join } from 'node:path';
import type { BlobInfo } from '../../src/blob/blob-store.js';
import type { AzureBlobStore } from '../../src/blob/azure-store.js';
import { BlobError } from '../../src/errors.js';
import type { MountFixture } from './mount.js';

/** `hsm_state` of paths relative to the mount, as `(0x0000000b) exists dirty archived, archive_id:1`. */
export async function states(m: MountFixture, rels: string[]): Promise<Record<string, string>> {
  const r = await m.cli(['hsm_state', ...rels.map((p) => join(m.mountpoint, p))]);
  const out: Record<string, string> = {};
  for (const line of r.stdout.split('\n').filter(Boolean)) {
    const cut = line.indexOf(': (');
    out[line.slice(m.mountpoint.length + 1, cut)] = line.slice(cut + 2);
  }
  for (const line of r.stderr.split('\n').filter(Boolean)) out[line] = 'error';
  return out;
}

export const S = {
  NEW: '(0x00000000)',
  EXISTS: '(0x00000001) exists',
  CLEAN: '(0x00000009) exists archived, archive_id:1',
  DIRTY: '(0x0000000b) exists dirty archived, archive_id:1',
  RELEASED: '(0x0000000d) released exists archived, archive_id:1',
} as const;

export interface BlobRead {
  info: BlobInfo;
  data: Buffer;
}

/** HEAD and content of a blob, or undefined when it does not exist. */
export async function readBlob(store: AzureBlobStore, name: string): Promise<BlobRead | undefined> {
  let info: BlobInfo;
  try {
    info = await store.head(name);
  } catch (err) {
    if (err instanceof BlobError && err.kind === 'NotFound') return undefined;
    throw err;
  }
  const chunks: Buffer[] = [];
  for await (const c of await store.readRange(name, 0, undefined)) chunks.push(c as Buffer);
  return { info, data: Buffer.concat(chunks) };
}

export async function blobNames(store: AzureBlobStore): Promise<string[]> {
  const names: string[] = [];
  for await (const page of store.listPages()) for (const b of page) names.push(b.name);
  return names.sort();
}

const pad = (n: number) => String(n).padStart(2, '0');

/** Lemur's modtime format for a Date, in UTC. */
export function lemurTime(d: Date): string {
  return (
    `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} +0000`
  );
}

/**
 * The metadata export must write for a local path (docs/SEMANTICS.md §1 "Export writes"), derived from its lstat: owner and
 * group in decimal, permissions `%04o` with the sticky bit kept and setuid/setgid dropped, lemur modtime, and the
 * kind marker. `blobhsm_version` (our stamp) is left out: compare with `withoutStamp()`.
 */
export async function expectedMetadata(path: string): Promise<Record<string, string>> {
  const st = await lstat(path);
  const md: Record<string, string> = {
    owner: String(st.uid),
    group: String(st.gid),
    permissions: (st.mode & 0o1777).toString(8).padStart(4, '0'),
    modtime: lemurTime(st.mtime),
  };
  if (st.isDirectory()) md.hdi_isfolder = 'true';
  if (st.isSymbolicLink()) md.ftype = 'LNK';
  return md;
}

export function withoutStamp(md: Record<string, string>): Record<string, string> {
  const { blobhsm_version: _stamp, ...rest } = md;
  return rest;
}

export interface JobSummaryLike {
  id: string;
  state: string;
  stats: { filesDiscovered: number; bytesDiscovered: number; filesExported: number; bytesExported: number; bytesUploading: number; filesFailed: number; conflicts: number };
  conflictPaths: string[];
  failures: Array<{ path: string; error: string }>;
  startTime: string;
  finishTime?: string;
}

/** Runs `blobhsm export MNT --json ...` and returns its exit code and job summary. */
export async function exportJson(m: MountFixture, args: string[] = []): Promise<{ code: number; job: JobSummaryLike; stderr: string }> {
  const r = await m.cli(['export', m.mountpoint, '--json', ...args]);
  let job: JobSummaryLike;
  try {
    job = JSON.parse(r.stdout) as JobSummaryLike;
  } catch {
    throw new Error(`export printed no JSON (exit ${r.code}): ${r.stdout}${r.stderr}`);
  }
  return { code: r.code, job, stderr: r.stderr };
}

export async function jobsJson(m: MountFixture): Promise<JobSummaryLike[]> {
  const r = await m.cli(['jobs', m.mountpoint, '--json']);
  if (r.code !== 0) throw new Error(`blobhsm jobs failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as JobSummaryLike[];
}

/** Waits until no job of the mount is running and returns the last one. */
export async function waitJobDone(m: MountFixture, timeoutMs = 120_000): Promise<JobSummaryLike> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const jobs = await jobsJson(m);
    const last = jobs[jobs.length - 1];
    if (last && last.state !== 'InProgress' && last.state !== 'Canceling') return last;
    if (Date.now() > until) throw new Error(`job still running after ${timeoutMs} ms: ${JSON.stringify(last)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Daemon status (`blobhsm status`). */
export async function status(m: MountFixture): Promise<Record<string, unknown>> {
  const r = await m.cli(['status', '--json', m.mountpoint]);
  if (r.code !== 0) throw new Error(`blobhsm status failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

export async function sizeOf(path: string): Promise<number> {
  return (await stat(path)).size;
}
