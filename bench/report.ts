// Output: the results table (a Markdown table, so the README can take it as is) with the notes of each row —
// one table per run, with a figure/ratio/verdict column group per FUSE binding — and the same data as JSON under
// bench/results/ (git-ignored).
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fmtFigure, type Row } from './targets.js';
import type { Binding } from './profile.js';

export function table(rows: Row[], rcloneNote: string): string {
  const head = ['workload', 'blobhsm', 'reference', 'ratio', 'rclone', 'target', 'verdict', 'requests'];
  const body = rows.map((r) => [
    r.workload,
    fmtFigure(r.blobhsm),
    r.reference ? `${fmtFigure(r.reference)} (${r.reference.label})` : '—',
    r.ratio === null ? '—' : `${r.ratio.toFixed(2)}×`,
    fmtFigure(r.rclone),
    r.target,
    r.verdict,
    r.requests ? fmtRequests(r.requests) : '—',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  const out = [line(head), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...body.map(line)];
  const notes = rows.filter((r) => r.notes.length || 'error' in r.blobhsm).map((r) => {
    const err = 'error' in r.blobhsm ? [`failed: ${r.blobhsm.error}`] : [];
    return `- ${r.workload} [${r.verdict}]: ${[...err, ...r.notes].join('; ')}`;
  });
  return [...out, '', `rclone: ${rcloneNote}`, '', 'Notes:', ...notes].join('\n');
}

/**
 * The rows of each binding side by side (same workloads, same references: the targets do not depend on the
 * binding): workload, reference, then per binding its figure, ratio and verdict, then rclone, the target and each
 * binding's blob requests. The notes say which binding they are about.
 */
export function bindingsTable(byBinding: Partial<Record<Binding, Row[]>>, rcloneNote: string): string {
  const bindings = Object.keys(byBinding) as Binding[];
  const first = byBinding[bindings[0]!] ?? [];
  const head = ['workload', 'reference', ...bindings.flatMap((b) => [b, 'ratio', 'verdict']), 'rclone', 'target', ...bindings.map((b) => `requests (${b})`)];
  const rowOf = (b: Binding, id: string) => byBinding[b]?.find((r) => r.id === id);
  const body = first.map((r) => [
    r.workload,
    r.reference ? `${fmtFigure(r.reference)} (${r.reference.label})` : '—',
    ...bindings.flatMap((b) => {
      const x = rowOf(b, r.id);
      return x ? [fmtFigure(x.blobhsm), x.ratio === null ? '—' : `${x.ratio.toFixed(2)}×`, x.verdict] : ['—', '—', '—'];
    }),
    fmtFigure(r.rclone),
    r.target,
    ...bindings.map((b) => {
      const x = rowOf(b, r.id);
      return x?.requests ? fmtRequests(x.requests) : '—';
    }),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((c) => c[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  const out = [line(head), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...body.map(line)];
  const notes: string[] = [];
  for (const r of first) {
    const parts = bindings.flatMap((b) => {
      const x = rowOf(b, r.id);
      if (!x) return [];
      const err = 'error' in x.blobhsm && x.verdict !== 'n/a' ? [`failed: ${x.blobhsm.error}`] : [];
      const all = [...err, ...x.notes];
      return all.length ? [`${b} [${x.verdict}]: ${all.join('; ')}`] : [];
    });
    if (parts.length) notes.push(`- ${r.workload}: ${parts.join(' — ')}`);
  }
  return [...out, '', `rclone: ${rcloneNote}`, '', 'Notes:', ...notes].join('\n');
}

function fmtRequests(r: Record<string, number>): string {
  const parts = Object.entries(r)
    .filter(([, n]) => n)
    .map(([k, n]) => `${k} ${n}`);
  return parts.length ? parts.join(', ') : '0';
}

export function writeJson(path: string, data: unknown): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, JSON.stringify(data, null, 2) + '\n');
}

export function defaultResultsPath(repoRoot: string, profile: string, when: Date): string {
  const stamp = when.toISOString().replace(/[:.]/g, '-');
  return join(repoRoot, 'bench', 'results', `${stamp}-${profile}.json`);
}

/**
 * Prints a run's header (what ran, when, how long, the machine's load at start and end) and its table, and writes
 * the rows with `data` as JSON under bench/results/ (or `out`).
 */
export function publish(o: { title: string; profile: string; repoRoot: string; out?: string; started: Date; elapsedS: number; loadStart: number; rows: Row[]; rcloneNote: string; data?: Record<string, unknown> }): void {
  const header =
    `${o.title}, ${o.started.toISOString()}, ${o.elapsedS.toFixed(0)} s; ${cpus().length} CPUs, Node ${process.version}; ` +
    `load average ${o.loadStart.toFixed(1)} at start, ${loadavg()[0]!.toFixed(1)} at the end`;
  process.stdout.write(`\n${header}\n\n${table(o.rows, o.rcloneNote)}\n`);
  const out = o.out ?? defaultResultsPath(o.repoRoot, o.profile, o.started);
  writeJson(out, { startedAt: o.started.toISOString(), ...o.data, rows: o.rows });
  process.stdout.write(`\nJSON: ${out}\n`);
}
