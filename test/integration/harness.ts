// A real isolad instance for integration tests: its own ISOLA_HOME and socket, the daemon as a
// child process (so tests can kill -9 it), the CLI run as a user would, and a cleanup that
// leaves no container, mount, cgroup or file behind.

import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, promises as fs } from 'node:fs';
import { isAlive } from '../../src/backends/vm/vm-proc';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { removeCgroupParent } from '../../src/backends/sandbox';
import { loadConfig, type DaemonConfig } from '../../src/daemon/config';
import { unmountAllUnder } from '../../src/storage/mounts';
import { removeUplink, uplinkNames, uplinkTables } from '../../src/net/uplink';

const execFileP = promisify(execFile);
export const REPO = path.resolve(__dirname, '../../..');
export const BIN = path.join(REPO, 'bin');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function canRunIntegration(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (real runc, mounts, namespaces)';
  if (!existsSync('/usr/sbin/runc') && !existsSync('/usr/bin/runc')) return 'runc is not installed';
  if (!existsSync(path.join(BIN, 'isolad'))) return 'run `npm run build` first';
  return undefined;
}

export class Instance {
  readonly home: string;
  readonly env: NodeJS.ProcessEnv;
  readonly config: DaemonConfig;
  private daemon?: ChildProcess;
  daemonLog = '';
  private readonly expectedBugs: RegExp[] = [];

  /** home: an existing directory to use as ISOLA_HOME (e.g. a small tmpfs); env: extra variables for isolad. */
  constructor(opts: { home?: string; env?: Record<string, string> } = {}) {
    this.home = opts.home ?? mkdtempSync(path.join(os.tmpdir(), 'isola-test-'));
    this.env = {
      ...process.env,
      ISOLA_HOME: this.home,
      ISOLA_SOCKET: path.join(this.home, 'isolad.sock'),
      ISOLA_CACHE: process.env.ISOLA_CACHE || '/var/cache/isola',
      ...opts.env,
    };
    this.config = loadConfig(this.env);
  }

  async start(): Promise<void> {
    const child = spawn(process.execPath, [path.join(BIN, 'isolad')], { env: this.env, stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr!.on('data', (d: Buffer) => (this.daemonLog += d.toString()));
    this.daemon = child;
    const until = Date.now() + 30_000;
    while (Date.now() < until) {
      if (child.exitCode !== null) throw new Error(`isolad exited: ${this.daemonLog}`);
      const r = await this.cli('qvm-ls', ['--raw-list']).catch(() => undefined);
      if (r && r.code === 0) return;
      await sleep(100);
    }
    throw new Error(`isolad did not answer within 30 s: ${this.daemonLog}`);
  }

  get daemonPid(): number {
    if (!this.daemon?.pid) throw new Error('isolad is not running');
    return this.daemon.pid;
  }

  /** A test that provokes a bug on purpose names it here; any other `BUG:` line fails destroy(). */
  allowBugs(pattern: RegExp): void {
    this.expectedBugs.push(pattern);
  }

  /** isolad logs every unhandled rejection and uncaught exception as `BUG: …`: in tests each one is a failure. */
  assertNoBugs(): void {
    const bugs = this.daemonLog.split('\n').filter((l) => l.includes('BUG:') && !this.expectedBugs.some((p) => p.test(l)));
    if (bugs.length) throw new Error(`isolad logged ${bugs.length} bug(s):\n${bugs.join('\n')}\n--- isolad log ---\n${this.daemonLog.slice(-20_000)}`);
  }

  /** Kills isolad with SIGKILL (qubes keep running) and waits for it to be gone. */
  kill9(): Promise<void> {
    return this.signalDaemon('SIGKILL');
  }

  stopDaemon(): Promise<void> {
    return this.signalDaemon('SIGTERM');
  }

  private async signalDaemon(signal: NodeJS.Signals): Promise<void> {
    const d = this.daemon;
    if (!d || d.exitCode !== null) return;
    const gone = new Promise((r) => d.once('exit', r));
    d.kill(signal);
    await gone;
  }

  /** The runc commands of this instance (its own --root). */
  runc(...args: string[]): string {
    return execFileSync('runc', ['--root', this.config.runcRoot, ...args]).toString();
  }

  /** Runtime containers of this instance, from runc itself. */
  containers(): { id: string; pid: number; status: string }[] {
    return JSON.parse(this.runc('list', '--format', 'json') || 'null') ?? [];
  }

  /** The runtime id of a qube (`NAME.QID`), as runc knows it. */
  runtimeId(vm: string): string {
    const c = this.containers().find((x) => x.id.startsWith(`${vm}.`));
    if (!c) throw new Error(`no runtime for ${vm}`);
    return c.id;
  }

  /** Runs a command from bin/ as a user would; never throws on a non-zero exit. */
  cli(cmd: string, args: string[], input?: string | Buffer): Promise<CliResult> {
    return new Promise((resolve, reject) => {
      const child = spawn(path.join(BIN, cmd), args, { env: this.env, stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
      child.stdin.end(input ?? '');
    });
  }

  /** Like cli() but fails the test on a non-zero exit. */
  async ok(cmd: string, ...args: string[]): Promise<string> {
    const r = await this.cli(cmd, args);
    if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return r.stdout;
  }

  async installTemplate(name = 'debian-12'): Promise<void> {
    await this.ok('qvm-template', 'install', name);
  }

  /** The usual start of a test file: a running isolad with debian-12 and these AppVMs (`[name, label]`). */
  static async withAppVMs(appvms: readonly (readonly [string, string])[], opts: ConstructorParameters<typeof Instance>[0] = {}): Promise<Instance> {
    const inst = new Instance(opts);
    await inst.start();
    await inst.installTemplate();
    for (const [name, label] of appvms) await inst.ok('qvm-create', '--label', label, name);
    return inst;
  }

  /** A copy of the state database, for "nothing changed" assertions. */
  async stateDump(): Promise<string> {
    return dumpWithNode(this.config.dbPath);
  }

  async killVms(): Promise<void> {
    await killInstanceVms(this.config.vmRoot);
  }

  async destroy(): Promise<void> {
    await this.stopDaemon().catch(() => undefined);
    const runc = ['--root', this.config.runcRoot];
    const list = await execFileP('runc', [...runc, 'list', '-q']).then((r) => r.stdout.split('\n').filter(Boolean), () => [] as string[]);
    for (const id of list) await execFileP('runc', [...runc, 'delete', '--force', id]).catch(() => undefined);
    await this.killVms();
    // The uplink of a sys-net that was running when isolad stopped stays on the host (as it should for a
    // user); a test's instance is gone for good, so are its host rules and veths.
    for (const table of await uplinkTables(this.config.instance).catch(() => [] as string[])) {
      const qid = Number(table.slice(`isola-${this.config.instance}-u`.length));
      await removeUplink(uplinkNames(this.config.instance, qid)).catch(() => undefined);
    }
    await unmountAllUnder(this.home).catch(() => undefined);
    // rm(1) and not fs.rm: a qube's names need not be UTF-8 and its paths can exceed PATH_MAX.
    await execFileP('rm', ['-rf', '--one-file-system', '--', this.home]).catch(() => undefined);
    await fs.rm(this.config.runcRoot, { recursive: true, force: true }).catch(() => undefined);
    try {
      removeCgroupParent(this.config.cgroupParent);
    } catch {
      // nothing left to remove
    }
    this.assertNoBugs();
  }
}

/** The hvm qubes' QEMUs of this instance keep running without isolad (as containers do): ended by their recorded pid. */
export async function killInstanceVms(vmRoot: string): Promise<void> {
  const ids = await fs.readdir(vmRoot).catch(() => [] as string[]);
  for (const id of ids) {
    try {
      const { pid, startTime } = JSON.parse(await fs.readFile(path.join(vmRoot, id, 'started'), 'utf8')) as { pid: number; startTime: string };
      if (isAlive(pid, startTime)) process.kill(pid, 'SIGKILL');
    } catch {
      // not started, or gone already
    }
  }
  await sleep(200);
  await fs.rm(vmRoot, { recursive: true, force: true }).catch(() => undefined);
}

async function dumpWithNode(dbPath: string): Promise<string> {
  const Database = (await import('better-sqlite3')).default;
  const db = new Database(dbPath, { readonly: true, fileMustExist: true });
  try {
    const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all() as { name: string }[];
    return tables.map((t) => `${t.name}: ${JSON.stringify(db.prepare(`SELECT * FROM "${t.name}" ORDER BY 1, 2`).all())}`).join('\n');
  } finally {
    db.close();
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
