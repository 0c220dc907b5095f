// The CLI talking to real Admin API handlers: an AdminClientLike whose calls go through the
// AdminServer's dispatcher (contract checks, handler, reply bytes) on a Harness's store, no socket.

import { decodeReply, type AdminEvent } from '../../../src/core/admin-wire';
import type { AdminMethod } from '../../../src/core/admin-methods';
import type { CallOptions } from '../../../src/cli/admin-client';
import type { AdminClientLike } from '../../../src/cli/main';
import { AdminServer, type Handler } from '../../../src/daemon/admin-server';
import type { HandlerDeps } from '../../../src/daemon/handlers/context';
import { firewallHandlers } from '../../../src/daemon/handlers/firewall-handlers';
import { vmHandlers } from '../../../src/daemon/handlers/vm-handlers';
import type { Harness } from './harness';

export interface SentCall {
  method: string;
  dest: string;
  arg: string;
  payload: string;
}

export class DaemonClient implements AdminClientLike {
  readonly calls: SentCall[] = [];
  readonly server: AdminServer;

  constructor(h: Harness, extra: Partial<Record<AdminMethod, Handler>> = {}) {
    const deps = { config: h.config, collection: h.collection, lifecycle: h.lifecycle, pool: h.pool, events: h.events, log: h.log } as unknown as HandlerDeps;
    this.server = new AdminServer({ ...vmHandlers(deps), ...firewallHandlers(deps), ...extra }, {}, h.events, h.log);
  }

  async call(method: AdminMethod, dest: string, opts: CallOptions = {}): Promise<string> {
    const payload = typeof opts.payload === 'string' ? Buffer.from(opts.payload) : (opts.payload ?? Buffer.alloc(0));
    this.calls.push({ method, dest, arg: opts.arg ?? '', payload: payload.toString('utf8') });
    return decodeReply(await this.server.callFromQube({ method, arg: opts.arg ?? '', source: 'dom0', dest, payload }));
  }

  async events(_onEvent: (e: AdminEvent) => void): Promise<() => void> {
    return () => undefined;
  }

  /** The payload of the last admin.vm.firewall.Set, or undefined. */
  lastSet(): string | undefined {
    return this.calls.filter((c) => c.method === 'admin.vm.firewall.Set').at(-1)?.payload;
  }
}
