// Entry of the qvm-* commands: a registry name -> module with run(argv, deps), the one error policy
// (one line; 1 for daemon errors, 2 for usage errors) and, in runCli only, the process wiring.

import readline from 'node:readline';
import { AdminClient } from './admin-client';
import { reportError, type CliCommand, type CliDeps } from './commands/common';
import * as qubesPrefs from './commands/qubes-prefs';
import * as qvmCheck from './commands/qvm-check';
import * as qvmClone from './commands/qvm-clone';
import * as qvmCreate from './commands/qvm-create';
import * as qvmFeatures from './commands/qvm-features';
import * as qvmKill from './commands/qvm-kill';
import * as qvmLs from './commands/qvm-ls';
import * as qvmPrefs from './commands/qvm-prefs';
import * as qvmRemove from './commands/qvm-remove';
import * as qvmRun from './commands/qvm-run';
import * as qvmShutdown from './commands/qvm-shutdown';
import * as qvmStart from './commands/qvm-start';
import * as qvmTags from './commands/qvm-tags';
import * as qvmTemplate from './commands/qvm-template';
import * as qvmVolume from './commands/qvm-volume';

export type { AdminClientLike, CliCommand, CliDeps } from './commands/common';

/** Every command by the name it is invoked as; other modules add theirs with registerCommand. */
export const COMMANDS: Record<string, CliCommand> = {
  'qvm-ls': qvmLs,
  'qvm-create': qvmCreate,
  'qvm-start': qvmStart,
  'qvm-shutdown': qvmShutdown,
  'qvm-kill': qvmKill,
  'qvm-run': qvmRun,
  'qvm-prefs': qvmPrefs,
  'qubes-prefs': qubesPrefs,
  'qvm-features': qvmFeatures,
  'qvm-tags': qvmTags,
  'qvm-clone': qvmClone,
  'qvm-remove': qvmRemove,
  'qvm-check': qvmCheck,
  'qvm-volume': qvmVolume,
  'qvm-template': qvmTemplate,
};

export function registerCommand(name: string, command: CliCommand): void {
  COMMANDS[name] = command;
}

/** Runs one command and returns its exit code; never exits the process, never prints a stack. */
export async function main(command: string, argv: string[], deps: CliDeps): Promise<number> {
  const cmd = Object.prototype.hasOwnProperty.call(COMMANDS, command) ? COMMANDS[command] : undefined;
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

function ask(question: string): Promise<string> {
  const rl = readline.createInterface({ input: process.stdin, output: process.stderr });
  return new Promise((resolve) => {
    rl.once('close', () => resolve(''));
    rl.question(question, (answer) => {
      resolve(answer);
      rl.close();
    });
  });
}

/** The only place that touches the process: real client and streams, then exit with the code. */
export async function runCli(command: string): Promise<void> {
  const client = new AdminClient();
  const deps: qvmRun.RunDeps = {
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
