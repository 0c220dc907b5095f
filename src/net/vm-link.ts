// The link of an hvm qube. Its kernel is its own: the host cannot put an interface into it, so the
// netvm's pair ends in QEMU's network namespace (made by isola-vmm-jail, holding only the qube's tap)
// and a bridge there joins that end to the tap. The guest configures its card itself from boot.conf
// (guest-init.ts) with the addresses a sandbox's eth0 gets. QEMU's namespace holds nothing else: a QEMU
// taken over by its guest sees the same frames the guest could send anyway, and no host interface.

import { ipBatch, sysctls, type NetnsPath } from './netns';

export const VM_BRIDGE = 'br0';

/** In QEMU's namespace at start: the bridge with the tap on it; no addresses, no IPv6 chatter of its own. */
export function vmBridgeLines(tap: string): string[] {
  return [
    `link add ${VM_BRIDGE} type bridge`,
    `link set ${tap} master ${VM_BRIDGE}`,
    `link set ${tap} up`,
    `link set ${VM_BRIDGE} up`,
  ];
}

/** The netvm's end, arrived in QEMU's namespace as eth0, joins the bridge. */
export const vmPortLines = (): string[] => [`link set eth0 master ${VM_BRIDGE}`, 'link set eth0 up'];

/** tap: the device the VM's card is on (the backend's TAP_NAME). */
export async function setupVmBridge(qemuNs: string, tap: string): Promise<void> {
  await sysctls(qemuNs, { 'net.ipv6.conf.all.disable_ipv6': '1', 'net.ipv6.conf.default.disable_ipv6': '1' }, 'QEMU namespace settings');
  await ipBatch(qemuNs, vmBridgeLines(tap), 'bridging the qube\'s tap');
}

/**
 * The vif of an hvm qube answers ARP for whatever its netvm routes (proxy ARP): the guest keeps the
 * gateway it was started with, and after a live change of netvm the new netvm answers for that old
 * gateway too (every vif has Qubes' MAC fe:ff:ff:ff:ff:ff, so the guest's ARP cache stays right).
 */
export function vmVifSettings(vif: string): Record<string, string> {
  return { [`net.ipv4.conf.${vif}.proxy_arp`]: '1' };
}

export async function attachVmPort(vif: string, netvmNs: NetnsPath, qemuNs: string): Promise<void> {
  await sysctls(netvmNs, vmVifSettings(vif), `proxy ARP on ${vif}`);
  await ipBatch(qemuNs, vmPortLines(), 'bridging the link to the qube\'s tap');
}
