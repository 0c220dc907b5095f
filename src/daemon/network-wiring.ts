// The network's part of isolad's composition: the nftables filter, the uplink's DNS, the start step,
// and (after reconcile) the removal of host-side things of uplink qubes that no longer run.

import { errorText } from '../core/error-text';
import { firewallInForce } from './firewall-rules';
import { hostDnsServers, removeUplink, uplinkNames, uplinkTables } from '../net/uplink';
import type { BackendRegistry } from './backend-registry';
import type { Collection } from './collection';
import type { DaemonConfig } from './config';
import type { EventBus } from './event-bus';
import type { Lifecycle } from './lifecycle';
import type { Logger } from './logger';
import { NftNetvmFilter } from './netvm-filter';
import { QubeNetwork } from './qube-network';

export interface NetworkWiring {
  network: QubeNetwork;
  /** Why the qube's traffic is all blocked (its firewall failed closed when last applied), if it is. */
  blocked(name: string): string | undefined;
  /** After reconcile: host tables of this instance's uplinks whose qube is not running are removed. */
  sweepHost(): Promise<void>;
  stop(): void;
}

/** Host names in firewall rules are resolved again this often (Qubes: at each load). */
const RERESOLVE_MS = 5 * 60_000;

export function wireNetwork(d: {
  config: DaemonConfig; collection: Collection; backends: BackendRegistry; lifecycle: Lifecycle; events: EventBus; log: Logger;
}): NetworkWiring {
  const uplinkDns = () => d.config.uplinkDns ?? hostDnsServers();
  const blocked = new Map<string, string>();
  const filter = new NftNetvmFilter({
    instance: d.config.instance,
    rulesOf: (name) => firewallInForce(d.collection, name),
    resolvers: uplinkDns,
    log: d.log,
    failedClosed: (name, reason) => {
      if (reason) d.events.emit(name, 'firewall-failed-closed', { reason });
      if (reason) blocked.set(name, reason);
      else blocked.delete(name);
    },
  });
  const network = new QubeNetwork({
    instance: d.config.instance, collection: d.collection, backends: d.backends, filter, log: d.log, uplinkDns,
    startQube: (name) => d.lifecycle.start(name),
  });
  d.lifecycle.steps.insertBefore('hello', network.step());
  // Changes reach running qubes at once, each under the qube's lock (never in the middle of its start or stop).
  const later = (name: string, what: string, fn: () => Promise<void>) => {
    const q = d.collection.find(name);
    if (!q) return;
    d.lifecycle.locked(q, fn).catch((e: unknown) => d.log.error(`${name}: ${what}: ${errorText(e)}`));
  };
  const unsubscribe = d.events.subscribe((e) => {
    if (e.event === 'firewall-changed') later(e.subject, 'applying its firewall', () => network.reloadFirewall(e.subject));
    else if (/^property-(set|del|reset):netvm$/.test(e.event) && e.subject) later(e.subject, 'changing its netvm', () => network.relink(e.subject));
    else if (/^property-(set|reset):default_netvm$/.test(e.event) && !e.subject) {
      for (const q of d.collection.all()) if (q.klass !== 'AdminVM' && !('netvm' in q.props)) later(q.name, 'changing its netvm', () => network.relink(q.name));
    }
  });
  const hasHostRule = (name: string) => {
    try {
      return firewallInForce(d.collection, name).some((r) => r.dst && 'host' in r.dst);
    } catch {
      return false;
    }
  };
  const timer = setInterval(() => {
    for (const name of network.qubesWithHostRules(hasHostRule)) later(name, 'resolving its firewall\'s hosts', () => network.reloadFirewall(name));
  }, RERESOLVE_MS);
  timer.unref();
  return {
    network,
    blocked: (name) => blocked.get(name),
    stop: () => {
      unsubscribe();
      clearInterval(timer);
    },
    async sweepHost() {
      const running = new Set(d.collection.store.runtimes().map((r) => r.qid));
      for (const table of await uplinkTables(d.config.instance).catch(() => [])) {
        const qid = Number(table.slice(`isola-${d.config.instance}-u`.length));
        if (running.has(qid)) continue;
        await removeUplink(uplinkNames(d.config.instance, qid))
          .catch((e: Error) => d.log.warn(`network: removing a stale uplink: ${e.message}`));
      }
    },
  };
}
