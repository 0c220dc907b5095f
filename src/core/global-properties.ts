// Global prefs (`qubes-prefs`), with Qubes' names, types and defaults (some derived from other
// prefs or from the host), and the checks that keep them pointing at qubes of the right kind.

import { propertyValueError, QubesError } from './errors';
import { parseBool, parseInteger, type World } from './property-types';
import { isDispvmTemplate, resolveProperty } from './properties';
import type { PropValue, QubeClass } from './qube';
import { withArticle } from './grammar';
import { kernelCheck, virtModeCheck } from './property-checks';

export interface GlobalPropertyDef {
  name: string;
  type: 'vm' | 'str' | 'int' | 'bool';
  help: string;
  /** A fixed value, or computed from the other prefs (as they resolve) and the host. */
  default: PropValue | ((get: (name: string) => PropValue, w: World) => PropValue);
  readOnly?: boolean;
  /** For `vm` props: which qubes are acceptable. */
  check?: (value: string, w: World) => string | undefined;
}

function vmOfClass(...classes: QubeClass[]) {
  return (v: string, w: World) => {
    const q = w.qube(v);
    if (!q) return `no such qube '${v}'`;
    return classes.includes(q.klass) ? undefined : `'${v}' is ${withArticle(q.klass)}, expected ${classes.join(' or ')}`;
  };
}

const anyQube = (v: string, w: World) => (w.qube(v) ? undefined : `no such qube '${v}'`);

function disposableTemplate(v: string, w: World): string | undefined {
  const q = w.qube(v);
  if (!q) return `no such qube '${v}'`;
  return isDispvmTemplate(q, w) ? undefined : `'${v}' is not a disposable template`;
}

const poolOf = (kind: string): GlobalPropertyDef => ({
  name: `default_pool_${kind}`, type: 'str', default: (get) => get('default_pool'), help: `Storage pool for new ${kind} volumes (default: default_pool).`,
});

export const GLOBAL_PROPERTIES: readonly GlobalPropertyDef[] = [
  { name: 'default_template', type: 'vm', default: null, check: vmOfClass('TemplateVM'), help: 'Template for new AppVMs.' },
  {
    name: 'default_netvm', type: 'vm', default: null, help: 'Default netvm of new qubes.',
    check: (v, w) => {
      const q = w.qube(v);
      if (!q) return `no such qube '${v}'`;
      return q.klass !== 'AdminVM' && resolveProperty(q, 'provides_network', w).value ? undefined : `'${v}' does not provide network`;
    },
  },
  { name: 'default_dispvm', type: 'vm', default: null, check: disposableTemplate, help: 'Default disposable template.' },
  {
    name: 'management_dispvm', type: 'vm', default: null, check: disposableTemplate,
    help: 'Disposable template used to manage qubes. No effect yet: Isola has no management stack.',
  },
  { name: 'default_guivm', type: 'vm', default: 'dom0', check: anyQube, help: 'Default guivm of qubes. No effect yet: Isola has no GUI domain.' },
  { name: 'default_audiovm', type: 'vm', default: 'dom0', check: anyQube, help: 'Default audiovm of qubes. No effect yet: Isola has no audio.' },
  { name: 'updatevm', type: 'vm', default: null, check: vmOfClass('AppVM', 'StandaloneVM', 'DispVM'), help: 'Qube used to download updates for dom0 and templates.' },
  { name: 'clockvm', type: 'vm', default: null, check: vmOfClass('AppVM', 'StandaloneVM', 'DispVM'), help: 'Qube used to synchronise the clock. No effect: Isola uses the host clock.' },
  { name: 'default_pool', type: 'str', default: 'default', help: 'Storage pool for new volumes.' },
  poolOf('kernel'),
  poolOf('private'),
  poolOf('root'),
  poolOf('volatile'),
  {
    name: 'default_kernel', type: 'str', default: (_get, w) => w.kernels?.()[0] ?? '', check: (v, w) => kernelCheck(v, w),
    help: 'Kernel of hvm qubes whose kernel property is not set (default: the newest installed).',
  },
  {
    name: 'default_virt_mode', type: 'str', default: 'sandbox', check: (v, w) => virtModeCheck(v, w),
    help: "virt_mode of new qubes without a template to take it from: 'sandbox' or 'hvm'.",
  },
  { name: 'default_qrexec_timeout', type: 'int', default: 60, help: 'Default qrexec_timeout of qubes (seconds).' },
  { name: 'default_shutdown_timeout', type: 'int', default: 60, help: 'Default shutdown_timeout of qubes (seconds).' },
  { name: 'stats_interval', type: 'int', default: 3, help: 'Interval of qube statistics (seconds). No effect yet: Isola sends no stats events.' },
  { name: 'check_updates_vm', type: 'bool', default: true, help: 'Check for updates inside qubes. No effect yet.' },
  { name: 'maxmem', type: 'int', readOnly: true, default: (_get, w) => w.hostMemoryMiB, help: 'Memory of the host (MiB).' },
  { name: 'no_cpus', type: 'int', readOnly: true, default: (_get, w) => w.hostCpus ?? 1, help: 'Number of CPUs of the host.' },
];

const BY_NAME = new Map(GLOBAL_PROPERTIES.map((p) => [p.name, p]));

export function globalPropertyDef(untrustedName: string): GlobalPropertyDef {
  const def = BY_NAME.get(untrustedName);
  if (!def) throw new QubesError('QubesNoSuchPropertyError', `Invalid property '${untrustedName}' of dom0`);
  return def;
}

/** A global pref's value: the one set, else its default (which may follow other prefs). */
export function resolveGlobal(name: string, set: Readonly<Record<string, PropValue>>, w: World): { value: PropValue; isDefault: boolean } {
  const def = globalPropertyDef(name);
  if (!def.readOnly && Object.prototype.hasOwnProperty.call(set, name)) return { value: set[name], isDefault: false };
  const d = def.default;
  return { value: typeof d === 'function' ? d((n) => resolveGlobal(n, set, w).value, w) : d, isDefault: true };
}

export function parseGlobalValue(name: string, untrusted: string, w: World, knownPools: readonly string[]): PropValue {
  const def = globalPropertyDef(name);
  if (def.readOnly) throw propertyValueError('dom0', name, 'property is read-only');
  if (def.type === 'vm') {
    if (untrusted === '' || untrusted === 'None') return null;
    const problem = def.check?.(untrusted, w);
    if (problem) throw propertyValueError('dom0', name, problem);
    return untrusted;
  }
  if (def.type === 'int') {
    const n = parseInteger(untrusted);
    if (n === undefined || n <= 0) throw propertyValueError('dom0', name, `'${untrusted}' is not a positive integer`);
    return n;
  }
  if (def.type === 'bool') {
    const b = parseBool(untrusted);
    if (b === undefined) throw propertyValueError('dom0', name, `'${untrusted}' is not a boolean (True/False)`);
    return b;
  }
  if (name.startsWith('default_pool') && !knownPools.includes(untrusted)) throw propertyValueError('dom0', name, `no such pool '${untrusted}'`);
  const value = name === 'default_virt_mode' ? untrusted.toLowerCase() : untrusted;
  const problem = def.check?.(value, w);
  if (problem) throw propertyValueError('dom0', name, problem);
  return value;
}
