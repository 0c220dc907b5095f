// qvm-kill: admin.vm.Kill for each named qube (or --all): stops it at once, without a clean
// shutdown. A qube that is not running is already where the user wants it; the exit code is the
// number of qubes that could not be killed, as in Qubes.

import { errorText } from '../../core/error-text';
import { addTargetOptions, isCode, newProgram, resolveTargets, type CliDeps, type TargetOptions } from './common';

export const description = 'Kill one or more qubes (no clean shutdown).';

export async function run(argv: string[], deps: CliDeps): Promise<number> {
  const p = addTargetOptions(newProgram('qvm-kill', description, deps).argument('[VMNAME...]', 'qubes to kill'));
  p.parse(argv, { from: 'user' });
  const names = await resolveTargets(deps, p.args, p.opts<TargetOptions>());
  const failed = new Map<string, unknown>();
  await Promise.all(
    names.map(async (name) => {
      try {
        await deps.client.call('admin.vm.Kill', name);
      } catch (e) {
        if (!isCode(e, 'QubesVMNotStartedError', 'QubesVMNotRunningError')) failed.set(name, e);
      }
    }),
  );
  const ordered = names.filter((n) => failed.has(n));
  for (const n of ordered) deps.stderr(`qvm-kill: error: Failed to kill: ${n}: ${errorText(failed.get(n))}\n`);
  return Math.min(ordered.length, 255);
}
