// The `isola` command: `isola daemon` runs isolad in the foreground, `isola setup` installs the
// default template and creates Qubes' default qubes, `isola doctor` reports what this host supports.

import { Command, CommanderError } from 'commander';
import { formatReport, KVM_CHECK_NAME, probeHost } from '../backends/host-probe';
import { isQubesError } from '../core/errors';
import { idmapHelperPath } from '../storage/mounts';
import { startIsolad } from './isolad';
import { askCommand } from './ask-command';
import { daemonStatus, policyCommand, policyErrorCode } from './policy-command';
import { describeInForce } from './policy-report';
import type { ProbeResult } from '../backends/host-probe';
import { runSetup } from './setup';

export async function isolaMain(argv: string[], out = (s: string) => process.stdout.write(s), err = (s: string) => process.stderr.write(s)): Promise<number> {
  const program = new Command('isola')
    .description('Isola: Qubes OS-style isolation on an ordinary Linux host')
    .exitOverride()
    .configureOutput({ writeOut: out, writeErr: err });
  let code = 0;
  program
    .command('daemon')
    .description('run isolad (the Admin API server that owns all state) in the foreground, as root')
    .action(async () => {
      code = await runDaemon(err);
    });
  program
    .command('setup')
    .description('install the default template (debian-12) and create the default qubes (idempotent)')
    .option('-q, --quiet', 'print only errors')
    .action(async (opts: { quiet?: boolean }) => {
      code = await runSetup({ out: opts.quiet ? () => undefined : out, err, isTTY: Boolean(process.stderr.isTTY) });
    });
  program
    .command('doctor')
    .description('check what this host supports (namespaces, overlayfs, cgroups, seccomp, runtimes, KVM) and what to install')
    .action(async () => {
      const results = await probeHost({ idmapHelper: idmapHelperPath() });
      results.push(await policyCheck());
      out(formatReport(results));
      // KVM is optional (TCG is the fallback): its absence alone is not a failure.
      code = results.some((r) => !r.ok && r.name !== KVM_CHECK_NAME) ? 1 : 0;
    });
  program.addCommand(policyCommand({ out, err }, (c) => (code = c)));
  program.addCommand(askCommand({ out }, (c) => (code = c)));
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (e) {
    const policyCode = policyErrorCode(e, { out, err });
    if (policyCode !== undefined) return policyCode;
    if (e instanceof CommanderError) return e.code === 'commander.helpDisplayed' || e.code === 'commander.help' || e.code === 'commander.version' ? 0 : 2;
    err(`isola: error: ${isQubesError(e) ? e.message : (e as Error).message}\n`);
    return 1;
  }
  return code;
}

/** doctor's line on the qrexec policy isolad enforces (when one answers). */
async function policyCheck(): Promise<ProbeResult> {
  const st = await daemonStatus({ out: () => undefined, err: () => undefined });
  if (!st) return { name: 'qrexec policy', ok: true, detail: 'isolad is not running: nothing to check' };
  return {
    name: 'qrexec policy', ok: st.state === 'loaded', detail: describeInForce(st),
    fix: st.state === 'missing' ? '`isola setup` installs Qubes\' default policy' : 'correct the file at FILE:LINE above; `isola policy check` tells when it loads',
  };
}

async function runDaemon(err: (s: string) => void): Promise<number> {
  const d = await startIsolad();
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  err('isolad: stopping (qubes keep running; a new isolad reattaches to them)\n');
  await d.stop();
  return 0;
}

export function runIsola(argv: string[]): void {
  isolaMain(argv).then(
    (code) => process.exit(code),
    (e: Error) => {
      process.stderr.write(`isola: error: ${e.message}\n`);
      process.exit(1);
    },
  );
}
