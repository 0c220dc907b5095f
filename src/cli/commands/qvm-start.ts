// qvm-start: admin.vm.Start for each named qube (or --all); the daemon prepares volumes, network
// and backend and replies once the qube runs.

import { addTargetOptions, forEachQube, isCode, newProgram, resolveTargets, type CliDeps, type TargetOptions } from './common';

export const description = 'Start one or more qubes.';

export async function run(argv: string[], deps: CliDeps): Promise<number> {
  const p = addTargetOptions(newProgram('qvm-start', description, deps).argument('[VMNAME...]', 'qubes to start'))
    .option('--skip-if-running', 'do not fail if a qube is already running');
  p.parse(argv, { from: 'user' });
  const o = p.opts<TargetOptions & { skipIfRunning?: boolean }>();
  const names = await resolveTargets(deps, p.args, o);
  return forEachQube('qvm-start', deps, names, async (name) => {
    try {
      await deps.client.call('admin.vm.Start', name);
    } catch (e) {
      // Asking, not checking first: the state could change between a check and the start.
      if (!(o.skipIfRunning && isCode(e, 'QubesVMNotHaltedError'))) throw e;
    }
  });
}
