// A rule as `qvm-firewall VM add|del RULE...` takes it (qubesadmin's RuleAction): `key=value` words,
// or bare words in the order ACTION HOST PROTO PORTS-or-ICMPTYPE, mixed freely; `expire=+N` is relative.

import {
  checkRule, MAX_EXPIRE, parseExpire, quoted, ruleError, setField,
  type FirewallRule,
} from './firewall-rule';

/** Keys a bare word may stand for, in the order qvm-firewall assumes them. */
const POSITIONAL = ['action', 'dsthost', 'proto', 'dstports', 'icmptype'] as const;
const KEYS = new Set<string>([...POSITIONAL, 'dst4', 'dst6', 'specialtarget', 'expire', 'comment']);
/** Bare words that qvm-firewall would silently take as a host name, though they mean something else. */
const KEYWORDS = new Set(['accept', 'drop', 'tcp', 'udp', 'icmp', 'dns']);

/**
 * Parses the words after `add` or `del`. Qubes' meaning, refused where Qubes' parser only accepts by
 * accident: a repeated key (Qubes keeps the last), a keyword in the host position (`accept tcp` would
 * be host "tcp"), a /0 network (Qubes' client drops it, so the rule matches both address families),
 * `dst6=` holding an IPv4 address, signed or non-ASCII numbers. Throws one QubesValueError line
 * naming the field.
 */
export function parseRuleWords(untrustedWords: readonly string[], nowSec: number): FirewallRule {
  if (untrustedWords.length === 0) throw ruleError('rule', undefined, 'empty (give at least the action: accept or drop)');
  const assumed: string[] = [...POSITIONAL];
  const seen = new Set<string>();
  const r: Partial<FirewallRule> = {};
  for (const word of untrustedWords) {
    const parts = word.split('=');
    let key: string;
    let value: string;
    if (parts.length === 1) {
      if (word === '') throw ruleError('rule', word, 'an empty word');
      if (assumed.length === 0) throw ruleError('rule', word, 'one word too many: action, host, protocol and port (or ICMP type) are all given');
      key = assumed[0];
      value = word;
      if (key === 'dsthost' && KEYWORDS.has(word)) {
        throw ruleError('dsthost', word, 'a keyword where the host name goes (bare words are ACTION HOST PROTO PORTS); write it as key=value, e.g. proto=tcp or specialtarget=dns');
      }
    } else if (parts.length === 2) {
      [key, value] = parts;
      if (!KEYS.has(key)) throw ruleError('option', key, `unknown (known: ${[...KEYS].join(', ')})`);
      if (value === '') throw ruleError(key, undefined, 'empty value');
    } else {
      throw ruleError(parts[0], word.slice(parts[0].length + 1), "'=' is not allowed in a value");
    }
    const field = key === 'dst4' || key === 'dst6' ? 'dsthost' : key;
    if (seen.has(field)) throw ruleError(key, undefined, field !== 'dsthost' ? 'given twice' : 'a second destination (dsthost, dst4 and dst6 are one field)');
    seen.add(field);
    if (key === 'expire' && value.startsWith('+')) {
      const rel = value.slice(1);
      if (!/^[0-9]+$/.test(rel)) throw ruleError('expire', value, '+SECONDS needs a number of seconds');
      const at = nowSec + Number(rel);
      if (at > MAX_EXPIRE) throw ruleError('expire', value, 'later than the year 9999');
      r.expire = parseExpire(String(at));
    } else {
      setField(r, key, value);
    }
    if (field === 'dsthost' && r.dsthost?.prefixlen === 0) {
      throw ruleError(key, value, "a /0 network: Qubes would drop it and match every address of both families; leave the destination out to match everything");
    }
    const slot = assumed.indexOf(field);
    if (slot !== -1) assumed.splice(slot, 1);
    if (key === 'proto') {
      const other = value === 'icmp' ? 'dstports' : 'icmptype';
      if (assumed.includes(other)) assumed.splice(assumed.indexOf(other), 1);
    }
  }
  return checkRule(r);
}

/** The rule given on a command line, shown back in a message. */
export function wordsText(untrustedWords: readonly string[]): string {
  return untrustedWords.map(quoted).join(' ');
}
