// admin.vm.firewall.Get / Set / Reload: a qube's outbound firewall rules as Qubes' qubesd serves them.
// Set checks every rule before it replaces all of them in one transaction; expired rules are not kept.
// Each change fires `firewall-changed` for the qube (the enforcer's hook; see firewall-rules.ts).

import type { AdminMethod } from '../../core/admin-methods';
import { protocolError } from '../../core/errors';
import { formatApiRule, isExpired, parseApiPayload } from '../../core/firewall';
import type { QubeRecord } from '../../core/qube';
import type { CallContext, Handler } from '../admin-server';
import { storedFirewall } from '../firewall-rules';
import { destQube, type HandlerDeps } from './context';

export function firewallHandlers(d: HandlerDeps): Partial<Record<AdminMethod, Handler>> {
  const col = d.collection;
  // The contract already refuses dom0 as destination; a handler called another way refuses it too.
  const qubeOf = (ctx: CallContext): QubeRecord => {
    const q = destQube(d, ctx);
    if (q.klass === 'AdminVM') throw protocolError(`${ctx.req.method} cannot be called on dom0 (it has no firewall)`);
    return q;
  };
  return {
    'admin.vm.firewall.Get': (ctx) => {
      const now = Date.now();
      return storedFirewall(col, qubeOf(ctx)).filter((r) => !isExpired(r, now)).map((r) => formatApiRule(r) + '\n').join('');
    },
    'admin.vm.firewall.Set': (ctx) => {
      const q = qubeOf(ctx);
      const rules = parseApiPayload(ctx.req.payload);
      const now = Date.now();
      col.write(() => col.store.setFirewall(q.qid, rules.filter((r) => !isExpired(r, now)).map(formatApiRule)));
      d.events.emit(q.name, 'firewall-changed');
      return '';
    },
    'admin.vm.firewall.Reload': (ctx) => {
      d.events.emit(qubeOf(ctx).name, 'firewall-changed');
      return '';
    },
    'admin.vm.firewall.Status': async (ctx) => {
      const q = qubeOf(ctx);
      // Changes are applied under the qube's lock, in order: once it is ours, the earlier ones are done.
      await d.lifecycle.locked(q, async () => undefined);
      const why = col.powerState(q) === 'Running' ? d.firewallBlocked?.(q.name) : undefined;
      return why ? `${why.replace(/[^\x20-\x7e]/g, '?')}\n` : '';
    },
  };
}
