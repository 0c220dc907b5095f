// sys-net's way out: a veth pair between the host's namespace and the uplink qube's, on a /30 of the
// shared address space (100.64.0.0/10, never a LAN's), with NAT on the host. The host's rules live in a
// table of their own per uplink (`ip isola-INSTANCE-uQID`), so adding and removing them never touches
// a rule isolad did not make.

import { readFileSync } from 'node:fs';
import { ipBatch, nftRun, runIn } from './netns';

export interface Uplink {
  /** Host-side interface (`i1a2b3c4du3`: the instance and the qid, within IFNAMSIZ). */
  hostIf: string;
  /** Host-side address (the uplink qube's gateway) and the qube's eth0 address, in one /30. */
  hostIp: string;
  qubeIp: string;
  /** nft table on the host holding this uplink's NAT and filter rules. */
  table: string;
}

const SHARED_SPACE = 0x64400000; // 100.64.0.0
const SHARED_BLOCKS = 1 << 20; // /30 blocks in a /10

const ipv4 = (n: number) => [24, 16, 8, 0].map((s) => (n >>> s) & 0xff).join('.');
const toInt = (ip: string) => ip.split('.').reduce((a, o) => a * 256 + Number(o), 0);

/** The host's end of an uplink (and its table), named by instance and qid: found again without any record. */
export const uplinkNames = (instance: string, qid: number) => ({ hostIf: `i${instance}u${qid}`.slice(0, 15), table: `isola-${instance}-u${qid}` });

/** A stable /30 for (instance, qid), skipping blocks that hold an address already on the host. */
export function chooseUplink(instance: string, qid: number, hostAddrs: string[]): Uplink {
  const used = new Set(hostAddrs.map((a) => Math.floor((toInt(a) - SHARED_SPACE) / 4)));
  let block = (parseInt(instance.slice(0, 5), 16) * 64 + qid) % SHARED_BLOCKS;
  while (used.has(block)) block = (block + 1) % SHARED_BLOCKS;
  const base = SHARED_SPACE + block * 4;
  return { ...uplinkNames(instance, qid), hostIp: ipv4(base + 1), qubeIp: ipv4(base + 2) };
}

/** The host's IPv4 addresses (to keep clear of). */
export async function hostAddresses(): Promise<string[]> {
  const out = await runIn(undefined, ['ip', '-4', '-o', 'addr', 'show'], '', 'listing the host addresses');
  return [...out.matchAll(/\binet (\d+\.\d+\.\d+\.\d+)\//g)].map((m) => m[1]);
}

/** The host's rules for one uplink: NAT out of every other interface; nothing from it to the host itself. */
export function hostRules(u: Uplink): string {
  return [
    `table ip ${u.table} {`,
    '  chain postrouting {',
    '    type nat hook postrouting priority srcnat; policy accept;',
    `    ip saddr ${u.qubeIp} oifname != "${u.hostIf}" masquerade`,
    '  }',
    // The host's own services (isolad's UI included) are not the qubes' to reach.
    '  chain input {',
    '    type filter hook input priority filter; policy accept;',
    `    iifname "${u.hostIf}" ct state established,related accept`,
    `    iifname "${u.hostIf}" drop`,
    '  }',
    // Nor are other instances' uplinks (and what is behind them).
    '  chain forward {',
    '    type filter hook forward priority filter; policy accept;',
    `    iifname "${u.hostIf}" ip daddr 100.64.0.0/10 drop`,
    `    iifname "${u.hostIf}" ip saddr != ${u.qubeIp} drop`,
    '  }',
    '}',
    '',
  ].join('\n');
}

/** Forwarding on the host: NAT needs it. Documented (docs/network.md): isolad turns it on, never off. */
async function hostForwarding(): Promise<void> {
  if (readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim() === '1') return;
  await runIn(undefined, ['sysctl', '-q', '-w', 'net.ipv4.ip_forward=1'], '', 'turning on IPv4 forwarding on the host');
}

/** Makes the uplink into the qube's namespace (as its eth0) with the host's rules; undone by removeUplink. */
export async function addUplink(u: Uplink, qubePid: number): Promise<void> {
  try {
    await removeUplink(u);
    await hostForwarding();
    await ipBatch(undefined, [
      `link add ${u.hostIf} type veth peer name eth0 netns ${qubePid}`,
      `addr add ${u.hostIp}/30 dev ${u.hostIf}`,
      `link set ${u.hostIf} up`,
    ], 'making the uplink');
    await ipBatch(`/proc/${qubePid}/ns/net`, [
      'link set lo up',
      `addr add ${u.qubeIp}/30 dev eth0`,
      'link set eth0 up',
      `route add default via ${u.hostIp} dev eth0`,
    ], 'configuring the uplink');
    await nftRun(undefined, hostRules(u), 'adding the uplink rules on the host');
  } catch (e) {
    await removeUplink(u).catch(() => undefined);
    throw e;
  }
}

/** Removes the host's end and its table; nothing there is not an error. */
export async function removeUplink(u: Pick<Uplink, 'hostIf' | 'table'>): Promise<void> {
  await ipBatch(undefined, [`link del ${u.hostIf}`], 'removing the uplink').catch(() => undefined);
  // nft 1.0.6 has no `destroy`: adding first makes the delete succeed whether or not the table was there.
  await nftRun(undefined, `add table ip ${u.table}\ndelete table ip ${u.table}\n`, 'removing the uplink rules');
}

/** Tables of this instance's uplinks on the host, by name (reconcile removes those of qubes gone). */
export async function uplinkTables(instance: string): Promise<string[]> {
  const tables = await runIn(undefined, ['nft', 'list', 'tables', 'ip'], '', 'listing nft tables');
  const prefix = `isola-${instance}-u`;
  return tables.split('\n').map((l) => l.trim().replace(/^table ip /, '')).filter((t) => t.startsWith(prefix));
}

/** Upstream DNS servers for the uplink: the host's resolv.conf's, loopback ones replaced by resolved's. */
export function hostDnsServers(read: (f: string) => string = (f) => readFileSync(f, 'utf8')): string[] {
  const servers = (f: string) => {
    try {
      return [...read(f).matchAll(/^\s*nameserver\s+(\d+\.\d+\.\d+\.\d+)\s*$/gm)].map((m) => m[1]);
    } catch {
      return [];
    }
  };
  const own = servers('/etc/resolv.conf').filter((s) => !s.startsWith('127.'));
  return own.length ? own : servers('/run/systemd/resolve/resolv.conf').filter((s) => !s.startsWith('127.'));
}
