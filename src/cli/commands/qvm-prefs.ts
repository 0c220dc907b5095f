// qvm-prefs: list, show, set and reset a qube's properties (admin.vm.property.*). qubes-prefs
// runs the same code against the global properties (admin.property.*, destination dom0).

import type { Command } from 'commander';
import type { AdminMethod } from '../../core/admin-methods';
import { helpLine } from '../output';
import {
  expandVmNames, hasNoValue, hasWildcard, isCode, lines, listQubes, newProgram, noSuchDomain, parseGetAll, parsePropertyReply,
  pyRepr, QUBE_VALUED, UsageError, type CliDeps, type PropertyReply,
} from './common';

export const description = "Show or change a qube's properties.";

type Verb = 'List' | 'Get' | 'GetAll' | 'Help' | 'Set' | 'Reset';

export interface PrefsTarget {
  command: string;
  description: string;
  methods: Record<Verb, AdminMethod>;
}

const VM: PrefsTarget = {
  command: 'qvm-prefs',
  description,
  methods: {
    List: 'admin.vm.property.List', Get: 'admin.vm.property.Get', GetAll: 'admin.vm.property.GetAll',
    Help: 'admin.vm.property.Help', Set: 'admin.vm.property.Set', Reset: 'admin.vm.property.Reset',
  },
};

interface PrefsOptions {
  helpProperties?: boolean;
  hideDefault?: boolean;
  default?: boolean;
}

/** The listing shows `None` for a qube-valued property set to no qube, as Qubes does. */
function listed(p: PropertyReply): string {
  return p.value === '' && (p.type === 'vm' || p.type === 'label') ? 'None' : p.value;
}

/**
 * One listing line exactly as Qubes' qvm-prefs prints it: `name  U`, or `name  D  value` with the
 * value as is (an empty string value leaves the two spaces before it, as Python's format does).
 */
function prefsLine(name: string, width: number, marker: 'D' | '-' | 'U', value = ''): string {
  return marker === 'U' ? `${name.padEnd(width)}  U\n` : `${name.padEnd(width)}  ${marker}  ${value}\n`;
}

/** Qubes' VMNAME (nargs=1): wildcards allowed, an unknown name is a usage error. */
async function resolveDest(deps: CliDeps, untrustedName: string): Promise<string> {
  const matches = expandVmNames(await listQubes(deps.client), [untrustedName]);
  if (matches.length === 0) throw noSuchDomain(untrustedName);
  // Qubes would silently take the last match; changing one arbitrary qube is worse than asking.
  if (matches.length > 1 && hasWildcard(untrustedName)) {
    throw new UsageError(`argument VMNAME: ${pyRepr(untrustedName)} matches ${matches.length} qubes (${matches.map((q) => q.name).join(', ')}); name one`);
  }
  return matches[0].name;
}

export async function runPrefs(t: PrefsTarget, withVm: boolean, argv: string[], deps: CliDeps): Promise<number> {
  const p: Command = newProgram(t.command, t.description, deps);
  if (withVm) p.argument('<VMNAME>', 'qube whose properties to show or change');
  p.argument('[PROPERTY]', 'name of the property to show or change')
    .argument('[VALUE]', 'new value of the property')
    .option('--help-properties', 'list all available properties with short descriptions and exit')
    .option('--hide-default', 'do not show properties that are set to their default value')
    .option('-D, --default', 'reset the property to its default value')
    .option('-g, --get', 'ignored; for compatibility with older scripts')
    .option('-s, --set', 'ignored; for compatibility with older scripts');
  p.parse(argv, { from: 'user' });
  const o = p.opts<PrefsOptions>();
  const args = [...p.args];
  const untrustedDest = withVm ? args.shift() ?? '' : 'dom0';
  const [rawProp, value] = args;
  const prop = rawProp?.replace(/-/g, '_');
  if (o.default && value !== undefined) throw new UsageError('cannot both set and reset a property');
  if (o.default && prop === undefined) throw new UsageError('--default requires a property');
  const dest = withVm ? await resolveDest(deps, untrustedDest) : 'dom0';
  const call = (verb: Verb, arg?: string, payload?: string) => deps.client.call(t.methods[verb], dest, { arg, payload });

  if (o.helpProperties) {
    const names = lines(await call('List')).sort();
    const helps = await Promise.all(names.map((n) => call('Help', n)));
    const width = Math.max(0, ...names.map((n) => n.length));
    deps.stdout(names.map((n, i) => helpLine(n, width, helps[i])).join(''));
    return 0;
  }
  if (prop === undefined) {
    const props = [...parseGetAll(await call('GetAll'))].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    const width = Math.max(0, ...props.map(([n]) => n.length));
    for (const [name, r] of props) {
      if (hasNoValue(r)) deps.stdout(prefsLine(name, width, 'U'));
      else if (!r.isDefault) deps.stdout(prefsLine(name, width, '-', listed(r)));
      else if (!o.hideDefault) deps.stdout(prefsLine(name, width, 'D', listed(r)));
    }
    return 0;
  }
  try {
    if (value !== undefined) {
      await call('Set', prop, value.toLowerCase() === 'none' && QUBE_VALUED.has(prop) ? '' : value);
    } else if (o.default) {
      await call('Reset', prop);
    } else {
      const r = parsePropertyReply(await call('Get', prop));
      if (o.hideDefault && r.isDefault) return 0;
      if (hasNoValue(r) || (r.value === '' && (r.type === 'vm' || r.type === 'label'))) return 0;
      deps.stdout(r.value + '\n');
    }
  } catch (e) {
    // Qubes reports an unknown property as a usage error of the tool.
    if (isCode(e, 'QubesNoSuchPropertyError')) throw new UsageError(`no such property: ${pyRepr(prop)}`);
    throw e;
  }
  return 0;
}

export function run(argv: string[], deps: CliDeps): Promise<number> {
  return runPrefs(VM, true, argv, deps);
}
