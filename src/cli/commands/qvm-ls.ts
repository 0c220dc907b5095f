// qvm-ls: the table of qubes as Qubes' qvm-ls prints it. admin.vm.List, then only what the
// requested columns and filters need (see src/cli/ls/): properties, state, volumes, tags, features.

import { Option } from 'commander';
import { columnFor, FORMATS, helpColumns, helpFormats, propValue, type LsQube } from '../ls/columns';
import { featureOf, fetchForColumns, fetchProps, fetchTags, mergeNeeds } from '../ls/fetch';
import { renderTable } from '../ls/table';
import { inert } from '../output';
import { collect, expandVmNames, listQubes, newProgram, UsageError, type CliDeps } from './common';

export const description = 'List Qubes domains and their parameters.';

interface LsOptions {
  all?: boolean;
  exclude: string[];
  format: string;
  fields?: string;
  disk?: boolean;
  network?: boolean;
  kernel?: boolean;
  tree?: boolean;
  rawData?: boolean;
  rawList?: boolean;
  helpFormats?: boolean;
  helpColumns?: boolean;
  class?: string[];
  label?: string[];
  tags?: string[];
  excludeTags?: string[];
  running?: boolean;
  paused?: boolean;
  halted?: boolean;
  templateSource?: string[];
  netvmIs?: string[];
  internal?: string;
  servicevm?: string;
  pendingUpdate?: boolean;
  features?: string[];
  prefs?: string[];
  sort: string;
  reverse?: boolean;
  ignoreCase?: boolean;
}

const FORMAT_GROUP = ['format', 'fields', 'disk', 'network', 'kernel'];
const others = (me: string) => FORMAT_GROUP.filter((o) => o !== me);

/**
 * `KEY=VALUE` of --features/--prefs as Qubes reads it: an empty VALUE means "unset" (null),
 * `''` or `""` means the empty string.
 */
function parseMatch(flag: string, untrusted: string): [string, string | null] {
  const eq = untrusted.indexOf('=');
  if (eq <= 0) throw new UsageError(`Invalid argument: ${flag} ${untrusted}`);
  const v = untrusted.slice(eq + 1);
  return [untrusted.slice(0, eq), v === '' ? null : v === "''" || v === '""' ? '' : v];
}

/** A property as Python's str(getattr(vm, key, None)) gives it: `None` for no qube / no value / no property. */
function prefString(q: LsQube, key: string): string {
  if (key === 'name' || key === 'klass' || key === 'uuid') return propValue(q, key) ?? 'None';
  const p = q.props?.get(key);
  if (!p) return 'None';
  return p.value === '' && p.type !== 'str' ? 'None' : p.value;
}

const YES = ['y', 'yes'];
const TRUE_FEATURE = ['1', 'true', 'True'];

export async function run(argv: string[], deps: CliDeps): Promise<number> {
  const yn = (flag: string, help: string) => new Option(`${flag} <y|n>`, help).choices(['y', 'yes', 'n', 'no']);
  const p = newProgram('qvm-ls', description, deps)
    .argument('[VMNAME...]', 'zero or more domain names')
    .option('--all', 'perform the action on all qubes')
    .option('--exclude <EXCLUDE>', 'exclude the qube from --all', collect, [])
    .addOption(new Option('-o, --format <FORMAT>', 'preset format').choices(Object.keys(FORMATS)).default('simple').conflicts(others('format')))
    .addOption(new Option('-O, --fields <FIELD,...>', 'user specified format (see --help-columns)').conflicts(others('fields')))
    .option('-t, --tree', 'sort domain list as network tree')
    .option('--raw-data', 'no header, cells separated by |, for scripts')
    .option('--raw-list', 'same as --raw-data --fields=name')
    .addOption(new Option('-d, --disk', 'same as --format=disk').conflicts(others('disk')))
    .addOption(new Option('-n, --network', 'same as --format=network').conflicts(others('network')))
    .addOption(new Option('-k, --kernel', 'same as --format=kernel').conflicts(others('kernel')))
    .option('--help-formats', 'list all available formats with their definitions and exit')
    .option('--help-columns', 'list all available columns with short descriptions and exit')
    .option('--class <CLASS...>', 'show only qubes of specific class(es)')
    .option('--label <LABEL...>', 'show only qubes with specific label(s)')
    .option('--tags <TAG...>', 'show only qubes having specific tag(s)')
    .option('--exclude-tags <TAG...>', 'exclude qubes having specific tag(s)')
    .option('--running', 'show running VMs')
    .option('--paused', 'show paused VMs')
    .option('--halted', 'show halted VMs')
    .option('--template-source <TEMPLATE...>', 'only qubes based on one of these templates ("" for none)')
    .option('--netvm-is <NETVM...>', 'only qubes connecting through one of these netvms')
    .addOption(yn('--internal', 'show only internal qubes (y) or hide them (n)'))
    .addOption(yn('--servicevm', 'show only service qubes (y) or hide them (n)'))
    .option('--pending-update', 'only qubes with updates pending')
    .option('--features <FEATURE=VALUE...>', 'only qubes matching all these features (empty VALUE: unset, \'\': blank)')
    .option('--prefs <PREFERENCE=VALUE...>', 'only qubes matching all these properties (empty VALUE: unset, \'\': blank)')
    .option('--sort <COLUMN>', 'sort based on provided column rather than NAME', 'NAME')
    .option('--reverse', 'reverse sort')
    .option('--ignore-case', 'ignore case distinctions when sorting')
    .option('--spinner', 'accepted for compatibility (Isola draws no spinner)')
    .option('--no-spinner', 'accepted for compatibility');
  p.parse(argv, { from: 'user' });
  const o = p.opts<LsOptions>();
  if (o.helpFormats || o.helpColumns) {
    deps.stdout(o.helpFormats ? helpFormats() : helpColumns());
    return 0;
  }

  // Everything that can be refused is refused before the first call.
  const names = p.args;
  if (o.all && names.length > 0) throw new UsageError('argument VMNAME: not allowed with argument --all');
  if (o.exclude.length > 0 && !o.all) throw new UsageError('--exclude can only be used with --all');
  const features = (o.features ?? []).map((f) => parseMatch('--features', f));
  const prefs = (o.prefs ?? []).map((f) => parseMatch('--prefs', f));
  const format = o.disk ? 'disk' : o.network ? 'network' : o.kernel ? 'kernel' : o.format;
  const fields = o.rawList ? ['name'] : o.fields ? o.fields.split(',') : FORMATS[format];
  const columns = fields.filter((f) => f.trim() !== '').map(columnFor);
  const rawData = Boolean(o.rawData || o.rawList);

  const all = await listQubes(deps.client);
  const picked = o.all ? all.filter((q) => !o.exclude.includes(q.name)) : names.length ? expandVmNames(all, names) : all;
  const states = [o.running && 'running', o.paused && 'paused', o.halted && 'halted'].filter(Boolean);
  let qubes: LsQube[] = picked
    .filter((q) => !o.class || o.class.includes(q.klass))
    .filter((q) => states.length === 0 || states.includes(q.state.toLowerCase()))
    .map((entry) => ({ entry }));

  const needs = mergeNeeds(columns.map((c) => c.needs));
  if (o.label || o.templateSource || o.netvmIs || prefs.length || (o.tree && !rawData)) await fetchProps(deps, qubes);
  if (o.label) qubes = qubes.filter((q) => o.label!.includes(propValue(q, 'label') ?? ''));
  if (o.templateSource) qubes = qubes.filter((q) => o.templateSource!.includes(propValue(q, 'template') ?? ''));
  // Qubes compares the netvm itself: no netvm property at all reads as '', no netvm (None) matches nothing.
  if (o.netvmIs) qubes = qubes.filter((q) => { const n = q.props?.get('netvm'); return o.netvmIs!.includes(n ? n.value || '\0' : ''); });
  for (const [key, value] of prefs) qubes = qubes.filter((q) => prefString(q, key) === value);

  if (o.tags || o.excludeTags) {
    const tags = await fetchTags(deps, qubes);
    const has = (q: LsQube, list: string[]) => list.some((t) => tags.get(q.entry.name)!.includes(t));
    qubes = qubes.filter((q) => (!o.tags || has(q, o.tags)) && !(o.excludeTags && has(q, o.excludeTags)));
  }
  const featureFilters: [string, (v: string | undefined) => boolean][] = [];
  if (o.internal) featureFilters.push(['internal', (v) => TRUE_FEATURE.includes(v ?? '') === YES.includes(o.internal!)]);
  if (o.servicevm) featureFilters.push(['servicevm', (v) => TRUE_FEATURE.includes(v ?? '') === YES.includes(o.servicevm!)]);
  if (o.pendingUpdate) featureFilters.push(['updates-available', (v) => Boolean(v)]);
  for (const [key, value] of features) featureFilters.push([key, (v) => (value === null ? v === undefined : v === value)]);
  if (featureFilters.length) {
    const keep = await Promise.all(qubes.map(async (q) => {
      for (const [f, ok] of featureFilters) if (!ok(await featureOf(deps, q.entry.name, f))) return false;
      return true;
    }));
    qubes = qubes.filter((_q, i) => keep[i]);
  }

  const ctx = await fetchForColumns(deps, qubes, needs);
  deps.stdout(renderTable(qubes, columns, ctx, { rawData, tree: Boolean(o.tree), sort: o.sort, reverse: Boolean(o.reverse), ignoreCase: Boolean(o.ignoreCase) }));
  // Why a qube is Halted when it did not stop cleanly; on stderr so the table stays parseable.
  if (!rawData) for (const q of qubes) if (q.entry.lastError) deps.stderr(`${q.entry.name}: last run: ${inert(q.entry.lastError)}\n`);
  return 0;
}
