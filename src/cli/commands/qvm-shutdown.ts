// qvm-shutdown: admin.vm.Shutdown (arg force/wait) for each qube, concurrently, as Qubes' client:
// qubes refused because others still use them are retried (their users may be going down too),
// with --wait a qube that timed out is asked once more and then killed; the exit code is the
// number of qubes that could not be shut down.

import { InvalidArgumentError } from 'commander';
import { QubesError } from '../../core/errors';
import { errorText } from '../../core/error-text';
import { addTargetOptions, isCode, newProgram, resolveTargets, verbosity, type CliDeps, type TargetOptions } from './common';

export const description = 'Gracefully shut down one or more qubes.';

interface ShutdownOptions extends TargetOptions {
  wait?: boolean;
  timeout?: number;
  force?: boolean;
  dryRun?: boolean;
  verbose: number;
  quiet: number;
}

function seconds(v: string): number {
  const n = Number(v);
  if (!/^[0-9]+(\.[0-9]+)?$/.test(v) || !Number.isFinite(n)) throw new InvalidArgumentError(`invalid number of seconds: '${v}'`);
  return n;
}

/** Settles with `p`, or rejects with a timeout error after `ms`; a late rejection is observed. */
async function within(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new QubesError('QubesVMShutdownTimeoutError', `not halted after ${ms / 1000} s`)), ms);
  });
  try {
    await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

type Failures = Map<string, unknown>;

export async function run(argv: string[], deps: CliDeps): Promise<number> {
  const p = addTargetOptions(newProgram('qvm-shutdown', description, deps).argument('[VMNAME...]', 'qubes to shut down'))
    .option('--wait', 'wait for the qubes to shut down; kill those still running after the timeout')
    .option('--timeout <SECONDS>', "implies --wait: seconds before killing (default: the qube's shutdown_timeout)", seconds)
    .option('--force', 'shut down even if other qubes depend on this one (e.g. as netvm); use with caution')
    .option('--dry-run', "don't really shut down or kill the qubes (checks the names only)");
  p.parse(argv, { from: 'user' });
  const o = p.opts<ShutdownOptions>();
  const names = await resolveTargets(deps, p.args, o);
  if (o.dryRun) return 0;
  const wait = Boolean(o.wait || o.timeout !== undefined);
  // Like Qubes: --all (without --exclude) shuts everything down, so dependencies do not matter.
  const force = Boolean(o.force || (o.all && o.exclude.length === 0));
  const arg = [force && 'force', wait && 'wait'].filter(Boolean).join('+');
  const say = (s: string) => verbosity(o) >= 1 && deps.stderr(`qvm-shutdown: ${s}\n`);

  const shutdown = async (qubes: string[]): Promise<{ other: Failures; used: Failures; timedOut: Failures }> => {
    const other: Failures = new Map();
    const used: Failures = new Map();
    const timedOut: Failures = new Map();
    await Promise.all(
      qubes.map(async (name) => {
        try {
          const done = deps.client.call('admin.vm.Shutdown', name, { arg });
          await (wait && o.timeout !== undefined ? within(done, o.timeout * 1000) : done);
        } catch (e) {
          if (isCode(e, 'QubesVMNotStartedError', 'QubesVMNotRunningError')) return;
          (isCode(e, 'QubesVMInUseError') ? used : isCode(e, 'QubesVMShutdownTimeoutError') ? timedOut : other).set(name, e);
        }
      }),
    );
    return { other, used, timedOut };
  };
  const ordered = (m: Failures) => names.filter((n) => m.has(n));

  const first = await shutdown(names);
  const other = first.other;
  const timedOut = first.timedOut;
  let used = first.used;
  // As many rounds as qubes were in use, stopping when a round changes nothing.
  const rounds = used.size;
  let failedBefore = other.size + used.size + timedOut.size;
  for (let i = 0; i < rounds && used.size > 0; i++) {
    say(`retrying shutdown of qubes that were in use: ${ordered(used).join(', ')}`);
    const again = await shutdown(ordered(used));
    again.other.forEach((e, n) => other.set(n, e));
    again.timedOut.forEach((e, n) => timedOut.set(n, e));
    used = again.used;
    const failed = again.other.size + again.used.size + again.timedOut.size;
    if (failed === failedBefore) break;
    failedBefore = failed;
  }

  if (timedOut.size > 0 && o.timeout === undefined) {
    // The daemon's own shutdown_timeout ran out: Qubes asks once more before killing.
    say(`retrying shutdown of qubes that timed out: ${ordered(timedOut).join(', ')}`);
    const again = await shutdown(ordered(timedOut));
    timedOut.clear();
    again.other.forEach((e, n) => other.set(n, e));
    again.used.forEach((e, n) => used.set(n, e));
    again.timedOut.forEach((e, n) => timedOut.set(n, e));
  }
  if (timedOut.size > 0) {
    say(`killing timed out qubes: ${ordered(timedOut).join(', ')}`);
    for (const name of ordered(timedOut)) {
      try {
        await deps.client.call('admin.vm.Kill', name);
        timedOut.delete(name);
      } catch (e) {
        if (isCode(e, 'QubesVMNotStartedError', 'QubesVMNotRunningError')) timedOut.delete(name);
        else timedOut.set(name, e);
      }
    }
  }

  const failed = names.filter((n) => other.has(n) || used.has(n) || timedOut.has(n));
  for (const n of failed) deps.stderr(`qvm-shutdown: error: Failed to shut down: ${n}: ${errorText(other.get(n) ?? used.get(n) ?? timedOut.get(n))}\n`);
  return Math.min(failed.length, 255);
}
