// Qubes-style events (`domain-start`, `property-set:netvm`, …) fanned out to admin.Events streams.

import { EventEmitter } from 'node:events';

export interface DaemonEvent {
  subject: string;
  event: string;
  kwargs: Record<string, string>;
}

export class EventBus {
  private readonly emitter = new EventEmitter();

  constructor() {
    this.emitter.setMaxListeners(0);
  }

  emit(subject: string, event: string, kwargs: Record<string, string> = {}): void {
    this.emitter.emit('event', { subject, event, kwargs } satisfies DaemonEvent);
  }

  subscribe(fn: (e: DaemonEvent) => void): () => void {
    this.emitter.on('event', fn);
    return () => this.emitter.off('event', fn);
  }
}
