// Pending 'ask' decisions of the qrexec policy: a call waits here until someone answers from the
// host (`isola ask allow|deny`, later the UI) or until it times out, which denies it. Each new
// question is announced as an event so that prompts can appear without polling.

import { QubesError } from '../core/errors';
import type { AskAnswer, Resolution } from '../policy';
import type { EventBus } from './event-bus';

/** Like Qubes' qrexec_timeout for a prompt nobody answers: then the call is denied. */
export const ASK_TIMEOUT_MS = 60_000;

export interface PendingAsk {
  id: number;
  at: number;
  source: string;
  service: string;
  argument: string;
  targets: string[];
  /** Preselected: the policy's default_target, else the caller's own target when it is offered. */
  defaultTarget: string | null;
  /** The target the caller asked for (`@default` when it named none). */
  requested: string;
}

interface Entry extends PendingAsk {
  resolution: Resolution;
  settle: (answer: AskAnswer) => void;
  timer: NodeJS.Timeout;
}

export class AskQueue {
  private readonly pending = new Map<number, Entry>();
  private nextId = 1;

  constructor(private readonly events: EventBus, private readonly timeoutMs = ASK_TIMEOUT_MS) {}

  /** Queues the question; `answer` settles when someone answers, at the timeout (deny) or at cancel(). */
  ask(source: string, service: string, argument: string, resolution: Resolution, requested = resolution.requested_target ?? '@default'): { id: number; answer: Promise<AskAnswer> } {
    const id = this.nextId++;
    const answer = new Promise<AskAnswer>((resolve) => {
      const settle = (answer: AskAnswer) => {
        if (!this.pending.delete(id)) return;
        clearTimeout(entry.timer);
        this.events.emit('', 'qrexec-ask-done', { id: String(id), answer: answer.allow ? `allow:${answer.target ?? ''}` : answer.unanswered ?? 'deny' });
        resolve(answer);
      };
      const targets = resolution.targets_for_ask ?? [];
      const entry: Entry = {
        id, at: Date.now(), source, service, argument, resolution, settle, targets, requested,
        defaultTarget: resolution.default_target ?? (targets.includes(requested) ? requested : null),
        timer: setTimeout(() => settle({ allow: false, unanswered: 'timeout' }), this.timeoutMs),
      };
      this.pending.set(id, entry);
      this.events.emit('', 'qrexec-ask', {
        id: String(id), source, service: `${service}${argument}`, targets: entry.targets.join(' '), default_target: entry.defaultTarget ?? '', requested,
      });
    });
    return { id, answer };
  }

  /** The caller went away: its question is withdrawn (as a deny). */
  cancel(id: number): void {
    this.pending.get(id)?.settle({ allow: false, unanswered: 'withdrawn' });
  }

  list(): PendingAsk[] {
    return [...this.pending.values()].map(({ id, at, source, service, argument, targets, defaultTarget, requested }) => ({ id, at, source, service, argument, targets, defaultTarget, requested }));
  }

  /** Answers a pending ask; an allow must name one of the offered targets (or take the default). */
  answer(id: number, allow: boolean, target?: string): void {
    const e = this.pending.get(id);
    if (!e) throw new QubesError('QubesValueError', `No pending question ${id} (answered, timed out, or never asked)`);
    if (!allow) return e.settle({ allow: false });
    const choice = target ?? e.defaultTarget ?? (e.targets.length === 1 ? e.targets[0] : undefined);
    if (!choice) throw new QubesError('QubesValueError', `Question ${id} offers ${e.targets.join(', ')}: choose one with --target`);
    if (!e.targets.includes(choice)) throw new QubesError('QubesValueError', `'${choice}' is not offered by question ${id} (choices: ${e.targets.join(', ')})`);
    e.settle({ allow: true, target: choice });
  }
}
