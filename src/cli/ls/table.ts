// qvm-ls' rows as Qubes orders them: by name (code point order, dom0 not pinned), then stably by
// the --sort column (numeric for Qubes' numeric columns), or as the network tree of --tree.

import { cell, formatRaw, formatTable } from '../output';
import { SORT_NUMERIC, type Column, type LsContext, type LsQube } from './columns';

export interface TableOptions {
  rawData: boolean;
  tree: boolean;
  sort: string;
  reverse: boolean;
  ignoreCase: boolean;
}

const byName = (a: LsQube, b: LsQube) => (a.entry.name < b.entry.name ? -1 : a.entry.name > b.entry.name ? 1 : 0);

/** Qubes' sort_numeric: `12%` is 12, anything that is not an integer is 0. */
function numericKey(s: string): number {
  const t = s.endsWith('%') ? s.slice(0, -1) : s;
  return /^\s*[+-]?\d+\s*$/.test(t) ? Number(t) : 0;
}

const providesNetwork = (q: LsQube) => q.props?.get('provides_network')?.value === 'True';

/**
 * Qubes' sort_to_tree: qubes without a netvm first (by name), then each network provider without
 * a netvm followed by the qubes connected to it, depth first. Isola difference: a qube whose netvm
 * is not among the listed qubes counts as having none, where Qubes leaves it out of the tree.
 */
export function sortToTree(qubes: readonly LsQube[]): [number, LsQube][] {
  const sorted = [...qubes].sort(byName);
  const listed = new Set(sorted.map((q) => q.entry.name));
  const parentOf = (q: LsQube) => {
    const n = q.props?.get('netvm')?.value ?? '';
    return n !== '' && listed.has(n) && n !== q.entry.name ? n : '';
  };
  const out: [number, LsQube][] = [];
  const placed = new Set<string>();
  const children = (parent: LsQube, level: number): void => {
    for (const c of sorted) {
      if (placed.has(c.entry.name) || parentOf(c) !== parent.entry.name) continue;
      placed.add(c.entry.name);
      out.push([level, c]);
      if (providesNetwork(c)) children(c, level + 1);
    }
  };
  for (const q of sorted) {
    if (parentOf(q) === '' && !providesNetwork(q)) {
      placed.add(q.entry.name);
      out.push([0, q]);
    }
  }
  for (const q of sorted) {
    if (placed.has(q.entry.name) || parentOf(q) !== '') continue;
    placed.add(q.entry.name);
    out.push([0, q]);
    children(q, 1);
  }
  // A netvm loop (which isolad refuses to create) would leave qubes unplaced: show them anyway.
  for (const q of sorted) if (!placed.has(q.entry.name)) out.push([0, q]);
  return out;
}

function row(q: LsQube, columns: readonly Column[], ctx: LsContext, level = 0): string[] {
  return columns.map((c) => {
    const v = cell(c.value(q, ctx));
    return level > 0 && c.head === 'NAME' ? '  '.repeat(level - 1) + '└─' + v : v;
  });
}

/** The text qvm-ls prints: an aligned table with its header, or `|`-separated rows (--raw-data). */
export function renderTable(qubes: readonly LsQube[], columns: readonly Column[], ctx: LsContext, o: TableOptions): string {
  const heads = columns.map((c) => c.head);
  if (o.tree && !o.rawData) return formatTable([heads, ...sortToTree(qubes).map(([level, q]) => row(q, columns, ctx, level))]);
  let rows = [...qubes].sort(byName).map((q) => row(q, columns, ctx));
  const index = heads.indexOf(o.sort.toUpperCase().replace(/_/g, '-'));
  if (index >= 0) {
    const numeric = SORT_NUMERIC.has(heads[index]);
    const key = (r: string[]) => (numeric ? numericKey(r[index]) : o.ignoreCase ? r[index].toUpperCase() : r[index]);
    const sign = o.reverse ? -1 : 1;
    // Array.prototype.sort is stable; reversing by the comparator keeps equal rows in order, as Python's reverse=True does.
    rows = rows.sort((a, b) => {
      const ka = key(a);
      const kb = key(b);
      return sign * (ka < kb ? -1 : ka > kb ? 1 : 0);
    });
  }
  return o.rawData ? formatRaw(rows) : formatTable([heads, ...rows]);
}
