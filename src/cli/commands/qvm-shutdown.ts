// qvm-shutdown: admin.vm.Shutdown (arg force/wait) for each qube, concurrently; with --wait a
// qube still running after the daemon's shutdown_timeout (or --timeout) is killed, as Qubes does.

import { InvalidArgumentError } from 'commander';
import {
  addTargetOptions, isCode, newProgram, reportError, resolveTargets, verbosity, type CliDeps, type TargetOptions,
} from './common';

export const description = 'Gracefully shut down one or more qubes.';

interface ShutdownOptions extends TargetOptions {
  wait?: boolean;
  timeout?: number;
  force?: boolean;
  verbose: number;
  quiet: number;
}

function seconds(v: string): number {
  const n = Number(v);
  if (!/^[0-9]+(\.[0-9]+)?$/.test(v) || !Number.isFinite(n)) throw new InvalidArgumentError('expected a number of seconds');
  return n;
}

/** True if `p` settled in time; a late rejection is still observed by the race, never unhandled. */
async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([p.then(() => true), late]);
  } finally {
    clearTimeout(timer);
  }
}

export async function run(argv: string[], deps: CliDeps): Promise<number> {
  const p = addTargetOptions(newProgram('qvm-shutdown', description, deps).argument('[VMNAME...]', 'qubes to shut down'))
    .option('--wait', 'wait for the qubes to shut down; kill those still running after the timeout')
    .option('--timeout <SECONDS>', "with --wait: seconds before killing (default: the qube's shutdown_timeout)", seconds)
    .option('--force', 'shut down even if other running qubes use this one as netvm');
  p.parse(argv, { from: 'user' });
  const o = p.opts<ShutdownOptions>();
  const names = await resolveTargets(deps, p.args, o);
  // Like Qubes: --all shuts everything down, so dependencies between the qubes do not matter.
  const arg = [(o.force || o.all) && 'force', o.wait && 'wait'].filter(Boolean).join('+');
  let code = 0;
  const toKill = new Set<string>();
  await Promise.all(
    names.map(async (name) => {
      try {
        const done = deps.client.call('admin.vm.Shutdown', name, { arg });
        if (o.wait && o.timeout !== undefined) {
          if (!(await within(done, o.timeout * 1000))) toKill.add(name);
        } else {
          await done;
        }
      } catch (e) {
        if (isCode(e, 'QubesVMNotStartedError', 'QubesVMNotRunningError')) return;
        if (o.wait && isCode(e, 'QubesVMShutdownTimeoutError')) toKill.add(name);
        else code = Math.max(code, reportError('qvm-shutdown', e, deps));
      }
    }),
  );
  const kill = names.filter((n) => toKill.has(n));
  if (kill.length > 0 && verbosity(o) >= 1) deps.stderr(`qvm-shutdown: killing remaining qubes: ${kill.join(', ')}\n`);
  for (const name of kill) {
    try {
      await deps.client.call('admin.vm.Kill', name);
    } catch (e) {
      if (!isCode(e, 'QubesVMNotStartedError', 'QubesVMNotRunningError')) code = Math.max(code, reportError('qvm-shutdown', e, deps));
    }
  }
  return code;
}
