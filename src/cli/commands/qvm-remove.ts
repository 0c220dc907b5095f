// qvm-remove: admin.vm.Remove for each qube after a confirmation on the terminal; without a
// terminal it refuses unless -f is given, so that a script never deletes qubes by accident.

import { addTargetOptions, checkTargets, ensureCanAsk, forEachQube, newProgram, resolveTargets, type CliDeps, type TargetOptions } from './common';

export const description = 'Remove one or more qubes and their volumes.';

export async function run(argv: string[], deps: CliDeps): Promise<number> {
  const p = addTargetOptions(newProgram('qvm-remove', description, deps).argument('[VMNAME...]', 'qubes to remove'))
    .option('-f, --force', 'do not ask for confirmation');
  p.parse(argv, { from: 'user' });
  const o = p.opts<TargetOptions & { force?: boolean }>();
  checkTargets(p.args, o);
  if (p.args.includes('dom0')) {
    deps.stderr("qvm-remove: error: Domain 'dom0' cannot be removed.\n");
    return 1;
  }
  const ask = o.force ? undefined : ensureCanAsk(deps, '-f/--force');
  const names = await resolveTargets(deps, p.args, o);
  if (ask) {
    if (o.all && o.exclude.length === 0) {
      deps.stderr('WARNING!!! Removing all qubes may leave your system in an unrecoverable state!\n');
      if ((await ask('Are you certain? [N/IKNOWWHATIAMDOING] ')).trim() !== 'IKNOWWHATIAMDOING') {
        deps.stderr('Remove cancelled.\n');
        return 1;
      }
    }
    deps.stderr('This will completely remove the selected VM(s)...\n' + names.map((n) => `  ${n}\n`).join(''));
    if ((await ask('Are you sure? [y/N] ')).trim().toUpperCase() !== 'Y') {
      deps.stderr('Remove cancelled.\n');
      return 1;
    }
  }
  return forEachQube('qvm-remove', deps, names, async (name) => {
    await deps.client.call('admin.vm.Remove', name);
  });
}
