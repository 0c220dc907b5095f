// Plumbing shared by the qvm-* commands: their dependencies, commander set-up, the error policy,
// --all/--exclude target resolution and parsers for the Admin API's text replies.

import { Command, CommanderError } from 'commander';
import { ADMIN_METHODS, isAdminMethod, type AdminMethod } from '../../core/admin-methods';
import type { AdminEvent } from '../../core/admin-wire';
import { QubesError, type QubesErrorCode } from '../../core/errors';
import type { CallOptions } from '../admin-client';

/** What the CLI needs of AdminClient; tests pass a fake that records calls. */
export interface AdminClientLike {
  call(method: AdminMethod, dest: string, opts?: CallOptions): Promise<string>;
  events(onEvent: (e: AdminEvent) => void, dest?: string): Promise<() => void>;
}

export interface CliDeps {
  client: AdminClientLike;
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  /** stdin and stderr are a terminal: questions may be asked, progress bars drawn. */
  isTTY: boolean;
  /** Asks one question on the terminal and returns the answer line (used only when isTTY). */
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
  let version = '0';
  try {
    version = (require('../../../../package.json') as { version: string }).version;
  } catch {
    // Run from an unusual tree: the version is informative only.
  }
  return `${name} (Isola: Qubes OS's model of security by isolation) ${version}\nLicense: GPL-2.0-or-later`;
}

/** commander's parse errors in argparse's words, as Qubes' tools print them. */
export function argparseWording(untrustedMessage: string): string {
  const m = untrustedMessage.replace(/^error: /, '');
  let r: RegExpExecArray | null;
  if ((r = /^missing required argument '([^']*)'/.exec(m))) return `the following arguments are required: ${r[1]}`;
  if ((r = /^unknown option '([^']*)'/.exec(m))) return `unrecognized arguments: ${r[1]}`;
  if ((r = /^too many arguments(?: for '[^']*')?\. Expected \d+ arguments? but got \d+\.?/.exec(m))) return 'unrecognized arguments';
  if ((r = /^option '([^']*?)(?: <[^>]*>| \[[^\]]*\])?' argument missing/.exec(m))) return `argument ${r[1].replace(/, /g, '/')}: expected one argument`;
  if ((r = /^option '([^']*?)(?: <[^>]*>)?' argument '([^']*)' is invalid\. Allowed choices are (.*)\.$/.exec(m))) {
    return `argument ${r[1].replace(/, /g, '/')}: invalid choice: ${pyRepr(r[2])} (choose from ${r[3].split(', ').map(pyRepr).join(', ')})`;
  }
  if ((r = /^option '([^']*?)(?: <[^>]*>)?' cannot be used with option '([^']*?)(?: <[^>]*>)?'/.exec(m))) {
    return `argument ${r[1].replace(/, /g, '/')}: not allowed with argument ${r[2].replace(/, /g, '/')}`;
  }
  return m;
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
  if (opts.verbosity !== false) {
    p.option('-v, --verbose', 'increase verbosity', increase, 0).option('-q, --quiet', 'decrease verbosity', increase, 0);
  }
  return p;
}

/** Qubes' log level: 1 by default, each -v adds one, each -q removes one. */
export function verbosity(o: { verbose?: number; quiet?: number }): number {
  return 1 + (o.verbose ?? 0) - (o.quiet ?? 0);
}

export function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ').trim();
}

/** Prints an error the way every command does and returns the exit code it stands for. */
export function reportError(command: string, e: unknown, deps: CliDeps): number {
  if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2; // commander already printed it
  if (e instanceof UsageError) {
    deps.stderr(`${command}: error: ${oneLine(e.message)}\n`);
    return 2;
  }
  const message = e instanceof Error ? e.message : String(e);
  deps.stderr(`${command}: error: ${oneLine(message) || 'unknown error'}\n`);
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

/** Python's fnmatch.fnmatchcase: `*`, `?`, `[seq]`, `[!seq]`, matched against the whole name. */
export function fnmatch(name: string, pattern: string): boolean {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '*') re += '.*';
    else if (c === '?') re += '.';
    else if (c === '[') {
      const close = pattern.indexOf(']', i + (pattern[i + 1] === '!' ? 2 : 1) + 1);
      if (close < 0) {
        re += '\\[';
        continue;
      }
      let set = pattern.slice(i + 1, close);
      if (set.startsWith('!')) set = '^' + set.slice(1);
      re += `[${set.replace(/[\\\]]/g, '\\$&')}]`;
      i = close;
    } else re += c.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');
  }
  return new RegExp(`^${re}$`, 's').test(name);
}

/**
 * VMNAME arguments as Qubes' VmNameAction resolves them: patterns expand to the matching qubes in
 * listing order, plain names are kept once each, and a name that matches no qube is a usage error.
 */
export function expandVmNames(all: readonly QubeEntry[], args: readonly string[]): QubeEntry[] {
  const byName = new Map(all.map((q) => [q.name, q]));
  const out: string[] = [];
  for (const arg of args) {
    if (hasWildcard(arg)) {
      for (const q of all) if (!out.includes(q.name) && fnmatch(q.name, arg)) out.push(q.name);
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


// ---- reply parsers

export function lines(text: string): string[] {
  return text.split('\n').filter((l) => l !== '');
}

export interface QubeEntry {
  name: string;
  klass: string;
  state: string;
  uuid: string;
  /** Why the qube's last run ended badly (Isola addition to admin.vm.List), if it did. */
  lastError?: string;
}

/** admin.vm.List: `NAME class=CLASS state=STATE uuid=UUID` per line. */
export function parseVmList(text: string): QubeEntry[] {
  return lines(text).map((line) => {
    const [name, ...rest] = line.split(' ');
    const kv = parseTokens(rest.join(' '));
    const err = kv.get('last_error');
    return { name, klass: kv.get('class') ?? '', state: kv.get('state') ?? '', uuid: kv.get('uuid') ?? '', ...(err ? { lastError: safeDecode(err) } : {}) };
  });
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

export async function listQubes(client: AdminClientLike): Promise<QubeEntry[]> {
  return parseVmList(await client.call('admin.vm.List', 'dom0'));
}

/** `k=v k=v` on one line (admin.vm.CurrentState, admin.vm.List attributes). */
export function parseTokens(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const tok of text.split(/\s+/)) {
    const eq = tok.indexOf('=');
    if (eq > 0) out.set(tok.slice(0, eq), tok.slice(eq + 1));
  }
  return out;
}

/** `key=value` per line (admin.vm.volume.Info); values may contain spaces. */
export function parseKeyValueLines(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of lines(text)) {
    const eq = line.indexOf('=');
    if (eq > 0) out.set(line.slice(0, eq), line.slice(eq + 1));
  }
  return out;
}

export interface PropertyReply {
  isDefault: boolean;
  /** Absent in the old `default=True ` reply for a property without a value. */
  type?: string;
  value: string;
}

/** admin.(vm.)property.Get: `default=True|False type=TYPE VALUE`. */
export function parsePropertyReply(text: string): PropertyReply {
  const m = /^default=(True|False)(?: type=(\S+))?(?: ([\s\S]*))?$/.exec(text);
  if (!m) throw new QubesError('ProtocolError', `malformed property reply from isolad: '${oneLine(text)}'`);
  return { isDefault: m[1] === 'True', type: m[2], value: m[3] ?? '' };
}

/** Qubes escapes `\` and newlines in GetAll so that one property stays on one line. */
export function unescapeGetAll(line: string): string {
  return line.replace(/\\(n|\\)/g, (_m, c: string) => (c === 'n' ? '\n' : '\\'));
}

/** admin.(vm.)property.GetAll: `PROP <Get reply>` per line. */
export function parseGetAll(text: string): Map<string, PropertyReply> {
  const out = new Map<string, PropertyReply>();
  for (const raw of lines(text)) {
    const line = unescapeGetAll(raw);
    const sp = line.indexOf(' ');
    if (sp <= 0) throw new QubesError('ProtocolError', `malformed property line from isolad: '${oneLine(line)}'`);
    out.set(line.slice(0, sp), parsePropertyReply(line.slice(sp + 1)));
  }
  return out;
}

/** Qubes shows `U` for a property that has neither a value nor a default. */
export function hasNoValue(p: PropertyReply): boolean {
  return p.value === '' && (p.type === undefined || p.type === 'int' || p.type === 'bool');
}

/** Qube-valued properties accept `none` for "no qube", as qvm-prefs does. */
export const QUBE_VALUED = new Set(['default_dispvm', 'netvm', 'template', 'guivm', 'audiovm', 'management_dispvm']);

/** `admin.vm.Create.<Class>` for a class name, if the Admin API table has it. */
export function createMethod(klass: string): AdminMethod | undefined {
  const m = `admin.vm.Create.${klass}`;
  return isAdminMethod(m) ? m : undefined;
}

export function creatableClasses(): string[] {
  const prefix = 'admin.vm.Create.';
  return Object.keys(ADMIN_METHODS).filter((m) => m.startsWith(prefix)).map((m) => m.slice(prefix.length));
}
