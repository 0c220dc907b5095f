// The words shared by isolad and `isola policy`/`isola doctor` about the policy: the status reply
// of admin.policy.Status (`key=value` lines) and the JSON answer of an evaluation.

import { evaluate, splitServiceCall, type Policy, type SystemInfo } from '../policy';
import type { PolicyStatus } from './policy-store';

const iso = (t: number | null) => (t === null ? '' : new Date(t).toISOString());

export function encodePolicyStatus(s: PolicyStatus): string {
  const one = (v: string) => v.replace(/\s*\n\s*/g, ' ');
  return [
    `dir=${one(s.dir)}`, `state=${s.state}`, `files=${s.files}`, `rules=${s.rules}`, `loaded_at=${iso(s.loadedAt)}`,
    `error=${one(s.error ?? '')}`, `error_since=${iso(s.errorSince)}`,
  ].map((l) => l + '\n').join('');
}

export interface PolicyStatusReply {
  dir: string;
  state: string;
  files: number;
  rules: number;
  loadedAt: string;
  error: string;
  errorSince: string;
}

export function decodePolicyStatus(text: string): PolicyStatusReply {
  const kv = new Map<string, string>();
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) kv.set(line.slice(0, eq), line.slice(eq + 1));
  }
  return {
    dir: kv.get('dir') ?? '', state: kv.get('state') ?? '', files: Number(kv.get('files') ?? 0), rules: Number(kv.get('rules') ?? 0),
    loadedAt: kv.get('loaded_at') ?? '', error: kv.get('error') ?? '', errorSince: kv.get('error_since') ?? '',
  };
}

/** `3 min 4 s` since an ISO time, for people. */
export function ageOf(isoTime: string, now = Date.now()): string {
  const secs = Math.max(0, Math.round((now - Date.parse(isoTime)) / 1000));
  if (secs < 60) return `${secs} s`;
  if (secs < 3600) return `${Math.floor(secs / 60)} min ${secs % 60} s`;
  return `${Math.floor(secs / 3600)} h ${Math.floor((secs % 3600) / 60)} min`;
}

/** One line on what isolad enforces, for `isola policy check` and `isola doctor`. */
export function describeInForce(s: PolicyStatusReply): string {
  if (s.state === 'loaded') return `isolad enforces the files on disk: ${s.rules} rules from ${s.files} files, loaded ${s.loadedAt}`;
  const old = s.loadedAt ? `the policy loaded ${s.loadedAt} (${s.rules} rules) stays in force` : 'no policy is in force: every call is denied';
  return `${s.error}; since ${s.errorSince} (${ageOf(s.errorSince)}) ${old}`;
}

/** The JSON answer of `isola policy eval` and admin.policy.Eval; `policy` says what was evaluated. */
export function evalAnswer(policy: Policy, source: string, target: string, call: string, system: SystemInfo, from: string, requestedSource?: string): string {
  const { service, argument } = splitServiceCall(call);
  const r = evaluate(policy, { service, argument, source, target, ...(requestedSource ? { requested_source: requestedSource } : {}) }, system);
  const { result, target: to, user, notify, autostart, default_target, targets_for_ask, rule, reason } = r;
  return JSON.stringify({ result, target: to, user, notify, autostart, default_target, targets_for_ask, rule, reason, policy: from }) + '\n';
}
