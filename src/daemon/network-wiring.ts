// The network's part of isolad's composition: the nftables filter, the uplink's DNS, the start step,
// and (after reconcile) the removal of host-side things of uplink qubes that no longer run.

import type { FirewallRule } from '../net/firewall-rule-type';
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
  /** After reconcile: host tables of this instance's uplinks whose qube is not running are removed. */
  sweepHost(): Promise<void>;
}

export function wireNetwork(d: {
  config: DaemonConfig; collection: Collection; backends: BackendRegistry; lifecycle: Lifecycle; events: EventBus; log: Logger;
  rulesOf?: (name: string) => FirewallRule[];
}): NetworkWiring {
  const uplinkDns = () => d.config.uplinkDns ?? hostDnsServers();
  const filter = new NftNetvmFilter({
    instance: d.config.instance,
    rulesOf: d.rulesOf ?? (() => [{ action: 'accept' }]),
    resolvers: uplinkDns,
    log: d.log,
    failedClosed: (name, reason) => {
      if (reason) d.events.emit(name, 'firewall-failed-closed', { reason });
    },
  });
  const network = new QubeNetwork({
    instance: d.config.instance, collection: d.collection, backends: d.backends, filter, log: d.log, uplinkDns,
    startQube: (name) => d.lifecycle.start(name),
  });
  d.lifecycle.steps.insertBefore('hello', network.step());
  return {
    network,
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
