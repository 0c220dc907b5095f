// The netvm filter of QubeNetwork as nftables in the netvm's namespace: a qube's rules (from its
// stored firewall) compiled into its chain there, its host names resolved at each apply, and a name
// that does not resolve blocking all of its traffic, with the reason told (Qubes fails closed too).

import type { FirewallRule } from '../net/firewall-rule-type';
import type { CompiledClient } from '../net/client-rules';
import { applyClientFirewall, applyNetvmFirewall, nftApply, removeClientFirewall } from '../net/nft';
import { clientUpdate } from '../net/nft-ruleset';
import { resolveHosts } from '../net/resolve-hosts';
import type { Logger } from './logger';
import type { NetvmFilter } from './qube-network';

export interface FilterDeps {
  instance: string;
  /** The qube's firewall, in order (Qubes' default: one accept). */
  rulesOf(name: string): FirewallRule[];
  /** Servers that resolve the rules' host names (the uplink's upstream). */
  resolvers(): string[];
  log: Logger;
  /** The qube's traffic is all blocked, and why (or undefined: its rules apply as written). */
  failedClosed(name: string, reason: string | undefined): void;
}

const nowSeconds = () => Math.floor(Date.now() / 1000);

export class NftNetvmFilter implements NetvmFilter {
  constructor(private readonly d: FilterDeps) {}

  async setup(netvmNs: string, opts: { dns: string[]; upstream?: string }): Promise<void> {
    await applyNetvmFirewall(netvmNs, { tag: this.d.instance, upstream: opts.upstream ?? 'eth0', masquerade: true, dns: opts.dns, clients: [] }, nowSeconds());
  }

  async setClient(netvmNs: string, c: { name: string; ip: string; vif: string }, netvmDns: string[], opts: { fresh?: boolean } = {}): Promise<void> {
    let rules: FirewallRule[];
    let damaged: string | undefined;
    try {
      rules = this.d.rulesOf(c.name);
    } catch (e) {
      // A stored rule that no longer parses: nothing of this qube's passes (Qubes fails closed too).
      rules = [{ action: 'drop' }];
      damaged = (e as Error).message;
    }
    const hosts = rules.flatMap((r) => (r.dst && 'host' in r.dst ? [r.dst.host] : []));
    const resolved = await resolveHosts(hosts, this.d.resolvers());
    const client = { ip: c.ip, vif: c.vif, rules, resolved };
    let compiled: CompiledClient;
    if (opts.fresh) {
      // Linking a qube that just started: no tracked connection of its can exist yet (one nft call, no conntrack).
      const u = clientUpdate(this.d.instance, client, nowSeconds());
      await nftApply(netvmNs, u.script);
      compiled = u.compiled;
    } else {
      compiled = (await applyClientFirewall(netvmNs, this.d.instance, client, netvmDns, nowSeconds())).compiled;
    }
    const closed = damaged ?? compiled.failClosed;
    if (closed) this.d.log.warn(`${c.name}: all its network traffic is blocked: ${closed}`);
    this.d.failedClosed(c.name, closed);
  }

  async removeClient(netvmNs: string, c: { ip: string; vif: string }): Promise<void> {
    await removeClientFirewall(netvmNs, this.d.instance, c);
  }
}
