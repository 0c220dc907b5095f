// qvm-run as Qubes' dom0 client does it: the command goes on stdin to the qube's qubes.VMShell
// (qubes.VMRootShell for root), or --service names the service; qvm-run waits for it and returns its
// exit code, printing Qubes' messages. The parser is in ../qvm-run-args, the call in ../qvm-run-io.

import type { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { isValidUserName } from '../../qrexec/protocol';
import { parseRunArgs, helpText, type RunArgs } from '../qvm-run-args';
import { EXIT_QREXEC_PROBLEM } from '../../qrexec/client';
import { outputTo, runCall, StreamBrokenError, type Io, type ServiceCall } from '../qvm-run-io';
import { checkTargets, isCode, pyRepr, reportError, resolveTargetEntries, resolveVm, UsageError, versionText, type CliDeps, type QubeEntry } from './common';

export const description = 'Run a command in one or more qubes.';

export interface RunDeps extends CliDeps {
  /** Opens a raw connection to isolad (AdminClient.connect). */
  connect?: () => Promise<Socket>;
  stdin?: Readable;
  out?: Writable;
  err?: Writable;
  /** Whether stdout / stderr are terminals (default: the streams' isTTY). */
  outIsTTY?: boolean;
  errIsTTY?: boolean;
}

/** Python's shlex.quote, as Qubes quotes each word of `VM CMD ARG…` for qubes.VMShell. */
export function shellQuote(word: string): string {
  if (word === '') return "''";
  if (!/[^\w@%+=:,./-]/.test(word)) return word;
  return `'${word.replace(/'/g, `'"'"'`)}'`;
}

export function shellJoin(words: readonly string[]): string {
  return words.map(shellQuote).join(' ');
}

const SERVICE_CALL_RE = /^[A-Za-z0-9._-]+(\+[A-Za-z0-9._+-]*)?$/;

/** Which service runs COMMAND, as whom, and what it reads first (qvm_run.py without the vmexec feature). */
export function serviceCallFor(a: RunArgs): Omit<ServiceCall, 'autostart'> {
  if (a.service) {
    if (!SERVICE_CALL_RE.test(a.cmd)) throw new UsageError(`argument COMMAND: invalid service name ${pyRepr(a.cmd)} (SERVICE or SERVICE+ARGUMENT)`);
    // Without -p Qubes' dom0 starts the service and does not wait for it (qrexec-client -e).
    return { user: a.user ?? 'DEFAULT', service: a.cmd, prefix: null, justExec: !a.passio };
  }
  // Several words (or --no-shell): each is quoted, so the shell runs exactly that argv.
  const shellCmd = a.cmdArgs.length > 0 || a.noShell ? shellJoin([a.cmd, ...a.cmdArgs]) : a.cmd;
  const prefix = Buffer.from(`${shellCmd.replace(/\n+$/, '')}; exit\n`);
  if (a.user === 'root') return { user: 'DEFAULT', service: 'qubes.VMRootShell', prefix, justExec: false };
  return { user: a.user ?? 'DEFAULT', service: 'qubes.VMShell', prefix, justExec: false };
}

const isTTY = (s: unknown) => (s as { isTTY?: boolean } | undefined)?.isTTY === true;
/** Python truthiness of a colour option: a given non-empty value. */
const colour = (c: string | false | undefined): string | undefined => (c ? c : undefined);

export async function run(argv: string[], deps: RunDeps): Promise<number> {
  const a = parseRunArgs(argv);
  if (a.help) {
    deps.stdout(helpText());
    return 0;
  }
  if (a.version) {
    deps.stdout(`${versionText('qvm-run')}\n`);
    return 0;
  }
  const out = deps.out ?? process.stdout;
  const err = deps.err ?? process.stderr;
  const outTTY = deps.outIsTTY ?? isTTY(out);
  const errTTY = deps.errIsTTY ?? isTTY(err);
  const filterEsc = a.filterEsc ?? outTTY;
  let colorOutput = a.colorOutput;
  let colorStderr = a.colorStderr;
  if (a.passio) {
    if (colorOutput === undefined && filterEsc) colorOutput = '31';
    if (colorStderr === undefined && errTTY) colorStderr = '31';
  }
  // Qubes' parser errors, all before any call to isolad.
  if (a.localcmd !== undefined && !a.passio) throw new UsageError('--localcmd have no effect without --pass-io');
  if (colour(colorOutput) && !filterEsc) throw new UsageError('--color-output must be used with --filter-escape-chars');
  if (a.service && a.noShell) throw new UsageError('--no-shell does not apply to --service');
  if (a.user !== undefined && !isValidUserName(a.user)) throw new UsageError(`argument --user/-u: invalid user name ${pyRepr(a.user)}`);
  const call = serviceCallFor(a);
  const targetOpts = { all: a.all, exclude: a.exclude };
  checkTargets(a.all ? [] : [a.vmname!], targetOpts);

  let targets: QubeEntry[] = a.all ? await resolveTargetEntries(deps, [], targetOpts) : [await resolveVm(deps, a.vmname!)];
  if (targets.length > 1 && a.passio && a.localcmd === undefined) {
    throw new UsageError('--passio cannot be used when more than 1 qube is chosen and no --localcmd is used');
  }
  const verbose = a.verbose - a.quiet + (a.passio ? 0 : 1);
  if (a.all) targets = await runningForAll(deps, targets);
  if (!deps.connect) throw new Error('qvm-run needs a connection to isolad');
  const connect = deps.connect;
  const errColour = colour(colorStderr);
  // Our colour codes go out as they are (deps.controls), the message itself inert (deps.stderr).
  const controls = deps.controls ?? deps.stderr;
  const say = (msg: string) => {
    if (errColour) controls('\x1b[0m');
    deps.stderr(msg);
    if (errColour) controls(`\x1b[0;${errColour}m`);
    deps.stderr('\n');
  };
  if (a.gui && 1 + a.verbose - a.quiet > 0) say(`qvm-run: note: qubes have no GUI yet; running '${a.cmd}' without one`);

  const io: Io = !a.passio
    ? { kind: 'discard' }
    : a.localcmd !== undefined
      ? { kind: 'local', command: a.localcmd, stderr: outputTo(err, filterEsc || errTTY) }
      : { kind: 'pass', stdin: deps.stdin ?? process.stdin, stdout: outputTo(out, filterEsc), stderr: outputTo(err, filterEsc || errTTY) };
  const outColour = colour(colorOutput);
  if (outColour) out.write(`\x1b[0;${outColour}m`);
  if (errColour) controls(`\x1b[0;${errColour}m`);
  let code = 0;
  try {
    // Started one after the other, then waited for in order (as Qubes' procs list): --all runs in parallel.
    const running: [string, Promise<number[] | null>][] = [];
    for (const vm of targets) {
      if (!a.autostart && (vm.state === 'Halted' || vm.state === 'NA')) {
        if (verbose > 0) say(`Qube '${vm.name}' not started`);
        code = Math.max(code, 1);
        continue;
      }
      if (verbose > 0) say(`Running '${a.cmd}' on ${vm.name}`);
      const done = runCall(connect, vm.name, { ...call, autostart: a.autostart }, io).catch((e: unknown) => {
        // The stream broke after the start: Qubes' qrexec exit code. A refusal by isolad: one line, exit 1.
        if (e instanceof StreamBrokenError) {
          deps.stderr(`qvm-run: error: ${vm.name}: ${e.message}\n`);
          return [EXIT_QREXEC_PROBLEM];
        }
        code = Math.max(code, reportError('qvm-run', e, deps));
        return null;
      });
      running.push([vm.name, done]);
    }
    for (const [vm, done] of running) {
      const codes = await done;
      for (const c of codes ?? []) {
        if (c && verbose > 0) say(`${vm}: command failed with code: ${c}`);
        code = Math.max(code, c);
      }
    }
  } finally {
    if (outColour) out.write('\x1b[0m');
    if (errColour) controls('\x1b[0m');
  }
  return code;
}

/** Qubes' --all: only qubes already running, not paused, and not internal (feature `internal`). */
async function runningForAll(deps: CliDeps, qubes: QubeEntry[]): Promise<QubeEntry[]> {
  const out: QubeEntry[] = [];
  for (const q of qubes) {
    if (q.state !== 'Running') continue;
    let internal = '';
    try {
      internal = await deps.client.call('admin.vm.feature.Get', q.name, { arg: 'internal' });
    } catch (e) {
      if (!isCode(e, 'QubesFeatureNotFoundError')) throw e;
    }
    if (internal === '') out.push(q);
  }
  return out;
}
