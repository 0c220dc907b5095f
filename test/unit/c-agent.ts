// Runs the compiled isola-agent (dist/qube/isola-agent, as every qube gets it) as a plain process on a
// temp socket, with isolad's real AgentListener on the other end: for tests of what the agent does.

import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { AgentListener } from '../../src/qrexec';

/** dist/test/unit/ -> dist/qube/isola-agent */
export const AGENT_BINARY = process.env.ISOLA_AGENT_BINARY ?? path.resolve(__dirname, '../../qube/isola-agent');
export const haveAgent = existsSync(AGENT_BINARY);

export async function collect(r: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of r) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

export interface RunResult {
  code: number;
  out: string;
  err: string;
}

export class AgentUnderTest {
  readonly dir: string;
  readonly socketPath: string;
  readonly logs: string[] = [];
  listener!: AgentListener;
  child!: ChildProcess;

  constructor() {
    this.dir = mkdtempSync(path.join(os.tmpdir(), 'isola-cagent-'));
    chmodSync(this.dir, 0o755); // an agent started as another uid must reach the socket
    this.socketPath = path.join(this.dir, 'agent.sock');
  }

  async start(env: NodeJS.ProcessEnv = {}, spawnOpts: SpawnOptions = {}, listen = true): Promise<void> {
    if (listen) {
      this.listener = new AgentListener({ socketPath: this.socketPath, name: 'cagent', log: (l) => this.logs.push(l) });
      await this.listener.listen();
    }
    this.spawnAgent(env, spawnOpts);
    if (listen) await this.listener.waitForHello(5000);
  }

  spawnAgent(env: NodeJS.ProcessEnv = {}, spawnOpts: SpawnOptions = {}): void {
    this.child = spawn(AGENT_BINARY, [], {
      ...spawnOpts,
      env: { PATH: process.env.PATH, ISOLA_AGENT_SOCKET: this.socketPath, ISOLA_DEFAULT_USER: os.userInfo().username, ...env },
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    this.child.stderr!.on('data', (d: Buffer) => this.logs.push(...d.toString().trimEnd().split('\n')));
  }

  async run(user: string, command: string, input?: Buffer | string): Promise<RunResult> {
    const s = await this.listener.exec(user, command);
    s.stdin.end(input);
    const [out, err, code] = await Promise.all([collect(s.stdout), collect(s.stderr), s.exit]);
    return { code, out: out.toString(), err: err.toString() };
  }

  /** Resident memory of the agent in KiB (VmRSS). */
  rssKiB(): number {
    const status = readFileSync(`/proc/${this.child.pid}/status`, 'utf8');
    return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
  }

  async stop(): Promise<void> {
    this.child?.kill('SIGKILL');
    await this.listener?.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
