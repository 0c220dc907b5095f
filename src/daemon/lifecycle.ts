// Starting, stopping and watching qubes: volumes, agent channel and backend in the right order,
// with state recorded so that isolad killed at any moment restarts into a consistent state.

import type { Backend } from '../core/backend';
import { QubesError } from '../core/errors';
import type { QubeRecord } from '../core/qube';
import type { IdRange, QubeVolumes, StoragePool } from '../core/volumes';
import { AgentListener } from '../qrexec/agent-link';
import type { FramedSocket } from '../qrexec/frame-reader';
import type { TriggerService3 } from '../qrexec/protocol';
import type { BackendRegistry } from './backend-registry';
import type { Collection } from './collection';
import type { DaemonConfig } from './config';
import type { QubeIds } from './qube-ids';
import type { EventBus } from './event-bus';
import type { Logger } from './logger';
import { QubeLocks } from './qube-locks';
import { runtimeId } from './qube-launch';
import { StepList, type QubeRun } from './qube-steps';
import { standardSteps } from './standard-steps';
import { deathReason } from './death-reason';
import { errorText } from '../core/error-text';
import { recordedSizes } from './volume-sizes';
import { inertReason } from './reason-text';

export interface LifecycleDeps {
  config: DaemonConfig;
  collection: Collection;
  pool: StoragePool & { squashIfDeep?(uuid: string, vol: 'root' | 'private'): Promise<boolean> };
  backends: BackendRegistry;
  events: EventBus;
  log: Logger;
  uids: QubeIds;
}

export class Lifecycle {
  readonly agents = new Map<string, AgentListener>();
  /** Where service calls made from inside qubes go (the qrexec router); refused while unset. */
  onServiceCall?: (source: string, untrusted: TriggerService3, conn: FramedSocket) => void;
  /** The start sequence; features add their steps to it (insertBefore). */
  readonly steps: StepList;
  private readonly locks = new QubeLocks();
  private sweepTimer?: NodeJS.Timeout;

  constructor(private readonly d: LifecycleDeps) {
    this.steps = new StepList(standardSteps({
      config: d.config, collection: d.collection, pool: d.pool, log: d.log,
      volumesOf: (run) => this.volumesOf(run.q),
      openAgent: (run) => this.openAgent(run),
      closeAgent: (run) => this.closeAgent(run.q),
    }));
  }

  volumesOf(q: QubeRecord): QubeVolumes {
    const template = typeof q.props.template === 'string' ? this.d.collection.find(q.props.template) : undefined;
    return { uuid: q.uuid, klass: q.klass, sourceUuid: template?.uuid, sizes: recordedSizes(this.d.collection.store, q, template) };
  }

  ids(q: QubeRecord): IdRange {
    return this.d.uids.ids(q);
  }

  /** After qvm-remove: its host uid range may go to another qube (its files are gone). */
  async releaseIds(q: QubeRecord): Promise<void> {
    await this.d.uids.release(q).catch((e: Error) => this.d.log.error(`${q.name}: releasing its host uid range: ${e.message}`));
  }

  /** Runs fn under the qube's lifecycle lock. */
  locked<T>(q: QubeRecord, fn: () => Promise<T>): Promise<T> {
    return this.locks.run(q.uuid, fn);
  }

  agent(q: QubeRecord): AgentListener {
    const a = this.agents.get(q.uuid);
    const state = this.d.collection.powerState(q);
    if (state === 'Paused') throw new QubesError('QubesVMNotRunningError', `Domain '${q.name}' is paused (qvm-unpause ${q.name})`);
    if (!a || state !== 'Running') throw new QubesError('QubesVMNotRunningError', `Domain is not running: ${q.name}`);
    return a;
  }

  /** qvm-pause: every process of a running qube stops where it is (Qubes' emergency pause). */
  async pause(name: string): Promise<void> {
    const q = this.d.collection.get(name);
    if (q.klass === 'AdminVM') throw new QubesError('QubesVMError', 'dom0 cannot be paused');
    await this.locked(q, async () => {
      const rt = this.runtimeRow(q);
      if (!rt || rt.state !== 'running' || rt.paused) throw new QubesError('QubesVMNotRunningError', `Domain not running (either powered off or paused): '${name}'`);
      const backend = this.backendOf(rt);
      if (!backend) throw new QubesError('QubesVMError', `${name}: its backend (virt_mode ${rt.backend}) is not available in this isolad`);
      this.d.events.emit(name, 'domain-pre-paused');
      await backend.pause(rt.runtimeId);
      this.d.collection.write(() => this.d.collection.store.putRuntime({ ...rt, paused: true }));
      this.d.events.emit(name, 'domain-paused');
    });
  }

  async unpause(name: string): Promise<void> {
    const q = this.d.collection.get(name);
    await this.locked(q, async () => {
      const rt = this.runtimeRow(q);
      if (!rt?.paused) throw new QubesError('QubesVMNotPausedError', `Domain is not paused: '${name}'`);
      const backend = this.backendOf(rt);
      if (!backend) throw new QubesError('QubesVMError', `${name}: its backend (virt_mode ${rt.backend}) is not available in this isolad`);
      this.d.events.emit(name, 'domain-pre-unpaused');
      await backend.unpause(rt.runtimeId);
      this.d.collection.write(() => this.d.collection.store.putRuntime({ ...rt, paused: false }));
      this.d.events.emit(name, 'domain-unpaused');
    });
  }

  async start(name: string): Promise<void> {
    const q0 = this.d.collection.get(name);
    return this.locked(q0, async () => {
      const q = this.d.collection.get(name);
      if (q.klass === 'AdminVM' || this.d.collection.powerState(q) !== 'Halted') {
        throw new QubesError('QubesVMNotHaltedError', `Domain is running: ${name}`);
      }
      const { collection: col, events, log } = this.d;
      const started = Date.now();
      const backend = this.backendFor(q);
      const run: QubeRun = { q, ids: await this.idsForStart(q), backend, runtimeId: runtimeId(q) };
      const row = { qid: q.qid, runtimeId: run.runtimeId, backend: backend.virtMode, startedAt: started };
      col.write(() => {
        col.store.putRuntime({ ...row, state: 'starting', rootRevision: '' });
        col.store.setLastError(q.qid, null);
      });
      events.emit(name, 'domain-pre-start');
      try {
        const times = await this.steps.up(run, (step, e) => log.error(`${name}: undoing ${step}: ${inertReason(errorText(e))}`));
        col.write(() => col.store.putRuntime({ ...row, state: 'running', rootRevision: run.vols?.rootRevision ?? '', accel: run.info?.accel ?? '' }));
        const phases = Object.entries(times).map(([k, v]) => `${k} ${v} ms`).join(', ');
        log.info(`${name}: started in ${Date.now() - started} ms (${phases})`);
        events.emit(name, 'domain-start');
      } catch (e) {
        const msg = inertReason(errorText(e)); // what qvm-ls, qvm-check and the event show: in words
        log.error(`${name}: start failed: ${msg}`);
        col.write(() => {
          col.store.deleteRuntime(q.qid);
          col.store.setLastError(q.qid, `start failed: ${msg}`);
        });
        events.emit(name, 'domain-start-failed', { reason: msg });
        throw new QubesError('QubesVMError', `Failed to start ${name}: ${msg}`);
      }
    });
  }

  /** The backend of the qube's virt_mode (a mode this host lacks: one line, nothing done). */
  private backendFor(q: QubeRecord): Backend {
    const mode = String(this.d.collection.prop(q, 'virt_mode'));
    try {
      return this.d.backends.forMode(mode, q.name);
    } catch (e) {
      this.d.collection.write(() => this.d.collection.store.setLastError(q.qid, `start failed: ${errorText(e)}`));
      throw new QubesError('QubesVMError', `Failed to start ${q.name}: ${errorText(e)}`);
    }
  }

  /** The backend that runs (or ran) the qube, as its runtime row recorded it. */
  backendOf(rt: { backend: string }): Backend | undefined {
    return this.d.backends.recorded(rt.backend);
  }

  /** A range the registry confirms is this qube's; refused (with the reason in qvm-ls) otherwise. */
  private async idsForStart(q: QubeRecord): Promise<IdRange> {
    try {
      return await this.d.uids.ensure(q);
    } catch (e) {
      const msg = errorText(e);
      this.d.collection.write(() => this.d.collection.store.setLastError(q.qid, `start failed: ${msg}`));
      this.d.events.emit(q.name, 'domain-start-failed', { reason: msg });
      throw new QubesError('QubesVMError', `Failed to start ${q.name}: ${msg}`);
    }
  }

  private async openAgent(run: QubeRun): Promise<AgentListener> {
    const { q } = run;
    await this.closeAgent(q);
    const col = this.d.collection;
    const agent = new AgentListener({
      channel: await run.backend.channel({ runtimeId: run.runtimeId, uuid: q.uuid, ids: run.ids }),
      name: q.name,
      // Resolved at each exec, so a changed default_user applies without a restart.
      defaultUser: () => String(col.prop(col.find(q.name) ?? q, 'default_user')),
      log: (line) => this.d.log.info(line),
    });
    await agent.listen();
    agent.on('disconnect', () => {
      this.checkStopped(q.name).catch((e: Error) => this.d.log.error(`${q.name}: after its agent disconnected: ${inertReason(errorText(e))}`));
    });
    agent.on('service-call', (untrusted, conn) => {
      if (this.onServiceCall) this.onServiceCall(q.name, untrusted, conn);
      else conn.close('no qrexec router');
    });
    this.agents.set(q.uuid, agent);
    return agent;
  }

  private async closeAgent(q: QubeRecord): Promise<void> {
    const agent = this.agents.get(q.uuid);
    this.agents.delete(q.uuid);
    await agent?.close().catch(() => undefined);
  }

  /** After an isolad restart: listen for the running qube's agent again (it reconnects by itself). */
  async reattach(q: QubeRecord, backend: Backend): Promise<void> {
    await this.openAgent({ q, ids: this.ids(q), backend, runtimeId: runtimeId(q) });
  }

  /**
   * Undoes a run whose runtime is gone (or was never finished): every step's down, in reverse; the
   * runtime forgotten and the reason recorded. Caller holds the lock (or is reconcile, before serving).
   */
  async finishRun(q: QubeRecord, rt: { state: string; runtimeId: string; backend: string }, unexpected: string | null): Promise<string | null> {
    const { collection: col, log } = this.d;
    const backend = this.backendOf(rt);
    let failed: string | null = null;
    if (!backend) {
      failed = `its backend (virt_mode ${rt.backend}) is not available in this isolad; its volumes stay as they were`;
    } else {
      const run: QubeRun = { q, ids: this.ids(q), backend, runtimeId: rt.runtimeId };
      const reasons = await this.steps.down(run, { commit: rt.state !== 'starting' });
      failed = reasons.join('; ') || null;
    }
    const reason = [unexpected, failed].filter(Boolean).join('; ') || null;
    col.write(() => {
      col.store.deleteRuntime(q.qid);
      if (reason) col.store.setLastError(q.qid, reason);
    });
    if (reason) log.error(`${q.name}: ${reason}`);
    else log.info(`${q.name}: halted`);
    return failed;
  }

  async shutdown(name: string, opts: { wait: boolean; force: boolean }): Promise<void> {
    const q = this.d.collection.get(name);
    const state = this.d.collection.powerState(q);
    if (q.klass === 'AdminVM') throw new QubesError('QubesVMError', 'dom0 cannot be shut down by isolad');
    if (state === 'Halted') throw new QubesError('QubesVMNotStartedError', `Domain is powered off: ${name}`);
    if (state === 'Paused') {
      if (!opts.force) throw new QubesError('QubesVMNotRunningError', `Domain not running (either powered off or paused): '${name}'`);
      return this.kill(name); // as Qubes: a forced shutdown of a paused qube destroys it
    }
    // Qubes: a netvm with running qubes behind it stays up unless forced (they then lose their network).
    const users = this.connectedRunning(q);
    if (users.length > 0 && !opts.force) {
      throw new QubesError('QubesVMInUseError', `There are other VMs connected to this VM: ${users.join(', ')}`);
    }
    const timeoutS = Number(this.d.collection.prop(q, 'shutdown_timeout'));
    const done = this.locked(q, async () => {
      const rt = this.runtimeRow(q);
      if (!rt) return;
      const backend = this.backendOf(rt);
      this.d.collection.write(() => this.d.collection.store.putRuntime({ ...rt, state: 'stopping' }));
      this.d.events.emit(name, 'domain-pre-shutdown');
      const agent = this.agents.get(q.uuid);
      // One deadline, shutdown_timeout, for the agent's answer and the runtime's stop (as qvm-shutdown --wait kills after it).
      const asked = agent?.connected ? agent.shutdown(timeoutS).catch(() => undefined) : backend?.signal(rt.runtimeId, 'SIGTERM').catch(() => undefined);
      if (!backend) await asked;
      if (backend && !(await waitStopped(backend, rt.runtimeId, timeoutS * 1000))) {
        this.d.log.warn(`${name}: did not stop within ${timeoutS} s, killing it`);
        await backend.signal(rt.runtimeId, 'SIGKILL').catch(() => undefined);
        await waitStopped(backend, rt.runtimeId, 10_000);
      }
      const failed = await this.finishStop(q, null);
      // Halted either way; the caller who waited learns that its changes are not committed yet.
      if (failed) throw new QubesError('QubesVMError', `${name} halted, but ${failed}`);
    });
    if (opts.wait) await done;
    else done.catch((e: Error) => this.d.log.error(`${name}: shutdown: ${e.message}`));
  }

  /** Running qubes whose netvm is q (Qubes' connected_vms that run). */
  private connectedRunning(q: QubeRecord): string[] {
    const col = this.d.collection;
    return col.all().filter((o) => o !== q && o.klass !== 'AdminVM' && col.prop(o, 'netvm') === q.name && col.powerState(o) !== 'Halted').map((o) => o.name);
  }

  async kill(name: string): Promise<void> {
    const q = this.d.collection.get(name);
    if (q.klass === 'AdminVM') throw new QubesError('QubesVMError', 'dom0 cannot be killed');
    if (this.d.collection.powerState(q) === 'Halted') throw new QubesError('QubesVMNotStartedError', `Domain is powered off: ${name}`);
    await this.locked(q, async () => {
      const rt = this.runtimeRow(q);
      if (!rt) return;
      const backend = this.backendOf(rt);
      if (backend) {
        // Frozen processes take no signal until thawed (the cgroup freezer): thaw first.
        if (rt.paused) await backend.unpause(rt.runtimeId).catch(() => undefined);
        await backend.signal(rt.runtimeId, 'SIGKILL').catch(() => undefined);
        await waitStopped(backend, rt.runtimeId, 10_000);
      }
      await this.finishStop(q, null);
    });
  }

  private runtimeRow(q: QubeRecord) {
    return this.d.collection.store.runtimes().find((r) => r.qid === q.qid);
  }

  /**
   * After the runtime stopped: every step undone (volumes committed or discarded), the runtime
   * forgotten. Caller holds the lock. Never throws for the volumes: a failed commit keeps the changes
   * (committed at the next start), the qube is Halted, and the reason is recorded. Resolves to it, or null.
   */
  private async finishStop(q: QubeRecord, unexpected: string | null): Promise<string | null> {
    const rt = this.runtimeRow(q);
    if (!rt) return null;
    const failed = await this.finishRun(q, rt, unexpected);
    await this.maybeSquash(q);
    const reason = [unexpected, failed].filter(Boolean).join('; ');
    this.d.events.emit(q.name, 'domain-shutdown', reason ? { reason } : {});
    return failed;
  }

  /** Long layer stacks are squashed when nothing running still reads their layers. */
  private async maybeSquash(q: QubeRecord): Promise<void> {
    if (!this.d.pool.squashIfDeep) return;
    const users = this.d.collection.all().filter((o) => o.props.template === q.name && this.d.collection.powerState(o) !== 'Halted');
    const squash = (vol: 'root' | 'private') => this.d.pool.squashIfDeep!(q.uuid, vol)
      .catch((e: unknown) => this.d.log.error(`${q.name}: squashing volume ${vol}: ${inertReason(errorText(e))}`));
    if (users.length === 0) await squash('root');
    await squash('private');
  }

  /** A backend saw one of its runtimes end (a VMM's exit): checked at once, not at the next sweep. */
  runtimeEnded(runtimeId: string): void {
    const rt = this.d.collection.store.runtimes().find((r) => r.runtimeId === runtimeId);
    const q = rt && this.d.collection.all().find((x) => x.qid === rt.qid);
    if (q) void this.checkStopped(q.name).catch((e: unknown) => this.d.log.error(`${q.name}: ${inertReason(errorText(e))}`));
  }

  /** Called when an agent disconnects and by the periodic sweep: notices qubes whose runtime died. */
  async checkStopped(name: string): Promise<void> {
    const q = this.d.collection.find(name);
    if (!q) return;
    await this.locked(q, async () => {
      const rt = this.runtimeRow(q);
      if (!rt || rt.state === 'starting') return;
      const backend = this.backendOf(rt);
      const st = await backend?.state(rt.runtimeId);
      if (st && st.status !== 'stopped') return;
      const why = rt.state === 'stopping' ? null
        : ((await backend?.deathReason?.(rt.runtimeId).catch(() => undefined)) ?? (await deathReason(this.d.config, rt.runtimeId)));
      await this.finishStop(q, why);
    });
  }

  /**
   * Backstop for deaths the agent channel did not report: one runtime listing per tick (not one
   * query per qube, which would keep two cores busy with a hundred qubes).
   */
  startSweep(intervalMs = 2000): void {
    let busy = false;
    this.sweepTimer = setInterval(() => {
      if (busy) return;
      busy = true;
      this.sweep()
        .catch((e: unknown) => this.d.log.error(`sweep: ${inertReason(errorText(e))}`))
        .finally(() => (busy = false));
    }, intervalMs);
    this.sweepTimer.unref();
  }

  private async sweep(): Promise<void> {
    const rows = this.d.collection.store.runtimes().filter((r) => r.state !== 'starting');
    if (rows.length === 0) return;
    for (const backend of this.d.backends.all()) {
      const mine = rows.filter((r) => r.backend === backend.virtMode);
      if (mine.length === 0) continue;
      const listed = await backend.list().catch(() => undefined);
      if (!listed) continue;
      const alive = new Set(listed.filter((i) => i.status !== 'stopped').map((i) => i.id));
      for (const rt of mine) {
        const q = this.d.collection.byQid(rt.qid);
        if (q && !alive.has(rt.runtimeId)) await this.checkStopped(q.name).catch(() => undefined);
      }
    }
  }

  stopSweep(): void {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
  }
}

async function waitStopped(backend: Backend, id: string, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  for (;;) {
    const st = await backend.state(id);
    if (!st || st.status === 'stopped') return true;
    if (Date.now() > until) return false;
    await sleep(50);
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
