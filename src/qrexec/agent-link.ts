// isolad's end of one qube's agent channel: listens on <qube dir>/agent.sock, where the socket that accepted a
// connection is the qube's identity (never a message field); tracks the agent's control connection, runs execs.

import { EventEmitter } from 'events';
import type { Duplex } from 'stream';
import { randomBytes } from 'crypto';
import type { AgentChannel } from '../core/backend';
import { QubesError } from '../core/errors';
import { UnixSocketChannel, type UnixEndpoint } from './unix-channel';
import { FramedSocket, type Frame } from './frame-reader';
import { ExecSession } from './client';
import { finishConnection } from './connection-end';
import { LogBudget, suppressedLine } from '../core/log-budget';
import {
  AGENT_TO_DAEMON_BIND, AGENT_TO_DAEMON_CONTROL, AGENT_TO_DAEMON_DATA, CLIENT_TO_DAEMON_CALL, HELLO_FLAG_CLIENT, HELLO_FLAG_CONTROL, HELLO_FLAG_DATA,
  MAX_PAYLOAD, MSG_EXEC_CMDLINE, MSG_JUST_EXEC, MSG_PING, MSG_PONG, MSG_SERVICE_REFUSED, MSG_SHUTDOWN,
  MSG_TRIGGER_SERVICE3, NOTHING, encodeExecParams, encodeServiceParams, encodeU32, isValidUserName,
  parseTriggerService3, parseU32, type Hello, type TriggerService3,
} from './protocol';

export { ExecSession };

export interface AgentListenerOptions {
  /** The qube's channel, as its backend made it; or, for a plain unix socket pair, socketPath and clientSocketPath. */
  channel?: AgentChannel;
  socketPath?: string;
  /**
   * Where the qube's own programs (qrexec-client-vm, qvm-copy) call services: this socket takes client
   * connections only, so no user of the qube can speak for its agent; the qube is the same as socketPath's.
   */
  clientSocketPath?: string;
  /** Qube name, for log lines and error messages. */
  name?: string;
  /** How long exec() waits for the agent's data connection (default 10 s). */
  dataConnectTimeoutMs?: number;
  /** How long a new connection may take to say HELLO and, for data, MSG_DATA_CONNECT (default 5 s). */
  helloTimeoutMs?: number;
  /** Cap on simultaneous connections on the agent socket, so a hostile qube cannot exhaust isolad's descriptors (default 512). */
  maxConnections?: number;
  /**
   * Cap on simultaneous calls on the client socket (default 400: the router's 64 running and 256 waiting, and
   * some being refused). Separate from maxConnections, so that callers never crowd out the agent's own
   * connections (qvm-run into the qube, services it runs).
   */
  maxClientConnections?: number;
  /** Bytes this qube may make isolad hold across all its connections; over it, its newest connection is dropped (default 32 MiB). */
  maxBufferedBytes?: number;
  /** Replaces `DEFAULT` in exec() on this side, so a changed default_user applies without restarting the qube. */
  defaultUser?: string | (() => string);
  log?: (line: string) => void;
}

export interface ExecOptions {
  /** MSG_JUST_EXEC: stdio to /dev/null, nothing waited for; the session's exit resolves 0 once sent. */
  justExec?: boolean;
  timeoutMs?: number;
}

/** Events: 'hello' (Hello), 'disconnect' (reason: string), 'trigger-service' (TriggerService3, untrusted). */
export declare interface AgentListener {
  on(event: 'hello', cb: (hello: Hello) => void): this;
  on(event: 'disconnect', cb: (reason: string) => void): this;
  on(event: 'trigger-service', cb: (untrustedRequest: TriggerService3) => void): this;
  on(event: 'service-call', cb: (untrustedRequest: TriggerService3, conn: FramedSocket) => void): this;
}

interface Pending {
  resolve: (s: ExecSession) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
  via: FramedSocket;
}

export class AgentListener extends EventEmitter {
  private readonly channel: AgentChannel;
  private control: FramedSocket | null = null;
  private lastHello: Hello | null = null;
  private readonly pending = new Map<number, Pending>();
  /** Every connection, oldest first (so the newest is the one dropped when the qube holds too much). */
  private readonly conns = new Set<FramedSocket>();
  private clientConns = 0;
  /** Lines a connection can cause (protocol errors, drops) are rate-limited: the qube chooses how many. */
  private readonly budget = new LogBudget();
  private budgetTimer: NodeJS.Timeout | null = null;
  private readonly pings = new Map<string, () => void>();
  private readonly helloWaits = new Set<() => void>();
  private closing = false;
  private readonly label: string;
  private readonly log: (line: string) => void;

  constructor(private readonly opts: AgentListenerOptions) {
    super();
    this.label = opts.name ? `qube ${opts.name}` : opts.socketPath ?? 'agent channel';
    this.log = opts.log ?? ((line) => process.stderr.write(`isolad: ${line}\n`));
    this.channel = opts.channel ?? unixChannel(opts, this.log);
  }

  get connected(): boolean {
    return this.control !== null;
  }

  /** The current control connection's HELLO (agent version info), or null. */
  get hello(): Hello | null {
    return this.control ? this.lastHello : null;
  }

  async listen(): Promise<void> {
    // Also counts bytes held by paused connections, which no 'data' event reports.
    this.budgetTimer ??= setInterval(() => (this.flushBudget(), this.checkMemory()), 1000);
    this.budgetTimer.unref();
    await this.channel.listen((conn, from) => this.accept(conn, from === 'client'));
  }

  waitForHello(timeoutMs: number): Promise<Hello> {
    if (this.hello) return Promise.resolve(this.hello);
    return new Promise((resolve, reject) => {
      // Settled by close() too: a start that failed must not leave a timer (and this listener) for qrexec_timeout.
      const closed = () => (cancel(), reject(new QubesError('QubesVMError', `${this.label}: agent listener closed before the agent connected`)));
      const cancel = () => (clearTimeout(t), this.off('hello', onHello), this.helloWaits.delete(closed));
      const t = setTimeout(() => (cancel(), reject(new QubesError('QubesVMError', `${this.label}: agent did not connect within ${timeoutMs} ms`))), timeoutMs);
      const onHello = (h: Hello) => (cancel(), resolve(h));
      this.once('hello', onHello);
      this.helloWaits.add(closed);
    });
  }

  async exec(user: string, command: string, opts: ExecOptions = {}): Promise<ExecSession> {
    const def = this.opts.defaultUser;
    if (user === 'DEFAULT' && def) user = typeof def === 'function' ? def() : def;
    if (!isValidUserName(user)) throw new QubesError('QubesValueError', `invalid user name '${user}'`);
    if (command.length === 0 || command.includes('\0')) throw new QubesError('QubesValueError', 'command is empty or contains a NUL byte');
    const control = this.control;
    if (!control) throw new QubesError('QubesVMNotRunningError', `${this.label}: agent is not connected`);
    const id = this.newRequestId();
    const payload = encodeExecParams({ connectDomain: 0, connectPort: id, cmdline: `${user}:${command}` });
    if (payload.length > MAX_PAYLOAD) throw new QubesError('QubesValueError', `command is too long (max ${MAX_PAYLOAD - 10} bytes)`);
    if (opts.justExec) {
      control.send(MSG_JUST_EXEC, payload);
      return new ExecSession(id, null, this.log, this.label);
    }
    const ms = opts.timeoutMs ?? this.opts.dataConnectTimeoutMs ?? 10_000;
    return new Promise<ExecSession>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new QubesError('QubesVMError', `${this.label}: agent did not start request ${id} within ${ms} ms`));
      }, ms);
      this.pending.set(id, { resolve, reject, timer, via: control });
      control.send(MSG_EXEC_CMDLINE, payload);
    });
  }

  /** Round trip to the agent in ms: proves the agent's event loop, not just its socket, is alive. */
  ping(timeoutMs = 2000): Promise<number> {
    const control = this.control;
    if (!control) return Promise.reject(new QubesError('QubesVMNotRunningError', `${this.label}: agent is not connected`));
    const nonce = randomBytes(8);
    const start = process.hrtime.bigint();
    return new Promise((resolve, reject) => {
      const key = nonce.toString('hex');
      const t = setTimeout(() => (this.pings.delete(key), reject(new QubesError('QubesVMError', `${this.label}: agent did not answer PING`))), timeoutMs);
      this.pings.set(key, () => (clearTimeout(t), resolve(Number(process.hrtime.bigint() - start) / 1e6)));
      control.send(MSG_PING, nonce);
    });
  }

  /** Asks the agent to stop the qube; resolves when its control connection closes (the agent exited). */
  shutdown(timeoutSec: number): Promise<void> {
    const control = this.control;
    if (!control) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const guard = setTimeout(
        () => reject(new QubesError('QubesVMShutdownTimeoutError', `${this.label}: agent still connected ${timeoutSec + 5}s after MSG_SHUTDOWN`)),
        (timeoutSec + 5) * 1000,
      );
      control.socket.once('close', () => (clearTimeout(guard), resolve()));
      control.send(MSG_SHUTDOWN, encodeU32(timeoutSec));
    });
  }

  /** Stops listening and drops every connection (no 'disconnect': that event means the qube's agent went away). */
  async close(): Promise<void> {
    this.closing = true;
    if (this.budgetTimer) clearInterval(this.budgetTimer);
    this.flushBudget();
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new QubesError('QubesVMError', `${this.label}: agent listener closed`));
    }
    this.pending.clear();
    for (const w of [...this.helloWaits]) w();
    this.control = null;
    for (const fs of this.conns) fs.close();
    await this.channel.close();
  }

  private newRequestId(): number {
    // Random rather than sequential: a data connection must know the id, not guess the next one.
    for (;;) {
      const id = randomBytes(4).readUInt32LE(0);
      if (id !== 0 && !this.pending.has(id)) return id;
    }
  }

  /** Bytes this qube makes isolad hold now: unparsed frames, unread socket buffers, output not yet sent. */
  bufferedBytes(): number {
    let n = 0;
    for (const fs of this.conns) n += fs.reader.buffered + fs.socket.readableLength + fs.socket.writableLength;
    return n;
  }

  /** Connections open now (agent and client sockets together). */
  get connectionCount(): number {
    return this.conns.size;
  }

  private accept(sock: Duplex, clientsOnly: boolean): void {
    const agentConns = this.conns.size - this.clientConns;
    const full = clientsOnly ? this.clientConns >= (this.opts.maxClientConnections ?? 400) : agentConns >= (this.opts.maxConnections ?? 512);
    if (this.closing || full) {
      if (full) this.limitedLog('connection cap', `${this.label}: too many ${clientsOnly ? 'qrexec calls' : 'agent connections'} open; a new one is refused`);
      sock.destroy();
      return;
    }
    const fs = new FramedSocket(sock, {
      label: `${this.label}: ${clientsOnly ? 'qrexec call' : 'agent connection'}`, log: (l) => this.limitedLog('connection', l), accept: NOTHING,
      hello: { flags: 0, ident: 'isolad', timeoutMs: this.opts.helloTimeoutMs ?? 5000 },
    });
    this.conns.add(fs);
    if (clientsOnly) this.clientConns++;
    sock.once('close', () => {
      this.conns.delete(fs);
      if (clientsOnly) this.clientConns--;
    });
    sock.on('data', () => this.checkMemory());
    fs.onHello = (h) => {
      const role = h.flags & (HELLO_FLAG_CONTROL | HELLO_FLAG_DATA | HELLO_FLAG_CLIENT);
      if (clientsOnly && role !== HELLO_FLAG_CLIENT) fs.close(`HELLO flags 0x${h.flags.toString(16)} on the client socket (qrexec calls only)`);
      else if (role === HELLO_FLAG_CONTROL) this.adoptControl(fs, h);
      else if (role === HELLO_FLAG_DATA) this.awaitBind(fs);
      else if (role === HELLO_FLAG_CLIENT) this.awaitCall(fs);
      else fs.close(`HELLO flags 0x${h.flags.toString(16)} name no single role`);
    };
  }

  /** Over the qube's byte budget: drop its newest connections (never the agent's control) until under it. */
  private checkMemory(): void {
    const cap = this.opts.maxBufferedBytes ?? 32 * 1024 * 1024;
    let total = this.bufferedBytes();
    if (total <= cap) return;
    for (const fs of [...this.conns].reverse()) {
      if (total <= cap) break;
      if (fs === this.control || fs.closed) continue;
      total -= fs.reader.buffered + fs.socket.readableLength + fs.socket.writableLength;
      fs.close(`the qube holds more than ${cap} bytes in isolad; its newest connection is dropped`);
    }
  }

  private limitedLog(kind: string, line: string): void {
    const { write, suppressed } = this.budget.admit(this.opts.name ?? this.label, kind, Date.now());
    if (!write) return;
    if (suppressed) this.log(suppressedLine({ qube: this.opts.name ?? this.label, kind, count: suppressed }));
    this.log(line);
  }

  private flushBudget(): void {
    for (const s of this.budget.drain(Date.now())) this.log(suppressedLine(s));
  }

  private adoptControl(fs: FramedSocket, hello: Hello): void {
    const old = this.control;
    this.control = fs;
    this.lastHello = hello;
    // A restarted agent reconnects before we notice the old connection died: the newest one is the agent.
    if (old) old.close('replaced by a newer control connection');
    fs.allow(AGENT_TO_DAEMON_CONTROL);
    fs.onFrame = (f) => this.onControlFrame(fs, f);
    fs.onClose = (reason) => {
      for (const [id, p] of this.pending) {
        if (p.via !== fs) continue;
        clearTimeout(p.timer);
        this.pending.delete(id);
        p.reject(new QubesError('QubesVMNotRunningError', `${this.label}: agent disconnected before starting request ${id}`));
      }
      if (this.control !== fs) return;
      this.control = null;
      if (!this.closing) this.emit('disconnect', reason ?? 'closed by the agent');
    };
    this.emit('hello', hello);
  }

  private onControlFrame(fs: FramedSocket, f: Frame): void {
    if (f.type === MSG_PING) {
      if (!fs.send(MSG_PONG, f.payload)) {
        fs.pause(); // an agent that pings without reading our answers must not grow our write buffer
        fs.onceDrain(() => fs.resume());
      }
    } else if (f.type === MSG_PONG) {
      this.pings.get(f.payload.toString('hex'))?.();
      this.pings.delete(f.payload.toString('hex'));
    } else if (f.type === MSG_TRIGGER_SERVICE3) {
      const untrusted = parseTriggerService3(f.payload);
      if (this.listenerCount('trigger-service') > 0) this.emit('trigger-service', untrusted);
      else fs.send(MSG_SERVICE_REFUSED, encodeServiceParams(untrusted.requestId));
    }
    // MSG_CONNECTION_TERMINATED: nothing to free on a unix socket; accepted for Qubes compatibility.
  }

  /** A service call from inside the qube: one MSG_TRIGGER_SERVICE3, then the router decides. */
  private awaitCall(fs: FramedSocket): void {
    fs.allow(CLIENT_TO_DAEMON_CALL);
    const timer = setTimeout(() => fs.close('no MSG_TRIGGER_SERVICE3 in time'), this.opts.helloTimeoutMs ?? 5000);
    fs.socket.once('close', () => clearTimeout(timer));
    fs.onFrame = (f) => {
      clearTimeout(timer);
      // Still read, but nothing is allowed until the router has decided (an honest caller waits for
      // MSG_SERVICE_CONNECT): a frame now drops the call, and a caller that leaves is noticed at once —
      // a paused socket would hold its bytes in the kernel and never see its close.
      fs.allow(NOTHING);
      const untrusted = parseTriggerService3(f.payload);
      if (this.listenerCount('service-call') > 0) this.emit('service-call', untrusted, fs);
      else {
        fs.send(MSG_SERVICE_REFUSED, encodeServiceParams(untrusted.requestId));
        finishConnection(fs);
      }
    };
  }

  private awaitBind(fs: FramedSocket): void {
    fs.allow(AGENT_TO_DAEMON_BIND);
    const timer = setTimeout(() => fs.close('no MSG_DATA_CONNECT in time'), this.opts.helloTimeoutMs ?? 5000);
    fs.socket.once('close', () => clearTimeout(timer));
    fs.onFrame = (f) => {
      clearTimeout(timer);
      const id = parseU32(f.payload, 'MSG_DATA_CONNECT');
      const req = this.pending.get(id);
      if (!req) return fs.close(`MSG_DATA_CONNECT for unknown request ${id}`);
      this.pending.delete(id);
      clearTimeout(req.timer);
      fs.allow(AGENT_TO_DAEMON_DATA);
      fs.pause(); // until the caller picks streams or raw(): no output may be consumed before then
      req.resolve(new ExecSession(id, fs, this.log, this.label));
    };
  }
}

function unixChannel(opts: AgentListenerOptions, log: (line: string) => void): AgentChannel {
  if (!opts.socketPath) throw new Error('AgentListener needs a channel or a socketPath');
  const ends: UnixEndpoint[] = [{ path: opts.socketPath, endpoint: 'agent' }];
  if (opts.clientSocketPath) ends.push({ path: opts.clientSocketPath, endpoint: 'client' as const });
  return new UnixSocketChannel(ends, (line) => log(`agent socket: ${line}`));
}
