// Text layout of the qvm-* commands as Qubes prints it: `column -t`-style aligned tables, raw
// `|`-separated rows, qvm-prefs' `name  D  value` lines, wrapped help, and install progress; and
// the one rule for printing what a qube may have chosen: inert, never a terminal control.

import { inertString } from '../core/terminal-filter';
import type { CliDeps } from './commands/common';

const TEXT_KEEP: ReadonlySet<number> = new Set([0x09, 0x0a]);

/**
 * A value a qube may have chosen, for one line (a cell, a name, an error reason): every control
 * character (C0 with tab and newline, DEL, C1, bidi controls) becomes `_`, so it can neither drive
 * the terminal nor start a line that looks like ours.
 */
export function inert(untrusted: string): string {
  return inertString(untrusted, new Set());
}

/** Text of several lines (a log, a listing): as inert() but tabs and newlines are kept. */
export function inertText(untrusted: string): string {
  return inertString(untrusted, TEXT_KEEP);
}

/** Qubes' placeholder for an empty cell; a value is shown inert. */
export function cell(value: string | null | undefined): string {
  return value === undefined || value === null || value === '' ? '-' : inert(value);
}

/** qvm-ls' header for a field: `virt_mode` -> `VIRT-MODE`. */
export function columnHeader(field: string): string {
  return field.toUpperCase().replace(/_/g, '-');
}

/** Left-aligned columns separated by two spaces, no trailing blanks (what `column -t` gives); cells inert. */
export function formatTable(untrustedRows: readonly (readonly string[])[]): string {
  const rows = untrustedRows.map((r) => r.map(inert));
  const widths: number[] = [];
  for (const row of rows) row.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((row) => row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]))).join('  ').trimEnd() + '\n').join('');
}

/** `--raw-data`: no header, `|` between cells, for scripts; cells inert, so one row stays one line. */
export function formatRaw(rows: readonly (readonly string[])[]): string {
  return rows.map((r) => r.map(inert).join('|') + '\n').join('');
}

export type PrefMarker = 'D' | '-' | 'U';

/** One qvm-prefs listing line: `D` = default value, `-` = set explicitly, `U` = no value at all. */
export function prefsLine(name: string, width: number, marker: PrefMarker, value = ''): string {
  const head = `${name.padEnd(width)}  ${marker}`;
  return (marker === 'U' ? head : `${head}  ${inert(value)}`).trimEnd() + '\n';
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
    // The bar's own cursor controls go out unfiltered (deps.controls); its stage text is made inert.
    const controls = deps.controls ?? deps.stderr;
    const stream = { write: (s: string) => (controls(s), true), isTTY: true, columns: deps.columns ?? 80 };
    // Loaded on first use: every command imports this module, few draw a bar.
    const { Presets, SingleBar } = require('cli-progress') as typeof import('cli-progress');
    const bar = new SingleBar(
      { stream: stream as unknown as NodeJS.WritableStream, format: `${title} [{bar}] {percentage}% {stage}`, hideCursor: true },
      Presets.shades_classic,
    );
    bar.start(100, 0, { stage: '' });
    return { update: (f, stage) => bar.update(Math.round(clamp(f) * 100), { stage: inert(stage) }), stop: () => bar.stop() };
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
