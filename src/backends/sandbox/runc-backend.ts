// The sandbox Backend: one OCI bundle per qube, driven through the runc (or crun) command line.
// Qubes run detached under a per-instance --root, so they outlive isolad and can be reconciled.

import { execFile, spawn } from 'child_process';
import { randomUUID } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import type { AgentChannel, Backend, QubeLaunch, RuntimeInfo, RuntimeStatus } from '../../core/backend';
import type { IdRange } from '../../core/volumes';
import { channelDirs, ensurePrivateHome, sandboxChannel } from './agent-sockets';
import { blockIdentityFiles } from './host-identity';
import { buildOciSpec, validateRuntimeSpec, type OciHostOptions } from './oci-spec';
import { qubeProcFiles } from './qube-proc-files';
import { probeOciRuntime } from './runtime-probe';
import { sandboxRuntimeSpec, type QubeRuntimeSpec } from './sandbox-spec';

export interface RuncBackendOptions {
  /** Runtime binary; probed (ISOLA_RUNTIME, then crun/runc by cgroup layout) when absent. */
  runtimePath?: string;
  /** runc --root: this isolad instance's runtime state directory. */
  stateRoot: string;
  /** Where <id>/config.json bundles are written. */
  bundleRoot: string;
  /** Where each qube's agent channel directories are made (`<uuid>/`, `<uuid>.qrexec/`). */
  agentRoot: string;
  /** Cgroup parent of this instance's qubes (e.g. `isola-<instance>`). */
  cgroupParent: string;
  log?: (line: string) => void;
  /** How long one runtime command may take before it is killed (ms). */
  commandTimeoutMs?: number;
  /** The console relay (isola-log-relay); ISOLA_LOG_RELAY or the build's dist/libexec when absent. */
  logRelayPath?: string;
  /** The createContainer hook giving each qube its own /proc/cmdline and boot_id (isola-proc-bind). */
  procBindHelper?: string;
}

/** A qube's console log: at most this many bytes per file, and this many rotated files kept. */
export const GUEST_LOG_MAX_BYTES = 1 << 20;
export const GUEST_LOG_KEEP = 2;

function defaultLogRelay(): string {
  return process.env.ISOLA_LOG_RELAY || path.resolve(__dirname, '../../../libexec/isola-log-relay');
}

/** Built by scripts/build.sh next to the other host helpers (dist/libexec). */
function defaultProcBindHelper(): string {
  return process.env.ISOLA_PROC_BIND_HELPER || path.resolve(__dirname, '../../../libexec/isola-proc-bind');
}

interface CmdResult {
  code: number;
  stdout: string;
  stderr: string;
}

const STATUSES: readonly RuntimeStatus[] = ['creating', 'created', 'running', 'paused', 'stopped'];
const NOT_FOUND_RE = /does not exist|not found|no such container/i;
const NOT_RUNNING_RE = /not running|already (stopped|exited)|process already finished|no such process/i;

/**
 * The cause runc reported, from its JSON log lines (--log-format json) or plain stderr. A "fatal"
 * line from nsexec names the root cause (the final "error" only says the child died), so it wins.
 */
export function runcErrorLine(output: string): string {
  const lines = output.split('\n').map((l) => l.trim()).filter(Boolean);
  let fatal: string | undefined;
  let error: string | undefined;
  for (const line of lines) {
    let level: string | undefined;
    let msg: string | undefined;
    try {
      const rec = JSON.parse(line) as { level?: string; msg?: string };
      level = rec?.level;
      msg = typeof rec?.msg === 'string' ? rec.msg : undefined;
    } catch {
      const m = /level=(\w+) msg="((?:[^"\\]|\\.)*)"/.exec(line);
      if (m) [level, msg] = [m[1], m[2].replace(/\\"/g, '"')];
      else [level, msg] = ['error', line];
    }
    if (msg === undefined) continue;
    msg = msg.replace(/^nsexec-\d\[\d+\]: /, '').replace(/^runc (run|create|start) failed: /, '');
    if (level === 'fatal') fatal ??= msg;
    else if (level === 'error') error = msg;
  }
  return fatal ?? error ?? '(no error message)';
}

/** Every directory above `dir` must be searchable by the qube's root, an unmapped host uid. */
function untraversable(dir: string, uidBase: number, uidCount: number): string | undefined {
  const mapped = (id: number): boolean => id >= uidBase && id < uidBase + uidCount;
  for (let p = path.dirname(path.resolve(dir)); ; p = path.dirname(p)) {
    const st = fs.statSync(p);
    if ((st.mode & 0o001) === 0 && !(mapped(st.uid) && mapped(st.gid))) {
      return `${p} (mode ${(st.mode & 0o777).toString(8)}, owner ${st.uid})`;
    }
    if (p === '/') return undefined;
  }
}

/** Checks runc would otherwise report obscurely ("can't get final child's PID from pipe"). */
function preflight(spec: QubeRuntimeSpec, procBindHelper: string): void {
  let st: fs.Stats;
  try {
    st = fs.statSync(spec.rootfs);
  } catch (err) {
    throw new Error(`qube ${spec.id}: rootfs ${spec.rootfs}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if (!st.isDirectory()) throw new Error(`qube ${spec.id}: rootfs ${spec.rootfs} is not a directory`);
  const blocked = untraversable(spec.rootfs, spec.uidBase, spec.uidCount);
  if (blocked) {
    throw new Error(`qube ${spec.id}: ${blocked} is not traversable by the qube's root (host uid ${spec.uidBase}): chmod o+x it`);
  }
  for (const m of spec.mounts) {
    if (!fs.existsSync(m.source)) throw new Error(`qube ${spec.id}: mount source ${m.source} (for ${m.destination}) does not exist`);
  }
  // The hook runs as the qube's root, inside its user namespace.
  if (!fs.existsSync(procBindHelper)) throw new Error(`qube ${spec.id}: helper ${procBindHelper} is missing: run scripts/build.sh`);
  const hidden = untraversable(procBindHelper, spec.uidBase, spec.uidCount);
  if (hidden) throw new Error(`qube ${spec.id}: ${hidden} is not traversable by the qube's root, which runs ${procBindHelper}: chmod o+x it`);
}

/** The runtime's own hard RLIMIT_NOFILE: runc cannot raise it for the qube without CAP_SYS_RESOURCE. */
function hardNofile(): number | undefined {
  try {
    const line = fs.readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
    const hard = line?.trim().split(/\s+/)[4];
    return hard === undefined || hard === 'unlimited' ? undefined : Number(hard);
  } catch {
    return undefined;
  }
}

/** cgroup v1 memory without memsw (swapaccount=0) would make runc fail on memory.swap. */
function swapLimitSupported(): boolean {
  if (!fs.existsSync('/sys/fs/cgroup/memory')) return true; // cgroup v2: runc/crun cope with missing swap
  return fs.existsSync('/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes');
}

export class RuncBackend implements Backend {
  readonly virtMode = 'sandbox' as const;
  readonly volumeForm = 'tree' as const;
  readonly runtimePath: string;
  private readonly stateRoot: string;
  private readonly bundleRoot: string;
  private readonly timeoutMs: number;
  private readonly logRelay: string;
  private readonly procBindHelper: string;
  private hostOptions?: OciHostOptions;
  /** Created and not yet started: the console log each one's relay writes. */
  private readonly created = new Map<string, string>();

  constructor(private readonly opts: RuncBackendOptions) {
    if (!path.isAbsolute(opts.stateRoot)) throw new Error(`runc state root ${opts.stateRoot} must be absolute`);
    if (!path.isAbsolute(opts.bundleRoot)) throw new Error(`bundle root ${opts.bundleRoot} must be absolute`);
    this.runtimePath = opts.runtimePath ?? probeOciRuntime().path;
    this.stateRoot = opts.stateRoot;
    this.bundleRoot = opts.bundleRoot;
    this.timeoutMs = opts.commandTimeoutMs ?? 60_000;
    this.logRelay = opts.logRelayPath ?? defaultLogRelay();
    this.procBindHelper = opts.procBindHelper ?? defaultProcBindHelper();
  }

  bundleDir(id: string): string {
    return path.join(this.bundleRoot, id);
  }

  /** Runs one runtime command to completion (stdio through pipes: these commands do not detach). */
  private run(args: string[]): Promise<CmdResult> {
    const argv = ['--root', this.stateRoot, '--log-format', 'json', ...args];
    return new Promise((resolve, reject) => {
      execFile(this.runtimePath, argv, { timeout: this.timeoutMs, maxBuffer: 16 << 20, encoding: 'utf8' }, (err, stdout, stderr) => {
        if (err && typeof err.code === 'string') {
          reject(new Error(`${this.runtimePath}: cannot run (${err.code}: ${err.message.split('\n')[0]})`));
          return;
        }
        if (err && err.killed) {
          reject(new Error(`${this.runtimePath} ${args.join(' ')}: timed out after ${this.timeoutMs} ms`));
          return;
        }
        resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr });
      });
    });
  }

  private fail(id: string, what: string, res: CmdResult): Error {
    return new Error(`qube ${id}: ${path.basename(this.runtimePath)} ${what} failed: ${runcErrorLine(res.stderr)}`);
  }

  channel(q: { runtimeId: string; uuid: string; ids: IdRange }): Promise<AgentChannel> {
    return sandboxChannel(this.opts.agentRoot, q.uuid, q.ids, this.opts.log ?? (() => undefined));
  }

  /** Writes the qube's bundle after the checks runc would otherwise report obscurely; runs nothing. */
  async create(launch: QubeLaunch): Promise<void> {
    const spec = sandboxRuntimeSpec(launch, channelDirs(this.opts.agentRoot, launch.uuid), this.opts.cgroupParent);
    validateRuntimeSpec(spec);
    await ensurePrivateHome(launch.volumes.private.tree!, launch.ids.base);
    preflight(spec, this.procBindHelper);
    this.hostOptions ??= { nofileHard: hardNofile(), swapLimit: swapLimitSupported() };
    // Per start: disks may have come since, and a VM gets a new boot id at each boot.
    const config = buildOciSpec(spec, {
      ...this.hostOptions,
      hostIdentityFiles: blockIdentityFiles(),
      procFiles: qubeProcFiles(this.procBindHelper, randomUUID()),
    });
    const existing = await this.state(spec.id);
    // A stopped leftover (qube crashed, isolad restarted) holds nothing; anything else is live.
    if (existing?.status === 'stopped') await this.destroy(spec.id);
    else if (existing) throw new Error(`qube ${spec.id}: already ${existing.status} in the runtime; stop and destroy it first`);

    const bundle = this.bundleDir(spec.id);
    const configFile = path.join(bundle, 'config.json');
    try {
      fs.mkdirSync(this.stateRoot, { recursive: true, mode: 0o700 });
      fs.rmSync(bundle, { recursive: true, force: true });
      fs.mkdirSync(bundle, { recursive: true, mode: 0o700 });
      fs.writeFileSync(`${configFile}.tmp`, JSON.stringify(config, null, 2), { mode: 0o600 });
      fs.renameSync(`${configFile}.tmp`, configFile);
      fs.mkdirSync(path.dirname(spec.logFile), { recursive: true, mode: 0o700 });
    } catch (err) {
      fs.rmSync(bundle, { recursive: true, force: true });
      throw new Error(`qube ${spec.id}: cannot prepare bundle ${bundle} or log ${spec.logFile}: ${(err as Error).message}`);
    }
    this.created.set(spec.id, spec.logFile);
  }

  async start(id: string): Promise<RuntimeInfo> {
    const logFile = this.created.get(id);
    if (!logFile) throw new Error(`qube ${id}: start without create`);
    this.created.delete(id);
    const bundle = this.bundleDir(id);
    const pidFile = path.join(bundle, 'pid');
    const runcLog = path.join(bundle, 'runtime.log');
    const spec = { id, logFile };

    // The detached qube inherits runc's stdio: the relay puts a pipe there (never a host file, which
    // the qube could truncate or flood), reads it with a size cap and exits with the qube. The relay
    // execs the runtime in its own process, so the exit status below is the runtime's.
    const argv = [spec.logFile, String(GUEST_LOG_MAX_BYTES), String(GUEST_LOG_KEEP), '--', this.runtimePath,
      '--root', this.stateRoot, '--log', runcLog, '--log-format', 'json',
      'run', '--detach', '--bundle', bundle, '--pid-file', pidFile, spec.id];
    let relayErr = '';
    const code = await new Promise<number | null>((resolve, reject) => {
      const child = spawn(this.logRelay, argv, { stdio: ['ignore', 'ignore', 'pipe'], cwd: bundle });
      const timer = setTimeout(() => child.kill('SIGKILL'), this.timeoutMs);
      child.stderr.setEncoding('utf8');
      child.stderr.on('data', (d: string) => (relayErr = (relayErr + d).slice(-4096)));
      child.once('error', (err) => {
        clearTimeout(timer);
        reject(new Error(`qube ${spec.id}: cannot run ${this.logRelay}: ${err.message}`));
      });
      // 'close', not 'exit': the relay's message on stderr must be read before it is used.
      child.once('close', (c, sig) => {
        clearTimeout(timer);
        resolve(sig ? null : c);
      });
    });

    if (code !== 0) {
      let msg = code === null ? `killed after ${this.timeoutMs} ms` : relayErr.trim().split('\n')[0] || '(no error message)';
      try {
        if (code !== null) msg = runcErrorLine(fs.readFileSync(runcLog, 'utf8'));
      } catch {
        // no runtime log: keep the generic message
      }
      await this.destroy(spec.id).catch(() => undefined);
      throw new Error(`qube ${spec.id}: ${path.basename(this.runtimePath)} run failed: ${msg} (log: ${spec.logFile})`);
    }
    let pid: number;
    try {
      pid = Number(fs.readFileSync(pidFile, 'utf8').trim());
    } catch (err) {
      throw new Error(`qube ${spec.id}: started but pid file ${pidFile} is unreadable: ${(err as Error).message}`);
    }
    return { id: spec.id, status: 'running', pid };
  }

  async signal(id: string, signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
    const res = await this.run(['kill', id, signal === 'SIGTERM' ? 'TERM' : 'KILL']);
    if (res.code === 0) return;
    const msg = runcErrorLine(res.stderr);
    if (NOT_RUNNING_RE.test(msg)) return;
    if (NOT_FOUND_RE.test(msg)) throw new Error(`qube ${id}: not known to the runtime (cannot send ${signal})`);
    throw this.fail(id, `kill ${signal}`, res);
  }

  /** The cgroup freezer: every process of the qube stops where it is, its memory kept. */
  async pause(id: string): Promise<void> {
    const res = await this.run(['pause', id]);
    if (res.code !== 0) throw this.fail(id, 'pause', res);
  }

  async unpause(id: string): Promise<void> {
    const res = await this.run(['resume', id]);
    if (res.code !== 0) throw this.fail(id, 'resume', res);
  }

  async destroy(id: string): Promise<void> {
    this.created.delete(id);
    const res = await this.run(['delete', '--force', id]);
    if (res.code !== 0 && !NOT_FOUND_RE.test(runcErrorLine(res.stderr))) throw this.fail(id, 'delete --force', res);
    try {
      fs.rmSync(this.bundleDir(id), { recursive: true, force: true });
    } catch (err) {
      throw new Error(`qube ${id}: cannot remove bundle ${this.bundleDir(id)}: ${(err as Error).message}`);
    }
  }

  async state(id: string): Promise<RuntimeInfo | undefined> {
    const res = await this.run(['state', id]);
    if (res.code !== 0) {
      if (NOT_FOUND_RE.test(runcErrorLine(res.stderr))) return undefined;
      throw this.fail(id, 'state', res);
    }
    return toInfo(parseJson(res.stdout, `qube ${id}: runtime state`) as RawState);
  }

  async list(): Promise<RuntimeInfo[]> {
    const res = await this.run(['list', '--format', 'json']);
    if (res.code !== 0) {
      throw new Error(`runtime list under ${this.stateRoot} failed: ${runcErrorLine(res.stderr)}`);
    }
    const raw = parseJson(res.stdout, `runtime list under ${this.stateRoot}`);
    return Array.isArray(raw) ? (raw as RawState[]).map(toInfo) : []; // runc prints null for none
  }

  async pids(id: string): Promise<number[]> {
    const res = await this.run(['ps', '--format', 'json', id]);
    if (res.code !== 0) {
      const msg = runcErrorLine(res.stderr);
      if (NOT_RUNNING_RE.test(msg)) return [];
      if (NOT_FOUND_RE.test(msg)) throw new Error(`qube ${id}: not known to the runtime (no pids)`);
      throw this.fail(id, 'ps', res);
    }
    const raw = parseJson(res.stdout, `qube ${id}: runtime ps`);
    return Array.isArray(raw) ? raw.map(Number).filter((n) => Number.isInteger(n) && n > 0) : [];
  }
}

interface RawState {
  id: string;
  pid?: number;
  status?: string;
}

function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text.trim() === '' ? 'null' : text);
  } catch (err) {
    throw new Error(`${what}: unparseable output (${(err as Error).message})`);
  }
}

function toInfo(raw: RawState): RuntimeInfo {
  const status = STATUSES.includes(raw.status as RuntimeStatus) ? (raw.status as RuntimeStatus) : 'stopped';
  return { id: raw.id, status, pid: status === 'stopped' ? 0 : Number(raw.pid ?? 0) };
}

/**
 * Removes this instance's cgroup parent from every hierarchy once its qubes are gone; the runtime
 * deletes each qube's own cgroup but never the parent. Non-empty or absent directories are left.
 */
export function removeCgroupParent(cgroupParent: string, cgroupRoot = '/sys/fs/cgroup'): void {
  const rel = cgroupParent.replace(/^\/+|\/+$/g, '');
  if (rel === '' || rel.split('/').includes('..')) throw new Error(`cgroup parent ${cgroupParent}: not a safe relative path`);
  const roots = [cgroupRoot, ...fs.readdirSync(cgroupRoot).map((d) => path.join(cgroupRoot, d))];
  for (const root of roots) {
    const segments = rel.split('/');
    for (let n = segments.length; n > 0; n--) {
      const dir = path.join(root, ...segments.slice(0, n));
      try {
        fs.rmdirSync(dir);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'ENOTDIR') continue;
        if (code === 'EBUSY' || code === 'ENOTEMPTY') break;
        throw new Error(`${dir}: cannot remove cgroup (${code})`);
      }
    }
  }
}
