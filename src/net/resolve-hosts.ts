// Firewall host names resolved when a netvm applies the rules (and again on a schedule), not when a
// rule is added, as Qubes does; one name that does not resolve fails the whole qube closed.

import { promises as dns } from 'node:dns';

export type HostResolution = Map<string, string[]> | { failure: string };

/** IPv4 addresses of each name, asked of servers (the uplink's upstream: what sys-net's DNAT reaches). */
export async function resolveHosts(names: readonly string[], servers: readonly string[], timeoutMs = 2000): Promise<HostResolution> {
  const unique = [...new Set(names)];
  if (unique.length === 0) return new Map();
  if (servers.length === 0) return { failure: `no DNS server to resolve ${unique[0]}` };
  const r = new dns.Resolver({ timeout: timeoutMs, tries: 2 });
  r.setServers([...servers]);
  const out = new Map<string, string[]>();
  for (const name of unique) {
    try {
      const ips = await r.resolve4(name);
      if (ips.length === 0) return { failure: `${name} has no IPv4 address` };
      out.set(name, ips);
    } catch (e) {
      return { failure: `${name} does not resolve (${(e as NodeJS.ErrnoException).code ?? 'error'})` };
    }
  }
  return out;
}
