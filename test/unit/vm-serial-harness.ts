// For the serial channel tests: a stand-in for QEMU's virtio-serial ports (a guest-side socket the bridge connects
// to, and the chardev server socket isolad connects to, spliced with backpressure), and the real C bridge.

import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Duplex } from 'node:stream';
import { SerialAgentChannel } from '../../src/backends/vm/serial-channel';
import type { ChannelEndpoint } from '../../src/core/backend';

/** dist/test/unit/ -> dist/qube/isola-vport-bridge */
export const BRIDGE_BINARY = path.resolve(__dirname, '../../qube/isola-vport-bridge');
export const haveBridge = existsSync(BRIDGE_BINARY);

function splice(from: net.Socket, to: () => net.Socket | null): void {
  from.on('data', (d: Buffer) => {
    const t = to();
    // Like a port without a reader on the other side: what is written meanwhile is lost.
    if (t && !t.destroyed && !t.write(d) && !from.isPaused()) {
      from.pause();
      const resume = () => (t.off('drain', resume), t.off('close', resume), from.resume());
      t.on('drain', resume);
      t.on('close', resume);
    }
  });
}

/**
 * One virtio-serial port: QEMU listens on hostPath (one host at a time); the guest's side is guestPath. When the host
 * hangs up, the guest's side is closed too: a real port reports POLLHUP, the stand-in an EOF.
 */
export class FakePort {
  guest: net.Socket | null = null;
  host: net.Socket | null = null;
  private readonly servers: net.Server[] = [];

  constructor(readonly guestPath: string, readonly hostPath: string) {}

  async start(): Promise<void> {
    const guestServer = net.createServer((s) => {
      this.guest?.destroy();
      this.guest = s;
      s.on('error', () => undefined);
      s.on('close', () => this.guest === s && (this.guest = null));
      splice(s, () => this.host);
    });
    const hostServer = net.createServer((s) => {
      if (this.host) return s.destroy(); // QEMU's chardev takes one client
      this.host = s;
      s.on('error', () => undefined);
      s.on('close', () => {
        if (this.host !== s) return;
        this.host = null;
        this.guest?.destroy();
      });
      splice(s, () => this.guest);
    });
    for (const [srv, p] of [[guestServer, this.guestPath], [hostServer, this.hostPath]] as const) {
      await new Promise<void>((r) => srv.listen(p, r));
      this.servers.push(srv);
    }
  }

  close(): void {
    this.guest?.destroy();
    this.host?.destroy();
    for (const s of this.servers) s.close();
  }
}

export interface Accepted {
  conn: Duplex;
  from: ChannelEndpoint;
}

/** The host's SerialAgentChannel, with the channels it accepted in order and a way to wait for the next. */
export class Host {
  readonly accepted: Accepted[] = [];
  readonly logs: string[] = [];
  channel: SerialAgentChannel;
  private waiters: (() => void)[] = [];

  constructor(agentSocket: string, clientSocket: string) {
    this.channel = new SerialAgentChannel({ agentSocket, clientSocket, label: 'qube work', log: (l) => this.logs.push(l) });
  }

  async listen(): Promise<void> {
    await this.channel.listen((conn, from) => {
      this.accepted.push({ conn, from });
      for (const w of this.waiters.splice(0)) w();
    });
  }

  next(index: number, ms = 5000): Promise<Accepted> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no channel #${index} accepted in ${ms} ms`)), ms);
      const check = () => {
        if (this.accepted.length > index) {
          clearTimeout(t);
          resolve(this.accepted[index]);
        } else this.waiters.push(check);
      };
      check();
    });
  }

  async waitUp(ms = 5000): Promise<void> {
    const end = Date.now() + ms;
    while (!this.channel.up) {
      if (Date.now() > end) throw new Error('serial streams not up in time');
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

/** Ports, bridge and host in one temp directory. */
export class Rig {
  readonly dir = mkdtempSync(path.join(os.tmpdir(), 'isola-vmser-'));
  readonly agentPort = new FakePort(path.join(this.dir, 'agent.guest'), path.join(this.dir, 'agent.qemu'));
  readonly clientPort = new FakePort(path.join(this.dir, 'client.guest'), path.join(this.dir, 'client.qemu'));
  readonly agentSock = path.join(this.dir, 'run/isola/agent.sock');
  readonly clientSock = path.join(this.dir, 'run/qubes/qrexec-client.sock');
  host = new Host(this.agentPort.hostPath, this.clientPort.hostPath);
  bridge: ChildProcess | null = null;
  bridgeLog: string[] = [];

  async start(opts: { bridge?: boolean } = {}): Promise<void> {
    await this.agentPort.start();
    await this.clientPort.start();
    await this.host.listen();
    if (opts.bridge !== false) await this.startBridge();
  }

  async startBridge(): Promise<void> {
    this.bridge = spawn(BRIDGE_BINARY, [
      '--agent-serial', this.agentPort.guestPath, '--agent-socket', this.agentSock,
      '--client-serial', this.clientPort.guestPath, '--client-socket', this.clientSock,
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.bridge.stderr!.on('data', (d: Buffer) => this.bridgeLog.push(...d.toString('latin1').trimEnd().split('\n')));
    await this.host.waitUp();
    // The bridge listens before it connects: up means its sockets exist.
  }

  /** A guest program connecting to the bridge's agent or client socket. */
  async guestConnect(endpoint: ChannelEndpoint): Promise<net.Socket> {
    const s = net.createConnection(endpoint === 'agent' ? this.agentSock : this.clientSock);
    await once(s, 'connect');
    return s;
  }

  /** The bridge's resident memory in KiB. */
  bridgeRssKiB(): number {
    const status = readFileSync(`/proc/${this.bridge!.pid}/status`, 'utf8');
    return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
  }

  /** isolad restarted: a new host channel connects to the same ports. */
  async restartHost(): Promise<void> {
    await this.host.channel.close();
    this.host = new Host(this.agentPort.hostPath, this.clientPort.hostPath);
    await this.host.listen();
  }

  async close(): Promise<void> {
    if (this.bridge && this.bridge.exitCode === null) {
      this.bridge.kill('SIGKILL');
      await once(this.bridge, 'exit');
    }
    await this.host.channel.close();
    this.agentPort.close();
    this.clientPort.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Everything s sends until its EOF; unlike `for await`, the stream is not destroyed at the end (our writes go on). */
export function readAll(s: Duplex): Promise<Buffer> {
  const parts: Buffer[] = [];
  return new Promise((resolve, reject) => {
    s.on('data', (c: Buffer) => parts.push(c));
    s.once('end', () => resolve(Buffer.concat(parts)));
    s.once('error', reject);
    s.once('close', () => resolve(Buffer.concat(parts)));
    s.resume();
  });
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
