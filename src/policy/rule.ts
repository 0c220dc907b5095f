// One policy rule (`SERVICE +ARGUMENT SOURCE TARGET ACTION [key=value…]`) checked field by field in
// the order Qubes checks it, so that a bad line fails with the reason Qubes would give.

import { PolicySyntaxError } from './errors';
import { pyList, pyRepr, pyTuple } from './text';
import { type VmToken, parseToken } from './tokens';

export type ActionKind = 'allow' | 'deny' | 'ask';

export interface RuleAction {
  readonly kind: ActionKind;
  /** `target=`: allow and ask only. */
  readonly target: VmToken | null;
  /** `default_target=`: ask only. */
  readonly defaultTarget: VmToken | null;
  /** `user=`: allow and ask only; null runs as the target's default user. */
  readonly user: string | null;
  readonly notify: boolean;
  readonly autostart: boolean;
}

export interface Rule {
  /** null stands for `*`. */
  readonly service: string | null;
  /** null stands for `*`; otherwise it starts with `+` (`+` alone is the empty argument). */
  readonly argument: string | null;
  readonly source: VmToken;
  readonly target: VmToken;
  readonly action: RuleAction;
  readonly file: string;
  /** 0 for the implicit deny lines that `!compat-4.0` appends. */
  readonly line: number;
}

const RPCNAME_CHARS = /^[A-Za-z0-9+._-]*$/;

function invalidChars(s: string, allowPlus: boolean): string[] {
  const bad = new Set<string>();
  for (const ch of s) if (!RPCNAME_CHARS.test(ch) || (!allowPlus && ch === '+')) bad.add(ch);
  // Python sorts by code point; JS's default sort is by UTF-16 unit, the same for the BMP.
  return [...bad].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** Qubes' validate_service_and_argument: the policy-side spelling of a service and argument. */
export function validateServiceAndArgument(service: string, argument: string, file: string, line: number): [string | null, string | null] {
  const svc = service === '*' ? null : service;
  if (svc !== null) {
    const bad = invalidChars(svc, false);
    if (bad.length) throw new PolicySyntaxError(file, line, `service ${pyRepr(svc)} contains invalid characters: ${pyTuple(bad)}`);
  }
  const arg = argument === '*' ? null : argument;
  if (arg !== null) {
    const bad = invalidChars(arg, true);
    if (bad.length) throw new PolicySyntaxError(file, line, `argument ${pyRepr(arg)} contains invalid characters: ${pyTuple(bad)}`);
    if (!arg.startsWith('+')) throw new PolicySyntaxError(file, line, `argument ${pyRepr(arg)} does not start with +`);
    if (svc === null) throw new PolicySyntaxError(file, line, 'only * argument allowed for * service');
  }
  return [svc, arg];
}

const PARAMS: Record<ActionKind, ReadonlySet<string>> = {
  allow: new Set(['target', 'user', 'notify', 'autostart']),
  deny: new Set(['notify']),
  ask: new Set(['target', 'default_target', 'user', 'notify', 'autostart']),
};

const CLASS_NAME: Record<ActionKind, string> = { allow: 'Allow', deny: 'Deny', ask: 'Ask' };

function isActionKind(s: string): s is ActionKind {
  return s === 'allow' || s === 'deny' || s === 'ask';
}

function parseAction(kind: ActionKind, params: readonly string[], file: string, line: number): RuleAction {
  const fail = (reason: string) => new PolicySyntaxError(file, line, reason);
  const kw = new Map<string, string>();
  for (const p of params) {
    const eq = p.indexOf('=');
    if (eq < 0) throw fail(`invalid action parameter syntax: ${pyRepr(p)}`);
    const key = p.slice(0, eq);
    if (kw.has(key)) throw fail(`parameter given twice: ${pyRepr(key)}`);
    kw.set(key, p.slice(eq + 1));
  }
  // Booleans are checked before the per-action check, so `deny autostart=x` reports the value.
  for (const key of ['notify', 'autostart']) {
    const v = kw.get(key);
    if (v !== undefined && v !== 'yes' && v !== 'no') throw fail(`${pyRepr(key)} is ${pyRepr(v)}, but can be only 'yes' or 'no'`);
  }
  for (const key of kw.keys()) {
    if (!PARAMS[kind].has(key)) throw fail(`invalid parameters for action ${CLASS_NAME[kind]}: ${pyList(params)}`);
  }
  const target = kw.has('target') ? parseToken(kw.get('target')!, 'redirect', file, line) : null;
  const defaultTarget = kw.has('default_target') ? parseToken(kw.get('default_target')!, 'redirect', file, line) : null;
  const notify = kw.get('notify');
  const autostart = kw.get('autostart');
  return {
    kind,
    target,
    defaultTarget,
    // Qubes sends `user=DEFAULT` for an empty user= as for none.
    user: kw.get('user') || null,
    notify: notify === undefined ? kind === 'deny' : notify === 'yes',
    autostart: autostart === undefined ? true : autostart === 'yes',
  };
}

export function parseRule(
  service: string, argument: string, source: string, target: string, action: string, params: readonly string[],
  file: string, line: number,
): Rule {
  const [svc, arg] = validateServiceAndArgument(service, argument, file, line);
  const src = parseToken(source, 'source', file, line);
  const tgt = parseToken(target, 'target', file, line);
  if (!isActionKind(action)) throw new PolicySyntaxError(file, line, `invalid action: ${action}`);
  const act = parseAction(action, params, file, line);
  if (tgt.kind === 'default' && act.kind === 'allow' && act.target === null) {
    throw new PolicySyntaxError(file, line, 'allow action for @default rule must specify target= option');
  }
  return { service: svc, argument: arg, source: src, target: tgt, action: act, file, line };
}

/** A line of the current format, already split on whitespace. */
export function parseRuleFields(fields: readonly string[], file: string, line: number): Rule {
  if (fields.length < 5) throw new PolicySyntaxError(file, line, 'wrong number of fields');
  const [service, argument, source, target, action, ...params] = fields;
  return parseRule(service, argument, source, target, action, params, file, line);
}

/** A line of the old 3-column format (`!include-service`), already rewritten and split. */
export function parseServiceRuleFields(service: string, argument: string, fields: readonly string[], file: string, line: number): Rule {
  if (fields.length < 3) throw new PolicySyntaxError(file, line, 'wrong number of fields');
  const [source, target, action, ...params] = fields;
  return parseRule(service, argument, source, target, action, params, file, line);
}

/** The rule as one policy line, for listings and logs. */
export function formatRule(rule: Rule): string {
  const a = rule.action;
  const params = [
    a.target ? `target=${a.target.text}` : '',
    a.defaultTarget ? `default_target=${a.defaultTarget.text}` : '',
    a.user ? `user=${a.user}` : '',
    a.notify !== (a.kind === 'deny') ? `notify=${a.notify ? 'yes' : 'no'}` : '',
    a.autostart ? '' : 'autostart=no',
  ].filter(Boolean);
  return [rule.service ?? '*', rule.argument ?? '*', rule.source.text, rule.target.text, a.kind, ...params].join(' ');
}
