// Qubes' per-qube outbound firewall as data (qubes/firewall.py, qubesadmin/tools/qvm_firewall.py):
// the rule model and its three text forms (firewall-rule.ts), the command-line words
// (firewall-words.ts), qvm-firewall's table, and the normalized rules an enforcer compiles.
//
// Semantics (Qubes R4.1+): rules are tried in order, the first that matches decides; when none
// matches the packet is dropped (the policy is always `drop`). A rule matches when every field it
// has matches. A fresh qube has one rule, `action=accept`. A rule past its `expire` time is gone.

import { protocolError, QubesError, valueError } from './errors';
import { isExpired, parseApiRule, ruleError, type FirewallRule } from './firewall-rule';

export * from './firewall-rule';
export { parseRuleWords, wordsText } from './firewall-words';

/** More rules than any real firewall has: a payload past it is refused before anything is parsed. */
export const MAX_RULES = 10_000;

/**
 * The payload of admin.vm.firewall.Set (a qube may have sent it): ASCII only, as qubesd, one rule per
 * `\n`-terminated line (the last newline may be missing), no empty line. Every rule is checked; the
 * first bad one refuses the whole payload, its error naming the line (1-based) and the field.
 */
export function parseApiPayload(untrusted: Uint8Array): FirewallRule[] {
  const text = Buffer.from(untrusted.buffer, untrusted.byteOffset, untrusted.byteLength).toString('latin1');
  if (/[^\x00-\x7f]/.test(text)) throw protocolError('Rules contains non-ASCII characters');
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  if (lines.length === 0) throw ruleError('rules', undefined, 'none given (a firewall that drops everything is one rule: action=drop)');
  if (lines.length > MAX_RULES) throw valueError(`invalid firewall: ${lines.length} rules, at most ${MAX_RULES}`);
  return lines.map((line, i) => {
    try {
      if (line === '') throw ruleError('line', undefined, 'empty');
      return parseApiRule(line);
    } catch (e) {
      if (e instanceof QubesError) throw new QubesError(e.code, `line ${i + 1}: ${e.message}`);
      throw e;
    }
  });
}

/**
 * A rule as an enforcer (the nftables compiler) consumes it: only what matching needs, addresses
 * canonical. Absent field = matches anything.
 *
 * - `dst`: `{family, cidr}` for an address (`10.0.0.0/8`, `2001:db8::/32`: host bits cleared, so
 *   `cidr` can go into `ip daddr`/`ip6 daddr` as it is); a rule with a `family` applies only to that
 *   family's traffic. `{host}` is a DNS name: Qubes resolves it once when the rules are applied
 *   (both A and AAAA) and matches the addresses it got.
 * - `specialtarget: 'dns'`: the DNS servers the qube is given, port 53 (tcp and udp), combined with
 *   the other fields.
 * - `dstports` without `proto`: cannot happen (Qubes requires tcp or udp); `[lo, hi]` inclusive.
 * - `icmptype`: only with `proto: 'icmp'` (ICMPv6 type for IPv6 traffic, as Qubes' agent does).
 * - `expire`: UNIX seconds; already-expired rules are never handed out (see enforcedRules), and
 *   isolad fires `firewall-changed` for the qube when one expires.
 */
export interface EnforcedRule {
  action: 'accept' | 'drop';
  proto?: 'tcp' | 'udp' | 'icmp';
  dst?: { family: 4 | 6; cidr: string } | { host: string };
  specialtarget?: 'dns';
  dstports?: [number, number];
  icmptype?: number;
  expire?: number;
  comment?: string;
}

export function enforcedRule(r: FirewallRule): EnforcedRule {
  const out: EnforcedRule = { action: r.action };
  if (r.proto) out.proto = r.proto;
  if (r.dsthost) out.dst = r.dsthost.type === 'dsthost' ? { host: r.dsthost.value } : { family: r.dsthost.type === 'dst4' ? 4 : 6, cidr: r.dsthost.cidr! };
  if (r.specialtarget) out.specialtarget = r.specialtarget;
  if (r.dstports) out.dstports = [r.dstports[0], r.dstports[1]];
  if (r.icmptype !== undefined) out.icmptype = r.icmptype;
  if (r.expire !== undefined) out.expire = r.expire;
  if (r.comment !== undefined) out.comment = r.comment;
  return out;
}

/** The rules in force at nowMs, in order, for an enforcer: expired ones left out. */
export function enforcedRules(rules: readonly FirewallRule[], nowMs: number): EnforcedRule[] {
  return rules.filter((r) => !isExpired(r, nowMs)).map(enforcedRule);
}

/** The earliest expire time still ahead (UNIX seconds), or undefined: when the rules next change by themselves. */
export function nextExpiry(rules: readonly FirewallRule[], nowMs: number): number | undefined {
  let next: number | undefined;
  for (const r of rules) if (r.expire !== undefined && !isExpired(r, nowMs) && (next === undefined || r.expire < next)) next = r.expire;
  return next;
}

// ---- qvm-firewall list ----------------------------------------------------------------------

export const LIST_HEADER = ['NO', 'ACTION', 'HOST', 'PROTOCOL', 'PORT(S)', 'SPECIAL TARGET', 'ICMP TYPE', 'EXPIRE', 'COMMENT'] as const;

/** Python's round() of a float: halves go to the even neighbour. */
function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  return d > 0.5 ? f + 1 : d < 0.5 ? f : f % 2 === 0 ? f : f + 1;
}

/** Qubes' `{:+.0f}s` of the time left: `+3600s`, `-5s` (a negative value keeps its sign even at -0). */
export function expireLeft(expire: number, nowMs: number): string {
  const left = expire - nowMs / 1000;
  return `${left < 0 ? '-' : '+'}${Math.abs(roundHalfEven(left))}s`;
}

/** One row of `qvm-firewall VM list` (after NO): Qubes' pretty values, `-` for an unset field. */
export function listRow(r: FirewallRule, nowMs: number): string[] {
  const dash = (v: string | number | undefined) => (v === undefined ? '-' : String(v));
  const ports = r.dstports && (r.dstports[0] === r.dstports[1] ? String(r.dstports[0]) : `${r.dstports[0]}-${r.dstports[1]}`);
  return [
    r.action,
    dash(r.dsthost?.value),
    dash(r.proto),
    dash(ports),
    dash(r.specialtarget),
    dash(r.icmptype),
    r.expire === undefined ? '-' : expireLeft(r.expire, nowMs),
    dash(r.comment),
  ];
}
