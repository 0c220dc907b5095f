// The `isola` command: `isola daemon` runs isolad in the foreground, `isola setup` installs the
// default template and creates Qubes' default qubes, `isola doctor` reports what this host supports.

import { Command, CommanderError } from 'commander';
import { formatReport, KVM_CHECK_NAME, probeHost } from '../backends/host-probe';
import { argparseArityErrors, argparseWording, oneLine, pyRepr, versionText } from '../cli/commands/common';
import { inert, inertText } from '../cli/output';
import { errorText } from '../core/error-text';
import { idmapHelperPath } from '../storage/mounts';
import { startIsolad } from './isolad';
import { installCrashHandlers } from './crash-handlers';
import { daemonLogger } from './logger';
import { askCommand } from './ask-command';
import { daemonStatus, policyCommand, policyErrorCode } from './policy-command';
import { describeInForce } from './policy-report';
import type { ProbeResult } from '../backends/host-probe';
import { runSetup } from './setup';

export async function isolaMain(argv: string[], out: (s: string) => void = (s) => void process.stdout.write(s), err: (s: string) => void = (s) => void process.stderr.write(s)): Promise<number> {
  const program = new Command('isola')
    .description('Isola: Qubes OS-style isolation on an ordinary Linux host')
    .exitOverride()
    .version(versionText('isola'), '--version', "show program's version number and exit")
    .configureOutput({ writeOut: out, writeErr: err });
  let code = 0;
  // The command whose action is running, for the prefix of its errors (`isola ask allow: error:`).
  let running = 'isola';
  program.hook('preAction', (_self, action) => {
    running = commandPath(action);
  });
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
  // What isolad says about qrexec calls (the log, pending questions) names what qubes asked for: inert.
  const inertOut = (s: string) => out(inertText(s));
  const inertErr = (s: string) => err(inertText(s));
  program.addCommand(policyCommand({ out: inertOut, err: inertErr }, (c) => (code = c)));
  program.addCommand(askCommand({ out: inertOut }, (c) => (code = c)));
  argparseOutput(program, out, err);
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (e) {
    const policyCode = policyErrorCode(e, { out: inertOut, err: inertErr });
    if (policyCode !== undefined) return policyCode;
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version') return 0;
      // `isola` alone: commander showed the help on stderr; argparse would say what is missing.
      if (e.code === 'commander.help' && e.exitCode !== 0) err(`${commandPath(commandOf(program, argv))}: error: the following arguments are required: COMMAND\n`);
      return e.exitCode === 0 ? 0 : 2;
    }
    err(`${running}: error: ${inert(oneLine(errorText(e))) || 'unknown error'}\n`);
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

/** The deepest command named by argv's leading words (`isola ask` for `isola ask`). */
function commandOf(program: Command, argv: string[]): Command {
  let c = program;
  for (const word of argv) {
    const sub = c.commands.find((x) => x.name() === word || x.aliases().includes(word));
    if (!sub) break;
    c = sub;
  }
  return c;
}

function commandPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/**
 * Every `isola` command reports its parse errors as Qubes' tools do: one `isola SUBCMD: error: …`
 * line in argparse's words, exit 2, never a process exit from inside commander. The policy
 * commands set up their own output (policy-command.ts).
 */
function argparseOutput(cmd: Command, out: (s: string) => void, err: (s: string) => void): void {
  const path = commandPath(cmd);
  argparseArityErrors(cmd);
  cmd.exitOverride().configureOutput({
    writeOut: out,
    writeErr: err,
    outputError: (s, write) => {
      const m = /^error: unknown command '([^']*)'/.exec(s);
      const why = m
        ? `argument COMMAND: invalid choice: ${pyRepr(m[1])} (choose from ${cmd.commands.map((c) => pyRepr(c.name())).join(', ')})`
        : argparseWording(oneLine(s));
      write(`${path}: error: ${why}\n`);
    },
  });
  for (const sub of cmd.commands) if (sub.name() !== 'policy') argparseOutput(sub, out, err);
}

async function runDaemon(err: (s: string) => void): Promise<number> {
  const log = daemonLogger();
  installCrashHandlers(log);
  const d = await startIsolad({ log });
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
    (e: unknown) => {
      process.stderr.write(`isola: error: ${oneLine(errorText(e))}\n`);
      process.exit(1);
    },
  );
}
