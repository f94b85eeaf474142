// `blobhsm status MOUNTPOINT [--json]`: what a mount's daemon is doing, as a short readable summary (or the
// daemon's status object as one JSON line).
import { callMount } from './daemon-call.js';
import { formatBytes } from './progress.js';
import type { CliIo } from './io.js';

interface DaemonStatus {
  mountpoint: string;
  container: string;
  prefix: string;
  description: string;
  namespace?: { kind?: string; how?: string };
  pid: number;
  cacheDir: string;
  cacheBytes: number;
  openFiles?: number;
  inodes: number;
  requests: Record<string, number>;
  io: { readOps: number; readBytes: number; writeOps: number; writeBytes: number; directWriteOps?: number };
  hsm: { running: number; waiting: number; concurrency: number };
  integrity?: { verifyMd5: boolean; verified: number; unverified: number; mismatches: number };
  /** The --metrics URL, null without --metrics. */
  metrics?: string | null;
}


export function formatStatus(s: DaemonStatus): string {
  const requests = Object.entries(s.requests).filter(([, n]) => n > 0);
  const lines: Array<[string, string]> = [
    ['mountpoint', s.mountpoint],
    ['container', `${s.description}${s.prefix ? `, prefix ${s.prefix}` : ''}${s.namespace?.kind ? ` (${s.namespace.kind} namespace)` : ''}`],
    ['daemon', `pid ${s.pid}, alive`],
    ['cache', `${formatBytes(s.cacheBytes, 1)} in ${s.cacheDir}`],
    ['entries', String(s.inodes)],
    ['open files', String(s.openFiles ?? 0)],
    ['HSM actions', `${s.hsm.running} running, ${s.hsm.waiting} waiting (at most ${s.hsm.concurrency} at once)`],
    ['FUSE I/O', `${s.io.readOps} reads (${formatBytes(s.io.readBytes, 1)}), ${s.io.writeOps} writes (${formatBytes(s.io.writeBytes, 1)})`],
    ...(s.integrity
      ? [['Content-MD5', `${s.integrity.verifyMd5 ? 'checked' : 'not checked (--no-verify-md5)'}: ${s.integrity.verified} files verified, ${s.integrity.unverified} unverified, ${s.integrity.mismatches} mismatches`] as [string, string]]
      : []),
    ['blob requests', requests.length ? requests.map(([op, n]) => `${op} ${n}`).join(', ') : 'none'],
    ...(s.metrics ? [['metrics', s.metrics] as [string, string]] : []),
  ];
  const width = Math.max(...lines.map(([k]) => k.length));
  return lines.map(([k, v]) => `${(k + ':').padEnd(width + 1)} ${v}`).join('\n') + '\n';
}

export async function runStatus(mountpoint: string, o: { json?: boolean }, io: CliIo): Promise<number> {
  const status = (await callMount(mountpoint, io.env, 'status')) as DaemonStatus;
  io.stdout.write(o.json ? JSON.stringify(status) + '\n' : formatStatus(status));
  return 0;
}
