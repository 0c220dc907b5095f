// Plumbing shared by the qvm-* commands: their dependencies, commander set-up, the error policy,
// --all/--exclude target resolution; the Admin API's reply parsers are in replies.ts (re-exported).

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Command, CommanderError } from 'commander';
import type { AdminMethod } from '../../core/admin-methods';
import type { AdminEvent } from '../../core/admin-wire';
import { QubesError, type QubesErrorCode } from '../../core/errors';
import type { CallOptions } from '../admin-client';
import { errorText } from '../../core/error-text';
import { listQubes, oneLine, type QubeEntry } from './replies';

export * from './replies';

/** What the CLI needs of AdminClient; tests pass a fake that records calls. */
export interface AdminClientLike {
  call(method: AdminMethod, dest: string, opts?: CallOptions): Promise<string>;
  events(onEvent: (e: AdminEvent) => void, dest?: string): Promise<() => void>;
}

export interface CliDeps {
  client: AdminClientLike;
  /** Text for stdout; main() makes it inert (inertText), whatever a qube put in it. */
  stdout: (s: string) => void;
  /** Text for stderr, made inert as stdout. */
  stderr: (s: string) => void;
  /** The CLI's own terminal controls on stderr (qvm-run's colours, the progress bar): never filtered. */
  controls?: (s: string) => void;
  /** stdin and stderr are a terminal: questions may be asked, progress bars drawn. */
  isTTY: boolean;
  /**
   * Asks one question and returns the answer line read from stdin, a terminal or not (as Python's
   * input(), so `echo y | qvm-remove work` works); '' at the end of input.
   */
  prompt?: (question: string) => Promise<string>;
  /** Width of the terminal, for the progress bar. */
  columns?: number;
}

/** A command module: `main` finds it by name in its registry. */
export interface CliCommand {
  description?: string;
  run(argv: string[], deps: CliDeps): Promise<number>;
}

/** Bad command line found after commander's own checks; exit code 2, like argparse's parser.error. */
export class UsageError extends Error {}

export const collect = (v: string, prev: string[]): string[] => [...prev, v];
const increase = (_v: unknown, prev: number): number => prev + 1;

/** What `--version` prints, as Qubes' tools print their package's name, version and licence. */
export function versionText(name: string): string {
  return `${name} (Isola: Qubes OS's model of security by isolation) ${packageVersion()}\nLicense: GPL-2.0-or-later`;
}

let cachedVersion: string | undefined;

/**
 * Isola's version from its package.json, found upwards from this file (src/ or dist/src/): read,
 * not imported, so that the CLI does not depend on a file outside src/.
 */
function packageVersion(): string {
  if (cachedVersion !== undefined) return cachedVersion;
  cachedVersion = '0';
  for (let dir = __dirname, i = 0; i < 5; i++, dir = path.dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'isola' && typeof pkg.version === 'string') return (cachedVersion = pkg.version);
    } catch {
      // Not here: one level up. Run from an unusual tree, the version is informative only.
    }
  }
  return cachedVersion;
}

/** commander's parse errors in argparse's words, as Qubes' tools print them. */
export function argparseWording(untrustedMessage: string): string {
  const m = untrustedMessage.replace(/^error: /, '');
  const names = (flags: string) => flags.replace(/, /g, '/');
  let r: RegExpExecArray | null;
  if ((r = /^missing required argument '([^']*)'/.exec(m))) return `the following arguments are required: ${r[1]}`;
  if ((r = /^required option '([^']*?)(?: <[^>]*>| \[[^\]]*\])?' not specified/.exec(m))) return `the following arguments are required: ${names(r[1])}`;
  if ((r = /^unknown option '([^']*)'/.exec(m))) return `unrecognized arguments: ${r[1]}`;
  if ((r = /^too many arguments(?: for '[^']*')?\. Expected \d+ arguments? but got \d+\.?/.exec(m))) return 'unrecognized arguments';
  if ((r = /^option '([^']*?)(?: <[^>]*>| \[[^\]]*\])?' argument missing/.exec(m))) return `argument ${names(r[1])}: expected one argument`;
  if ((r = /^option '([^']*?)(?: <[^>]*>| \[[^\]]*\])?' argument '([^']*)' is invalid\. Allowed choices are (.*)\.$/.exec(m))) {
    return `argument ${names(r[1])}: invalid choice: ${pyRepr(r[2])} (choose from ${r[3].split(', ').map(pyRepr).join(', ')})`;
  }
  if ((r = /^option '([^']*?)(?: <[^>]*>| \[[^\]]*\])?' argument '([^']*)' is invalid\.\s*(.*)$/.exec(m))) {
    return `argument ${names(r[1])}: ${r[3] || `invalid value: ${pyRepr(r[2])}`}`;
  }
  if ((r = /^command-argument value '([^']*)' is invalid for argument '([^']*)'\.\s*(.*)$/.exec(m))) {
    return `argument ${r[2]}: ${r[3] || `invalid value: ${pyRepr(r[1])}`}`;
  }
  if ((r = /^option '([^']*?)(?: <[^>]*>| \[[^\]]*\])?' cannot be used with option '([^']*?)(?: <[^>]*>| \[[^\]]*\])?'/.exec(m))) {
    return `argument ${names(r[1])}: not allowed with argument ${names(r[2])}`;
  }
  return m;
}

/** The parts of commander's Command that newProgram rewords (not in its public typings). */
interface CommandInternals {
  missingArgument(name: string): void;
  _excessArguments(received: string[]): void;
}

/**
 * argparse names every missing positional at once (`required: VMNAME, NEWVM`) and the extra
 * words (`unrecognized arguments: a b`); commander names only the first, so its two checks are
 * replaced on the program.
 */
export function argparseArityErrors(p: Command): void {
  const internals = p as unknown as CommandInternals;
  internals.missingArgument = () => {
    const missing = p.registeredArguments.filter((a, i) => a.required && p.args[i] == null).map((a) => a.name());
    p.error(`error: the following arguments are required: ${missing.join(', ')}`, { code: 'commander.missingArgument' });
  };
  internals._excessArguments = (received: string[]) => {
    p.error(`error: unrecognized arguments: ${received.slice(p.registeredArguments.length).join(' ')}`, { code: 'commander.excessArguments' });
  };
}

/**
 * A commander program that never exits the process and writes through deps: --help and --version
 * return 0, parse errors print one `NAME: error: …` line in argparse's words and become exit code 2
 * (see reportError).
 */
export function newProgram(name: string, description: string, deps: CliDeps, opts: { verbosity?: boolean } = {}): Command {
  const p = new Command(name)
    .description(description)
    .exitOverride()
    .showSuggestionAfterError(false)
    .helpCommand(false)
    .helpOption('-h, --help', 'show this help message and exit')
    .version(versionText(name), '--version', "show program's version number and exit")
    .configureOutput({
      writeOut: deps.stdout,
      writeErr: deps.stderr,
      outputError: (s, write) => write(`${name}: error: ${argparseWording(s.trimEnd().split('\n').join(' '))}\n`),
    });
  argparseArityErrors(p);
  if (opts.verbosity !== false) {
    p.option('-v, --verbose', 'increase verbosity', increase, 0).option('-q, --quiet', 'decrease verbosity', increase, 0);
  }
  return p;
}

/** Qubes' log level: 1 by default, each -v adds one, each -q removes one. */
export function verbosity(o: { verbose?: number; quiet?: number }): number {
  return 1 + (o.verbose ?? 0) - (o.quiet ?? 0);
}


/** Prints an error the way every command does and returns the exit code it stands for. */
export function reportError(command: string, e: unknown, deps: CliDeps): number {
  if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2; // commander already printed it
  if (e instanceof UsageError) {
    deps.stderr(`${command}: error: ${oneLine(e.message)}\n`);
    return 2;
  }
  deps.stderr(`${command}: error: ${oneLine(errorText(e)) || 'unknown error'}\n`);
  return 1;
}

export function isCode(e: unknown, ...codes: QubesErrorCode[]): e is QubesError {
  return e instanceof QubesError && codes.includes(e.code);
}

/** Runs `act` on each qube in order; a failure prints one line and the others still run. */
export async function forEachQube(command: string, deps: CliDeps, names: readonly string[], act: (name: string) => Promise<void>): Promise<number> {
  let code = 0;
  for (const name of names) {
    try {
      await act(name);
    } catch (e) {
      code = Math.max(code, reportError(command, e, deps));
    }
  }
  return code;
}

// ---- qube names: Qubes' VmNameAction (wildcards, unknown names are usage errors)

/** Python's repr() of a str, as Qubes' messages quote names (`no such domain: 'x'`). */
export function pyRepr(s: string): string {
  const q = s.includes("'") && !s.includes('"') ? '"' : "'";
  const body = s.replace(/[\\\x00-\x1f\x7f]/g, (c) => (c === '\\' ? '\\\\' : c === '\n' ? '\\n' : c === '\t' ? '\\t' : c === '\r' ? '\\r' : `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`));
  return q + (q === "'" ? body.replace(/'/g, "\\'") : body) + q;
}

/** Qubes' parser error for a qube that does not exist: exit 2, before any other call. */
export function noSuchDomain(name: string): UsageError {
  return new UsageError(`no such domain: ${pyRepr(name)}`);
}

/** A VMNAME argument is a pattern when it has one of fnmatch's special characters. */
export function hasWildcard(s: string): boolean {
  return /[*?[\]!]/.test(s);
}

/**
 * Python's fnmatch.fnmatchcase: `*`, `?`, `[seq]`, `[!seq]` (ranges included; a reversed range
 * matches nothing, as in Python), matched against the whole name. Never throws, whatever the pattern.
 */
export function fnmatch(name: string, pattern: string): boolean {
  const esc = (c: string) => c.replace(/[\\^$.*+?()[\]{}|/-]/g, '\\$&');
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '*') re += '.*';
    else if (c === '?') re += '.';
    else if (c === '[') {
      // As Python: a `]` right after `[` or `[!` belongs to the set; no closing `]` makes `[` literal.
      let j = i + 1;
      if (pattern[j] === '!') j++;
      if (pattern[j] === ']') j++;
      const close = pattern.indexOf(']', j);
      if (close < 0) {
        re += '\\[';
        continue;
      }
      let body = pattern.slice(i + 1, close);
      const negate = body.startsWith('!');
      if (negate) body = body.slice(1);
      let set = '';
      for (let k = 0; k < body.length; k++) {
        if (body[k + 1] === '-' && k + 2 < body.length) {
          if (body[k] <= body[k + 2]) set += `${esc(body[k])}-${esc(body[k + 2])}`;
          k += 2;
        } else set += esc(body[k]);
      }
      re += set ? `[${negate ? '^' : ''}${set}]` : negate ? '.' : '(?!)';
      i = close;
    } else re += esc(c);
  }
  return new RegExp(`^${re}$`, 's').test(name);
}

/**
 * VMNAME arguments as Qubes' VmNameAction resolves them: patterns expand to the matching qubes in
 * name order, plain names are kept once each, and a name that matches no qube is a usage error.
 */
export function expandVmNames(all: readonly QubeEntry[], args: readonly string[]): QubeEntry[] {
  const byName = new Map(all.map((q) => [q.name, q]));
  // Qubes' collection iterates its qubes sorted by name, so a pattern's matches come in that order.
  const sorted = [...all].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const out: string[] = [];
  for (const arg of args) {
    if (hasWildcard(arg)) {
      for (const q of sorted) if (!out.includes(q.name) && fnmatch(q.name, arg)) out.push(q.name);
    } else if (!out.includes(arg)) out.push(arg);
  }
  return out.map((n) => {
    const q = byName.get(n);
    if (!q) throw noSuchDomain(n);
    return q;
  });
}

/** One VMNAME that must exist (no wildcards, as Qubes' nargs=1 VMNAME). */
export async function resolveVm(deps: CliDeps, name: string): Promise<QubeEntry> {
  const q = (await listQubes(deps.client)).find((e) => e.name === name);
  if (!q) throw noSuchDomain(name);
  return q;
}

/**
 * A VMNAME of a one-qube tool (qvm-clone, qvm-tags, qvm-features): as Qubes' nargs=1 VmNameAction,
 * a pattern is expanded and its first match (in listing order) is the qube.
 */
export async function resolveFirstVm(deps: CliDeps, name: string): Promise<QubeEntry> {
  const matches = expandVmNames(await listQubes(deps.client), [name]);
  if (matches.length === 0) throw noSuchDomain(name);
  return matches[0];
}

// ---- --all / --exclude

export interface TargetOptions {
  all?: boolean;
  exclude: string[];
}

export function addTargetOptions(p: Command): Command {
  return p
    .option('--all', 'perform the action on all qubes')
    .option('--exclude <EXCLUDE>', 'exclude the qube from --all', collect, []);
}

/** The syntax half of target resolution: no call is made before this passes. */
export function checkTargets(names: readonly string[], o: TargetOptions): void {
  if (o.exclude.length > 0 && !o.all) throw new UsageError('--exclude can only be used with --all');
  if (o.all && names.length > 0) throw new UsageError('argument VMNAME: not allowed with argument --all');
  if (!o.all && names.length === 0) throw new UsageError('one of the arguments --all VMNAME is required');
}

/** Every qube but dom0 and the excluded ones (--all), else the named qubes (wildcards expanded). */
export async function resolveTargetEntries(deps: CliDeps, names: readonly string[], o: TargetOptions): Promise<QubeEntry[]> {
  checkTargets(names, o);
  const qubes = await listQubes(deps.client);
  if (!o.all) return expandVmNames(qubes, names);
  return qubes.filter((q) => q.klass !== 'AdminVM' && !o.exclude.includes(q.name));
}

export async function resolveTargets(deps: CliDeps, names: readonly string[], o: TargetOptions): Promise<string[]> {
  return (await resolveTargetEntries(deps, names, o)).map((q) => q.name);
}

/** Destructive commands ask first; when nobody can answer they refuse before making any call. */
export function ensureCanAsk(deps: CliDeps, forceHint: string): (question: string) => Promise<string> {
  if (!deps.isTTY || !deps.prompt) throw new UsageError(`refusing to proceed without confirmation (not a terminal); use ${forceHint}`);
  return deps.prompt;
}
