// qvm-run's command line, parsed as Qubes' argparse parser reads it (option names, aliases, unique
// prefixes, `--` handling, argparse's error wording), with one extension: options are also accepted
// between VMNAME and COMMAND (`qvm-run -p work -u root id`); everything after COMMAND is its ARGs.

import { UsageError } from './commands/common';

export interface RunArgs {
  user?: string;
  autostart: boolean;
  passio: boolean;
  localcmd?: string;
  /** undefined: not given (Qubes: on if the qube can have a GUI; never here). */
  gui?: boolean;
  /** undefined: Qubes' default (31 with --pass-io when filtering); false: --no-colour-*. */
  colorOutput?: string | false;
  colorStderr?: string | false;
  /** undefined: Qubes' default (on when stdout is a terminal). */
  filterEsc?: boolean;
  service: boolean;
  noShell: boolean;
  dispvm: boolean;
  all: boolean;
  exclude: string[];
  verbose: number;
  quiet: number;
  help: boolean;
  version: boolean;
  vmname?: string;
  cmd: string;
  cmdArgs: string[];
}

interface Opt {
  names: string[];
  metavar?: string;
  help: string;
  apply: (a: RunArgs, value: string) => void;
}

const flag = (names: string[], help: string, apply: (a: RunArgs) => void): Opt => ({ names, help, apply: (a) => apply(a) });
const valued = (names: string[], metavar: string, help: string, apply: (a: RunArgs, v: string) => void): Opt => ({ names, metavar, help, apply });

/** Qubes' options in Qubes' order (qvm_run.py), so help and errors name them as Qubes does. */
export const OPTIONS: readonly Opt[] = [
  flag(['--verbose', '-v'], 'increase verbosity', (a) => void a.verbose++),
  flag(['--quiet', '-q'], 'decrease verbosity', (a) => void a.quiet++),
  flag(['--help', '-h'], 'show this help message and exit', (a) => void (a.help = true)),
  flag(['--version'], "show program's version number and exit", (a) => void (a.version = true)),
  valued(['--user', '-u'], 'USER', 'run command in a qube as USER (available only from dom0)', (a, v) => void (a.user = v)),
  flag(['--autostart', '--auto', '-a'], 'option ignored, this is default', (a) => void (a.autostart = true)),
  flag(['--no-autostart', '--no-auto', '-n'], 'do not autostart/unpause qube', (a) => void (a.autostart = false)),
  flag(['--pass-io', '-p'], 'pass stdio from remote program', (a) => void (a.passio = true)),
  valued(['--localcmd'], 'COMMAND', 'with --pass-io, pass stdio to the given program', (a, v) => void (a.localcmd = v)),
  flag(['--gui'], 'run the command with GUI (qubes have no GUI yet: a note is printed and the command runs without)', (a) => void (a.gui = true)),
  flag(['--no-gui', '--nogui'], 'run the command without GUI', (a) => void (a.gui = false)),
  valued(['--colour-output', '--color-output'], 'COLOUR', 'mark the qube output with given ANSI colour (ie. "31" for red)', (a, v) => void (a.colorOutput = v)),
  valued(['--colour-stderr', '--color-stderr'], 'COLOUR', 'mark the qube stderr with given ANSI colour (ie. "31" for red)', (a, v) => void (a.colorStderr = v)),
  flag(['--no-colour-output', '--no-color-output'], 'disable colouring the stdio', (a) => void (a.colorOutput = false)),
  flag(['--no-colour-stderr', '--no-color-stderr'], 'disable colouring the stderr', (a) => void (a.colorStderr = false)),
  flag(['--filter-escape-chars'], 'filter terminal escape sequences (default if output is terminal)', (a) => void (a.filterEsc = true)),
  flag(['--no-filter-escape-chars'], 'do not filter terminal escape sequences; DANGEROUS when output is a terminal emulator', (a) => void (a.filterEsc = false)),
  flag(['--service'], 'run a qrexec service (named by COMMAND) instead of shell command', (a) => void (a.service = true)),
  flag(['--no-shell'], 'treat COMMAND as a simple executable, not a shell command', (a) => void (a.noShell = true)),
  flag(['--dispvm'], 'start a service in new disposable qube (not available: Isola has no disposable qubes yet)', (a) => void (a.dispvm = true)),
  flag(['--all'], 'run command on all running qubes', (a) => void (a.all = true)),
  valued(['--exclude'], 'EXCLUDE', 'exclude the qube from --all', (a, v) => void a.exclude.push(v)),
];

const display = (o: Opt) => o.names.join('/');

function findLong(name: string): Opt {
  const exact = OPTIONS.find((o) => o.names.includes(name));
  if (exact) return exact;
  // argparse's allow_abbrev: a unique prefix of one option string.
  const matches: [Opt, string][] = [];
  for (const o of OPTIONS) for (const n of o.names) if (n.startsWith('--') && n.startsWith(name)) matches.push([o, n]);
  if (matches.length === 1) return matches[0][0];
  if (matches.length > 1) throw new UsageError(`ambiguous option: ${name} could match ${matches.map((m) => m[1]).join(', ')}`);
  throw new UsageError(`unrecognized arguments: ${name}`);
}

/** argparse takes a token that starts with `-` as an option, never as an option's value. */
const looksLikeOption = (s: string | undefined) => s === undefined || (s.startsWith('-') && s !== '-');

export function parseRunArgs(argv: readonly string[]): RunArgs {
  const a: RunArgs = {
    autostart: true, passio: false, service: false, noShell: false, dispvm: false, all: false,
    exclude: [], verbose: 0, quiet: 0, help: false, version: false, cmd: '', cmdArgs: [],
  };
  const positionals: string[] = [];
  let dashdash = false;
  let i = 0;
  for (; i < argv.length; i++) {
    // VMNAME and COMMAND (COMMAND only with --all) end the options: the rest are COMMAND's ARGs.
    if (positionals.length >= (a.all ? 1 : 2)) break;
    const tok = argv[i];
    if (!dashdash && tok === '--') {
      dashdash = true;
      continue;
    }
    if (dashdash || !tok.startsWith('-') || tok === '-') {
      positionals.push(tok);
      continue;
    }
    if (tok.startsWith('--')) {
      const eq = tok.indexOf('=');
      const opt = findLong(eq < 0 ? tok : tok.slice(0, eq));
      if (opt.metavar) {
        if (eq < 0 && looksLikeOption(argv[i + 1])) throw new UsageError(`argument ${display(opt)}: expected one argument`);
        opt.apply(a, eq < 0 ? argv[++i] : tok.slice(eq + 1));
      } else {
        // --dispvm[=BASE] (Qubes' optional value) is refused later whatever BASE is.
        if (eq >= 0 && opt.names[0] !== '--dispvm') throw new UsageError(`argument ${display(opt)}: ignored explicit argument '${tok.slice(eq + 1)}'`);
        opt.apply(a, '');
      }
    } else {
      // A cluster of short options (`-pn`, `-uroot`, `-pu root`).
      for (let j = 1; j < tok.length; j++) {
        const opt = OPTIONS.find((o) => o.names.includes(`-${tok[j]}`));
        if (!opt) throw new UsageError(`unrecognized arguments: ${j === 1 ? tok : `-${tok[j]}`}`);
        if (!opt.metavar) {
          opt.apply(a, '');
          continue;
        }
        const inline = tok.slice(j + 1);
        if (inline === '' && looksLikeOption(argv[i + 1])) throw new UsageError(`argument ${display(opt)}: expected one argument`);
        opt.apply(a, inline !== '' ? inline : argv[++i]);
        break;
      }
    }
    if (a.help || a.version) return a;
    if (a.dispvm) throw new UsageError('--dispvm is not available: Isola has no disposable qubes yet');
  }
  let rest = argv.slice(i);
  // argparse drops the `--` right after COMMAND (`VM CMD -- ARG`), unless one already ended the options.
  if (!dashdash && rest[0] === '--') rest = rest.slice(1);
  const need = a.all ? ['COMMAND'] : ['VMNAME', 'COMMAND'];
  if (positionals.length < need.length) throw new UsageError(`the following arguments are required: ${need.slice(positionals.length).join(', ')}`);
  if (a.all) a.cmd = positionals[0];
  else [a.vmname, a.cmd] = positionals;
  a.cmdArgs = rest;
  return a;
}

export function helpText(): string {
  // Short names first, as every other qvm-* help (commander's) shows them.
  const shortFirst = (names: string[]) => [...names.filter((n) => !n.startsWith('--')), ...names.filter((n) => n.startsWith('--'))];
  const rows = OPTIONS.map((o) => [shortFirst(o.names).map((n) => (o.metavar ? `${n} ${o.metavar}` : n)).join(', '), o.help]);
  const width = Math.min(34, Math.max(...rows.map((r) => r[0].length)) + 2);
  const body = rows.map(([l, h]) => (l.length + 2 > width ? `  ${l}\n${' '.repeat(width + 2)}${h}` : `  ${l.padEnd(width)}${h}`)).join('\n');
  return [
    'Usage: qvm-run [options] VMNAME COMMAND [ARG ...]',
    '       qvm-run [options] --all [--exclude EXCLUDE] COMMAND [ARG ...]',
    '',
    'Run a command (or, with --service, a qrexec service) in a qube.',
    '',
    'positional arguments:',
    '  VMNAME                            the qube to run in (not with --all)',
    '  COMMAND                           command or service to run',
    '  ARG                               command arguments (implies --no-shell)',
    '',
    'options:',
    body,
    '',
  ].join('\n');
}
