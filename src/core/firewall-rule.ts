// One rule of a qube's outbound firewall as Qubes models it (qubes/firewall.py): the fields, their
// validation, the Admin API line qubesd parses and stores, and the line qvm-firewall sends and prints.

import { valueError, type QubesError } from './errors';
import { canonicalNetwork, parseIPv4, parseIPv6 } from './firewall-address';
import { inertString } from './terminal-filter';

export type FirewallAction = 'accept' | 'drop';
export type FirewallProto = 'tcp' | 'udp' | 'icmp';

/** A destination as Qubes holds it: its kind (the Admin API key), its text exactly as stored. */
export interface FirewallDst {
  /** `dst4`/`dst6` for an address with a prefix length, `dsthost` for a host name. */
  type: 'dst4' | 'dst6' | 'dsthost';
  /** `10.0.0.0/8`, `2001:db8::1/128` (a bare address gets /32 or /128), `qubes-os.org`. */
  value: string;
  /** For dst4/dst6: the network, canonical (host bits cleared), e.g. `10.0.0.0/8`. */
  cidr?: string;
  prefixlen?: number;
}

export interface FirewallRule {
  action: FirewallAction;
  proto?: FirewallProto;
  dsthost?: FirewallDst;
  specialtarget?: 'dns';
  /** [first, last], both inclusive; a single port is [N, N]. Only with proto tcp or udp. */
  dstports?: [number, number];
  /** 0-255, only with proto icmp. */
  icmptype?: number;
  /** UNIX time after which the rule no longer applies (Qubes then drops it). */
  expire?: number;
  /** The expire digits as given when they are not the plain number (`02583292452`): Qubes keeps that text. */
  expireText?: string;
  /** Free text of Qubes' comment characters; always last on a line, may contain spaces. */
  comment?: string;
}

/** Qubes' firewall of a fresh qube, and what `qvm-firewall reset` restores: allow everything. */
export const DEFAULT_FIREWALL: readonly FirewallRule[] = Object.freeze([{ action: 'accept' }]);

/** The greatest time Python's datetime can hold (9999-12-31T23:59:59Z): qubesd refuses any later expire. */
export const MAX_EXPIRE = 253402300799;

/** One line, whatever the untrusted value held: inert, and short enough to read. */
export function quoted(untrusted: string): string {
  const s = inertString(untrusted);
  return `'${s.length > 64 ? `${s.slice(0, 61)}...` : s}'`;
}

/** The one error every bad rule gives: the field it is about, the value, and what is wrong. */
export function ruleError(field: string, untrusted: string | undefined, why: string): QubesError {
  return valueError(`invalid firewall rule: ${field}${untrusted === undefined ? '' : ` ${quoted(untrusted)}`}: ${why}`);
}

// ---- fields -------------------------------------------------------------------------------

/** Characters qubesd allows in any rule value (RuleOption's safe set). */
const OPTION_CHARS = /^[A-Za-z0-9:;,./\-_[\]]*$/;
/** Comment characters (Qubes' Comment): the same and the space. */
const COMMENT_CHARS = /^[A-Za-z0-9:;,./\-_[\] ]*$/;
const HOST_CHARS = /^[a-z0-9._-]+$/;

export function parseAction(untrusted: string): FirewallAction {
  if (untrusted !== 'accept' && untrusted !== 'drop') throw ruleError('action', untrusted, "must be 'accept' or 'drop'");
  return untrusted;
}

export function parseProto(untrusted: string): FirewallProto {
  if (untrusted !== 'tcp' && untrusted !== 'udp' && untrusted !== 'icmp') throw ruleError('proto', untrusted, "must be 'tcp', 'udp' or 'icmp'");
  return untrusted;
}

export function parseSpecialTarget(untrusted: string): 'dns' {
  if (untrusted !== 'dns') throw ruleError('specialtarget', untrusted, "the only special target is 'dns'");
  return untrusted;
}

/**
 * A name that a resolver would read as a number (`1.2.3`, `127.1`, `0x7f.1`: inet_aton's forms):
 * Qubes keeps such a malformed address as a host name, which then means whatever the resolver makes
 * of it. Isola refuses it. No real host name ends in an all-numeric label.
 */
function looksNumeric(host: string): boolean {
  const last = host.replace(/\.$/, '').split('.').pop() ?? '';
  return /^(?:[0-9]+|0x[0-9a-f]*)$/.test(last);
}

/**
 * qubesd's DstHost: an IPv6 or IPv4 address (glibc's text forms) with an optional prefix length
 * (a bare address gets /128 or /32; host bits are kept as given, as Qubes keeps them), else a host
 * name of lower-case letters, digits and `.-_`.
 */
export function parseDstHost(untrusted: string, field = 'dsthost'): FirewallDst {
  if (untrusted === '') throw ruleError(field, untrusted, 'empty');
  const slashes = untrusted.split('/').length - 1;
  if (slashes > 1) throw ruleError(field, untrusted, "too many '/'");
  if (slashes === 0) {
    const v6 = parseIPv6(untrusted);
    if (v6) return { type: 'dst6', value: `${untrusted}/128`, cidr: canonicalNetwork(6, v6, 128), prefixlen: 128 };
    const v4 = parseIPv4(untrusted);
    if (v4) return { type: 'dst4', value: `${untrusted}/32`, cidr: canonicalNetwork(4, v4, 32), prefixlen: 32 };
    if (!HOST_CHARS.test(untrusted) || !/[a-z0-9]/.test(untrusted)) throw ruleError(field, untrusted, 'not an IP address, and not a host name (lower-case letters, digits, . - _)');
    if (looksNumeric(untrusted)) throw ruleError(field, untrusted, 'not a valid IP address (write IPv4 as four decimal numbers, e.g. 10.0.0.1)');
    if (untrusted.length > 253) throw ruleError(field, untrusted, 'a host name has at most 253 characters');
    return { type: 'dsthost', value: untrusted };
  }
  const [host, untrustedPrefix] = untrusted.split('/');
  if (!/^[0-9]+$/.test(untrustedPrefix)) throw ruleError(field, untrusted, 'the prefix length must be a number');
  const prefixlen = Number(untrustedPrefix);
  const v6 = parseIPv6(host);
  if (v6) {
    if (prefixlen > 128) throw ruleError(field, untrusted, 'the prefix length of an IPv6 network is at most 128');
    return { type: 'dst6', value: untrusted, cidr: canonicalNetwork(6, v6, prefixlen), prefixlen };
  }
  const v4 = parseIPv4(host);
  if (v4) {
    if (prefixlen > 32) throw ruleError(field, untrusted, 'the prefix length of an IPv4 network is at most 32');
    return { type: 'dst4', value: untrusted, cidr: canonicalNetwork(4, v4, prefixlen), prefixlen };
  }
  throw ruleError(field, untrusted, `${quoted(host)} is not a valid IP address`);
}

const MAX_PORT = 65535;

/**
 * qubesd's DstPorts: `N` or `N-M`, 0-65535, N <= M, in decimal digits. (qvm-firewall reads them
 * with Python's int(), which also takes a sign, `_` and non-ASCII digits: Isola does not.)
 */
export function parseDstPorts(untrusted: string): [number, number] {
  const parts = untrusted.split('-');
  if (parts.length > 2) throw ruleError('dstports', untrusted, 'a port or a range N-M');
  if (parts.some((p) => !/^[0-9]+$/.test(p))) throw ruleError('dstports', untrusted, 'a port or a range N-M of decimal numbers');
  const [lo, hi = lo] = parts.map(Number);
  if (lo > MAX_PORT || hi > MAX_PORT) throw ruleError('dstports', untrusted, `ports out of range (0-${MAX_PORT})`);
  if (lo > hi) throw ruleError('dstports', untrusted, 'invalid port range (the first port is greater than the last)');
  return [lo, hi];
}

/** qubesd's IcmpType: at most three decimal digits, 0-255. */
export function parseIcmpType(untrusted: string): number {
  if (!/^[0-9]{1,3}$/.test(untrusted)) throw ruleError('icmptype', untrusted, 'an ICMP type number (0-255)');
  const n = Number(untrusted);
  if (n > 255) throw ruleError('icmptype', untrusted, 'ICMP type out of range (0-255)');
  return n;
}

/** qubesd's Expire: UNIX time in decimal digits. */
export function parseExpire(untrusted: string): number {
  if (!/^[0-9]+$/.test(untrusted)) throw ruleError('expire', untrusted, 'a UNIX time in seconds (or +SECONDS on the command line)');
  const n = Number(untrusted);
  if (n > MAX_EXPIRE) throw ruleError('expire', untrusted, 'later than the year 9999');
  return n;
}

export function parseComment(untrusted: string): string {
  if (!COMMENT_CHARS.test(untrusted)) throw ruleError('comment', untrusted, 'only letters, digits, spaces and : ; , . / - _ [ ] are allowed');
  return untrusted;
}

/** Qubes' dependencies between fields, checked once all are known. */
export function checkRule(r: Partial<FirewallRule>): FirewallRule {
  if (!r.action) throw ruleError('action', undefined, 'missing (every rule needs action=accept or action=drop)');
  if (r.dstports && r.proto !== 'tcp' && r.proto !== 'udp') throw ruleError('dstports', undefined, 'valid only with proto=tcp or proto=udp');
  if (r.icmptype !== undefined && r.proto !== 'icmp') throw ruleError('icmptype', undefined, 'valid only with proto=icmp');
  const out: FirewallRule = { action: r.action };
  for (const k of ['proto', 'dsthost', 'specialtarget', 'dstports', 'icmptype', 'expire', 'expireText', 'comment'] as const) {
    if (r[k] !== undefined) (out as unknown as Record<string, unknown>)[k] = r[k];
  }
  return out;
}

export function isExpired(r: FirewallRule, nowMs: number): boolean {
  return r.expire !== undefined && r.expire * 1000 < nowMs;
}

// ---- the Admin API line (admin.vm.firewall.Get/Set) -----------------------------------------

const API_KEYS = new Set(['action', 'proto', 'dsthost', 'dst4', 'dst6', 'dstname', 'specialtarget', 'dstports', 'icmptype', 'expire']);

/**
 * qubesd's Rule.from_api_string: `key=value` words separated by single spaces, `comment=` last (the
 * rest of the line is the comment). `dst4`, `dst6`, `dstname` and `dsthost` all give the destination,
 * once; an unknown or repeated key is refused. Stricter than qubesd where its parser is accidental:
 * `dst4=`/`dst6=` must hold an address of that family, numbers are plain decimal, and `comment=`
 * must start a word.
 */
export function parseApiRule(untrustedLine: string): FirewallRule {
  let options = untrustedLine;
  let comment: string | undefined;
  const at = untrustedLine.startsWith('comment=') ? 0 : untrustedLine.indexOf(' comment=');
  if (at !== -1) {
    options = untrustedLine.slice(0, at);
    const text = untrustedLine.slice(at + (at === 0 ? 8 : 9));
    if (text !== '') comment = parseComment(text);
  }
  const trimmed = options.replace(/^ +| +$/g, '');
  const words = trimmed === '' ? [] : trimmed.split(' ');
  const seen = new Set<string>();
  const r: Partial<FirewallRule> = {};
  for (const word of words) {
    const eq = word.indexOf('=');
    if (eq <= 0) throw ruleError('word', word, 'expected key=value');
    const key = word.slice(0, eq);
    const value = word.slice(eq + 1);
    if (!API_KEYS.has(key)) throw ruleError('option', key, 'unknown firewall option');
    const field = key.startsWith('dst') && key !== 'dstports' ? 'dsthost' : key;
    if (seen.has(field)) throw ruleError(key, undefined, field !== 'dsthost' ? 'given twice' : 'a second destination (dst4, dst6, dstname and dsthost are one field)');
    seen.add(field);
    if (!OPTION_CHARS.test(value)) throw ruleError(key, value, 'strange characters');
    setField(r, key, value);
  }
  if (comment !== undefined) r.comment = comment;
  return checkRule(r);
}

/** Sets one field from its Admin API key; `dst4=`/`dst6=` must hold their own family. */
export function setField(r: Partial<FirewallRule>, key: string, value: string): void {
  switch (key) {
    case 'action': r.action = parseAction(value); return;
    case 'proto': r.proto = parseProto(value); return;
    case 'specialtarget': r.specialtarget = parseSpecialTarget(value); return;
    case 'dstports': r.dstports = parseDstPorts(value); return;
    case 'icmptype': r.icmptype = parseIcmpType(value); return;
    case 'expire':
      r.expire = parseExpire(value);
      if (value !== String(r.expire)) r.expireText = value;
      return;
    case 'comment': r.comment = parseComment(value); return;
    case 'dst4':
    case 'dst6': {
      const dst = parseDstHost(value, key);
      if (dst.type !== key) throw ruleError(key, value, `not an IPv${key === 'dst4' ? 4 : 6} address (dsthost= takes either)`);
      r.dsthost = dst;
      return;
    }
    case 'dsthost':
    case 'dstname': r.dsthost = parseDstHost(value, key); return;
    default: throw ruleError('option', key, 'unknown firewall option');
  }
}

const portsText = ([lo, hi]: [number, number]) => `${lo}-${hi}`;

/**
 * qubesd's api_rule, the stored line and what admin.vm.firewall.Get returns: action, expire,
 * destination, proto, specialtarget, dstports (always N-M) or icmptype, comment last.
 */
export function formatApiRule(r: FirewallRule): string {
  const w = [`action=${r.action}`];
  if (r.expire !== undefined) w.push(`expire=${r.expireText ?? r.expire}`);
  if (r.dsthost) w.push(`${r.dsthost.type}=${r.dsthost.value}`);
  if (r.proto) w.push(`proto=${r.proto}`);
  if (r.specialtarget) w.push(`specialtarget=${r.specialtarget}`);
  if (r.dstports) w.push(`dstports=${portsText(r.dstports)}`);
  if (r.icmptype !== undefined) w.push(`icmptype=${r.icmptype}`);
  if (r.comment !== undefined) w.push(`comment=${r.comment}`);
  return w.join(' ');
}

/**
 * qvm-firewall's own order (qubesadmin's Rule.rule): the line it sends in admin.vm.firewall.Set and
 * prints for `--raw list`: action, proto, destination, dstports, icmptype, specialtarget, expire, comment.
 */
export function formatClientRule(r: FirewallRule): string {
  const w = [`action=${r.action}`];
  if (r.proto) w.push(`proto=${r.proto}`);
  if (r.dsthost) w.push(`${r.dsthost.type}=${r.dsthost.value}`);
  if (r.dstports) w.push(`dstports=${portsText(r.dstports)}`);
  if (r.icmptype !== undefined) w.push(`icmptype=${r.icmptype}`);
  if (r.specialtarget) w.push(`specialtarget=${r.specialtarget}`);
  if (r.expire !== undefined) w.push(`expire=${r.expireText ?? r.expire}`);
  if (r.comment !== undefined) w.push(`comment=${r.comment}`);
  return w.join(' ');
}
