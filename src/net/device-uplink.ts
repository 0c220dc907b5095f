// sys-net's other way out, as Qubes hands it the NIC: a host interface moved into the uplink qube's
// namespace for as long as it runs. The host then has no address, route or rule on that network; only
// sys-net parses its packets. Settings come from the qube's features (Isola's names, as Qubes' `net.*`):
//   uplink-interface  the host interface (required)      uplink-address  its address, CIDR (10.0.0.5/24)
//   uplink-gateway    the default gateway (optional: none, the network is the interface's subnet only)
//   uplink-dns        its DNS servers, space separated (optional: the host's)
// When the qube's namespace goes, the kernel gives a physical interface back to the host (a virtual
// one, such as a veth, is destroyed with it).

import { ipBatch, runIn } from './netns';

export interface DeviceUplink {
  iface: string;
  address: string;
  gateway?: string;
}

const IFNAME = /^[A-Za-z0-9_.-]{1,15}$/;
const OCTET = '(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)';
const IPV4 = new RegExp(`^${OCTET}(\\.${OCTET}){3}$`);

/** The uplink the features ask for (undefined: none, the default veth to the host); bad values throw one line. */
export function deviceUplinkOf(name: string, features: Record<string, string>): DeviceUplink | undefined {
  const iface = features['uplink-interface'];
  if (iface === undefined || iface === '') return undefined;
  const bad = (what: string, v: string) => new Error(`${name}: feature ${what} '${v.slice(0, 40)}' is not valid`);
  if (!IFNAME.test(iface) || iface === 'lo' || iface.startsWith('vif')) throw bad('uplink-interface', iface);
  const address = features['uplink-address'] ?? '';
  const [ip, len, ...rest] = address.split('/');
  if (rest.length || !IPV4.test(ip ?? '') || !/^([0-9]|[12][0-9]|3[0-2])$/.test(len ?? '')) throw bad('uplink-address', address);
  const gateway = features['uplink-gateway'];
  if (gateway !== undefined && gateway !== '' && !IPV4.test(gateway)) throw bad('uplink-gateway', gateway);
  return { iface, address, ...(gateway ? { gateway } : {}) };
}

/** In the qube, once the interface is there: its address, up, and the default route through the gateway. */
export function deviceUplinkLines(u: DeviceUplink): string[] {
  return [`addr add ${u.address} dev ${u.iface}`, `link set ${u.iface} up`, ...(u.gateway ? [`route add default via ${u.gateway} dev ${u.iface}`] : [])];
}

/** Moves the host's interface into the qube's namespace (pid: its first process) and configures it there. */
export async function handOverDevice(name: string, u: DeviceUplink, pid: number): Promise<void> {
  const links = await runIn(undefined, ['ip', '-o', 'link', 'show'], '', 'listing the host interfaces');
  if (!links.split('\n').some((l) => l.split(':')[1]?.trim().replace(/@.*/, '') === u.iface)) {
    throw new Error(`${name}: uplink-interface '${u.iface}' is not an interface of the host (is another qube using it?)`);
  }
  await ipBatch(undefined, [`link set dev ${u.iface} netns ${pid}`], `${name}: handing ${u.iface} over`);
  await ipBatch(`/proc/${pid}/ns/net`, deviceUplinkLines(u), `${name}: configuring ${u.iface}`);
}

/** The uplink-dns feature's IPv4 servers (others are left out: the netvm DNATs IPv4 queries only). */
export function deviceDnsOf(features: Record<string, string>): string[] {
  if (!features['uplink-interface']) return [];
  return (features['uplink-dns'] ?? '').split(/[\s,]+/).filter((s) => IPV4.test(s));
}
