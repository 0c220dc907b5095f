// The link between a qube and its netvm: one veth pair made inside the netvm's namespace with its
// peer put straight into the qube's, as Xen's vif/eth0 pair in Qubes. Both ends use /32 addresses
// (Qubes' netmask 255.255.255.255): the qube reaches only its gateway on the link, and everything
// else through it.

import { ipBatch, type NetnsPath } from './netns';
import { attachVmPort } from './vm-link';

/** Where the qube's end goes: a sandbox's own namespace (configured here), or QEMU's (bridged to the tap). */
export type LinkForm = 'sandbox' | 'hvm';

export interface ClientLink {
  /** The qube's address (its `ip` property) and its MAC (`mac`). */
  ip: string;
  mac: string;
  /** The netvm's address as the qube's gateway (the netvm's `visible_ip`). */
  gateway: string;
  /** Interface name in the netvm's namespace (`vif12`: unique there, by the qube's qid). */
  vif: string;
}

export const vifName = (qid: number): string => `vif${qid}`;

/** Qubes gives every netvm-side vif this MAC: a qube moved to another netvm still has its gateway's right. */
export const VIF_MAC = 'fe:ff:ff:ff:ff:ff';

/** In the netvm: the pair (peer into the qube's namespace, as eth0), the gateway address, the route back. */
export function netvmSideLines(l: ClientLink, clientNs: string): string[] {
  return [
    `link add ${l.vif} address ${VIF_MAC} type veth peer name eth0 netns ${clientNs}`,
    `addr add ${l.gateway}/32 dev ${l.vif}`,
    `link set ${l.vif} up`,
    `route replace ${l.ip}/32 dev ${l.vif}`,
  ];
}

/** In the qube: its address, loopback, and the gateway as its only neighbour and default route. */
export function clientSideLines(l: ClientLink): string[] {
  return [
    'link set lo up',
    `link set eth0 address ${l.mac}`,
    `addr add ${l.ip}/32 dev eth0`,
    'link set eth0 up',
    `route add ${l.gateway}/32 dev eth0`,
    `route add default via ${l.gateway} dev eth0`,
  ];
}

/**
 * Links a qube to its netvm. iproute2 takes the peer's namespace as a pid or a name in /run/netns:
 * a /proc/PID/ns/net path is turned into its pid. A failure removes the half-made pair.
 */
export async function attachClient(l: ClientLink, netvmNs: string, clientNs: string, form: LinkForm = 'sandbox'): Promise<void> {
  const peer = /^\/proc\/(\d+)\/ns\/net$/.exec(clientNs)?.[1];
  if (!peer) throw new Error(`attaching ${l.ip}: ${clientNs} is not a process's network namespace`);
  try {
    await ipBatch(netvmNs, netvmSideLines(l, peer), `linking ${l.ip} to its netvm`);
    if (form === 'hvm') await attachVmPort(l.vif, netvmNs, clientNs);
    else await ipBatch(clientNs, clientSideLines(l), `configuring ${l.ip}`);
  } catch (e) {
    await detachClient(l.vif, netvmNs).catch(() => undefined);
    throw e;
  }
}

/** Removes the pair from the netvm's side (its peer goes with it); nothing there is not an error. */
export async function detachClient(vif: string, netvmNs: NetnsPath): Promise<void> {
  await ipBatch(netvmNs, [`link del ${vif}`], `unlinking ${vif}`).catch((e: Error) => {
    if (!/Cannot find device|does not exist/.test(e.message)) throw e;
  });
}

/** Whether the qube's end is there (a live link to reattach, or none to make). */
export async function hasLink(vif: string, netvmNs: string): Promise<boolean> {
  return ipBatch(netvmNs, [`link show ${vif}`], `looking for ${vif}`).then(() => true, () => false);
}
