// The hvm Backend: one jailed QEMU per qube, driven through QMP. Each qube has a run dir under runRoot
// (root's): description.json (what create() decided), pid/exit/error (written by isola-vmm-jail), started
// (pid and its start time), and QEMU's sockets (QMP and the two serial ports: bound by the jail as root, so
// QEMU owns no file here).

import * as fs from 'node:fs';
import * as path from 'node:path';
import type { AgentChannel, Backend, QubeLaunch, RuntimeInfo } from '../../core/backend';
import type { IdRange } from '../../core/volumes';
import { GUEST_LOG_KEEP, GUEST_LOG_MAX_BYTES } from '../sandbox/runc-backend';
import { listenSockets, qemuArgs, qmpSocket, serialSockets, TAP_NAME, type VmAccel, type VmDescription, type VmMachine } from './qemu-args';
import { QmpClient } from './qmp';
import { hostTscKhz } from './guest-cmdline';
import { hostMemMiB, isAlive, killVerified, procStat, supportsDirectIo, waitGone } from './vm-proc';
import { checkJailPath, jailExit, startJailed, systemBinds } from './vmm-jail';

export interface QemuBackendOptions {
  /** This instance's run root, e.g. /run/isola-vm/<instance>. */
  runRoot: string;
  qemu?: string;
  log?: (line: string) => void;
  accel: () => Promise<VmAccel>;
  machine: VmMachine;
  /** The kernel, initramfs and command line of a start; files it makes go into dir (the run dir, removed by destroy). */
  bootFiles: (launch: QubeLaunch, dir: string) => Promise<{ kernel: string; initrd: string; cmdline: string }>;
  channel?: (q: { runtimeId: string; uuid: string; ids: IdRange }, runDir: string) => Promise<AgentChannel>;
  /** A QEMU ended (noticed when its QMP connection closed): reason is a sentence for the user. */
  onExit?: (runtimeId: string, reason: string) => void;
  jailPath?: string;
  logRelayPath?: string;
  /** How long QEMU may take from exec to a QMP greeting. */
  qmpReadyTimeoutMs?: number;
}

interface Described extends VmDescription {
  uid: number;
  gid: number;
  logFile: string;
}

interface Started {
  pid: number;
  startTime: string;
}

const ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

function libexec(name: string, env: string): string {
  return process.env[env] || path.resolve(__dirname, '../../../libexec', name);
}

/** "killed SIGKILL" / "exited 1" from the jail, as the sentence onExit gives. */
export function exitReason(jailLine: string | undefined, shutdown?: string): string {
  const after = shutdown ? ` after shutdown (${shutdown})` : '';
  const killed = /^killed (SIG[A-Z0-9]+|signal \d+)$/.exec(jailLine ?? '');
  if (killed) return `QEMU was killed (${killed[1]})${after}`;
  const exited = /^exited (\d+)$/.exec(jailLine ?? '');
  if (exited) return `QEMU exited (status ${exited[1]})${after}`;
  return `QEMU ended (status unknown)${after}`;
}

/** The console's last line (the relay has escaped it: printable ASCII only), for start errors. */
function lastLogLine(file: string): string | undefined {
  try {
    const fd = fs.openSync(file, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      const buf = Buffer.alloc(Math.min(size, 4096));
      fs.readSync(fd, buf, 0, buf.length, size - buf.length);
      return buf.toString('latin1').trim().split('\n').at(-1)?.slice(0, 300);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return undefined;
  }
}

export class QemuBackend implements Backend {
  readonly virtMode = 'hvm' as const;
  readonly volumeForm = 'image' as const;
  private readonly qemu: string;
  private readonly jail: string;
  private readonly logRelay: string;
  private readonly qmp = new Map<string, QmpClient>();
  private readonly connecting = new Map<string, Promise<QmpClient>>();
  /** Ids whose QEMU we are ending ourselves: their exit is not news for onExit. */
  private readonly ending = new Set<string>();

  constructor(private readonly opts: QemuBackendOptions) {
    checkJailPath(opts.runRoot, 'run root');
    this.qemu = opts.qemu ?? '/usr/bin/qemu-system-x86_64';
    this.jail = opts.jailPath ?? libexec('isola-vmm-jail', 'ISOLA_VMM_JAIL');
    this.logRelay = opts.logRelayPath ?? libexec('isola-log-relay', 'ISOLA_LOG_RELAY');
  }

  runDir(id: string): string {
    if (!ID_RE.test(id) || id.includes('..')) throw new Error(`runtime id ${JSON.stringify(id).slice(0, 60)}: not a safe name`);
    return path.join(this.opts.runRoot, id);
  }

  serialSockets(runDir: string): { agent: string; client: string } {
    return serialSockets(runDir);
  }

  channel(q: { runtimeId: string; uuid: string; ids: IdRange }): Promise<AgentChannel> {
    if (this.opts.channel) return this.opts.channel(q, this.runDir(q.runtimeId));
    // Until the serial channel exists: a channel that never delivers a connection.
    return Promise.resolve({ listen: async () => undefined, close: async () => undefined });
  }

  async create(launch: QubeLaunch): Promise<void> {
    const id = launch.runtimeId;
    const dir = this.runDir(id);
    const who = `qube ${launch.name}`;
    const root = launch.volumes.root.image;
    const priv = launch.volumes.private.image;
    if (!root || !priv) throw new Error(`${who}: the hvm backend needs its volumes as images`);
    const hostMiB = hostMemMiB();
    if (hostMiB && launch.limits.memoryMiB > hostMiB) {
      throw new Error(`${who}: memory ${launch.limits.memoryMiB} MiB is more than the host has (${hostMiB} MiB)`);
    }
    const existing = await this.state(id);
    if (existing?.status === 'stopped') await this.destroy(id);
    else if (existing) throw new Error(`${who}: runtime ${id} is already ${existing.status}; stop and destroy it first`);
    try {
      fs.mkdirSync(this.opts.runRoot, { recursive: true, mode: 0o700 });
      fs.rmSync(dir, { recursive: true, force: true });
      fs.mkdirSync(dir, { mode: 0o700 });
      const accel = await this.opts.accel();
      const boot = await this.opts.bootFiles(launch, dir);
      const files = [['kernel', boot.kernel], ['initrd', boot.initrd], ...[...root.disks, ...priv.disks].map((d) => ['disk', d.file])];
      for (const [what, file] of files) {
        checkJailPath(file, `${who}: ${what}`);
        if (!fs.existsSync(file)) throw new Error(`${who}: ${what} ${file} does not exist`);
      }
      const desc: Described = {
        runtimeId: id, name: launch.name, machine: this.opts.machine, accel,
        memoryMiB: launch.limits.memoryMiB, vcpus: Math.max(1, launch.limits.vcpus),
        kernel: boot.kernel, initrd: boot.initrd, cmdline: boot.cmdline, tscKhz: hostTscKhz(),
        disks: [...root.disks, ...priv.disks].map((d) => ({ ...d, direct: supportsDirectIo(d.file) })),
        runDir: dir, uid: launch.ids.base, gid: launch.ids.base, logFile: launch.logFile,
        ...(launch.nic ? { nic: { mac: launch.nic.mac } } : {}),
      };
      fs.writeFileSync(path.join(dir, 'description.json'), JSON.stringify(desc, null, 2), { mode: 0o600 });
      fs.mkdirSync(path.dirname(launch.logFile), { recursive: true, mode: 0o700 });
    } catch (err) {
      fs.rmSync(dir, { recursive: true, force: true });
      const msg = (err as Error).message;
      throw new Error(msg.startsWith(who) ? msg : `${who}: ${msg}`);
    }
  }

  /** Whether the qube was created with a network card (its netvm then was not none). */
  hasNic(id: string): boolean {
    return this.described(id)?.nic !== undefined;
  }

  private described(id: string): Described | undefined {
    try {
      return JSON.parse(fs.readFileSync(path.join(this.runDir(id), 'description.json'), 'utf8')) as Described;
    } catch {
      return undefined;
    }
  }

  private started(id: string): Started | undefined {
    try {
      const s = JSON.parse(fs.readFileSync(path.join(this.runDir(id), 'started'), 'utf8')) as Started;
      return Number.isInteger(s.pid) && typeof s.startTime === 'string' ? s : undefined;
    } catch {
      return undefined;
    }
  }

  async start(id: string): Promise<RuntimeInfo> {
    const d = this.described(id);
    if (!d) throw new Error(`qube ${id}: start without create`);
    if (this.started(id)) throw new Error(`qube ${d.name}: already started`);
    const dir = this.runDir(id);
    const devices = ['/dev/null', '/dev/zero', '/dev/urandom', ...(d.accel === 'kvm' ? ['/dev/kvm'] : [])];
    const ro = [...systemBinds(this.qemu), d.kernel, d.initrd];
    const listen = listenSockets(dir);
    for (const f of listen) fs.rmSync(f, { force: true });
    const t0 = Date.now();
    let pid: number;
    try {
      pid = await startJailed(
        { uid: d.uid, gid: d.gid, stateDir: dir, ro, rw: [], devices, disks: d.disks, listen, ...(d.nic ? { tap: TAP_NAME } : {}), qemu: this.qemu, args: qemuArgs(d) },
        { jail: this.jail, logRelay: this.logRelay, logFile: d.logFile, logMaxBytes: GUEST_LOG_MAX_BYTES, logKeep: GUEST_LOG_KEEP, timeoutMs: 30_000 },
      );
    } catch (err) {
      throw new Error(`qube ${d.name}: ${(err as Error).message} (log: ${d.logFile})`);
    }
    const st = procStat(pid);
    const started: Started = { pid, startTime: st?.startTime ?? '' };
    fs.writeFileSync(path.join(dir, 'started'), JSON.stringify(started), { mode: 0o600 });
    try {
      await this.waitForQmp(id, d, started);
    } catch (err) {
      await this.destroy(id).catch(() => undefined);
      throw err;
    }
    this.opts.log?.(`qube ${d.name}: QEMU ${pid} ready for QMP after ${Date.now() - t0} ms`);
    return { id, status: 'running', pid, accel: d.accel };
  }

  private async waitForQmp(id: string, d: Described, s: Started): Promise<void> {
    const until = Date.now() + (this.opts.qmpReadyTimeoutMs ?? 15_000);
    for (;;) {
      if (!isAlive(s.pid, s.startTime)) {
        const exit = jailExit(this.runDir(id));
        const last = lastLogLine(d.logFile);
        throw new Error(`qube ${d.name}: ${exitReason(exit)} before QMP was ready${last ? `: ${last}` : ''} (log: ${d.logFile})`);
      }
      try {
        await this.connectQmp(id);
        return;
      } catch (err) {
        if (Date.now() > until) throw new Error(`qube ${d.name}: QMP not ready within ${this.opts.qmpReadyTimeoutMs ?? 15_000} ms: ${(err as Error).message}`);
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** The qube's one QMP connection (QEMU's chardev serves one client at a time), made on demand. */
  private connectQmp(id: string): Promise<QmpClient> {
    const have = this.qmp.get(id);
    if (have && !have.closed) return Promise.resolve(have);
    const pending = this.connecting.get(id);
    if (pending) return pending;
    const p = QmpClient.connect(qmpSocket(this.runDir(id)), { greetingTimeoutMs: 3_000 }).then((c) => {
      this.qmp.set(id, c);
      c.on('event', (e: { event: string; data: unknown }) => {
        if (e.event === 'SHUTDOWN') lastShutdown.set(c, String((e.data as { reason?: unknown })?.reason ?? 'unknown').slice(0, 40));
      });
      c.once('close', () => void this.onQmpClosed(id, c));
      return c;
    });
    this.connecting.set(id, p);
    return p.finally(() => this.connecting.delete(id));
  }

  private async onQmpClosed(id: string, c: QmpClient): Promise<void> {
    if (this.qmp.get(id) === c) this.qmp.delete(id);
    const s = this.started(id);
    if (!s || this.ending.has(id)) return;
    // The socket closes as QEMU's process ends; the supervisor records the status a moment later.
    if (!(await waitGone(s.pid, s.startTime, 2_000))) return;
    let exit: string | undefined;
    for (let i = 0; i < 50 && !(exit = jailExit(this.runDir(id))); i++) await new Promise((r) => setTimeout(r, 20));
    if (this.ending.has(id)) return;
    this.opts.onExit?.(id, exitReason(exit, lastShutdown.get(c)));
  }

  private async command(id: string, cmd: string, args?: Record<string, unknown>): Promise<unknown> {
    const d = this.described(id);
    const s = this.started(id);
    if (!d || !s || !isAlive(s.pid, s.startTime)) throw new Error(`qube ${d?.name ?? id}: QEMU is not running (cannot ${cmd})`);
    return (await this.connectQmp(id)).execute(cmd, args);
  }

  async signal(id: string, signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
    if (signal === 'SIGTERM') {
      // ACPI's power button reaches no one in the guest (no daemon listens for it there). On q35 the PS/2
      // keyboard's ctrl-alt-del does: the guest's init makes the kernel turn it into SIGINT to PID 1, the
      // agent, which shuts down as for SIGTERM (microvm has no keyboard: the power button only).
      if (this.described(id)?.machine === 'q35') {
        await this.command(id, 'send-key', { keys: ['ctrl', 'alt', 'delete'].map((k) => ({ type: 'qcode', data: k })) });
      }
      await this.command(id, 'system_powerdown');
      return;
    }
    const s = this.started(id);
    if (!s || !isAlive(s.pid, s.startTime)) return;
    try {
      await this.command(id, 'quit');
      if (await waitGone(s.pid, s.startTime, 2_000)) return;
    } catch {
      // QEMU does not answer: the kernel's SIGKILL does not need it to
    }
    killVerified(s.pid, s.startTime);
    await waitGone(s.pid, s.startTime, 5_000);
  }

  async deathReason(id: string): Promise<string | undefined> {
    // isolad asks as soon as the agent's port closes, which is as QEMU dies: the jail writes `exit` only
    // after it has reaped QEMU, a moment later. Without the wait a killed QEMU read as an unknown death.
    let exit = jailExit(this.runDir(id));
    const s = this.started(id);
    if (!exit && s && (await waitGone(s.pid, s.startTime, 2_000))) {
      for (let i = 0; i < 50 && !(exit = jailExit(this.runDir(id))); i++) await new Promise((r) => setTimeout(r, 20));
    }
    // Worded as the sandbox backend's deaths are (`runtime died: …`), so one pattern finds both in qvm-ls.
    return exit ? `runtime died: ${exitReason(exit)}` : undefined;
  }

  async pause(id: string): Promise<void> {
    await this.command(id, 'stop');
  }

  async unpause(id: string): Promise<void> {
    await this.command(id, 'cont');
  }

  async destroy(id: string): Promise<void> {
    const dir = this.runDir(id);
    this.ending.add(id);
    try {
      this.qmp.get(id)?.close();
      this.qmp.delete(id);
      const s = this.started(id);
      if (s) {
        killVerified(s.pid, s.startTime);
        if (!(await waitGone(s.pid, s.startTime, 5_000))) throw new Error(`qube ${id}: QEMU ${s.pid} survives SIGKILL`);
        // The jail's reaper writes `exit` as its last act once QEMU is gone: removing the dir under
        // it would race (ENOTEMPTY). A reaper that is gone too (killed with isolad's old run) never writes.
        for (let i = 0; i < 50 && !jailExit(dir); i++) await new Promise((r) => setTimeout(r, 20));
      }
      fs.rmSync(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 20 });
    } finally {
      this.ending.delete(id);
    }
  }

  async state(id: string): Promise<RuntimeInfo | undefined> {
    const d = this.described(id);
    if (!d) return undefined;
    const s = this.started(id);
    if (!s) return { id, status: 'created', pid: 0 };
    if (!isAlive(s.pid, s.startTime)) return { id, status: 'stopped', pid: 0 };
    try {
      const st = (await (await this.connectQmp(id)).execute('query-status', undefined, 3_000)) as { status?: unknown; running?: unknown };
      const status = st?.status === 'running' || st?.running === true ? 'running' : 'paused';
      return { id, status, pid: s.pid };
    } catch {
      // QMP unreachable (busy with another client, or a QEMU gone silent): the pid still says it runs
      return isAlive(s.pid, s.startTime) ? { id, status: 'running', pid: s.pid } : { id, status: 'stopped', pid: 0 };
    }
  }

  async list(): Promise<RuntimeInfo[]> {
    let names: string[];
    try {
      names = fs.readdirSync(this.opts.runRoot);
    } catch {
      return [];
    }
    const out: RuntimeInfo[] = [];
    for (const name of names.filter((n) => ID_RE.test(n) && !n.includes('..')).sort()) {
      const info = await this.state(name);
      if (info) out.push(info);
    }
    return out;
  }

  async pids(id: string): Promise<number[]> {
    const s = this.started(id);
    return s && isAlive(s.pid, s.startTime) ? [s.pid] : [];
  }
}

/** The reason of the last SHUTDOWN event each connection saw (guest-shutdown, host-qmp-quit, …). */
const lastShutdown = new WeakMap<QmpClient, string>();
