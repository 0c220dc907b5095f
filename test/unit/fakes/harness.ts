// The daemon's lifecycle wired as isolad wires it, on in-memory drivers: a real SQLite Store and
// Collection in a temporary ISOLA_HOME, the uid registry on a temporary file, FakeBackends in a
// BackendRegistry and a MemoryPool. No root needed. restart() simulates an isolad restart.

import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { QubeClass, QubeRecord } from '../../../src/core/qube';
import { volumeLayout } from '../../../src/core/volumes';
import { BackendRegistry } from '../../../src/daemon/backend-registry';
import { Collection } from '../../../src/daemon/collection';
import { loadConfig, type DaemonConfig } from '../../../src/daemon/config';
import { EventBus, type DaemonEvent } from '../../../src/daemon/event-bus';
import { Lifecycle } from '../../../src/daemon/lifecycle';
import type { Logger } from '../../../src/daemon/logger';
import { QubeIds } from '../../../src/daemon/qube-ids';
import { reconcile } from '../../../src/daemon/reconcile';
import { Store } from '../../../src/store/store';
import { UidRegistry } from '../../../src/store/uid-registry';
import { FakeBackend } from './fake-backend';
import { MemoryPool } from './memory-pool';

export class Harness {
  readonly home: string;
  readonly config: DaemonConfig;
  /** Everything the pool and the backends were asked, in order (`pool:start UUID`, `sandbox:create work.3`). */
  readonly journal: string[] = [];
  readonly lines: string[] = [];
  readonly log: Logger;
  readonly events = new EventBus();
  readonly seen: DaemonEvent[] = [];
  readonly pool: MemoryPool;
  readonly sandbox: FakeBackend;
  backends: FakeBackend[];
  /** Every backend this harness made (a restart may leave one out): all stopped at close. */
  private readonly allBackends: FakeBackend[];
  store!: Store;
  collection!: Collection;
  registry!: BackendRegistry;
  lifecycle!: Lifecycle;

  constructor(opts: { hvm?: boolean } = {}) {
    // Short: the fake channel's unix sockets live under it.
    this.home = mkdtempSync(path.join(os.tmpdir(), 'isf-'));
    this.config = loadConfig({
      ISOLA_HOME: this.home, ISOLA_SOCKET: path.join(this.home, 'isolad.sock'), ISOLA_CACHE: path.join(this.home, 'cache'),
      ISOLA_UID_REGISTRY: path.join(this.home, 'uids', 'registry'),
    });
    this.log = {
      info: (m) => this.lines.push(`info: ${m}`),
      warn: (m) => this.lines.push(`warning: ${m}`),
      error: (m) => this.lines.push(`error: ${m}`),
    };
    this.events.subscribe((e) => this.seen.push(e));
    this.pool = new MemoryPool('default', this.journal);
    this.sandbox = new FakeBackend('sandbox', this.home, this.journal);
    this.backends = [this.sandbox];
    if (opts.hvm) this.backends.push(new FakeBackend('hvm', this.home, this.journal));
    this.allBackends = [...this.backends];
    this.open();
  }

  get hvm(): FakeBackend {
    const b = this.backends.find((x) => x.virtMode === 'hvm');
    if (!b) throw new Error('this harness has no hvm backend');
    return b;
  }

  /** A new daemon's view on the same store, pool and runtimes (reconcile is the caller's: see restart). */
  private open(): void {
    this.store = new Store(this.config.dbPath);
    this.collection = new Collection(this.store);
    this.registry = new BackendRegistry(this.backends);
    const uids = new QubeIds(this.config, this.collection, new UidRegistry(this.config.uidRegistry, { reserved: () => [], homeAlive: () => true }), this.log);
    this.lifecycle = new Lifecycle({ config: this.config, collection: this.collection, pool: this.pool, backends: this.registry, events: this.events, log: this.log, uids });
  }

  /**
   * isolad stopped (its agent listeners closed, qubes left running) and started again, reconcile
   * included. whileAway: what happens while no isolad runs; backends: the new isolad's (default: the same).
   */
  async restart(opts: { whileAway?: () => void | Promise<void>; backends?: FakeBackend[] } = {}): Promise<void> {
    await this.stopDaemon();
    await opts.whileAway?.();
    if (opts.backends) this.backends = opts.backends;
    this.open();
    await reconcile(this.collection, this.lifecycle, this.registry, this.pool, this.log);
  }

  private async stopDaemon(): Promise<void> {
    this.lifecycle.stopSweep();
    for (const a of this.lifecycle.agents.values()) await a.close().catch(() => undefined);
    this.store.close();
  }

  /** Creates a qube as admin.vm.Create.* does: pool volumes, then the row and its volume rows in one write. */
  async create(name: string, klass: QubeClass, props: Record<string, string | number | boolean | null> = {}): Promise<QubeRecord> {
    const col = this.collection;
    const template = typeof props.template === 'string' ? col.get(props.template) : undefined;
    const draft: QubeRecord = { qid: 0, uuid: col.newUuid(), name, klass, props: { label: 'red', ...props }, features: {}, tags: ['created-by-dom0'] };
    const copyRoot = template && klass !== 'AppVM' ? { uuid: template.uuid, klass: template.klass } : undefined;
    await this.pool.create({ uuid: draft.uuid, klass }, { copyRootFrom: copyRoot });
    col.write(() => {
      draft.qid = col.store.nextQid();
      col.store.insertQube(draft);
      for (const v of volumeLayout(klass)) col.store.putVolume(draft.qid, { name: v.name, pool: this.pool.name, size: v.defaultSize, revisionsToKeep: 1 });
    });
    return col.get(name);
  }

  /** A template and an AppVM based on it, the usual pair. */
  async templateAndApp(app = 'work', extra: Record<string, string | number | boolean | null> = {}): Promise<{ tpl: QubeRecord; app: QubeRecord }> {
    const tpl = this.collection.find('debian-12') ?? (await this.create('debian-12', 'TemplateVM'));
    return { tpl, app: await this.create(app, 'AppVM', { template: 'debian-12', netvm: null, ...extra }) };
  }

  q(name: string): QubeRecord {
    return this.collection.get(name);
  }

  runtimeRow(name: string) {
    return this.store.runtime(this.q(name).qid);
  }

  lastError(name: string): string | undefined {
    return this.store.lastErrors().get(this.q(name).qid);
  }

  eventsOf(name: string, event?: string): DaemonEvent[] {
    return this.seen.filter((e) => e.subject === name && (!event || e.event === event));
  }

  /** Waits until cond holds (polling), or fails naming what it waited for. */
  async until(cond: () => boolean | Promise<boolean>, what: string, ms = 5000): Promise<void> {
    const end = Date.now() + ms;
    while (!(await cond())) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  async close(): Promise<void> {
    for (const b of this.allBackends) b.stopAgents();
    await this.stopDaemon().catch(() => undefined);
    rmSync(this.home, { recursive: true, force: true });
  }
}

/** Runs a command in a running qube through its agent, as qvm-run does; its output and exit code. */
export async function runIn(h: Harness, qube: string, command: string): Promise<{ stdout: string; code: number }> {
  const session = await h.lifecycle.agent(h.q(qube)).exec('user', command);
  session.stdin.end();
  const chunks: Buffer[] = [];
  for await (const c of session.stdout) chunks.push(c as Buffer);
  return { stdout: Buffer.concat(chunks).toString(), code: await session.exit };
}
