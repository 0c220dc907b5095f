// Global prefs (`qubes-prefs`), with Qubes' names and defaults, and the checks that keep them
// pointing at qubes of the right kind.

import { propertyValueError, QubesError } from './errors';
import { parseInteger } from './property-types';
import { isDispvmTemplate, resolveProperty, type World } from './properties';
import type { PropValue, QubeClass } from './qube';
import { withArticle } from './grammar';

export interface GlobalPropertyDef {
  name: string;
  type: 'vm' | 'str' | 'int';
  help: string;
  default: PropValue;
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

export const GLOBAL_PROPERTIES: readonly GlobalPropertyDef[] = [
  { name: 'default_template', type: 'vm', default: null, check: vmOfClass('TemplateVM'), help: 'Template for new AppVMs.' },
  {
    name: 'default_netvm', type: 'vm', default: null, help: 'Default netvm of new qubes.',
    check: (v, w) => {
      const q = w.qube(v);
      if (!q) return `no such qube '${v}'`;
      return resolveProperty(q, 'provides_network', w).value ? undefined : `'${v}' does not provide network`;
    },
  },
  {
    name: 'default_dispvm', type: 'vm', default: null, help: 'Default disposable template.',
    check: (v, w) => {
      const q = w.qube(v);
      if (!q) return `no such qube '${v}'`;
      return isDispvmTemplate(q, w) ? undefined : `'${v}' is not a disposable template`;
    },
  },
  { name: 'updatevm', type: 'vm', default: null, check: vmOfClass('AppVM', 'StandaloneVM', 'DispVM'), help: 'Qube used to download updates.' },
  { name: 'clockvm', type: 'vm', default: null, check: vmOfClass('AppVM', 'StandaloneVM', 'DispVM'), help: 'Qube used to synchronise the clock.' },
  { name: 'default_pool', type: 'str', default: 'default', help: 'Storage pool for new volumes.' },
  { name: 'default_kernel', type: 'str', default: '', help: 'Kernel for the vm backend (empty: the qube\'s own).' },
  { name: 'default_qrexec_timeout', type: 'int', default: 60, help: 'Default qrexec_timeout of qubes (seconds).' },
  { name: 'default_shutdown_timeout', type: 'int', default: 60, help: 'Default shutdown_timeout of qubes (seconds).' },
];

export function globalPropertyDef(untrustedName: string): GlobalPropertyDef {
  const def = GLOBAL_PROPERTIES.find((p) => p.name === untrustedName);
  if (!def) throw new QubesError('QubesNoSuchPropertyError', `Invalid property '${untrustedName}' of dom0`);
  return def;
}

export function parseGlobalValue(name: string, untrusted: string, w: World, knownPools: readonly string[]): PropValue {
  const def = globalPropertyDef(name);
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
  if (name === 'default_pool' && !knownPools.includes(untrusted)) throw propertyValueError('dom0', name, `no such pool '${untrusted}'`);
  return untrusted;
}
