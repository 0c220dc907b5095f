// What an `ask` dialog offers: Qubes' collect_targets_for_ask (every rule for this service, argument
// and source, walked bottom-up so that earlier rules win: allow/ask add their targets, deny removes).

import type { Policy } from './loader';
import type { NormalizedRequest } from './request';
import type { Rule } from './rule';
import { type SystemInfo, defaultDispvmOf, domainInfo, domainName, isAdminVmSpelling } from './system';
import { type VmToken, expandTarget, matchSource } from './tokens';

const byCodePoint = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
const hasOwn = (o: object, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k);

export function matchesAllButTarget(rule: Rule, req: NormalizedRequest, system: SystemInfo): boolean {
  return (
    (rule.service === null || rule.service === req.service) &&
    (rule.argument === null || rule.argument === req.argument) &&
    matchSource(rule.source, req.sourceRef, system)
  );
}

/** The sorted list of targets the user may pick from, before any rule's own `target=`/autostart. */
export function collectTargetsForAsk(policy: Policy, req: NormalizedRequest, system: SystemInfo): string[] {
  const targets = new Set<string>();
  const expansions = new Map<string, string[]>();
  const rules = policy.rules;
  for (let i = rules.length - 1; i >= 0; i--) {
    const rule = rules[i];
    if (!matchesAllButTarget(rule, req, system)) continue;
    // A redirect is where the call would really go, so it is what the rule offers.
    const tok = rule.action.target ?? rule.target;
    // Many rules share a token (`@anyvm` above all); expand each spelling once per call.
    let expansion = expansions.get(tok.text);
    if (expansion === undefined) expansions.set(tok.text, (expansion = expandTarget(tok, system)));
    if (rule.action.kind === 'deny') for (const t of expansion) targets.delete(t);
    else for (const t of expansion) targets.add(t);
  }
  if (targets.delete('@dispvm')) {
    const template = defaultDispvmOf(system, req.source);
    if (template !== undefined) targets.add('@dispvm:' + template);
  }
  if (targets.delete('@adminvm')) targets.add('dom0');
  // No loopback calls; `internal` qubes (and disposables of them) are never offered to a user.
  targets.delete(req.source);
  for (const t of [...targets]) {
    const name = t.startsWith('@dispvm:') ? t.slice('@dispvm:'.length) : t;
    if (hasOwn(system.domains, name) && system.domains[name].internal === true) targets.delete(t);
  }
  return [...targets].sort(byCodePoint);
}

/**
 * A redirect or default target as the dialog shows it: dom0 for any spelling of it, names for
 * uuids, `@dispvm` as the source's disposable template; undefined if it designates nothing.
 */
export function displayTarget(tok: VmToken, req: NormalizedRequest, system: SystemInfo): string | undefined {
  switch (tok.kind) {
    case 'adminvm':
      return 'dom0';
    case 'dispvm': {
      const template = defaultDispvmOf(system, req.source);
      return template === undefined ? undefined : '@dispvm:' + template;
    }
    case 'dispvm-template': {
      const name = domainName(system, tok.value);
      return name === undefined ? undefined : '@dispvm:' + name;
    }
    case 'name':
      return domainName(system, tok.value);
    default:
      return undefined;
  }
}

/** Qubes' allow_no_autostart: a target usable without starting anything. */
export function runsWithoutAutostart(target: string, system: SystemInfo): boolean {
  if (isAdminVmSpelling(target)) return true;
  if (target.startsWith('@dispvm')) return false;
  return domainInfo(system, target)?.power_state === 'Running';
}

export interface AskChoices {
  targets: string[];
  /** Preselected in the dialog; null if the rule names none or names one not offered. */
  defaultTarget: string | null;
}

export function askChoices(rule: Rule, policy: Policy, req: NormalizedRequest, system: SystemInfo): AskChoices {
  const action = rule.action;
  let targets: string[];
  if (action.target !== null) {
    // An explicit target= is offered as is: Qubes does not drop the source or internal qubes here.
    const only = displayTarget(action.target, req, system);
    targets = only === undefined ? [] : [only];
  } else {
    targets = collectTargetsForAsk(policy, req, system);
  }
  if (!action.autostart) targets = targets.filter((t) => runsWithoutAutostart(t, system));
  const wanted = action.defaultTarget === null ? undefined : displayTarget(action.defaultTarget, req, system);
  return { targets, defaultTarget: wanted !== undefined && targets.includes(wanted) ? wanted : null };
}
