// Decides one qrexec call: the first rule matching service, argument, source and target wins, no
// match denies, and its action is resolved against a snapshot of the qubes; anything odd denies.

import { askChoices, runsWithoutAutostart } from './ask-targets';
import type { Policy } from './loader';
import { type NormalizedRequest, type PolicyRequest, normalizeRequest } from './request';
import { type Resolution, allowed, denied, location, ruleRef } from './resolution';
import type { Rule } from './rule';
import { type SystemInfo, defaultDispvmOf } from './system';
import { type Intended, matchSource, matchTarget, verifyIntended } from './tokens';

interface AskContext {
  rule: Rule;
  index: number;
  req: NormalizedRequest;
  /** A private copy: what the user may pick must not change if the printable list is edited. */
  targets: readonly string[];
}

// What answerAsk needs besides the printable resolution; weakly held, so a dropped ask costs nothing.
const pendingAsks = new WeakMap<Resolution, AskContext>();

export function findMatchingRule(policy: Policy, req: NormalizedRequest, system: SystemInfo): number {
  const rules = policy.rules;
  for (let i = 0; i < rules.length; i++) {
    const r = rules[i];
    if (r.service !== null && r.service !== req.service) continue;
    if (r.argument !== null && r.argument !== req.argument) continue;
    if (matchSource(r.source, req.sourceRef, system) && matchTarget(r.target, req.target, req.source, system)) return i;
  }
  return -1;
}

function evaluateAllow(rule: Rule, index: number, req: NormalizedRequest, system: SystemInfo): Resolution {
  const action = rule.action;
  const at = location(rule);
  const deny = (reason: string, notify = true) => denied('evaluate', reason, notify, rule, index, req.target.text);
  let target: Intended;
  if (action.target === null) {
    target = req.target;
  } else {
    // The redirect is where the call goes; it is not matched against the rules again.
    const verified = verifyIntended(action.target, system);
    if ('refused' in verified) return deny(verified.refused);
    target = verified;
  }
  let text: string;
  if (target.kind === 'default') return deny(`policy define 'allow' action at ${at} but no target is specified by caller or policy`);
  if (target.kind === 'dispvm') {
    const template = defaultDispvmOf(system, req.source);
    if (template === undefined) return deny(`policy define 'allow' action to @dispvm at ${at} but no DispVM base is set for this VM`);
    text = '@dispvm:' + template;
  } else if (target.kind === 'adminvm') {
    text = 'dom0';
  } else {
    text = target.text;
  }
  if (!action.autostart && !runsWithoutAutostart(text, system)) {
    return deny(`target ${text} is denied because it would require autostart`, action.notify);
  }
  return allowed(text, rule, index, req, system, action, `allowed by policy ${at}`);
}

function evaluateAsk(policy: Policy, rule: Rule, index: number, req: NormalizedRequest, system: SystemInfo): Resolution {
  const { targets, defaultTarget } = askChoices(rule, policy, req, system);
  const at = location(rule);
  if (targets.length === 0) {
    return denied('evaluate', `policy define 'ask' action at ${at} but no target is available to choose from`, true, rule, index, req.target.text);
  }
  const res: Resolution = {
    result: 'ask',
    target: null,
    user: rule.action.user,
    notify: rule.action.notify,
    autostart: rule.action.autostart,
    default_target: defaultTarget,
    targets_for_ask: targets,
    rule: ruleRef(rule),
    rule_index: index,
    reason: `policy asks the user (${at})`,
    stage: null,
    requested_target: req.target.text,
  };
  pendingAsks.set(res, { rule, index, req, targets: [...targets] });
  return res;
}

function evaluateChecked(policy: Policy, request: PolicyRequest, system: SystemInfo): Resolution {
  const check = normalizeRequest(request, system);
  if (!check.ok) return denied('request', check.reason, true);
  const req = check.request;
  const index = findMatchingRule(policy, req, system);
  if (index < 0) return denied('match', 'no matching rule found', true, null, null, req.target.text);
  const rule = policy.rules[index];
  switch (rule.action.kind) {
    case 'deny':
      return denied('evaluate', `denied by policy ${location(rule)}`, rule.action.notify, rule, index, req.target.text);
    case 'allow':
      return evaluateAllow(rule, index, req, system);
    case 'ask':
      return evaluateAsk(policy, rule, index, req, system);
  }
}

/** The policy's answer to one call. Never throws: malformed input or system info denies. */
export function evaluate(policy: Policy, request: PolicyRequest, system: SystemInfo): Resolution {
  try {
    return evaluateChecked(policy, request, system);
  } catch (e) {
    return denied('evaluate', `policy evaluation failed: ${e instanceof Error ? e.message : String(e)}`, true);
  }
}

export interface AskAnswer {
  allow: boolean;
  /** A deny nobody chose: no answer came in time, or the caller left while waiting. */
  unanswered?: 'timeout' | 'withdrawn';
  /** The choice, one of `targets_for_ask`; ignored when `allow` is false. */
  target?: string;
}

/** Qubes' handle_user_response: the user's answer to an `ask` resolution returned by evaluate(). */
export function answerAsk(ask: Resolution, answer: AskAnswer, system: SystemInfo): Resolution {
  const ctx = pendingAsks.get(ask);
  if (ask.result !== 'ask' || ctx === undefined) throw new TypeError('answerAsk needs an ask resolution returned by evaluate()');
  const { rule, index, req, targets } = ctx;
  const action = rule.action;
  if (answer.unanswered === 'timeout') return denied('user', `nobody answered in time ${location(rule)}`, action.notify, rule, index, req.target.text);
  if (answer.unanswered === 'withdrawn') return denied('user', `the caller left before an answer ${location(rule)}`, action.notify, rule, index, req.target.text);
  if (!answer.allow) return denied('user', `denied by the user ${location(rule)}`, action.notify, rule, index, req.target.text);
  const choice = answer.target ?? '';
  if (!targets.includes(choice)) return denied('user', `target ${choice} is not a valid choice`, true, rule, index, req.target.text);
  return allowed(choice, rule, index, req, system, action, `allowed by the user (${location(rule)})`);
}

export interface NonInteractiveOptions {
  /** policy.EvalSimple/EvalGUI: `ask` counts as allow when the requested target is among the choices. */
  assumeYesForAsk?: boolean;
}

/** For filters and checks that cannot show a dialog (Qubes' just_evaluate): `ask` is a deny. */
export function evaluateNonInteractive(policy: Policy, request: PolicyRequest, system: SystemInfo, opts: NonInteractiveOptions = {}): Resolution {
  const res = evaluate(policy, request, system);
  if (res.result !== 'ask') return res;
  const ctx = pendingAsks.get(res)!;
  if (!opts.assumeYesForAsk) return denied('evaluate', 'denied for non-interactive ask', true, ctx.rule, ctx.index, res.requested_target);
  return answerAsk(res, { allow: true, target: res.requested_target ?? '' }, system);
}
