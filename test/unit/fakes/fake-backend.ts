// An in-memory Backend for the daemon's unit tests: runtimes are records, every call is logged, the
// agent channel is a real UnixSocketChannel in a temporary directory (no root needed), and start()
// runs a FakeAgent that connects to it. Faults are injected per qube name.

import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { AgentChannel, Backend, QubeLaunch, RuntimeInfo, VirtMode, VolumeForm } from '../../../src/core/backend';
import type { IdRange } from '../../../src/core/volumes';
import { UnixSocketChannel } from '../../../src/qrexec/unix-channel';
import { FakeAgent, defaultScript, type CommandScript } from './fake-agent';

export interface BackendFaults {
  /** channel(), create() or start() rejects with this message. */
  channel?: string;
  create?: string;
  start?: string;
  /** The qube runs but its agent never connects. */
  hangBeforeHello?: boolean;
  /** The qube's init exits right after start, before its agent connects. */
  exitBeforeHello?: boolean;
  /** MSG_SHUTDOWN and SIGTERM are ignored (only SIGKILL stops the qube). */
  ignoreSigterm?: boolean;
  /** destroy() rejects with this message (after stopping the qube). */
  destroy?: string;
}

interface Runtime {
  launch: QubeLaunch;
  status: RuntimeInfo['status'];
  pid: number;
  agent?: FakeAgent;
}

let nextPid = 40_000;

/** The qube name in a runtime id (`work.3` → `work`). */
export function qubeOf(runtimeId: string): string {
  return runtimeId.slice(0, runtimeId.lastIndexOf('.'));
}

export class FakeBackend implements Backend {
  readonly volumeForm: VolumeForm;
  /** `create work.3`, `start work.3`, `signal work.3 SIGTERM`, … in call order. */
  readonly calls: string[] = [];
  readonly faults = new Map<string, BackendFaults>();
  /** What each qube's agent did (`hello`, `exec echo X`, `shutdown`), keyed by qube name. */
  readonly agentLog = new Map<string, string[]>();
  script: CommandScript = defaultScript;
  private readonly runtimes = new Map<string, Runtime>();
  private readonly endpoints = new Map<string, { agent: string; client: string }>();

  constructor(
    readonly virtMode: VirtMode,
    private readonly dir: string,
    /** A log shared with the pool, so tests can see the order of everything a start did. */
    private readonly journal: string[] = [],
    opts: { volumeForm?: VolumeForm } = {},
  ) {
    this.volumeForm = opts.volumeForm ?? (virtMode === 'hvm' ? 'image' : 'tree');
  }

  fault(qube: string, f: BackendFaults): void {
    this.faults.set(qube, { ...this.faults.get(qube), ...f });
  }

  private call(what: string, id: string): void {
    this.calls.push(`${what} ${id}`);
    this.journal.push(`${this.virtMode}:${what} ${id}`);
  }

  private faultOf(id: string): BackendFaults {
    return this.faults.get(qubeOf(id)) ?? {};
  }

  /** Where the qube's own programs call services (the channel's client endpoint). */
  clientSocket(qube: string): string {
    const e = [...this.endpoints.entries()].find(([id]) => qubeOf(id) === qube)?.[1];
    if (!e) throw new Error(`no channel was made for ${qube}`);
    return e.client;
  }

  async channel(q: { runtimeId: string; uuid: string; ids: IdRange }): Promise<AgentChannel> {
    this.call('channel', q.runtimeId);
    const f = this.faultOf(q.runtimeId).channel;
    if (f) throw new Error(f);
    // Short names: a unix socket path has 107 bytes at most.
    const dir = path.join(this.dir, `${this.virtMode}-${q.uuid.slice(0, 8)}`);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const ends = { agent: path.join(dir, 'agent.sock'), client: path.join(dir, 'client.sock') };
    this.endpoints.set(q.runtimeId, ends);
    return new UnixSocketChannel([{ path: ends.agent, endpoint: 'agent' }, { path: ends.client, endpoint: 'client' }]);
  }

  async create(launch: QubeLaunch): Promise<void> {
    this.call('create', launch.runtimeId);
    const f = this.faultOf(launch.runtimeId).create;
    if (f) throw new Error(f);
    if (this.runtimes.has(launch.runtimeId)) throw new Error(`runtime ${launch.runtimeId} exists already`);
    this.runtimes.set(launch.runtimeId, { launch, status: 'created', pid: 0 });
  }

  async start(id: string): Promise<RuntimeInfo> {
    this.call('start', id);
    const rt = this.runtimes.get(id);
    if (!rt) throw new Error(`runtime ${id} was never created`);
    const f = this.faultOf(id);
    if (f.start) throw new Error(f.start);
    rt.status = 'running';
    rt.pid = nextPid++;
    if (f.exitBeforeHello) setTimeout(() => this.die(id), 10);
    else if (!f.hangBeforeHello) this.runAgent(id, rt);
    return { id, status: rt.status, pid: rt.pid };
  }

  private runAgent(id: string, rt: Runtime): void {
    const name = qubeOf(id);
    const log = this.agentLog.get(name) ?? [];
    this.agentLog.set(name, log);
    rt.agent = new FakeAgent({
      qube: name,
      socketPath: () => this.endpoints.get(id)?.agent,
      script: (cmd, ctx) => this.script(cmd, ctx),
      onShutdown: () => this.die(id),
      ignoreShutdown: () => this.faultOf(id).ignoreSigterm === true,
      record: (what) => log.push(what),
    });
    rt.agent.run();
  }

  /** The qube's init is gone: its agent's connections close, the runtime reports stopped. */
  die(id: string): void {
    const rt = this.runtimes.get(id);
    if (!rt) return;
    rt.status = 'stopped';
    rt.pid = 0;
    rt.agent?.stop();
  }

  /** Raw bytes from the qube's agent on its control connection (a compromised agent). */
  agentSendsRaw(qube: string, bytes: Buffer): void {
    for (const [id, rt] of this.runtimes) if (qubeOf(id) === qube) rt.agent?.sendRaw(bytes);
  }

  /** The runtime stops but its agent's connection stays open (a death the channel does not report). */
  vanish(qube: string): void {
    for (const [id, rt] of this.runtimes) if (qubeOf(id) === qube) (rt.status = 'stopped'), (rt.pid = 0);
  }

  /** Agent death while running (the qube crashed): control closed, runtime stopped. */
  crash(qube: string): void {
    for (const id of this.runtimes.keys()) if (qubeOf(id) === qube) this.die(id);
  }

  /** A runtime isolad never recorded (left by a crash between create and the store's write). */
  addOrphan(id: string): void {
    this.runtimes.set(id, { launch: { runtimeId: id } as QubeLaunch, status: 'running', pid: nextPid++ });
  }

  async signal(id: string, signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
    this.call(`signal ${signal}`, id);
    const rt = this.runtimes.get(id);
    if (!rt || rt.status !== 'running') return;
    if (signal === 'SIGTERM' && this.faultOf(id).ignoreSigterm) return;
    this.die(id);
  }

  async pause(id: string): Promise<void> {
    this.call('pause', id);
    const rt = this.runtimes.get(id);
    if (rt?.status !== 'running') throw new Error(`qube ${id}: cannot pause: ${rt?.status ?? 'unknown'}`);
    rt.status = 'paused';
  }

  async unpause(id: string): Promise<void> {
    this.call('unpause', id);
    const rt = this.runtimes.get(id);
    if (rt?.status !== 'paused') throw new Error(`qube ${id}: cannot unpause: ${rt?.status ?? 'unknown'}`);
    rt.status = 'running';
  }

  async destroy(id: string): Promise<void> {
    this.call('destroy', id);
    this.die(id);
    this.runtimes.delete(id);
    const f = this.faultOf(id).destroy;
    if (f) throw new Error(f);
  }

  async state(id: string): Promise<RuntimeInfo | undefined> {
    const rt = this.runtimes.get(id);
    return rt ? { id, status: rt.status, pid: rt.pid } : undefined;
  }

  async list(): Promise<RuntimeInfo[]> {
    return [...this.runtimes.entries()].map(([id, rt]) => ({ id, status: rt.status, pid: rt.pid }));
  }

  async pids(id: string): Promise<number[]> {
    const rt = this.runtimes.get(id);
    return rt && rt.status === 'running' ? [rt.pid] : [];
  }

  /** The launch the daemon gave for a runtime (what it asked the backend to run). */
  launchOf(id: string): QubeLaunch | undefined {
    return this.runtimes.get(id)?.launch;
  }

  /** Every fake agent stopped, runtimes kept (a test's end). */
  stopAgents(): void {
    for (const rt of this.runtimes.values()) rt.agent?.stop();
  }
}
