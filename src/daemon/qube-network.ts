// The network as a step of a qube's start and stop (after the runtime starts, before the agent's hello):
// a netvm gets forwarding and its filter (and an uplink to the host when it has no netvm of its own);
// a networked qube gets a link to its netvm, which is started first if it is halted (as Qubes does).
// A netvm that starts again relinks the running qubes that use it.

import { QubesError } from '../core/errors';
import type { QubeRecord } from '../core/qube';
import { attachClient, detachClient, vifName, type ClientLink, type LinkForm } from '../net/client-link';
import { setupVmBridge } from '../net/vm-link';
import { TAP_NAME } from '../backends/vm/qemu-args';
import { deviceDnsOf, deviceUplinkOf, handOverDevice } from '../net/device-uplink';
import { netnsOfPid, sysctls } from '../net/netns';
import { NETVM_SYSCTLS, VIRTUAL_DNS } from '../net/nft-ruleset';
import { addUplink, chooseUplink, hostAddresses, removeUplink, uplinkNames } from '../net/uplink';
import type { BackendRegistry } from './backend-registry';
import type { Collection } from './collection';
import type { QubeRun, QubeStep } from './qube-steps';
import type { Logger } from './logger';
import { errorText } from '../core/error-text';
import { statSync } from 'node:fs';

/** The inode naming a network namespace (undefined: the process is gone). */
function nsInode(path: string): number | undefined {
  try {
    return statSync(path).ino;
  } catch {
    return undefined;
  }
}

function formOf(backend: string): LinkForm {
  return backend === 'hvm' ? 'hvm' : 'sandbox';
}

/** The firewall a netvm enforces for its qubes (the nftables driver, or an in-memory one in unit tests). */
export interface NetvmFilter {
  /** The netvm's own rules, with no qube yet: forwarding policy, NAT out of its upstream (eth0), the virtual DNS. */
  setup(netvmNs: string, opts: { dns: string[]; upstream?: string }): Promise<void>;
  /** A qube's rules in its netvm (replacing any it had); a failure leaves that qube's traffic dropped. */
  setClient(netvmNs: string, client: { name: string; ip: string; vif: string }, netvmDns: string[], opts?: { fresh?: boolean }): Promise<void>;
  removeClient(netvmNs: string, client: { ip: string; vif: string }): Promise<void>;
}

export interface NetworkDeps {
  instance: string;
  collection: Collection;
  backends: BackendRegistry;
  filter: NetvmFilter;
  log: Logger;
  /** Upstream DNS servers of a netvm that has the uplink (the host's, or the tests' own). */
  uplinkDns: () => string[];
  /** Starts a halted netvm (the lifecycle's start; a netvm already starting is waited for). */
  startQube(name: string): Promise<void>;
}


export class QubeNetwork {
  constructor(private readonly d: NetworkDeps) {}

  step(): QubeStep {
    return {
      name: 'network',
      up: (run) => this.up(run),
      down: (run) => this.down(run),
    };
  }

  private prop(q: QubeRecord, name: string) {
    return this.d.collection.prop(q, name);
  }

  private isNetvm(q: QubeRecord): boolean {
    return q.klass !== 'AdminVM' && this.prop(q, 'provides_network') === true;
  }

  private netvmOf(q: QubeRecord): QubeRecord | undefined {
    if (q.klass === 'AdminVM') return undefined;
    const n = this.prop(q, 'netvm');
    return typeof n === 'string' ? this.d.collection.find(n) : undefined;
  }

  /** The namespace of a running qube's first process (its runtime's), or undefined if it does not run. */
  private async nsOf(q: QubeRecord): Promise<string | undefined> {
    const rt = this.d.collection.store.runtimes().find((r) => r.qid === q.qid);
    if (!rt) return undefined;
    // Known from this run's start: the same namespace if the pid still holds it (a reused pid would not).
    const known = this.seen.get(rt.runtimeId);
    if (known && nsInode(netnsOfPid(known.pid)) === known.ino) return netnsOfPid(known.pid);
    const st = await this.d.backends.recorded(rt.backend)?.state(rt.runtimeId).catch(() => undefined);
    if (!st || st.pid <= 0 || st.status === 'stopped') return undefined;
    this.remember(rt.runtimeId, st.pid);
    return netnsOfPid(st.pid);
  }

  /** Runtime id → the pid that holds its namespace and that namespace's inode (saves a runtime query per link). */
  private readonly seen = new Map<string, { pid: number; ino: number }>();

  private remember(runtimeId: string, pid: number): void {
    const ino = nsInode(netnsOfPid(pid));
    if (ino !== undefined) this.seen.set(runtimeId, { pid, ino });
  }

  private async up(run: QubeRun): Promise<void> {
    const { q } = run;
    const netvm = this.netvmOf(q);
    if (!this.isNetvm(q) && !netvm) return; // offline: loopback only, as the runtime made it
    const form = formOf(run.backend.virtMode);
    // A netvm's rules live in its namespace; an hvm qube's namespace is its own kernel's, out of the host's reach.
    if (this.isNetvm(q) && form !== 'sandbox') throw new Error(`${q.name}: an ${run.backend.virtMode} qube cannot provide network yet (use virt_mode sandbox for net qubes)`);
    // After the runtime started: its first process (the sandbox's init, or QEMU) holds the namespace.
    const pid = run.info?.pid;
    if (!pid) throw new Error(`${q.name} has no process to give a network to`);
    this.remember(run.runtimeId, pid);
    const ns = netnsOfPid(pid);
    if (this.isNetvm(q)) await this.setupNetvm(q, ns, pid, !netvm);
    if (netvm && form === 'hvm') await setupVmBridge(ns, TAP_NAME);
    if (netvm) await this.attach(q, netvm, ns, form);
    if (this.isNetvm(q)) await this.relinkClients(q);
  }

  private async setupNetvm(q: QubeRecord, ns: string, pid: number, uplink: boolean): Promise<void> {
    // icmp_ratelimit 0: the firewall's rejects stay fast after a burst (the host's global limit still holds).
    await sysctls(ns, { ...NETVM_SYSCTLS }, `${q.name}: network settings`);
    const device = uplink ? deviceUplinkOf(q.name, q.features) : undefined;
    if (device) await handOverDevice(q.name, device, pid);
    else if (uplink) await addUplink(chooseUplink(this.d.instance, q.qid, await hostAddresses()), pid);
    const dns = this.dnsOf(q);
    if (uplink && dns.length === 0) this.d.log.warn(`${q.name}: no upstream DNS server (none in the host's resolv.conf): names will not resolve`);
    await this.d.filter.setup(ns, { dns, ...(device ? { upstream: device.iface } : {}) });
  }

  /** A netvm's upstream DNS: the real servers where the uplink is, else its own netvm's virtual ones. */
  private dnsOf(netvm: QubeRecord): string[] {
    if (this.netvmOf(netvm)) return [...VIRTUAL_DNS];
    // A handed-over interface's network has its own servers (feature uplink-dns); else the host's.
    const own = deviceDnsOf(netvm.features);
    return own.length ? own : this.d.uplinkDns();
  }

  private link(q: QubeRecord, netvm: QubeRecord): ClientLink {
    const ip = this.prop(q, 'visible_ip');
    const gateway = this.prop(netvm, 'gateway');
    if (typeof ip !== 'string' || typeof gateway !== 'string') throw new Error(`${q.name} has no address on ${netvm.name}`);
    return { ip, gateway, mac: String(this.prop(q, 'mac')), vif: vifName(q.qid) };
  }

  /** Links q to its netvm (started first if halted). */
  private async attach(q: QubeRecord, netvm: QubeRecord, ns: string, form: LinkForm): Promise<void> {
    let netvmNs = await this.nsOf(netvm);
    if (!netvmNs) {
      await this.d.startQube(netvm.name).catch((e: unknown) => {
        if (!(e instanceof QubesError && e.code === 'QubesVMNotHaltedError')) throw new Error(`its netvm ${netvm.name} did not start: ${errorText(e)}`);
      });
      netvmNs = await this.nsOf(netvm);
      if (!netvmNs) throw new Error(`its netvm ${netvm.name} is not running`);
    }
    const l = this.link(q, netvm);
    // A qube being linked has no connections yet: nothing to cut.
    await this.d.filter.setClient(netvmNs, { name: q.name, ip: l.ip, vif: l.vif }, this.dnsOf(netvm), { fresh: true });
    await attachClient(l, netvmNs, ns, form).catch(async (e: unknown) => {
      await this.d.filter.removeClient(netvmNs!, l).catch(() => undefined);
      throw e;
    });
  }

  /** After a netvm (re)started: the running qubes that use it get their links back. */
  private async relinkClients(netvm: QubeRecord): Promise<void> {
    const col = this.d.collection;
    for (const c of col.all()) {
      if (c.klass === 'AdminVM' || this.prop(c, 'netvm') !== netvm.name || col.powerState(c) !== 'Running') continue;
      const ns = await this.nsOf(c);
      if (!ns) continue;
      await this.attach(c, netvm, ns, this.formOfRunning(c)).catch((e: unknown) => this.d.log.error(`${c.name}: relinking to ${netvm.name}: ${errorText(e)}`));
    }
  }

  /**
   * The qube's namespace went with its runtime (and the link with it): what stays is in its netvm (the
   * qube's rules) and on the host (an uplink's end and table). Copes with nothing to undo.
   */
  private async down(run: QubeRun): Promise<void> {
    const { q } = run;
    this.seen.delete(run.runtimeId);
    if (!this.isNetvm(q) && !this.netvmOf(q)) return;
    if (this.isNetvm(q)) await removeUplink(uplinkNames(this.d.instance, q.qid));
    await this.unlinkEverywhere(q);
  }

  /** Removes q's link and rules from every running netvm (the one it was attached to is not recorded). */
  private async unlinkEverywhere(q: QubeRecord): Promise<void> {
    const ip = this.prop(q, 'visible_ip');
    for (const netvm of this.d.collection.all().filter((n) => n.name !== q.name && this.isNetvm(n))) {
      const netvmNs = await this.nsOf(netvm);
      if (!netvmNs) continue;
      const vif = vifName(q.qid);
      try {
        await detachClient(vif, netvmNs);
        if (typeof ip === 'string') await this.d.filter.removeClient(netvmNs, { ip, vif });
      } catch (e) {
        // A netvm halting at the same time (`qvm-shutdown --all`) takes the link and the rules with it.
        if (nsInode(netvmNs) !== undefined) throw e;
      }
    }
  }

  /** How a running qube's link is made, from the backend that runs it. */
  private formOfRunning(q: QubeRecord): LinkForm {
    return formOf(this.d.collection.store.runtimes().find((r) => r.qid === q.qid)?.backend ?? 'sandbox');
  }

  /** A running qube's namespace (its sandbox's, or its QEMU's). */
  private async runningNs(name: string): Promise<{ q: QubeRecord; ns: string } | undefined> {
    const q = this.d.collection.find(name);
    if (!q || this.d.collection.powerState(q) !== 'Running') return undefined;
    const ns = await this.nsOf(q);
    return ns ? { q, ns } : undefined;
  }

  /** The qube's rules changed (or its names may resolve differently now): its netvm applies them again. */
  async reloadFirewall(name: string): Promise<void> {
    const r = await this.runningNs(name);
    const netvm = r && this.netvmOf(r.q);
    const netvmNs = netvm && (await this.nsOf(netvm));
    if (!r || !netvm || !netvmNs) return;
    const l = this.link(r.q, netvm);
    await this.d.filter.setClient(netvmNs, { name: r.q.name, ip: l.ip, vif: l.vif }, this.dnsOf(netvm));
  }

  /** The netvm of a running qube changed: unlinked from the old one, linked to the new one (none: offline), as Qubes does live. */
  async relink(name: string): Promise<void> {
    const r = await this.runningNs(name);
    if (!r) return;
    await this.unlinkEverywhere(r.q);
    const netvm = this.netvmOf(r.q);
    if (netvm) await this.attach(r.q, netvm, r.ns, this.formOfRunning(r.q));
  }

  /** Running qubes with firewall rules naming hosts (whose addresses may change). */
  qubesWithHostRules(hasHostRule: (name: string) => boolean): string[] {
    return this.d.collection.all().filter((q) => q.klass !== 'AdminVM' && this.d.collection.powerState(q) === 'Running' && hasHostRule(q.name)).map((q) => q.name);
  }
}
