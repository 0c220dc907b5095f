// admin.policy.Log (Isola extension): the qrexec decisions isolad recorded, newest last, one per line:
// `ISO-TIME SOURCE TARGET SERVICE+ARG RESULT RULE REASON` (RULE is FILE:LINE or `-`).

import type { AdminMethod } from '../../core/admin-methods';
import { valueError } from '../../core/errors';
import { parseInteger } from '../../core/property-types';
import type { Handler } from '../admin-server';
import type { HandlerDeps } from './context';

export function policyHandlers(d: HandlerDeps): Partial<Record<AdminMethod, Handler>> {
  return {
    'admin.policy.Log': (ctx) => {
      let since = 0;
      if (ctx.req.arg) {
        const secs = parseInteger(ctx.req.arg);
        if (secs === undefined || secs < 0) throw valueError(`Invalid number of seconds '${ctx.req.arg}'`);
        since = Date.now() - secs * 1000;
      }
      return d.collection.store.decisions(since).map((r) =>
        `${new Date(r.at).toISOString()} ${r.source} ${r.target} ${r.service}${r.argument} ${r.result} ${r.rule || '-'} ${r.reason.replace(/\n/g, ' ')}\n`).join('');
    },
  };
}
