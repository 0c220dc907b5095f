// qvm-kill: admin.vm.Kill for each named qube (or --all): stops it at once, without a clean
// shutdown. A qube that is not running is already where the user wants it.

import { addTargetOptions, forEachQube, isCode, newProgram, resolveTargets, type CliDeps, type TargetOptions } from './common';

export const description = 'Kill one or more qubes (no clean shutdown).';

export async function run(argv: string[], deps: CliDeps): Promise<number> {
  const p = addTargetOptions(newProgram('qvm-kill', description, deps).argument('[VMNAME...]', 'qubes to kill'));
  p.parse(argv, { from: 'user' });
  const names = await resolveTargets(deps, p.args, p.opts<TargetOptions>());
  return forEachQube('qvm-kill', deps, names, async (name) => {
    try {
      await deps.client.call('admin.vm.Kill', name);
    } catch (e) {
      if (!isCode(e, 'QubesVMNotStartedError', 'QubesVMNotRunningError')) throw e;
    }
  });
}
