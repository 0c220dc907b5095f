// What every benchmark ends with: its table on stdout, and the same numbers as
// bench/results/<name>-<time>.json for comparing runs.

import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const REPO = path.resolve(__dirname, '../..');

export function report(name: string, table: string[][], data: object): void {
  const widths = table[0].map((_, i) => Math.max(...table.map((l) => l[i].length)));
  process.stdout.write(table.map((l) => l.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()).join('\n') + '\n');
  const out = path.join(REPO, 'bench', 'results', `${name}-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  mkdirSync(path.dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), node: process.version, ...data }, null, 2) + '\n');
  process.stdout.write(`written ${path.relative(REPO, out)}\n`);
}
