// Entry of the qvm-* commands: a registry name -> module with run(argv, deps), the one error policy
// (one line; 1 for daemon errors, 2 for usage errors) and, in runCli only, the process wiring.

import readline from 'node:readline';
import { AdminClient } from './admin-client';
import { reportError, type CliCommand, type CliDeps } from './commands/common';
import { inertText } from './output';

import type { RunDeps } from './commands/qvm-run';

export type { AdminClientLike, CliCommand, CliDeps } from './commands/common';

/**
 * Every command by the name it is invoked as, loaded on first use: a CLI process runs one command,
 * so it need not load the others (≈10 ms of its start). Others add theirs with registerCommand.
 */
export const COMMANDS: Record<string, () => CliCommand> = {
  'qvm-ls': () => require('./commands/qvm-ls') as CliCommand,
  'qvm-create': () => require('./commands/qvm-create') as CliCommand,
  'qvm-start': () => require('./commands/qvm-start') as CliCommand,
  'qvm-shutdown': () => require('./commands/qvm-shutdown') as CliCommand,
  'qvm-kill': () => require('./commands/qvm-kill') as CliCommand,
  'qvm-pause': () => require('./commands/qvm-pause') as CliCommand,
  'qvm-unpause': () => require('./commands/qvm-unpause') as CliCommand,
  'qvm-run': () => require('./commands/qvm-run') as CliCommand,
  'qvm-prefs': () => require('./commands/qvm-prefs') as CliCommand,
  'qubes-prefs': () => require('./commands/qubes-prefs') as CliCommand,
  'qvm-features': () => require('./commands/qvm-features') as CliCommand,
  'qvm-tags': () => require('./commands/qvm-tags') as CliCommand,
  'qvm-firewall': () => require('./commands/qvm-firewall') as CliCommand,
  'qvm-clone': () => require('./commands/qvm-clone') as CliCommand,
  'qvm-remove': () => require('./commands/qvm-remove') as CliCommand,
  'qvm-check': () => require('./commands/qvm-check') as CliCommand,
  'qvm-volume': () => require('./commands/qvm-volume') as CliCommand,
  'qvm-template': () => require('./commands/qvm-template') as CliCommand,
  'qvm-clipboard': () => require('./commands/qvm-clipboard') as CliCommand,
  'qubes-vm-update': () => require('./commands/qubes-vm-update') as CliCommand,
};

export function registerCommand(name: string, command: CliCommand): void {
  COMMANDS[name] = () => command;
}

/**
 * Every text a command prints goes out inert: names, reasons, values and listings come from isolad
 * and may carry what a qube chose, so no command can forget to filter one. The command's own
 * terminal controls take deps.controls (the unfiltered stderr).
 */
export function inertDeps<T extends CliDeps>(deps: T): T {
  return {
    ...deps,
    stdout: (s: string) => deps.stdout(inertText(s)),
    stderr: (s: string) => deps.stderr(inertText(s)),
    controls: deps.controls ?? deps.stderr,
    prompt: deps.prompt && ((q: string) => deps.prompt!(inertText(q))),
  };
}

/** Runs one command and returns its exit code; never exits the process, never prints a stack. */
export async function main(command: string, argv: string[], rawDeps: CliDeps): Promise<number> {
  const deps = inertDeps(rawDeps);
  const cmd = Object.prototype.hasOwnProperty.call(COMMANDS, command) ? COMMANDS[command]() : undefined;
  if (!cmd) {
    deps.stderr(`isola: error: unknown command '${command}' (known: ${Object.keys(COMMANDS).sort().join(', ')})\n`);
    return 2;
  }
  try {
    return await cmd.run(argv, deps);
  } catch (e) {
    return reportError(command, e, deps);
  }
}

/** One answer line from stdin, terminal or pipe (as Python's input()); '' at the end of input. */
function ask(question: string): Promise<string> {
  const rl = readline.createInterface({ input: process.stdin, output: process.stderr, terminal: Boolean(process.stdin.isTTY) });
  return new Promise((resolve) => {
    let answered = false;
    rl.once('close', () => answered || resolve(''));
    rl.question(question, (answer) => {
      answered = true;
      resolve(answer);
      rl.close();
    });
  });
}

/** The only place that touches the process: real client and streams, then exit with the code. */
export async function runCli(command: string): Promise<void> {
  const client = new AdminClient();
  const deps: RunDeps = {
    client,
    connect: () => client.connect(),
    stdout: (s) => void process.stdout.write(s),
    stderr: (s) => void process.stderr.write(s),
    isTTY: Boolean(process.stdin.isTTY && process.stderr.isTTY),
    prompt: ask,
    columns: process.stderr.columns,
  };
  const code = await main(command, process.argv.slice(2), deps);
  process.exit(code);
}
