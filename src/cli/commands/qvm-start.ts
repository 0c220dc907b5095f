// qvm-start: admin.vm.Start for each named qube (or --all); the daemon prepares volumes, network
// and backend and replies once the qube runs. As Qubes' client, a qube already running is a
// failure (`Domain is already running`) unless --skip-if-running, and each failure is one line.

import { errorText } from '../../core/error-text';
import { addTargetOptions, isCode, newProgram, resolveTargetEntries, type CliDeps, type TargetOptions } from './common';

export const description = 'Start one or more qubes.';

/** States in which Qubes' is_running() is true (a Crashed qube can be started again). */
const RUNNING = new Set(['Running', 'Transient', 'Paused', 'Suspended', 'Halting', 'Dying']);

export async function run(argv: string[], deps: CliDeps): Promise<number> {
  const p = addTargetOptions(newProgram('qvm-start', description, deps).argument('[VMNAME...]', 'qubes to start'))
    .option('--skip-if-running', 'do not fail if the qube is already running');
  p.parse(argv, { from: 'user' });
  const o = p.opts<TargetOptions & { skipIfRunning?: boolean }>();
  const qubes = await resolveTargetEntries(deps, p.args, o);
  let code = 0;
  // One after the other (Qubes starts them concurrently): a start is heavy on a small host, and
  // a qube's netvm started by the first start is then already up for the next.
  for (const q of qubes) {
    try {
      if (RUNNING.has(q.state)) {
        if (o.skipIfRunning) continue;
        throw new Error('Domain is already running');
      }
      await deps.client.call('admin.vm.Start', q.name);
    } catch (e) {
      // Asked, not only checked: the state may have changed since the listing.
      if (o.skipIfRunning && isCode(e, 'QubesVMNotHaltedError')) continue;
      deps.stderr(`qvm-start: error: Starting qube failed: ${q.name}: ${errorText(e)}\n`);
      code = 1;
    }
  }
  return code;
}
