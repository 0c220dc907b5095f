// A qube's firewall as isolad holds it (the store's lines, or Qubes' default), and the hook an
// enforcer uses: it subscribes to `firewall-changed` on the event bus and reads firewallInForce.

import { DEFAULT_FIREWALL, enforcedRules, parseApiRule, type EnforcedRule, type FirewallRule } from '../core/firewall';
import { QubesError } from '../core/errors';
import type { QubeRecord } from '../core/qube';
import type { Collection } from './collection';

/**
 * The qube's rules in order, expired ones included (the expiry timer drops them from the store).
 * A stored line that no longer parses throws: an enforcer must then fail closed (drop everything
 * for the qube), as Qubes' firewall agent does on a rule it cannot apply.
 */
export function storedFirewall(col: Collection, q: QubeRecord): FirewallRule[] {
  const lines = col.store.firewall(q.qid);
  if (lines === undefined) return DEFAULT_FIREWALL.map((r) => ({ ...r }));
  return lines.map((line, i) => {
    try {
      return parseApiRule(line);
    } catch (e) {
      throw new QubesError('QubesException', `${q.name}: stored firewall rule ${i} is damaged (${(e as Error).message}); set the rules again with qvm-firewall`);
    }
  });
}

/**
 * What an enforcer applies for the qube now: its rules in order, expired ones left out, addresses
 * canonical (see EnforcedRule in core/firewall.ts). The policy after the last rule is always drop.
 * Call it on every `firewall-changed` event whose subject is the qube (fired by admin.vm.firewall.Set,
 * admin.vm.firewall.Reload and when a rule expires), and when the qube starts.
 */
export function firewallInForce(col: Collection, qube: string, nowMs = Date.now()): EnforcedRule[] {
  return enforcedRules(storedFirewall(col, col.get(qube)), nowMs);
}
