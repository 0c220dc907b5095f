// Qubes drops a firewall rule when its expire time passes (Firewall._expire_rules): one timer per
// qube, at its earliest expiry, rewrites the qube's rules without the expired ones and fires
// `firewall-changed`, so an enforcer stops applying them. Driven by the event bus only.

import { formatApiRule, isExpired, nextExpiry } from '../core/firewall';
import type { Collection } from './collection';
import type { EventBus } from './event-bus';
import { storedFirewall } from './firewall-rules';
import type { Logger } from './logger';

/** setTimeout's longest delay (~24.8 days); a later expiry is waited for in steps. */
const MAX_DELAY_MS = 2 ** 31 - 1;

export class FirewallExpiry {
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private unsubscribe?: () => void;

  constructor(
    private readonly col: Collection,
    private readonly events: EventBus,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  start(): void {
    this.unsubscribe = this.events.subscribe((e) => {
      if (e.event === 'firewall-changed' || e.event === 'domain-add') this.schedule(e.subject);
      else if (e.event === 'domain-delete') this.cancel(e.subject);
    });
    for (const q of this.col.all()) this.schedule(q.name);
  }

  stop(): void {
    this.unsubscribe?.();
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }

  /** The qube whose next expiry is waited for (for tests and diagnostics). */
  pending(): string[] {
    return [...this.timers.keys()].sort();
  }

  private cancel(name: string): void {
    const t = this.timers.get(name);
    if (t) clearTimeout(t);
    this.timers.delete(name);
  }

  private schedule(name: string): void {
    this.cancel(name);
    const q = this.col.find(name);
    if (!q || q.klass === 'AdminVM') return;
    let rules;
    try {
      rules = storedFirewall(this.col, q);
    } catch (e) {
      this.log.warn(`firewall: ${(e as Error).message}`);
      return;
    }
    const now = this.now();
    // A rule already past (isolad was down when it expired) goes at once.
    const overdue = rules.some((r) => isExpired(r, now));
    const next = nextExpiry(rules, now);
    if (!overdue && next === undefined) return;
    // expire is in whole seconds; a rule is expired once the clock is past it.
    const delay = overdue || next === undefined ? 0 : Math.min(MAX_DELAY_MS, Math.max(0, next * 1000 - now + 1));
    const timer = setTimeout(() => this.expire(name), delay);
    timer.unref();
    this.timers.set(name, timer);
  }

  private expire(name: string): void {
    this.timers.delete(name);
    const q = this.col.find(name);
    if (!q) return;
    const now = this.now();
    let rules;
    try {
      rules = storedFirewall(this.col, q);
    } catch (e) {
      this.log.warn(`firewall: ${(e as Error).message}`);
      return;
    }
    // A long wait ends in steps: nothing may have expired yet.
    if (!rules.some((r) => isExpired(r, now))) return this.schedule(name);
    try {
      this.col.write(() => this.col.store.setFirewall(q.qid, rules.filter((r) => !isExpired(r, now)).map(formatApiRule)));
    } catch (e) {
      // The rules stay as they were (an enforcer leaves out expired ones anyway); the next change retries.
      this.log.error(`firewall: ${name}: cannot remove expired rules: ${(e as Error).message}`);
      return;
    }
    this.log.info(`firewall: ${name}: expired rules removed`);
    this.events.emit(name, 'firewall-changed');
  }
}
