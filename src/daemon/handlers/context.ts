// What Admin API handlers share: the collection, lifecycle, pool, events and config, plus
// small helpers for parsing payloads and naming the destination qube.

import type { StoragePool } from '../../core/volumes';
import type { CallContext } from '../admin-server';
import type { Collection } from '../collection';
import type { DaemonConfig } from '../config';
import type { EventBus } from '../event-bus';
import type { Lifecycle } from '../lifecycle';
import type { Logger } from '../logger';
import type { AskQueue } from '../ask-queue';
import type { PolicyStore } from '../policy-store';
import { protocolError } from '../../core/errors';
import type { QubeRecord } from '../../core/qube';

export interface HandlerDeps {
  config: DaemonConfig;
  collection: Collection;
  lifecycle: Lifecycle;
  pool: StoragePool;
  events: EventBus;
  log: Logger;
  /** The qrexec policy in force (for the router and admin calls from qubes). */
  policy: PolicyStore;
  /** Pending 'ask' decisions waiting for an answer from the host. */
  asks: AskQueue;
  /** Why a running qube's traffic is all blocked by its netvm (its firewall failed closed), if it is. */
  firewallBlocked?: (name: string) => string | undefined;
}

export function destQube(d: HandlerDeps, ctx: CallContext): QubeRecord {
  return d.collection.get(ctx.req.dest);
}

export function payloadText(ctx: CallContext): string {
  const text = ctx.req.payload.toString('utf8');
  if (!Buffer.from(text, 'utf8').equals(ctx.req.payload)) throw protocolError('payload is not valid UTF-8');
  return text;
}

/** Parses `key=value key=value` payloads (admin.vm.Create, admin.vm.Clone). */
export function parseKeyValues(untrusted: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const word of untrusted.split(' ').filter(Boolean)) {
    const eq = word.indexOf('=');
    if (eq <= 0) throw protocolError(`malformed key=value pair '${word}'`);
    const key = word.slice(0, eq);
    if (out.has(key)) throw protocolError(`'${key}' given twice`);
    out.set(key, word.slice(eq + 1));
  }
  return out;
}
