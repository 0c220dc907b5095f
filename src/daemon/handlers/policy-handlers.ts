// admin.policy.Log (Isola extension): the qrexec decisions isolad recorded, newest last, one per line:
// `ISO-TIME SOURCE TARGET SERVICE+ARG RESULT RULE REASON` (RULE is FILE:LINE or `-`).

import type { AdminMethod } from '../../core/admin-methods';
import { QubesError, valueError } from '../../core/errors';
import { parseInteger } from '../../core/property-types';
import { inertString } from '../../core/terminal-filter';
import type { Handler } from '../admin-server';
import type { HandlerDeps } from './context';
import { encodePolicyStatus, evalAnswer } from '../policy-report';
import { systemInfo } from '../system-info';

/**
 * A word of a line that a qube may have chosen (the target or service it asked for): no control
 * character and no space, so it cannot forge a line or shift the columns after it.
 */
const word = (untrusted: string) => inertString(untrusted).replace(/ /g, '_');

export function policyHandlers(d: HandlerDeps): Partial<Record<AdminMethod, Handler>> {
  return {
    'admin.qrexec.AskList': () =>
      d.asks.list().map((a) => `${a.id} ${a.source} ${word(a.service + a.argument)} default=${a.defaultTarget ?? ''} requested=${word(a.requested)} ${a.targets.join(' ')}\n`).join(''),
    'admin.qrexec.AskAnswer': (ctx) => {
      const id = parseInteger(ctx.req.arg);
      if (id === undefined || id <= 0) throw valueError(`Invalid question id '${ctx.req.arg}'`);
      const [verb, target, ...extra] = ctx.req.payload.toString('utf8').trim().split(/\s+/);
      if (extra.length || (verb !== 'allow' && verb !== 'deny') || (verb === 'deny' && target)) throw valueError("answer with 'allow [TARGET]' or 'deny'");
      d.asks.answer(id, verb === 'allow', target);
      return '';
    },
    'admin.policy.Status': () => encodePolicyStatus(d.policy.status()),
    'admin.policy.Eval': (ctx) => {
      const words = ctx.req.payload.toString('utf8').trim().split(/\s+/);
      if (words.length !== 3) throw valueError('evaluate what? give SOURCE TARGET SERVICE[+ARGUMENT] (TARGET @default for none)');
      const [source, target, call] = words;
      const system = systemInfo(d.collection);
      if (!Object.prototype.hasOwnProperty.call(system.domains, source)) throw new QubesError('QubesVMNotFoundError', `No such qube: '${source}'`);
      const st = d.policy.status();
      return evalAnswer(d.policy.current, source, target === '@default' ? '' : target, call, system, `in force in isolad${st.loadedAt ? ` (loaded ${new Date(st.loadedAt).toISOString()})` : ' (none loaded: every call is denied)'}`);
    },
    'admin.policy.Log': (ctx) => {
      let since = 0;
      if (ctx.req.arg) {
        const secs = parseInteger(ctx.req.arg);
        if (secs === undefined || secs < 0) throw valueError(`Invalid number of seconds '${ctx.req.arg}'`);
        since = Date.now() - secs * 1000;
      }
      return d.collection.store.decisions(since).map((r) =>
        `${new Date(r.at).toISOString()} ${r.source} ${word(r.target)} ${word(r.service + r.argument)} ${r.result} ${r.rule || '-'} ${inertString(r.reason.replace(/\n/g, ' '))}\n`).join('');
    },
  };
}
