// The nftables ruleset of one netvm's network namespace, as text for `nft -f -`: one `inet` table per
// isolad instance holding anti-spoofing, DNS DNAT, masquerade and one chain per client qube (the
// layout of qubesagent/firewall.py). Pure: the same input always gives the same script.

import { compileClientRules, formatCidr4, parseIPv4, type CompiledClient, type Match, type Resolution } from './client-rules';
import type { FirewallRule } from './firewall-rule-type';

/** Qubes' virtual DNS servers: every qube asks these, its netvm DNATs them to its own upstream servers. */
export const VIRTUAL_DNS = ['10.139.1.1', '10.139.1.2'] as const;

/**
 * What a netvm's namespace needs besides the table: forwarding, and no per-client ICMP rate limit, or
 * after a burst of 6 rejects a client waits 1 s per refused connection (the kernel's global limit stays).
 */
export const NETVM_SYSCTLS: Readonly<Record<string, string>> = {
  'net.ipv4.ip_forward': '1',
  'net.ipv4.icmp_ratelimit': '0',
};

/** Client ends in the netvm are named vif<N>: the wildcard makes an unconfigured vif fail closed. */
const VIF_PREFIX = 'vif';

export interface NetvmClient {
  /** The client's only address, e.g. 10.137.0.5. */
  ip: string;
  /** The netvm's end of the client's veth, e.g. vif5. */
  vif: string;
  rules: readonly FirewallRule[];
  /** The caller's resolution of the dsthost names in rules, done once at apply time as Qubes does. */
  resolved: Resolution;
}

export interface NetvmFirewall {
  /** Names the table `isola-<tag>`: an instance touches only its own table. */
  tag: string;
  /** The netvm's interface towards its own netvm (or the outside world). */
  upstream: string;
  masquerade: boolean;
  /** The netvm's upstream DNS servers (IPv4 ones are used; v6 cannot be a DNAT target of a v4 query). */
  dns: readonly string[];
  clients: readonly NetvmClient[];
}

export interface CompiledRuleset {
  script: string;
  /** Per client address, what its chain holds (used to decide which tracked connections to drop). */
  clients: Map<string, CompiledClient>;
  /** Clients given reject-all instead of their rules, and why: tell the user. */
  failClosed: { ip: string; reason: string }[];
  /** Earliest future expire time among all clients' rules: recompile then. */
  nextExpiry?: number;
}

export function tableName(tag: string): string {
  if (!/^[a-z0-9][a-z0-9_-]{0,40}$/.test(tag)) throw new Error(`nftables instance tag '${tag}' must be lower-case letters, digits, '-' or '_'`);
  return `isola-${tag}`;
}

/** qbs-10-137-0-5, Qubes' chain name for a source address. */
export function clientChain(ip: string): string {
  return `qbs-${checkIPv4(ip, 'client address').replace(/\./g, '-')}`;
}

function checkIPv4(ip: string, what: string): string {
  if (parseIPv4(ip) === undefined) throw new Error(`${what} '${ip}' is not an IPv4 address`);
  return ip;
}

function checkIfname(name: string, what: string): string {
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(name)) throw new Error(`${what} '${name}' is not a valid interface name`);
  return name;
}

function checkVif(vif: string): string {
  checkIfname(vif, 'client interface');
  if (!vif.startsWith(VIF_PREFIX)) throw new Error(`client interface '${vif}' must be named ${VIF_PREFIX}<N>`);
  return vif;
}

/** nft strings are double-quoted; keep Qubes' comment alphabet and nft's 128-byte limit. */
function quoted(s: string): string {
  return `"${s.replace(/[^A-Za-z0-9:;,./_[\] -]/g, '_').slice(0, 120)}"`;
}

const REJECT = 'reject with icmp type admin-prohibited';

function renderMatch(m: Match): string {
  const p: string[] = [];
  if (m.daddr) p.push(m.daddr.length === 1 ? `ip daddr ${formatCidr4(m.daddr[0])}` : `ip daddr { ${m.daddr.map(formatCidr4).join(', ')} }`);
  if (m.dnsServers) p.push('ip daddr @dns-upstream');
  const ports = m.dports && (m.dports[0] === m.dports[1] ? `${m.dports[0]}` : `${m.dports[0]}-${m.dports[1]}`);
  if (m.l4 === 'icmp') p.push(m.icmptype !== undefined ? `icmp type ${m.icmptype}` : 'meta l4proto icmp');
  else if (m.l4 === 'tcp+udp') p.push('meta l4proto { tcp, udp }', ...(ports ? [`th dport ${ports}`] : []));
  else if (m.l4) p.push(ports ? `${m.l4} dport ${ports}` : `meta l4proto ${m.l4}`);
  p.push(m.verdict === 'accept' ? 'accept' : REJECT);
  if (m.comment) p.push(`comment ${quoted(m.comment)}`);
  return p.join(' ');
}

/** The statements that (re)fill one client's chain and register it; valid inside any transaction. */
function clientStatements(table: string, client: NetvmClient, compiled: CompiledClient): string[] {
  const ip = checkIPv4(client.ip, 'client address');
  const vif = checkVif(client.vif);
  const chain = clientChain(ip);
  const t = `inet ${table}`;
  const body = compiled.failClosed ? [`${REJECT} comment ${quoted(`fail closed: ${compiled.failClosed}`)}`] : [...compiled.matches.map(renderMatch), REJECT];
  return [
    // add is a no-op on an existing chain, so the flush always has something to flush: one atomic replace.
    `add chain ${t} ${chain}`,
    `flush chain ${t} ${chain}`,
    ...body.map((r) => `add rule ${t} ${chain} ${r}`),
    `add element ${t} vif-addr { "${vif}" . ${ip} }`,
    `add element ${t} client-addrs { ${ip} }`,
    `add element ${t} clients { "${vif}" . ${ip} : jump ${chain} }`,
  ];
}

function dns4(dns: readonly string[]): string[] {
  return dns.filter((d) => !d.includes(':')).map((d) => checkIPv4(d, 'DNS server'));
}

/** The netvm's whole table, replaced atomically (`add` + `delete` stands in for `destroy`, absent in nft 1.0.6). */
export function netvmRuleset(fw: NetvmFirewall, now: number): CompiledRuleset {
  const table = tableName(fw.tag);
  const up = checkIfname(fw.upstream, 'upstream interface');
  if (up.startsWith(VIF_PREFIX)) throw new Error(`upstream interface '${up}' must not be named like a client's ${VIF_PREFIX}<N>`);
  const servers = dns4(fw.dns);
  const vifs = `"${VIF_PREFIX}*"`;
  const dnat = servers.length
    ? VIRTUAL_DNS.map((v, i) => `ip daddr ${v} meta l4proto { tcp, udp } th dport 53 dnat ip to ${servers[i % servers.length]}`)
    : [];
  const chain = (name: string, hook: string, rules: string[]) => [`  chain ${name} {`, `    ${hook}`, ...rules.map((r) => `    ${r}`), '  }'];
  const lines = [
    `add table inet ${table}`,
    `delete table inet ${table}`,
    `table inet ${table} {`,
    '  counter spoofed {}',
    // vif . address pairs of connected clients: the only sources a vif may use.
    '  set vif-addr { type ifname . ipv4_addr; }',
    '  set client-addrs { type ipv4_addr; }',
    `  set dns-upstream { type ipv4_addr;${servers.length ? ` elements = { ${servers.join(', ')} }` : ''} }`,
    // A client's chain is entered only for its own address on its own vif.
    '  map clients { type ifname . ipv4_addr : verdict; }',
    ...chain('antispoof', 'type filter hook prerouting priority raw; policy accept;', [
      'iifname . ip saddr @vif-addr accept',
      'ip saddr @client-addrs counter name "spoofed" drop',
      // Also any IPv6 and any source at all from a vif not (yet) registered.
      `iifname ${vifs} counter name "spoofed" drop`,
    ]),
    ...chain('nat-in', 'type nat hook prerouting priority dstnat; policy accept;', dnat.map((r) => `iifname ${vifs} ${r}`)),
    // The netvm's own queries to the virtual servers too (its resolv.conf may name them, as in Qubes).
    ...chain('nat-local', 'type nat hook output priority -100; policy accept;', dnat),
    // Forward sees DNS after DNAT, so specialtarget=dns matches @dns-upstream (as Qubes' @dns-addr).
    ...chain('forward', 'type filter hook forward priority filter; policy drop;', [
      // Clients reach only upstream: never another client behind this netvm.
      `iifname ${vifs} oifname != "${up}" drop`,
      'ct state invalid drop',
      'ct state established,related accept',
      'iifname . ip saddr vmap @clients',
    ]),
    // The netvm's own services are closed to clients; DNS needs no hole (DNAT sends it on, to forward).
    ...chain('input', 'type filter hook input priority filter; policy accept;', [
      `iifname ${vifs} ct state established,related accept`,
      `iifname ${vifs} reject with icmpx type admin-prohibited`,
    ]),
    // The netvm's own processes never open a connection to its clients (a proxy asked for one of their
    // addresses, the netvm's root): clients are reached only by the replies to what they opened.
    ...chain('output', 'type filter hook output priority filter; policy accept;', [
      'ip daddr @client-addrs ct state new drop',
    ]),
    // A client's address is reachable only through that client's vif.
    ...chain('postrouting', 'type filter hook postrouting priority filter; policy accept;', [
      'ip daddr @client-addrs oifname . ip daddr != @vif-addr drop',
    ]),
    ...(fw.masquerade ? chain('nat-out', 'type nat hook postrouting priority srcnat; policy accept;', [`oifname "${up}" masquerade`]) : []),
    '}',
  ];
  const clients = new Map<string, CompiledClient>();
  const failClosed: CompiledRuleset['failClosed'] = [];
  let nextExpiry: number | undefined;
  for (const c of fw.clients) {
    if (clients.has(c.ip)) throw new Error(`client address ${c.ip} is given twice`);
    const compiled = compileClientRules(c.rules, c.resolved, now);
    clients.set(c.ip, compiled);
    if (compiled.failClosed) failClosed.push({ ip: c.ip, reason: compiled.failClosed });
    if (compiled.nextExpiry !== undefined && (nextExpiry === undefined || compiled.nextExpiry < nextExpiry)) nextExpiry = compiled.nextExpiry;
    lines.push(...clientStatements(table, c, compiled));
  }
  return { script: lines.join('\n') + '\n', clients, failClosed, nextExpiry };
}

export interface ClientUpdate {
  script: string;
  compiled: CompiledClient;
}

/** Replaces one client's chain in one transaction (the table must exist): other clients are not touched. */
export function clientUpdate(tag: string, client: NetvmClient, now: number): ClientUpdate {
  const compiled = compileClientRules(client.rules, client.resolved, now);
  return { script: clientStatements(tableName(tag), client, compiled).join('\n') + '\n', compiled };
}

/** Forgets a client: its chain and set entries. Adding first makes every delete succeed, so it is idempotent. */
export function clientRemoval(tag: string, client: { ip: string; vif: string }): string {
  const t = `inet ${tableName(tag)}`;
  const ip = checkIPv4(client.ip, 'client address');
  const vif = checkVif(client.vif);
  const chain = clientChain(ip);
  const pair = `"${vif}" . ${ip}`;
  return [
    `add chain ${t} ${chain}`,
    `flush chain ${t} ${chain}`,
    `add element ${t} clients { ${pair} : jump ${chain} }`,
    `delete element ${t} clients { ${pair} }`,
    `add element ${t} vif-addr { ${pair} }`,
    `delete element ${t} vif-addr { ${pair} }`,
    `add element ${t} client-addrs { ${ip} }`,
    `delete element ${t} client-addrs { ${ip} }`,
    `delete chain ${t} ${chain}`,
  ].join('\n') + '\n';
}

/** Deletes the instance's table if it exists; nothing else in the namespace. */
export function tableRemoval(tag: string): string {
  const t = tableName(tag);
  return `add table inet ${t}\ndelete table inet ${t}\n`;
}
