// The answer to one call, as `isola policy eval` prints it and the router acts on it, and the lines
// Qubes' policy daemon would send qrexec-daemon for an allow (AllowResolution.execute).

import type { NormalizedRequest } from './request';
import type { Rule } from './rule';
import { type SystemInfo, domainName, isAdminVmSpelling } from './system';

export type ResultKind = 'allow' | 'deny' | 'ask';

/** Where a deny came from: a malformed request, no rule matching, a rule, or the user's answer. */
export type Stage = 'request' | 'match' | 'evaluate' | 'user';

export interface RuleRef {
  file: string;
  line: number;
}

export interface Resolution {
  result: ResultKind;
  /** allow: where the call goes (`dom0`, a name, `uuid:U`, `@dispvm:T`); otherwise null. */
  target: string | null;
  /** allow/ask: the user the service runs as; null is the target's default user. */
  user: string | null;
  notify: boolean;
  /** allow/ask: whether a halted target may be started; null for deny. */
  autostart: boolean | null;
  /** ask: the preselected choice, if the rule names one that is offered. */
  default_target: string | null;
  /** ask: the sorted choices offered to the user. */
  targets_for_ask: string[] | null;
  rule: RuleRef | null;
  /** Index of the deciding rule in the flattened rule list. */
  rule_index: number | null;
  reason: string;
  stage: Stage | null;
  /** The caller's target after verification (`@default` for a name that is no qube); null if refused. */
  requested_target: string | null;
  /** allow: Qubes' policy-daemon reply, when the call can be executed. */
  daemon_response?: string[];
  /** allow: why the call cannot be executed after all (loopback; broken RemoteVM). */
  execute_error?: string;
}

export function ruleRef(rule: Rule): RuleRef {
  return { file: rule.file, line: rule.line };
}

export function location(rule: Rule): string {
  return `${rule.file}:${rule.line}`;
}

export function denied(stage: Stage, reason: string, notify: boolean, rule: Rule | null = null, index: number | null = null, requested: string | null = null): Resolution {
  return {
    result: 'deny',
    target: null,
    user: null,
    notify,
    autostart: null,
    default_target: null,
    targets_for_ask: null,
    rule: rule && ruleRef(rule),
    rule_index: index,
    reason,
    stage,
    requested_target: requested,
  };
}

export function allowed(
  target: string, rule: Rule, index: number, req: NormalizedRequest, system: SystemInfo,
  action: { user: string | null; notify: boolean; autostart: boolean }, reason: string,
): Resolution {
  const res: Resolution = {
    result: 'allow',
    target,
    user: action.user,
    notify: action.notify,
    autostart: action.autostart,
    default_target: null,
    targets_for_ask: null,
    rule: ruleRef(rule),
    rule_index: index,
    reason,
    stage: null,
    requested_target: req.target.text,
  };
  const wire = allowResponse(target, action.user, action.autostart, req, system);
  if ('error' in wire) res.execute_error = wire.error;
  else res.daemon_response = wire.lines;
  return res;
}

/**
 * The reply lines for an allow, or why it cannot be executed. A RemoteVM target goes to its relay
 * qube through the RemoteVM's transport service, and runs there as the default user.
 */
export function allowResponse(
  target: string, user: string | null, autostart: boolean, req: NormalizedRequest, system: SystemInfo,
): { lines: string[] } | { error: string } {
  const caller = domainName(system, req.caller) ?? req.caller;
  const loopback = (name: string) => name === req.source || name === caller;
  let wireTarget = target;
  let uuid: string | undefined;
  let service: string | undefined;
  let runAs = user;
  if (isAdminVmSpelling(target)) {
    if (loopback('dom0')) return { error: 'loopback qrexec connection not supported' };
    wireTarget = 'dom0';
  } else if (target.startsWith('@dispvm:')) {
    const template = domainName(system, target.slice('@dispvm:'.length));
    if (template === undefined) return { error: `disposable template ${target.slice('@dispvm:'.length)} does not exist` };
    const u = system.domains[template].uuid;
    uuid = u ? `@dispvm:uuid:${u}` : undefined;
  } else {
    const name = domainName(system, target);
    if (name === undefined) return { error: `no such qube: ${target}` };
    const info = system.domains[name];
    if (info.type === 'RemoteVM') {
      const relay = info.relayvm == null ? undefined : domainName(system, info.relayvm);
      if (relay === undefined) return { error: `RemoteVM ${name} has no relay qube` };
      if (!info.transport_rpc) return { error: `RemoteVM ${name} has no transport_rpc` };
      if (loopback(relay) || loopback(name)) return { error: 'loopback qrexec connection not supported' };
      wireTarget = relay;
      uuid = system.domains[relay].uuid ? `uuid:${system.domains[relay].uuid}` : undefined;
      service = `${info.transport_rpc}+${name}+${req.service}${req.argument}`;
      runAs = null;
    } else {
      if (loopback(name)) return { error: 'loopback qrexec connection not supported' };
      uuid = info.uuid ? `uuid:${info.uuid}` : undefined;
    }
  }
  const lines = [`user=${runAs || 'DEFAULT'}`, 'result=allow', `target=${wireTarget}`];
  if (uuid !== undefined) lines.push(`target_uuid=${uuid}`);
  lines.push(`autostart=${autostart ? 'True' : 'False'}`, `requested_target=${req.target.text}`);
  if (service !== undefined) lines.push(`service=${service}`);
  if (req.requestedSource !== null) lines.push(`policy_source=${req.requestedSource}`);
  return { lines };
}

/** The whole reply to qrexec-daemon: the allow lines, or `result=deny` for anything else. */
export function daemonResponse(res: Resolution): string[] {
  return res.result === 'allow' && res.daemon_response ? res.daemon_response : ['result=deny'];
}
