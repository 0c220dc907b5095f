// The backends this isolad has, keyed by Qubes' `virt_mode`: a start picks the one the qube's property
// names, and the runtime row records it, so after a restart the qube is asked of the backend that runs it.

import type { Backend, VirtMode } from '../core/backend';
import { QubesError } from '../core/errors';

export class BackendRegistry {
  private readonly byMode = new Map<string, Backend>();

  constructor(backends: Backend[] = []) {
    for (const b of backends) this.register(b);
  }

  register(b: Backend): void {
    if (this.byMode.has(b.virtMode)) throw new Error(`a backend for virt_mode ${b.virtMode} is already registered`);
    this.byMode.set(b.virtMode, b);
  }

  /** The backend of a virt_mode, for a start; a mode this host cannot run is refused in one line. */
  forMode(mode: string, qube: string): Backend {
    const b = this.byMode.get(mode);
    if (!b) throw new QubesError('QubesVMError', `${qube}: virt_mode '${mode}' is not available on this host (available: ${this.modes().join(', ') || 'none'})`);
    return b;
  }

  /** The backend a runtime row names, or undefined when this isolad has no such backend any more. */
  recorded(mode: string): Backend | undefined {
    return this.byMode.get(mode);
  }

  modes(): VirtMode[] {
    return [...this.byMode.keys()] as VirtMode[];
  }

  all(): Backend[] {
    return [...this.byMode.values()];
  }
}
