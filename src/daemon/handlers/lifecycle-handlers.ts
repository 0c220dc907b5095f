// admin.vm.Start / Shutdown / Kill / Pause / Unpause: thin adapters over the lifecycle manager.

import type { AdminMethod } from '../../core/admin-methods';
import { protocolError } from '../../core/errors';
import type { Handler } from '../admin-server';
import type { HandlerDeps } from './context';

export function lifecycleHandlers(d: HandlerDeps): Partial<Record<AdminMethod, Handler>> {
  return {
    'admin.vm.Start': async (ctx) => {
      await d.lifecycle.start(ctx.req.dest);
      return '';
    },
    'admin.vm.Shutdown': async (ctx) => {
      const flags = ctx.req.arg ? ctx.req.arg.split('+') : [];
      if (flags.some((f) => f !== 'force' && f !== 'wait')) throw protocolError(`invalid shutdown argument '${ctx.req.arg}'`);
      await d.lifecycle.shutdown(ctx.req.dest, { wait: flags.includes('wait'), force: flags.includes('force') });
      return '';
    },
    'admin.vm.Kill': async (ctx) => {
      await d.lifecycle.kill(ctx.req.dest);
      return '';
    },
    'admin.vm.Pause': async (ctx) => {
      await d.lifecycle.pause(ctx.req.dest);
      return '';
    },
    'admin.vm.Unpause': async (ctx) => {
      await d.lifecycle.unpause(ctx.req.dest);
      return '';
    },
  };
}
