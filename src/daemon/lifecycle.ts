// Starting, stopping and watching qubes: volumes, agent channel and backend in the right order,
// with state recorded so that isolad killed at any moment restarts into a consistent state.

import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Backend } from '../core/backend';
import { QubesError } from '../core/errors';
import type { QubeRecord } from '../core/qube';
import type { IdRange, QubeVolumes, StoragePool } from '../core/volumes';
import { AgentListener } from '../qrexec/agent-link';
import type { FramedSocket } from '../qrexec/frame-reader';
import type { TriggerService3 } from '../qrexec/protocol';
import type { Collection } from './collection';
import type { DaemonConfig } from './config';
import type { QubeIds } from './qube-ids';
import type { EventBus } from './event-bus';
import type { Logger } from './logger';
import { QubeLocks } from './qube-locks';
import { agentSocketDir, buildRuntimeSpec, guestLogFile, qrexecClientDir, runtimeId } from './qube-runtime-spec';
import { deathReason } from './death-reason';
import { errorText } from '../core/error-text';
import { recordedSizes } from './volume-sizes';
import { inertReason } from './reason-text';

export interface LifecycleDeps {
  config: DaemonConfig;
  collection: Collection;
  pool: StoragePool & { squashIfDeep?(uuid: string, vol: 'root' | 'private'): Promise<boolean> };
  backend: Backend;
  events: EventBus;
  log: Logger;
  uids: QubeIds;
}

export class Lifecycle {
  readonly agents = new Map<string, AgentListener>();
  /** Where service calls made from inside qubes go (the qrexec router); refused while unset. */
  onServiceCall?: (source: string, untrusted: TriggerService3, conn: FramedSocket) => void;
  private readonly locks = new QubeLocks();
  private sweepTimer?: NodeJS.Timeout;

  constructor(private readonly d: LifecycleDeps) {}

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
    if (!a || this.d.collection.powerState(q) !== 'Running') throw new QubesError('QubesVMNotRunningError', `Domain is not running: ${q.name}`);
    return a;
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
      const ids = await this.idsForStart(q);
      col.write(() => {
        col.store.putRuntime({ qid: q.qid, state: 'starting', runtimeId: runtimeId(q), backend: this.d.backend.name, startedAt: started, rootRevision: '' });
        col.store.setLastError(q.qid, null);
      });
      events.emit(name, 'domain-pre-start');
      let agent: AgentListener | undefined;
      let phases = '';
      try {
        const vols = await this.d.pool.start(this.volumesOf(q), ids);
        for (const w of vols.warnings ?? []) log.warn(`${name}: ${inertReason(w)}`);
        await ensurePrivateHome(vols.privateDir, ids.base);
        agent = await this.openAgent(q, ids);
        const hello = waitForHello(agent, Number(col.prop(q, 'qrexec_timeout')) * 1000, name);
        const tVolumes = Date.now();
        await this.d.backend.start(buildRuntimeSpec(this.d.config, col, q, vols, ids));
        const tRuntime = Date.now();
        await Promise.race([hello.promise, this.exitDuringStart(q, hello)]);
        phases = `volumes ${tVolumes - started} ms, runtime ${tRuntime - tVolumes} ms, agent ${Date.now() - tRuntime} ms`;
        col.write(() => col.store.putRuntime({ qid: q.qid, state: 'running', runtimeId: runtimeId(q), backend: this.d.backend.name, startedAt: started, rootRevision: vols.rootRevision }));
        log.info(`${name}: started in ${Date.now() - started} ms (${phases})`);
        events.emit(name, 'domain-start');
      } catch (e) {
        const msg = inertReason(errorText(e)); // what qvm-ls, qvm-check and the event show: in words
        log.error(`${name}: start failed: ${msg}`);
        await agent?.close().catch(() => undefined);
        this.agents.delete(q.uuid);
        await this.d.backend.destroy(runtimeId(q)).catch(() => undefined);
        await this.d.pool.stop(this.volumesOf(q), ids, false).catch((err: Error) => log.error(`${name}: cleanup: ${err.message}`));
        col.write(() => {
          col.store.deleteRuntime(q.qid);
          col.store.setLastError(q.qid, `start failed: ${msg}`);
        });
        events.emit(name, 'domain-start-failed', { reason: msg });
        throw new QubesError('QubesVMError', `Failed to start ${name}: ${msg}`);
      }
    });
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

  private async openAgent(q: QubeRecord, ids: IdRange): Promise<AgentListener> {
    const dir = agentSocketDir(this.d.config, q);
    await ensureOwnedDir(dir, ids.base, 0o700);
    const clientDir = qrexecClientDir(this.d.config, q);
    await ensureOwnedDir(clientDir, process.getuid?.() ?? 0, 0o755);
    const old = this.agents.get(q.uuid);
    await old?.close().catch(() => undefined);
    const col = this.d.collection;
    const agent = new AgentListener({
      socketPath: path.join(dir, 'agent.sock'),
      // In-qube callers reach isolad directly (no relay through the agent): one copy of every byte less.
      clientSocketPath: path.join(clientDir, 'qrexec-client.sock'),
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

  /** Fails fast when the qube's init exits before its agent said hello (instead of waiting qrexec_timeout). */
  private async exitDuringStart(q: QubeRecord, hello: HelloWait): Promise<void> {
    while (!hello.settled) {
      // Later than a normal agent's hello (~80 ms), so healthy starts pay nothing for this check.
      await sleep(250);
      const st = await this.d.backend.state(runtimeId(q)).catch(() => undefined);
      if (!hello.settled && (!st || st.status === 'stopped')) {
        throw new Error(`the qube's init exited before its agent connected (see ${guestLogFile(this.d.config, q)})`);
      }
    }
    await hello.promise;
  }

  /** After an isolad restart: listen for the running qube's agent again (it reconnects by itself). */
  async reattach(q: QubeRecord): Promise<void> {
    await this.openAgent(q, this.ids(q));
  }

  async shutdown(name: string, opts: { wait: boolean; force: boolean }): Promise<void> {
    const q = this.d.collection.get(name);
    const state = this.d.collection.powerState(q);
    if (q.klass === 'AdminVM') throw new QubesError('QubesVMError', 'dom0 cannot be shut down by isolad');
    if (state === 'Halted') throw new QubesError('QubesVMNotStartedError', `Domain is powered off: ${name}`);
    const timeoutS = Number(this.d.collection.prop(q, 'shutdown_timeout'));
    const done = this.locked(q, async () => {
      const rt = this.runtimeRow(q);
      if (!rt) return;
      this.d.collection.write(() => this.d.collection.store.putRuntime({ ...rt, state: 'stopping' }));
      this.d.events.emit(name, 'domain-pre-shutdown');
      const agent = this.agents.get(q.uuid);
      if (agent?.connected) await agent.shutdown(timeoutS).catch(() => undefined);
      else await this.d.backend.signal(rt.runtimeId, 'SIGTERM').catch(() => undefined);
      if (!(await this.waitStopped(rt.runtimeId, timeoutS * 1000))) {
        this.d.log.warn(`${name}: did not stop within ${timeoutS} s, killing it`);
        await this.d.backend.signal(rt.runtimeId, 'SIGKILL').catch(() => undefined);
        await this.waitStopped(rt.runtimeId, 10_000);
      }
      const failed = await this.finishStop(q, null);
      // Halted either way; the caller who waited learns that its changes are not committed yet.
      if (failed) throw new QubesError('QubesVMError', `${name} halted, but ${failed}`);
    });
    if (opts.wait) await done;
    else done.catch((e: Error) => this.d.log.error(`${name}: shutdown: ${e.message}`));
  }

  async kill(name: string): Promise<void> {
    const q = this.d.collection.get(name);
    if (q.klass === 'AdminVM') throw new QubesError('QubesVMError', 'dom0 cannot be killed');
    if (this.d.collection.powerState(q) === 'Halted') throw new QubesError('QubesVMNotStartedError', `Domain is powered off: ${name}`);
    await this.locked(q, async () => {
      const rt = this.runtimeRow(q);
      if (!rt) return;
      await this.d.backend.signal(rt.runtimeId, 'SIGKILL').catch(() => undefined);
      await this.waitStopped(rt.runtimeId, 10_000);
      await this.finishStop(q, null);
    });
  }

  private runtimeRow(q: QubeRecord) {
    return this.d.collection.store.runtimes().find((r) => r.qid === q.qid);
  }

  private async waitStopped(id: string, ms: number): Promise<boolean> {
    const until = Date.now() + ms;
    for (;;) {
      const st = await this.d.backend.state(id);
      if (!st || st.status === 'stopped') return true;
      if (Date.now() > until) return false;
      await sleep(50);
    }
  }

  /**
   * After the runtime stopped: commit or discard volumes, forget the runtime. Caller holds the lock.
   * Never throws for the volumes: a failed commit keeps the changes (committed at the next start),
   * the qube is Halted, and the reason is recorded. Resolves to that reason, or null.
   */
  private async finishStop(q: QubeRecord, unexpected: string | null): Promise<string | null> {
    const { collection: col, log } = this.d;
    const rt = this.runtimeRow(q);
    if (!rt) return null;
    const commit = rt.state !== 'starting';
    const agent = this.agents.get(q.uuid);
    this.agents.delete(q.uuid);
    await agent?.close().catch(() => undefined);
    await this.d.backend.destroy(rt.runtimeId).catch((e: Error) => log.error(`${q.name}: ${e.message}`));
    const failed = await this.d.pool.stop(this.volumesOf(q), this.ids(q), commit)
      .then(() => null, (e: unknown) => inertReason(errorText(e)));
    const reason = [unexpected, failed].filter(Boolean).join('; ') || null;
    col.write(() => {
      col.store.deleteRuntime(q.qid);
      if (reason) col.store.setLastError(q.qid, reason);
    });
    if (reason) log.error(`${q.name}: ${reason}`);
    else log.info(`${q.name}: halted`);
    await this.maybeSquash(q);
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

  /** Called when an agent disconnects and by the periodic sweep: notices qubes whose runtime died. */
  async checkStopped(name: string): Promise<void> {
    const q = this.d.collection.find(name);
    if (!q) return;
    await this.locked(q, async () => {
      const rt = this.runtimeRow(q);
      if (!rt || rt.state === 'starting') return;
      const st = await this.d.backend.state(rt.runtimeId);
      if (st && st.status !== 'stopped') return;
      const why = rt.state === 'stopping' ? null : await deathReason(this.d.config, rt.runtimeId);
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
    const listed = await this.d.backend.list().catch(() => undefined);
    if (!listed) return;
    const alive = new Set(listed.filter((i) => i.status !== 'stopped').map((i) => i.id));
    for (const rt of rows) {
      const q = this.d.collection.byQid(rt.qid);
      if (q && !alive.has(rt.runtimeId)) await this.checkStopped(q.name).catch(() => undefined);
    }
  }

  stopSweep(): void {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
  }
}

/**
 * /rw/home is bound at /home by the runtime, on the host side. The qube controls its private volume,
 * so anything there but a real directory (a symlink to the host's /etc, say) is moved aside and
 * replaced: following it would chown or bind-mount a host path.
 */
export async function ensurePrivateHome(privateDir: string, owner: number): Promise<void> {
  const home = path.join(privateDir, 'home');
  const st = await fs.lstat(home).catch(() => undefined);
  if (st?.isDirectory()) return;
  if (st) await fs.rename(home, path.join(privateDir, `home.not-a-directory-${Date.now()}`));
  await fs.mkdir(home, { mode: 0o755 });
  await fs.lchown(home, owner, owner);
}

export async function ensureOwnedDir(dir: string, owner: number, mode: number): Promise<void> {
  await fs.mkdir(dir, { recursive: true });
  await fs.chown(dir, owner, owner);
  await fs.chmod(dir, mode);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

interface HelloWait {
  promise: Promise<void>;
  settled: boolean;
}

function waitForHello(agent: AgentListener, ms: number, name: string): HelloWait {
  const w: HelloWait = { settled: false, promise: Promise.resolve() };
  w.promise = new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`the agent of ${name} did not connect within ${ms / 1000} s`)), ms);
    agent.once('hello', () => {
      clearTimeout(t);
      resolve();
    });
  }).finally(() => {
    w.settled = true;
  });
  return w;
}
