// An in-process stand-in for isola-agent: connects to a qube's agent endpoint, speaks protocol v1
// (HELLO as control, a data connection per MSG_EXEC_CMDLINE, MSG_SHUTDOWN) and answers commands from
// a small script, so the daemon's side of the channel is exercised for real without a qube.

import { createConnection, type Socket } from 'node:net';
import { FramedSocket, type Frame } from '../../../src/qrexec/frame-reader';
import {
  DAEMON_TO_AGENT_CONTROL, DAEMON_TO_AGENT_DATA, EMPTY, HELLO_FLAG_CONTROL, HELLO_FLAG_DATA, MSG_DATA_CONNECT,
  MSG_DATA_EXIT_CODE, MSG_DATA_STDERR, MSG_DATA_STDIN, MSG_DATA_STDOUT, MSG_EXEC_CMDLINE, MSG_JUST_EXEC, MSG_PING,
  MSG_PONG, MSG_SHUTDOWN, encodeU32, parseCmdline, parseExecParams,
} from '../../../src/qrexec/protocol';

export interface CommandReply {
  stdout?: string | Buffer;
  stderr?: string;
  exit: number;
}

/** Answers one command; stdin() resolves with all the caller sent once it sent EOF. */
export type CommandScript = (command: string, ctx: { user: string; qube: string; stdin: () => Promise<Buffer> }) => Promise<CommandReply | 'hang'>;

/**
 * `echo X` → "X\n"; `exit N`; `sleep` (never answers); `QUBESRPC test.Echo+ SRC` → stdin back;
 * `QUBESRPC test.Source+ SRC` → "SRC\n"; anything else exits 127.
 */
export const defaultScript: CommandScript = async (command, { qube, stdin }) => {
  const echo = /^echo (.*)$/s.exec(command);
  if (echo) return { stdout: `${echo[1]}\n`, exit: 0 };
  const exit = /^exit (\d+)$/.exec(command);
  if (exit) return { exit: Number(exit[1]) };
  if (command === 'sleep') return 'hang';
  const rpc = /^QUBESRPC (\S+) (\S+)$/.exec(command);
  if (rpc && rpc[1] === 'test.Echo+') return { stdout: await stdin(), exit: 0 };
  if (rpc && rpc[1] === 'test.Source+') return { stdout: `${rpc[2]} -> ${qube}\n`, exit: 0 };
  return { stderr: `${command}: not found\n`, exit: 127 };
};

export interface FakeAgentOptions {
  qube: string;
  /** The agent endpoint of the qube's channel (a unix socket path). */
  socketPath: () => string | undefined;
  script: CommandScript;
  /** MSG_SHUTDOWN: the qube stops (unless the agent ignores it). */
  onShutdown: () => void;
  ignoreShutdown: () => boolean;
  /** Everything the agent did, for tests: `hello`, `exec echo X`, `shutdown`. */
  record: (what: string) => void;
}

const quiet = () => undefined;

export class FakeAgent {
  private control: FramedSocket | null = null;
  private readonly data = new Set<Socket>();
  private retry: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(private readonly o: FakeAgentOptions) {}

  /** Connects, and reconnects whenever the control connection drops (as the real agent does after an isolad restart). */
  run(): void {
    this.stopped = false;
    this.connect();
  }

  get connected(): boolean {
    return this.control !== null && !this.control.closed;
  }

  /** The agent process is gone: every connection closed, no reconnect. */
  stop(): void {
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
    this.retry = null;
    this.control?.socket.destroy();
    this.control = null;
    for (const s of this.data) s.destroy();
    this.data.clear();
  }

  /** Raw bytes on the control connection, as a compromised agent may send them. */
  sendRaw(bytes: Buffer): void {
    this.control?.socket.write(bytes);
  }

  private connect(): void {
    if (this.stopped) return;
    const path = this.o.socketPath();
    if (!path) return this.later();
    const sock = createConnection(path);
    const fs = new FramedSocket(sock, { label: `fake agent ${this.o.qube}`, log: quiet, accept: DAEMON_TO_AGENT_CONTROL, hello: { flags: HELLO_FLAG_CONTROL, ident: 'fake-agent/1' } });
    fs.onHello = () => {
      this.control = fs;
      this.o.record('hello');
    };
    fs.onFrame = (f) => this.onControl(fs, f);
    sock.on('error', () => undefined);
    sock.once('close', () => {
      if (this.control === fs) this.control = null;
      if (!this.stopped) this.later();
    });
  }

  private later(ms = 20): void {
    if (this.stopped || this.retry) return;
    this.retry = setTimeout(() => {
      this.retry = null;
      this.connect();
    }, ms);
  }

  private onControl(fs: FramedSocket, f: Frame): void {
    if (f.type === MSG_PING) fs.send(MSG_PONG, f.payload);
    else if (f.type === MSG_SHUTDOWN) {
      this.o.record('shutdown');
      if (this.o.ignoreShutdown()) return;
      this.o.onShutdown();
    } else if (f.type === MSG_EXEC_CMDLINE || f.type === MSG_JUST_EXEC) {
      const p = parseExecParams(f.payload);
      const { user, command } = parseCmdline(p.cmdline);
      this.o.record(`exec ${command}`);
      if (f.type === MSG_EXEC_CMDLINE) this.serve(p.connectPort, user, command);
    }
  }

  /** One command: its own data connection, named by the request id, then the script's reply. */
  private serve(requestId: number, user: string, command: string): void {
    const path = this.o.socketPath();
    if (!path) return;
    const sock = createConnection(path);
    this.data.add(sock);
    sock.on('error', () => undefined);
    sock.once('close', () => this.data.delete(sock));
    const fs = new FramedSocket(sock, { label: `fake agent ${this.o.qube} data`, log: quiet, accept: DAEMON_TO_AGENT_DATA, hello: { flags: HELLO_FLAG_DATA, ident: 'fake-agent/1' } });
    fs.send(MSG_DATA_CONNECT, encodeU32(requestId));
    const input: Buffer[] = [];
    let eof!: () => void;
    const ended = new Promise<void>((r) => (eof = r));
    fs.onFrame = (f) => {
      if (f.type !== MSG_DATA_STDIN) return;
      if (f.payload.length === 0) eof();
      else input.push(f.payload);
    };
    const stdin = async () => (await ended, Buffer.concat(input));
    void this.o.script(command, { user, qube: this.o.qube, stdin }).then((reply) => {
      if (reply === 'hang' || fs.closed) return;
      const out = typeof reply.stdout === 'string' ? Buffer.from(reply.stdout) : reply.stdout ?? EMPTY;
      fs.sendData(MSG_DATA_STDOUT, out);
      fs.send(MSG_DATA_STDOUT, EMPTY);
      if (reply.stderr) fs.sendData(MSG_DATA_STDERR, Buffer.from(reply.stderr));
      fs.send(MSG_DATA_EXIT_CODE, encodeU32(reply.exit));
      fs.end();
    });
  }
}
