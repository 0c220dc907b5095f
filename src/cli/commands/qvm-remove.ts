// qvm-remove: admin.vm.Remove for each qube after a confirmation read from stdin (a terminal or
// not, as Qubes' input(): `echo y | qvm-remove work` works; end of input means no); -f skips it.
// A qube that others still use is refused by isolad; the tool then lists what uses it, as Qubes.

import { isCode, listQubes, newProgram, parseGetAll, reportError, resolveTargets, addTargetOptions, type CliDeps, type TargetOptions } from './common';

export const description = 'Remove one or more qubes and their volumes.';

/** Where Qubes' vm_dependencies looks: the global properties and each qube's properties. */
const GLOBAL_REFS = ['default_dispvm', 'default_netvm', 'default_guivm', 'default_audiovm', 'default_template', 'clockvm', 'updatevm', 'management_dispvm'];
const QUBE_REFS = ['template', 'netvm', 'guivm', 'audiovm', 'default_dispvm', 'management_dispvm'];

export async function run(argv: string[], deps: CliDeps): Promise<number> {
  const p = addTargetOptions(newProgram('qvm-remove', description, deps).argument('[VMNAME...]', 'qubes to remove'))
    .option('-f, --force', 'do not prompt for confirmation');
  p.parse(argv, { from: 'user' });
  const o = p.opts<TargetOptions & { force?: boolean }>();
  const names = await resolveTargets(deps, p.args, o);
  if (names.includes('dom0')) {
    deps.stderr("qvm-remove: error: Domain 'dom0' cannot be removed.\n");
    return 1;
  }
  const ask = async (q: string) => (deps.prompt ? deps.prompt(q) : '');
  if (o.all && !(o.force || o.exclude.length > 0)) {
    deps.stderr('WARNING!!! Removing all domains may leave your system in an unrecoverable state!\n');
    if ((await ask('Are you certain? [N/IKNOWWHATIAMDOING]')).trim() !== 'IKNOWWHATIAMDOING') {
      deps.stderr('Remove cancelled.\n');
      return 1;
    }
  }
  if (!o.force) {
    deps.stderr('This will completely remove the selected VM(s)...\n');
    deps.stdout(names.map((n) => `  ${n}\n`).join(''));
    if ((await ask('Are you sure? [y/N] ')).trim().toUpperCase() !== 'Y') {
      deps.stderr('Remove cancelled.\n');
      return 1;
    }
  }
  // Qubes stops at the first failure (its parser.error_runtime exits).
  for (const name of names) {
    try {
      await deps.client.call('admin.vm.Remove', name);
    } catch (e) {
      if (isCode(e, 'QubesVMInUseError')) await printDependencies(deps, name);
      return reportError('qvm-remove', e, deps);
    }
  }
  return 0;
}

/** Qubes' listing of what still uses a qube; best effort (reads only), the refusal follows anyway. */
async function printDependencies(deps: CliDeps, name: string): Promise<void> {
  const found: string[] = [];
  try {
    const globals = parseGetAll(await deps.client.call('admin.property.GetAll', 'dom0'));
    for (const g of GLOBAL_REFS) if (globals.get(g)?.value === name) found.push(` - global property ${g}`);
    for (const q of await listQubes(deps.client)) {
      if (q.name === name || q.klass === 'AdminVM') continue;
      const props = parseGetAll(await deps.client.call('admin.vm.property.GetAll', q.name));
      for (const prop of QUBE_REFS) if (props.get(prop)?.value === name) found.push(` - ${prop} for ${q.name}`);
    }
  } catch {
    return;
  }
  if (found.length > 0) deps.stderr(`VM ${name} cannot be removed. It is in use as:\n${found.map((l) => l + '\n').join('')}`);
}
