// Applies a netvm's nftables scripts inside its network namespace (isolad, as host root, enters it:
// the qube itself has no CAP_NET_ADMIN) and drops the tracked connections that new rules forbid.

import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { connectionAllowed, type CompiledClient, type TrackedConnection } from './client-rules';
import { clientRemoval, clientUpdate, netvmRuleset, NETVM_SYSCTLS, tableRemoval, type CompiledRuleset, type NetvmClient, type NetvmFirewall } from './nft-ruleset';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
  spawnError?: NodeJS.ErrnoException;
}

/** Runs a command inside the namespace at netns (a /run/netns path or /proc/PID/ns/net); never rejects. */
function inNetns(netns: string, argv: string[], stdin = '', timeoutMs = 20_000): Promise<Run> {
  if (!netns.startsWith('/')) throw new Error(`network namespace '${netns}' must be an absolute path`);
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    const child = spawn('nsenter', [`--net=${netns}`, '--', ...argv], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-65536)));
    child.stdin.on('error', () => {}); // nsenter may exit before reading (bad netns): the exit code says why
    child.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve({ code: null, stdout, stderr, spawnError: e });
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(stdin);
  });
}

/** nft's error is three lines (place, source line, carets); the user gets one: place, message, source. */
export function nftErrorLine(stderr: string, script: string): string {
  const lines = stderr.split('\n');
  const i = lines.findIndex((l) => /Error:/.test(l));
  if (i < 0) return lines.find((l) => l.trim())?.trim() ?? 'failed without a message';
  const m = /^[^:]*:(\d+):[\d-]+: Error: (.*)$/.exec(lines[i]);
  if (!m) return lines[i].trim();
  const src = (script.split('\n')[Number(m[1]) - 1] ?? '').trim();
  return `line ${m[1]}: ${m[2]} (in: ${src.length > 100 ? src.slice(0, 100) + '…' : src})`;
}

/** Runs `nft -f -` (or `nft -c -f -`: check only) with script inside netns; one transaction, all or nothing. */
export async function nftApply(netns: string, script: string, opts: { check?: boolean } = {}): Promise<void> {
  const r = await inNetns(netns, ['nft', ...(opts.check ? ['-c'] : []), '-f', '-'], script);
  if (r.spawnError) throw new Error(`nft in ${netns}: cannot run nsenter: ${r.spawnError.message}`);
  if (r.code !== 0) throw new Error(`nft in ${netns}: ${nftErrorLine(r.stderr, script)}`);
}

/** Sets NETVM_SYSCTLS inside netns (they are per namespace; /proc/sys/net shows the opener's). */
export async function applyNetvmSysctls(netns: string): Promise<void> {
  const r = await inNetns(netns, ['sysctl', '-qw', ...Object.entries(NETVM_SYSCTLS).map(([k, v]) => `${k}=${v}`)]);
  if (r.spawnError || r.code !== 0) throw new Error(`sysctl in ${netns}: ${r.spawnError?.message ?? r.stderr.trim().split('\n')[0]}`);
}

/** Deletes this instance's table from netns; a namespace already gone took its tables with it. */
export async function deleteInstanceTable(netns: string, tag: string): Promise<void> {
  if (!existsSync(netns)) return;
  await nftApply(netns, tableRemoval(tag));
}

export interface ConntrackEntry extends TrackedConnection {
  /** Original direction as the client sent it (dst is the virtual DNS address for DNAT'ed queries). */
  origSrc: string;
  origDst: string;
  sport?: number;
  origDport?: number;
  icmpcode?: number;
  icmpid?: number;
  protonum: number;
}

/** Parses `conntrack -L` lines: proto, protonum, then original and reply tuples as key=value. */
export function parseConntrack(text: string): ConntrackEntry[] {
  const out: ConntrackEntry[] = [];
  for (const line of text.split('\n')) {
    const tok = line.trim().split(/\s+/);
    if (tok.length < 3 || !/^\d+$/.test(tok[1])) continue;
    const tuples: Record<string, string>[] = [];
    for (const t of tok.slice(2)) {
      const m = /^(src|dst|sport|dport|type|code|id)=(.*)$/.exec(t);
      if (!m) continue;
      if (m[1] === 'src') tuples.push({});
      if (tuples.length) tuples[tuples.length - 1][m[1]] ??= m[2];
    }
    const [o, r] = tuples;
    if (!o?.src || !o.dst) continue;
    const num = (s: string | undefined) => (s === undefined ? undefined : Number(s));
    out.push({
      proto: tok[0],
      protonum: Number(tok[1]),
      origSrc: o.src,
      origDst: o.dst,
      // The forward chain judged the destination after DNAT: that is the reply's source.
      dst: r?.src ?? o.dst,
      sport: num(o.sport),
      origDport: num(o.dport),
      dport: num(r?.sport ?? o.dport),
      icmptype: num(o.type),
      icmpcode: num(o.code),
      icmpid: num(o.id),
    });
  }
  return out;
}

async function conntrack(netns: string, args: string[], why: string): Promise<Run> {
  const r = await inNetns(netns, ['conntrack', ...args]);
  if (r.spawnError) throw new Error(`cannot run nsenter: ${r.spawnError.message}`);
  if (r.code === 127 && /failed to execute conntrack/.test(r.stderr)) throw new Error(`conntrack is not installed (Debian package conntrack): cannot ${why}`);
  return r;
}

/** The client's tracked IPv4 connections in netvm (by original source address). */
export async function clientConnections(netns: string, ip: string): Promise<ConntrackEntry[]> {
  const r = await conntrack(netns, ['-L', '-f', 'ipv4', '-s', ip], `list the connections of ${ip}`);
  if (r.code !== 0) throw new Error(`conntrack -L in ${netns}: ${r.stderr.trim().split('\n')[0]}`);
  return parseConntrack(r.stdout);
}

/** Drops the client's tracked connections that its chain would now reject, as Qubes does; returns how many. */
export async function dropForbiddenConnections(netns: string, ip: string, compiled: CompiledClient, dns: readonly string[]): Promise<number> {
  let dropped = 0;
  for (const e of await clientConnections(netns, ip)) {
    if (connectionAllowed(compiled, dns, e)) continue;
    const args = ['-D', '-f', 'ipv4', '-s', e.origSrc, '-d', e.origDst];
    if (e.proto === 'tcp' || e.proto === 'udp') args.push('-p', e.proto, '--sport', String(e.sport), '--dport', String(e.origDport ?? 0));
    else if (e.proto === 'icmp') args.push('-p', 'icmp', ...(e.icmptype !== undefined ? ['--icmp-type', String(e.icmptype)] : []), ...(e.icmpid !== undefined ? ['--icmp-id', String(e.icmpid)] : []));
    else args.push('-p', String(e.protonum));
    const r = await conntrack(netns, args, `drop a connection of ${ip}`);
    // Exit 1 with "0 flow entries" means it ended on its own meanwhile: nothing left to drop.
    if (r.code === 0) dropped++;
    else if (!/0 flow entries/.test(r.stderr)) throw new Error(`conntrack -D in ${netns}: ${r.stderr.trim().split('\n')[0]}`);
  }
  return dropped;
}

/** Replaces one client's rules in netvm's namespace and cuts its connections they no longer allow. */
export async function applyClientFirewall(
  netns: string,
  tag: string,
  client: NetvmClient,
  dns: readonly string[],
  now: number,
): Promise<{ compiled: CompiledClient; dropped: number }> {
  const u = clientUpdate(tag, client, now);
  await nftApply(netns, u.script);
  return { compiled: u.compiled, dropped: await dropForbiddenConnections(netns, client.ip, u.compiled, dns) };
}

/** Disconnects a client: its chain and set entries go, and so do all its tracked connections. */
export async function removeClientFirewall(netns: string, tag: string, client: { ip: string; vif: string }): Promise<void> {
  await nftApply(netns, clientRemoval(tag, client));
  const r = await conntrack(netns, ['-D', '-f', 'ipv4', '-s', client.ip], `drop the connections of ${client.ip}`);
  if (r.code !== 0 && !/0 flow entries/.test(r.stderr)) throw new Error(`conntrack -D in ${netns}: ${r.stderr.trim().split('\n')[0]}`);
}

/** Installs (or atomically replaces) a netvm's whole table, then prunes every client's connections. */
export async function applyNetvmFirewall(netns: string, fw: NetvmFirewall, now: number): Promise<CompiledRuleset & { dropped: number }> {
  const rs = netvmRuleset(fw, now);
  await nftApply(netns, rs.script);
  let dropped = 0;
  for (const [ip, compiled] of rs.clients) dropped += await dropForbiddenConnections(netns, ip, compiled, fw.dns);
  return { ...rs, dropped };
}
