// An hvm qube's agent channel: QEMU serves each virtio-serial port's chardev on a host unix socket, isolad connects
// to it and runs a Mux over it; each channel the guest opens is a connection. The port is the qube's identity.

import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { AgentChannel, ChannelEndpoint } from '../../core/backend';
import { LogBudget } from '../../core/log-budget';
import { Mux } from '../../qrexec/mux';

export interface SerialChannelOptions {
  /** QEMU's chardev server socket of the `org.isola.agent` port. */
  agentSocket: string;
  /** QEMU's chardev server socket of the `org.isola.client` port. */
  clientSocket: string;
  /** Names the qube in log lines (`qube work`). */
  label: string;
  log: (line: string) => void;
  /** How long to wait before connecting again (default 75 ms; QEMU not started yet, or restarted). */
  retryMs?: number;
}

interface Port {
  endpoint: ChannelEndpoint;
  path: string;
  socket: net.Socket | null;
  mux: Mux | null;
  timer: NodeJS.Timeout | null;
  /** Whether the last attempt connected: we log once per change, not per attempt. */
  wasConnected: boolean | null;
}

export class SerialAgentChannel implements AgentChannel {
  private readonly ports: Port[];
  private closed = false;
  private accept: ((conn: Duplex, from: ChannelEndpoint) => void) | null = null;
  // What the guest makes the mux say (bad frames, floods) is the qube's to pay for: a burst, then 2 a second.
  private readonly budget = new LogBudget();

  constructor(private readonly opts: SerialChannelOptions) {
    this.ports = [
      { endpoint: 'agent', path: opts.agentSocket, socket: null, mux: null, timer: null, wasConnected: null },
      { endpoint: 'client', path: opts.clientSocket, socket: null, mux: null, timer: null, wasConnected: null },
    ];
  }

  /** Channels open now over both ports (for tests and accounting). */
  get channelCount(): number {
    return this.ports.reduce((n, p) => n + (p.mux?.channelCount ?? 0), 0);
  }

  /** Whether both ports' streams are up (their RESETs confirmed). */
  get up(): boolean {
    return this.ports.every((p) => p.mux?.up === true);
  }

  /** Resolves at once: QEMU may not run yet; the ports are connected (and reconnected) in the background. */
  async listen(accept: (conn: Duplex, from: ChannelEndpoint) => void): Promise<void> {
    if (this.accept) throw new Error(`${this.opts.label}: serial channel listens already`);
    this.accept = accept;
    for (const p of this.ports) this.connect(p);
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const p of this.ports) {
      if (p.timer) clearTimeout(p.timer);
      p.timer = null;
      p.mux?.close();
      p.mux = null;
      p.socket?.destroy();
      p.socket = null;
    }
  }

  private logLine(kind: string, line: string): void {
    const { write, suppressed } = this.budget.admit(this.opts.label, kind, Date.now());
    if (suppressed > 0) this.opts.log(`… ${suppressed} similar lines from ${this.opts.label} suppressed (${kind})`);
    if (write) this.opts.log(line);
  }

  private connect(p: Port): void {
    if (this.closed) return;
    const s = net.createConnection(p.path);
    p.socket = s;
    let connected = false;
    s.once('connect', () => {
      connected = true;
      if (p.wasConnected !== true) this.opts.log(`${this.opts.label}: serial ${p.endpoint}: connected to ${p.path}`);
      p.wasConnected = true;
      const mux = new Mux(s, {
        role: 'accept',
        label: `${this.opts.label}: serial ${p.endpoint}`,
        // Resets get their own budget: a flood of refused OPENs must not hide that the stream was reset.
        log: (line) => this.logLine(`serial ${p.endpoint}${/stream reset/.test(line) ? ' reset' : ''}`, line),
      });
      p.mux = mux;
      // The port the channel came through is who it is: nothing the guest sends in it can change that.
      mux.on('channel', (c) => this.accept?.(c, p.endpoint));
    });
    s.on('error', (err: NodeJS.ErrnoException) => {
      if (!connected && p.wasConnected !== false) this.opts.log(`${this.opts.label}: serial ${p.endpoint}: ${p.path}: ${err.code ?? err.message}; retrying`);
      if (!connected) p.wasConnected = false;
    });
    s.once('close', () => {
      if (p.socket !== s) return;
      p.socket = null;
      p.mux?.close();
      p.mux = null;
      if (connected) this.opts.log(`${this.opts.label}: serial ${p.endpoint}: ${p.path} closed (QEMU stopped?); reconnecting`);
      if (connected) p.wasConnected = null;
      if (this.closed) return;
      p.timer = setTimeout(() => {
        p.timer = null;
        this.connect(p);
      }, this.opts.retryMs ?? 75);
      p.timer.unref();
    });
  }
}
