// qvm-ls: the table of qubes (admin.vm.List plus one property.GetAll per listed qube when a
// column needs properties), with Qubes' formats, filters and raw outputs, and a BACKEND column.

import { Option } from 'commander';
import { vmNotFound } from '../../core/errors';
import { cell, columnHeader, formatRaw, formatTable } from '../output';
import { collect, lines, listQubes, newProgram, parseGetAll, type CliDeps, type PropertyReply, type QubeEntry } from './common';

export const description = 'List qubes and their parameters.';

/** Qubes' preset formats; Isola adds BACKEND to each (how the qube is isolated). */
const FORMATS: Record<string, string[]> = {
  simple: ['name', 'state', 'class', 'label', 'template', 'netvm', 'backend'],
  full: ['name', 'state', 'class', 'label', 'qid', 'uuid', 'backend'],
  prefs: ['name', 'label', 'template', 'netvm', 'vcpus', 'memory', 'maxmem', 'virt_mode', 'backend'],
};

/** Columns answered by admin.vm.List alone. */
const FROM_LIST = new Set(['name', 'state', 'class', 'uuid']);

interface LsOptions {
  all?: boolean;
  exclude: string[];
  format: string;
  fields?: string;
  rawData?: boolean;
  rawList?: boolean;
  running?: boolean;
  paused?: boolean;
  halted?: boolean;
  class?: string[];
  label?: string[];
  tags?: string[];
  excludeTags?: string[];
}

type Props = Map<string, PropertyReply>;

/** `sandbox` for the OCI sandbox; every other virt_mode (hvm, pvh, pv) runs under the vm backend. */
export function backendOf(q: QubeEntry, props: Props | undefined): string {
  if (q.klass === 'AdminVM') return '';
  const mode = props?.get('virt_mode')?.value ?? '';
  return mode === '' ? '' : mode === 'sandbox' ? 'sandbox' : 'vm';
}

function value(q: QubeEntry, field: string, props: Props | undefined): string {
  if (field === 'name') return q.name;
  if (field === 'state') return q.state;
  if (field === 'class') return q.klass;
  if (field === 'uuid') return q.uuid;
  if (field === 'backend') return backendOf(q, props);
  return props?.get(field)?.value ?? '';
}

export async function run(argv: string[], deps: CliDeps): Promise<number> {
  const p = newProgram('qvm-ls', description, deps)
    .argument('[VMNAME...]', 'show only these qubes')
    .option('--all', 'list all qubes (the default)')
    .option('--exclude <VMNAME>', 'do not list the qube (repeatable)', collect, [])
    .addOption(new Option('-o, --format <FORMAT>', 'preset format').choices(Object.keys(FORMATS)).default('simple').conflicts('fields'))
    .option('-O, --fields <FIELD,...>', 'columns to show: NAME, STATE, CLASS, BACKEND or any property')
    .option('--raw-data', 'no header, cells separated by |, for scripts')
    .option('--raw-list', 'only the qube names, one per line')
    .option('--running', 'only running qubes')
    .option('--paused', 'only paused qubes')
    .option('--halted', 'only halted qubes')
    .option('--class <CLASS...>', 'only qubes of these classes')
    .option('--label <LABEL...>', 'only qubes with these labels')
    .option('--tags <TAG...>', 'only qubes with at least one of these tags')
    .option('--exclude-tags <TAG...>', 'only qubes with none of these tags');
  p.parse(argv, { from: 'user' });
  const o = p.opts<LsOptions>();
  const names = p.args;
  const fields = (o.fields ? o.fields.split(',') : FORMATS[o.format]).map((f) => f.trim().toLowerCase().replace(/-/g, '_')).filter(Boolean);

  const all = await listQubes(deps.client);
  for (const n of names) if (!all.some((q) => q.name === n)) throw vmNotFound(n);
  const states = [o.running && 'Running', o.paused && 'Paused', o.halted && 'Halted'].filter(Boolean);
  let qubes = all
    .filter((q) => names.length === 0 || names.includes(q.name))
    .filter((q) => !o.exclude.includes(q.name))
    .filter((q) => states.length === 0 || states.includes(q.state))
    .filter((q) => !o.class || o.class.includes(q.klass))
    .sort((a, b) => (a.klass === 'AdminVM' ? -1 : b.klass === 'AdminVM' ? 1 : a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

  if (o.tags || o.excludeTags) {
    const tags = await Promise.all(qubes.map(async (q) => lines(await deps.client.call('admin.vm.tag.List', q.name))));
    qubes = qubes.filter((_q, i) => (!o.tags || o.tags.some((t) => tags[i].includes(t))) && !o.excludeTags?.some((t) => tags[i].includes(t)));
  }
  if (o.rawList) {
    deps.stdout(qubes.map((q) => q.name + '\n').join(''));
    return 0;
  }

  const props = new Map<string, Props>();
  if (o.label || fields.some((f) => !FROM_LIST.has(f))) {
    const replies = await Promise.all(qubes.map(async (q) => parseGetAll(await deps.client.call('admin.vm.property.GetAll', q.name))));
    qubes.forEach((q, i) => props.set(q.name, replies[i]));
  }
  if (o.label) qubes = qubes.filter((q) => o.label?.includes(props.get(q.name)?.get('label')?.value ?? ''));

  const rows = qubes.map((q) => fields.map((f) => cell(value(q, f, props.get(q.name)))));
  deps.stdout(o.rawData ? formatRaw(rows) : formatTable([fields.map(columnHeader), ...rows]));
  // Why a qube is Halted when it did not stop cleanly; on stderr so the table stays parseable.
  if (!o.rawData) for (const q of qubes) if (q.lastError) deps.stderr(`${q.name}: last run: ${q.lastError}\n`);
  return 0;
}
