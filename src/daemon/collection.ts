// The collection of qubes as isolad sees it: records loaded from the store, a World for property
// resolution, and runtime power states. Writes go through the store in one transaction, then reload.

import os from 'node:os';
import { randomUUID } from 'node:crypto';
import { vmNotFound } from '../core/errors';
import { GLOBAL_PROPERTIES, resolveGlobal } from '../core/global-properties';
import { resolveProperty, type World } from '../core/properties';
import { DOM0_UUID, type PowerState, type PropValue, type QubeRecord } from '../core/qube';
import type { Store } from '../store/store';

export class Collection {
  private qubes = new Map<string, QubeRecord>();
  private globals: Record<string, PropValue> = {};
  readonly hostMemoryMiB = Math.floor(os.totalmem() / 1024 / 1024);
  readonly hostCpus = os.cpus().length;
  /** What the host can run, told by isolad once it knows its backends and kernels (checks of virt_mode, kernel). */
  host: Pick<World, 'virtModeProblem' | 'kernels'> = {};
  /** Settles once the installed kernels are known (a fresh ISOLA_HOME installs one in the background). */
  kernelsKnown: () => Promise<void> = () => Promise.resolve();
  /** Whether a running VM (by runtime id) was started without a network card (set by isolad with the hvm backend). */
  vmCardless: (runtimeId: string) => boolean = () => false;

  constructor(readonly store: Store) {
    this.ensureDom0();
    this.reload();
  }

  private ensureDom0(): void {
    const exists = this.store.db.prepare('SELECT 1 FROM qubes WHERE qid = 0').get();
    if (!exists) {
      this.store.tx(() => this.store.insertQube({ qid: 0, uuid: DOM0_UUID, name: 'dom0', klass: 'AdminVM', props: { label: 'black' }, features: {}, tags: [] }));
    }
  }

  reload(): void {
    this.qubes = new Map(this.store.loadAll().map((q) => [q.name, q]));
    this.globals = this.store.globalProps();
  }

  /** Runs a write in one transaction, then refreshes the in-memory view (also after a failure). */
  write<T>(fn: () => T): T {
    try {
      return this.store.tx(fn);
    } finally {
      this.reload();
    }
  }

  all(): QubeRecord[] {
    return [...this.qubes.values()];
  }

  find(name: string): QubeRecord | undefined {
    return this.qubes.get(name);
  }

  get(name: string): QubeRecord {
    const q = this.qubes.get(name);
    if (!q) throw vmNotFound(name);
    return q;
  }

  byQid(qid: number): QubeRecord | undefined {
    return this.all().find((q) => q.qid === qid);
  }

  byUuid(uuid: string): QubeRecord | undefined {
    return this.all().find((q) => q.uuid === uuid);
  }

  globalValue(name: string): { value: PropValue; isDefault: boolean } {
    return resolveGlobal(name, this.globals, this.world());
  }

  world(): World {
    return {
      qube: (n) => this.qubes.get(n),
      globalProp: (n) => this.globalValue(n).value,
      hostMemoryMiB: this.hostMemoryMiB,
      hostCpus: this.hostCpus,
      all: () => this.all(),
      // Computed properties (xid, start_time) read the runtime row: there only while not halted.
      runtime: (q) => {
        const row = q.klass === 'AdminVM' ? undefined : this.store.runtime(q.qid);
        return row?.backend === 'hvm' ? { ...row, cardless: this.vmCardless(row.runtimeId) } : row;
      },
      ...this.host,
    };
  }

  prop(q: QubeRecord, name: string): PropValue {
    return resolveProperty(q, name, this.world()).value;
  }

  newUuid(): string {
    return randomUUID();
  }

  powerState(q: QubeRecord): PowerState {
    if (q.klass === 'AdminVM') return 'Running';
    const rt = this.store.runtime(q.qid);
    if (!rt) return 'Halted';
    if (rt.state === 'running') return rt.paused ? 'Paused' : 'Running';
    return rt.state === 'starting' ? 'Transient' : 'Halting';
  }

  /** Names of qubes and global prefs that refer to q (template, netvm, the dispvm, gui and audio qubes). */
  referrers(q: QubeRecord): string[] {
    const out: string[] = [];
    for (const other of this.all()) {
      for (const p of ['template', 'netvm', 'default_dispvm', 'management_dispvm', 'guivm', 'audiovm']) {
        if (other.name !== q.name && other.props[p] === q.name) out.push(`${other.name} (${p})`);
      }
    }
    for (const g of GLOBAL_PROPERTIES) if (this.globals[g.name] === q.name) out.push(`global ${g.name}`);
    return out;
  }
}
