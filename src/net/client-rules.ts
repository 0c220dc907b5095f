// One client qube's firewall rules turned into IPv4 matches for its netvm (as qubesagent/firewall.py
// does), and the same matches asked about one tracked connection, so conntrack can be pruned exactly.
// Pure: name resolution and the clock come from the caller.

import type { FirewallRule } from './firewall-rule-type';

/** An IPv4 network: address and prefix length, the address already masked. */
export interface Cidr4 {
  addr: number;
  prefix: number;
}

/** One nft rule of a client chain; every present field must match (AND), first match wins. */
export interface Match {
  verdict: 'accept' | 'reject';
  l4?: 'tcp' | 'udp' | 'tcp+udp' | 'icmp';
  /** Any of these networks; absent = any destination. */
  daddr?: Cidr4[];
  /** The destination is one of the netvm's upstream DNS servers (the virtual 10.139.1.x after DNAT). */
  dnsServers?: true;
  dports?: [number, number];
  icmptype?: number;
  comment?: string;
}

/** What the caller resolved for the client's dsthost names: addresses per name, or one failure for all. */
export type Resolution = ReadonlyMap<string, readonly string[]> | { failure: string };

export interface CompiledClient {
  matches: Match[];
  /** Set when the client gets reject-all instead of its rules (a name did not resolve): tell the user. */
  failClosed?: string;
  /** The earliest expire time still in the future: recompile then. */
  nextExpiry?: number;
  /** Rules that cannot match this IPv4-only client (IPv6 destinations), skipped as Qubes omits the other family. */
  skippedV6: number;
}

export function parseIPv4(s: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (!m) return undefined;
  const o = m.slice(1).map(Number);
  if (o.some((x, i) => x > 255 || (m[i + 1].length > 1 && m[i + 1][0] === '0'))) return undefined;
  return ((o[0] << 24) | (o[1] << 16) | (o[2] << 8) | o[3]) >>> 0;
}

export function formatIPv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

function maskOf(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** `a.b.c.d` or `a.b.c.d/n`; host bits are cleared (nft would do the same). */
export function parseCidr4(s: string): Cidr4 | undefined {
  const [a, p, extra] = s.split('/');
  if (extra !== undefined) return undefined;
  const addr = parseIPv4(a);
  const prefix = p === undefined ? 32 : /^\d{1,2}$/.test(p) ? Number(p) : NaN;
  if (addr === undefined || !(prefix >= 0 && prefix <= 32)) return undefined;
  return { addr: (addr & maskOf(prefix)) >>> 0, prefix };
}

export function formatCidr4(c: Cidr4): string {
  return c.prefix === 32 ? formatIPv4(c.addr) : `${formatIPv4(c.addr)}/${c.prefix}`;
}

function inCidr(ip: number, c: Cidr4): boolean {
  return ((ip & maskOf(c.prefix)) >>> 0) === c.addr;
}

const isPort = (n: number) => Number.isInteger(n) && n >= 0 && n <= 65535;

/** A rule of a client that failed to compile: bad input from the parser is a bug, and the client fails closed. */
class RuleError extends Error {}

/** One rule → one match, or null when it cannot match IPv4 traffic (or can never match at all). */
function compileRule(rule: FirewallRule, resolved: ReadonlyMap<string, readonly string[]>): Match | null | 'v6' {
  const m: Match = { verdict: rule.action === 'accept' ? 'accept' : 'reject' };
  if (rule.action !== 'accept' && rule.action !== 'drop') throw new RuleError(`unknown action ${String(rule.action)}`);
  if (rule.dst && 'host' in rule.dst) {
    const addrs = resolved.get(rule.dst.host);
    if (!addrs || addrs.length === 0) throw new RuleError(`${rule.dst.host} did not resolve`);
    const v4 = addrs.filter((a) => !a.includes(':'));
    if (v4.length === 0) return 'v6';
    m.daddr = v4.map((a) => {
      const c = parseCidr4(a);
      if (!c || c.prefix !== 32) throw new RuleError(`${rule.dst && 'host' in rule.dst ? rule.dst.host : ''} resolved to a bad address ${a}`);
      return c;
    });
  } else if (rule.dst) {
    if (rule.dst.family === 6) return 'v6';
    const c = parseCidr4(rule.dst.cidr);
    if (!c) throw new RuleError(`bad IPv4 network ${rule.dst.cidr}`);
    m.daddr = [c];
  }
  const ports = rule.dstports;
  if (ports && !(isPort(ports[0]) && isPort(ports[1]) && ports[0] <= ports[1])) throw new RuleError(`bad port range ${ports.join('-')}`);
  if (rule.proto === 'icmp') {
    m.l4 = 'icmp';
    if (rule.icmptype !== undefined) {
      if (!(Number.isInteger(rule.icmptype) && rule.icmptype >= 0 && rule.icmptype <= 255)) throw new RuleError(`bad icmp type ${rule.icmptype}`);
      m.icmptype = rule.icmptype;
    }
  } else if (rule.proto === 'tcp' || rule.proto === 'udp') {
    m.l4 = rule.proto;
  } else if (rule.proto !== undefined) {
    throw new RuleError(`unknown protocol ${String(rule.proto)}`);
  }
  if (ports && m.l4 !== 'icmp') {
    m.l4 ??= 'tcp+udp'; // Qubes duplicates a proto-less port rule for tcp and udp
    m.dports = [ports[0], ports[1]];
  }
  if (rule.specialtarget === 'dns') {
    // DNS is port 53 over tcp and udp to the netvm's servers; other fields narrow it further.
    if (m.l4 === 'icmp') return null;
    if (m.dports && !(m.dports[0] <= 53 && 53 <= m.dports[1])) return null;
    m.l4 ??= 'tcp+udp';
    m.dports = [53, 53];
    m.dnsServers = true;
  } else if (rule.specialtarget !== undefined) {
    throw new RuleError(`unknown special target ${String(rule.specialtarget)}`);
  }
  if (rule.comment) m.comment = rule.comment;
  return m;
}

export function compileClientRules(rules: readonly FirewallRule[], resolved: Resolution, now: number): CompiledClient {
  const out: CompiledClient = { matches: [], skippedV6: 0 };
  const live = rules.filter((r) => r.expire === undefined || r.expire > now);
  for (const r of live) if (r.expire !== undefined && (out.nextExpiry === undefined || r.expire < out.nextExpiry)) out.nextExpiry = r.expire;
  const needsNames = live.some((r) => r.dst && 'host' in r.dst);
  if (needsNames && 'failure' in resolved) return { matches: [], skippedV6: 0, failClosed: resolved.failure, nextExpiry: out.nextExpiry };
  const names: ReadonlyMap<string, readonly string[]> = 'failure' in resolved ? new Map() : resolved;
  try {
    for (const r of live) {
      const m = compileRule(r, names);
      if (m === 'v6') out.skippedV6++;
      else if (m) out.matches.push(m);
    }
  } catch (e) {
    if (!(e instanceof RuleError)) throw e;
    return { matches: [], skippedV6: 0, failClosed: e.message, nextExpiry: out.nextExpiry };
  }
  return out;
}

/** A connection as conntrack reports it, its destination taken after DNAT (what the forward chain saw). */
export interface TrackedConnection {
  /** Protocol name as conntrack prints it (tcp, udp, icmp, …) */
  proto: string;
  dst: string;
  dport?: number;
  icmptype?: number;
}

/** Would the client's chain accept the first packet of this connection now? (first match wins, default reject) */
export function connectionAllowed(c: CompiledClient, dnsServers: readonly string[], conn: TrackedConnection): boolean {
  if (c.failClosed) return false;
  const dst = parseIPv4(conn.dst);
  if (dst === undefined) return false;
  for (const m of c.matches) {
    if (m.daddr && !m.daddr.some((n) => inCidr(dst, n))) continue;
    if (m.dnsServers && !dnsServers.includes(conn.dst)) continue;
    if (m.l4 === 'tcp+udp' ? conn.proto !== 'tcp' && conn.proto !== 'udp' : m.l4 && conn.proto !== m.l4) continue;
    if (m.dports && !(conn.dport !== undefined && m.dports[0] <= conn.dport && conn.dport <= m.dports[1])) continue;
    if (m.icmptype !== undefined && conn.icmptype !== m.icmptype) continue;
    return m.verdict === 'accept';
  }
  return false;
}
