// qvm-ls' columns as Qubes defines them: the computed ones (STATE, CLASS, FLAGS, MEMORY, DISK,
// PRIV-*/ROOT-*, GATEWAY), any qube property by name, the preset formats and their help texts.

import { pyRepr, UsageError, type PropertyReply, type QubeEntry } from '../commands/common';

/** What qvm-ls knows of one listed qube; each part is fetched only when a column or filter needs it. */
export interface LsQube {
  entry: QubeEntry;
  props?: Map<string, PropertyReply>;
  /** admin.vm.CurrentState tokens (`mem=` in KiB). */
  state?: Map<string, string>;
  /** admin.vm.volume.Info per volume name (`size=`, `usage=` in bytes, `pool=`). */
  volumes?: Map<string, Map<string, string>>;
}

/** Other qubes' data, for columns that look through a qube's netvm (GATEWAY). */
export interface LsContext {
  propsOf(name: string): Map<string, PropertyReply> | undefined;
}

export interface Needs {
  props?: boolean;
  /** admin.vm.CurrentState, asked only of qubes that are not Halted. */
  state?: boolean;
  /** Volumes whose Info is needed, or 'all' (admin.vm.volume.List first). */
  volumes?: readonly string[] | 'all';
  /** The properties of each qube's netvm, even when the netvm is not listed. */
  netvmProps?: boolean;
}

export interface Column {
  head: string;
  doc?: string;
  needs: Needs;
  value(q: LsQube, ctx: LsContext): string | undefined;
}

/** A property's value as qvm-ls prints it; name, class and uuid come with admin.vm.List. */
export function propValue(q: LsQube, name: string): string | undefined {
  if (name === 'name') return q.entry.name;
  if (name === 'klass') return q.entry.klass;
  if (name === 'uuid') return q.entry.uuid;
  return q.props?.get(name)?.value;
}

const isTrue = (q: LsQube, name: string) => propValue(q, name) === 'True';
const MiB = 1024 * 1024;

function volumeNumber(q: LsQube, vol: string, key: 'size' | 'usage'): number {
  const n = Number(q.volumes?.get(vol)?.get(key) ?? 0);
  return Number.isFinite(n) ? n : 0;
}

/** Qubes' calc_size / calc_usage: MiB, 0 for a volume the qube does not have. */
const volSize = (q: LsQube, vol: string) => Math.floor(volumeNumber(q, vol, 'size') / MiB);
const volUsage = (q: LsQube, vol: string) => Math.floor(volumeNumber(q, vol, 'usage') / MiB);

/** Qubes' calc_used: usage as a whole percentage of the size, or a bare 0 when the size is 0. */
function volUsed(q: LsQube, vol: string): string {
  const size = volSize(q, vol);
  return size === 0 ? '0' : `${Math.floor((volUsage(q, vol) * 100) / size)}%`;
}

const TYPE_LETTERS: Record<string, string> = { AdminVM: '0', TemplateVM: 't', AppVM: 'a', StandaloneVM: 's', DispVM: 'd' };
const POWER_LETTERS = new Set(['running', 'transient', 'paused', 'suspended', 'halting', 'dying', 'crashed']);

/** Qubes' FLAGS: type (upper-case for hvm), power state, then U N R i D A for boolean properties. */
export function formatFlags(q: LsQube): string {
  let type = TYPE_LETTERS[q.entry.klass] ?? '-';
  if (type !== '0' && type !== '-' && propValue(q, 'virt_mode') === 'hvm') type = type.toUpperCase();
  const state = q.entry.state.toLowerCase();
  const power = state === 'unknown' ? '?' : POWER_LETTERS.has(state) ? state[0] : '-';
  const flag = (prop: string, letter: string) => (isTrue(q, prop) ? letter : '-');
  return type + power + flag('updateable', 'U') + flag('provides_network', 'N') + flag('installed_by_rpm', 'R') +
    flag('internal', 'i') + flag('debug', 'D') + flag('autostart', 'A');
}

const volumeColumns = (prefix: string, vol: string, what: string): Column[] => [
  { head: `${prefix}-CURR`, doc: `Space used by the ${what} volume (MiB).`, needs: { volumes: [vol] }, value: (q) => String(volUsage(q, vol)) },
  { head: `${prefix}-MAX`, doc: `Size of the ${what} volume (MiB).`, needs: { volumes: [vol] }, value: (q) => String(volSize(q, vol)) },
  { head: `${prefix}-POOL`, doc: `Storage pool of the ${what} volume.`, needs: { volumes: [vol] }, value: (q) => q.volumes?.get(vol)?.get('pool') },
  { head: `${prefix}-USED`, doc: `Space used by the ${what} volume, in percent of its size.`, needs: { volumes: [vol] }, value: (q) => volUsed(q, vol) },
];

/** The columns Qubes registers itself (what --help-columns lists); the rest are properties. */
export const COMPUTED: readonly Column[] = [
  { head: 'STATE', doc: 'Power state: Running, Halted, Transient, Paused, Halting…', needs: {}, value: (q) => q.entry.state },
  { head: 'CLASS', doc: 'Class of the qube (AppVM, TemplateVM, StandaloneVM, DispVM, AdminVM).', needs: {}, value: (q) => q.entry.klass },
  {
    head: 'GATEWAY', doc: "Network gateway: the netvm's gateway property.", needs: { props: true, netvmProps: true },
    value: (q, ctx) => {
      const netvm = propValue(q, 'netvm');
      return netvm ? ctx.propsOf(netvm)?.get('gateway')?.value : undefined;
    },
  },
  {
    head: 'MEMORY', doc: 'Memory the running qube uses now (MiB), from its cgroup.', needs: { state: true },
    value: (q) => (q.entry.state === 'Halted' || q.entry.state === 'NA' ? undefined : String(Math.floor(Number(q.state?.get('mem') ?? 0) / 1024))),
  },
  {
    head: 'DISK', doc: 'Space used by all volumes of the qube (MiB).', needs: { volumes: 'all' },
    value: (q) => String(Math.floor([...(q.volumes?.values() ?? [])].reduce((s, v) => s + (Number(v.get('usage')) || 0), 0) / MiB)),
  },
  ...volumeColumns('PRIV', 'private', 'private (/home, /usr/local)'),
  ...volumeColumns('ROOT', 'root', 'root (/usr, /etc, …)'),
  {
    // Not a 9th FLAGS letter: Qubes' FLAGS are 8 characters that scripts cut by position (docs/cli.md).
    head: 'OUTDATED', needs: { volumes: ['root'] },
    value: (q) => (q.volumes?.get('root')?.get('is_outdated') === 'True' ? 'outdated' : undefined),
    doc: "`outdated` for a running qube whose template's root was committed after it started (admin.vm.volume.Info " +
      'is_outdated): it sees the update only after a restart.',
  },
  {
    head: 'FLAGS', needs: { props: true }, value: formatFlags,
    doc: 'Type letter (0 AdminVM, a AppVM, d DispVM, s StandaloneVM, t TemplateVM; uppercase for hvm), power state ' +
      'letter (r running, t transient, p paused, s suspended, h halting, d dying, c crashed, - halted), then U updateable, ' +
      'N provides_network, R installed_by_rpm, i internal, D debug, A autostart.',
  },
];

const BY_HEAD = new Map(COMPUTED.map((c) => [c.head, c]));

/** Columns that come with admin.vm.List: no property call is needed for them. */
const FROM_LIST = new Set(['name', 'klass', 'uuid']);

/**
 * Isola has Qubes' `memory` where Qubes' prefs format still names `initialmem` (which Qubes itself
 * no longer has, so it prints `-`): show the value the column stands for.
 */
const ALIASES: Record<string, string> = { initialmem: 'memory' };

/** virt_mode, and for a running hvm qube the accelerator it got (Isola's `accel` in CurrentState): hvm/kvm, hvm/tcg. */
function virtModeValue(q: LsQube): string | undefined {
  const mode = propValue(q, 'virt_mode');
  const accel = q.entry.state === 'Halted' ? undefined : q.state?.get('accel');
  return mode && accel && /^[a-z]{1,8}$/.test(accel) ? `${mode}/${accel}` : mode;
}

export function propertyColumn(name: string): Column {
  const source = ALIASES[name] ?? name;
  if (source === 'virt_mode') return { head: 'VIRT-MODE', needs: { props: true, state: true }, value: virtModeValue };
  return { head: name.toUpperCase().replace(/_/g, '-'), needs: FROM_LIST.has(source) ? {} : { props: true }, value: (q) => propValue(q, source) };
}

/** Qubes' preset formats (-o), in Qubes' order of columns. */
export const FORMATS: Record<string, readonly string[]> = {
  simple: ['name', 'state', 'class', 'label', 'template', 'netvm'],
  network: ['name', 'state', 'netvm', 'ip', 'ipback', 'gateway'],
  kernel: ['name', 'state', 'class', 'template', 'kernel', 'kernelopts'],
  full: ['name', 'state', 'class', 'label', 'qid', 'xid', 'uuid'],
  prefs: ['name', 'label', 'template', 'netvm', 'vcpus', 'initialmem', 'maxmem', 'virt_mode'],
  disk: ['name', 'state', 'disk', 'priv-curr', 'priv-max', 'priv-used', 'root-curr', 'root-max', 'root-used'],
};

/**
 * Qubes' qube properties that Isola's table may not have yet: they are columns (`-` where a qube
 * has no such property), while a name that is no column and no property at all is refused.
 */
const QUBES_PROPERTIES = [
  'audiovm', 'auto_cleanup', 'autostart', 'backup_timestamp', 'bootmode', 'debug', 'default_dispvm', 'default_user', 'dispid',
  'dns', 'gateway', 'gateway6', 'guivm', 'icon', 'include_in_backups', 'installed_by_rpm', 'ip', 'ip6', 'kernel', 'kernelopts',
  'keyboard_layout', 'klass', 'label', 'mac', 'management_dispvm', 'maxmem', 'memory', 'name', 'netvm', 'provides_network',
  'qid', 'qrexec_timeout', 'shutdown_timeout', 'start_time', 'stubdom_mem', 'stubdom_xid', 'template', 'template_for_dispvms',
  'updateable', 'uuid', 'vcpus', 'virt_mode', 'visible_gateway', 'visible_gateway6', 'visible_ip', 'visible_ip6',
  'visible_netmask', 'xid',
];

const KNOWN_PROPERTIES = new Set([...QUBES_PROPERTIES, ...Object.values(FORMATS).flat(), ...Object.keys(ALIASES)]);

/** Isola's own properties; loaded only for a field no list above knows (it costs qvm-ls' start ~2 ms). */
function isIsolaProperty(name: string): boolean {
  const { PROPERTIES } = require('../../core/properties') as typeof import('../../core/properties');
  return PROPERTIES.some((p) => p.name === name);
}

/**
 * One -O field as Qubes looks it up: a computed column by its head (`priv_curr` = `PRIV-CURR`),
 * else a property (`provides-network` = `provides_network`). Unknown names are a usage error.
 */
export function columnFor(untrustedField: string): Column {
  const field = untrustedField.trim();
  const computed = BY_HEAD.get(field.toUpperCase().replace(/_/g, '-'));
  if (computed) return computed;
  const prop = field.toLowerCase().replace(/-/g, '_');
  if (!KNOWN_PROPERTIES.has(prop) && !isIsolaProperty(prop)) throw new UsageError(`unknown column: ${pyRepr(field)} (see --help-columns)`);
  return propertyColumn(prop);
}

/** Qubes' SORT_NUMERIC: these columns sort by number (`12%` counts as 12, `-` as 0). */
export const SORT_NUMERIC = new Set([
  'MEMORY', 'DISK', 'PRIV-CURR', 'PRIV-MAX', 'ROOT-CURR', 'XID', 'ROOT-MAX', 'MAXMEM', 'QREXEC-TIMEOUT', 'SHUTDOWN-TIMEOUT',
  'VCPUS', 'PRIV-USED', 'ROOT-USED',
]);

/** Python's textwrap.fill of `  HEAD  doc` with continuation lines indented by width + 6. */
function wrapHelp(head: string, width: number, doc: string): string {
  const out: string[] = [];
  let line = `  ${head.padEnd(width)} `;
  const indent = ' '.repeat(width + 6);
  for (const word of doc.split(/\s+/).filter(Boolean)) {
    if (line.length + 1 + word.length > 80) {
      out.push(line);
      line = indent + word;
    } else line += ' ' + word;
  }
  out.push(line);
  return out.join('\n');
}

export function helpColumns(): string {
  const width = Math.max(...COMPUTED.map((c) => c.head.length));
  const cols = [...COMPUTED].sort((a, b) => (a.head < b.head ? -1 : a.head > b.head ? 1 : 0));
  return 'Available columns:\n' + cols.map((c) => wrapHelp(c.head, width, c.doc ?? '')).join('\n') +
    '\n\nAny qube property can be a column too (see qvm-prefs --help-properties)\n\n';
}

export function helpFormats(): string {
  const names = Object.keys(FORMATS).sort();
  const width = Math.max(...names.map((n) => n.length));
  return 'Available formats:\n' + names.map((n) => `  ${n.padEnd(width)}  ${FORMATS[n].join(',').toUpperCase()}\n`).join('') + '\n';
}
