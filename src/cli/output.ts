// Text layout of the qvm-* commands as Qubes prints it: `column -t`-style aligned tables, raw
// `|`-separated rows, qvm-prefs' `name  D  value` lines, wrapped help, and install progress.

import { Presets, SingleBar } from 'cli-progress';
import type { CliDeps } from './commands/common';

/** Qubes' placeholder for an empty cell. */
export function cell(value: string | null | undefined): string {
  return value === undefined || value === null || value === '' ? '-' : value;
}

/** qvm-ls' header for a field: `virt_mode` -> `VIRT-MODE`. */
export function columnHeader(field: string): string {
  return field.toUpperCase().replace(/_/g, '-');
}

/** Left-aligned columns separated by two spaces, no trailing blanks (what `column -t` gives). */
export function formatTable(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((row) => row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]))).join('  ').trimEnd() + '\n').join('');
}

/** `--raw-data`: no header, `|` between cells, for scripts. */
export function formatRaw(rows: readonly (readonly string[])[]): string {
  return rows.map((r) => r.join('|') + '\n').join('');
}

export type PrefMarker = 'D' | '-' | 'U';

/** One qvm-prefs listing line: `D` = default value, `-` = set explicitly, `U` = no value at all. */
export function prefsLine(name: string, width: number, marker: PrefMarker, value = ''): string {
  const head = `${name.padEnd(width)}  ${marker}`;
  return (marker === 'U' ? head : `${head}  ${value}`).trimEnd() + '\n';
}

/** `  name  help…` wrapped at `total` columns with continuation lines under the help text. */
export function helpLine(name: string, width: number, help: string, total = 80): string {
  const indent = ' '.repeat(width + 4);
  const out: string[] = [];
  let line = `  ${name.padEnd(width)}  `;
  let empty = true;
  for (const word of help.split(/\s+/).filter(Boolean)) {
    if (!empty && line.length + 1 + word.length > total) {
      out.push(line);
      line = indent;
      empty = true;
    }
    line += (empty ? '' : ' ') + word;
    empty = false;
  }
  out.push(line.trimEnd());
  return out.join('\n') + '\n';
}

export interface Progress {
  update(fraction: number, stage: string): void;
  stop(): void;
}

/**
 * A bar on a terminal (cli-progress drawing through deps.stderr), else one line per 10% step so
 * that logs stay readable.
 */
export function progress(deps: CliDeps, title: string, quiet: boolean): Progress {
  if (quiet) return { update: () => undefined, stop: () => undefined };
  if (deps.isTTY) {
    const stream = { write: (s: string) => (deps.stderr(s), true), isTTY: true, columns: deps.columns ?? 80 };
    const bar = new SingleBar(
      { stream: stream as unknown as NodeJS.WritableStream, format: `${title} [{bar}] {percentage}% {stage}`, hideCursor: true },
      Presets.shades_classic,
    );
    bar.start(100, 0, { stage: '' });
    return { update: (f, stage) => bar.update(Math.round(clamp(f) * 100), { stage }), stop: () => bar.stop() };
  }
  let last = -1;
  return {
    update(f, stage) {
      const step = Math.floor(clamp(f) * 10);
      if (step <= last) return;
      last = step;
      deps.stderr(`${title}: ${step * 10}%${stage ? ` (${stage})` : ''}\n`);
    },
    stop: () => undefined,
  };
}

function clamp(f: number): number {
  return Number.isFinite(f) ? Math.min(1, Math.max(0, f)) : 0;
}
