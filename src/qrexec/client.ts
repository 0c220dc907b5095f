// The ends of a DATA-frame stream outside the agent: the CLI's pump between its stdio and a socket (runDataSession,
// for qvm-run), isolad's splice of a CLI client onto an agent data connection (pipeFrames), and ExecSession.

import type { Socket } from 'net';
import { Readable, Writable, type Duplex } from 'stream';
import { FramedSocket, type ChunkedFrame } from './frame-reader';
import {
  AFTER_STDOUT_EOF, AGENT_TO_DAEMON_DATA, DAEMON_TO_AGENT_DATA, EMPTY, MSG_DATA_EXIT_CODE, MSG_DATA_STDERR,
  MSG_DATA_STDIN, MSG_DATA_STDOUT, NOTHING, ProtocolError, encodeU32, parseExitCode,
} from './protocol';

/** Qubes' exit code for "qrexec itself failed", used when a stream ends without an exit code. */
export const EXIT_QREXEC_PROBLEM = 125;

export interface DataSessionIO {
  /** null: the command gets EOF at once (qvm-run without --pass-io). */
  stdin: Readable | null;
  stdout: Writable;
  stderr: Writable;
}

const stderrLog = (line: string) => process.stderr.write(line + '\n');

function whenFlushed(w: Writable): Promise<void> {
  return w.writableNeedDrain ? new Promise((r) => w.once('drain', () => r())) : Promise.resolve();
}

/**
 * Pumps io.stdin into STDIN frames and STDOUT/STDERR frames into io.stdout/io.stderr over a socket that
 * already carries DATA frames; resolves with the command's exit code once its output is flushed.
 * Rejects with a ProtocolError if the stream breaks before the exit code.
 */
export function runDataSession(
  socket: Socket,
  io: DataSessionIO = { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr },
  opts: { head?: Buffer; log?: (line: string) => void } = {},
): Promise<number> {
  const fs = new FramedSocket(socket, { label: 'qrexec data', log: opts.log ?? stderrLog, accept: AGENT_TO_DAEMON_DATA, head: opts.head });
  const stdin = io.stdin;
  const onStdin = (chunk: Buffer | string) => {
    if (!fs.sendData(MSG_DATA_STDIN, Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk))) {
      stdin!.pause();
      fs.onceDrain(() => stdin!.resume());
    }
  };
  const onStdinEnd = () => fs.send(MSG_DATA_STDIN, EMPTY);
  const detachStdin = () => {
    if (!stdin) return;
    stdin.off('data', onStdin).off('end', onStdinEnd).off('error', onStdinEnd);
    stdin.pause();
  };
  if (stdin) stdin.on('data', onStdin).once('end', onStdinEnd).once('error', onStdinEnd);
  else onStdinEnd();

  return new Promise<number>((resolve, reject) => {
    let exitCode: number | null = null;
    const write = (w: Writable, f: ChunkedFrame) => {
      let ok = true;
      for (const p of f.parts) ok = w.write(p);
      if (!ok) {
        fs.pause();
        w.once('drain', () => fs.resume());
      }
    };
    fs.onFrame = (f: ChunkedFrame) => {
      if (f.type === MSG_DATA_STDOUT) {
        if (f.length === 0) fs.allow(AFTER_STDOUT_EOF);
        else write(io.stdout, f);
      } else if (f.type === MSG_DATA_STDERR) {
        if (f.length > 0) write(io.stderr, f);
      } else {
        exitCode = parseExitCode(f.payload);
        fs.allow(NOTHING);
        detachStdin();
        fs.end();
        void Promise.all([whenFlushed(io.stdout), whenFlushed(io.stderr)]).then(() => resolve(exitCode!));
      }
    };
    fs.onClose = (reason) => {
      if (exitCode !== null) return;
      detachStdin();
      reject(new ProtocolError(`data stream closed before the exit code${reason ? ` (${reason})` : ''}`));
    };
  });
}

export interface PipeFramesOptions {
  /** The client connection is already framed (a qrexec client in a qube): reuse it rather than re-parse. */
  clientFramed?: FramedSocket;
  /** Bytes of the client stream already read by whoever handed the socket over. */
  clientHead?: Buffer;
  label?: string;
  log?: (line: string) => void;
  /** End the client socket after forwarding the exit code (default true). */
  endClient?: boolean;
}

/**
 * Splices a CLI client's socket onto an agent data connection, frame by frame. Each direction is parsed and
 * checked against what that side may send, so an agent cannot inject anything but its process output into the
 * client, nor a client anything but input. Resolves with the exit code; 125 if either side broke off first.
 */
export function pipeFrames(client: Duplex, data: FramedSocket, opts: PipeFramesOptions = {}): Promise<number> {
  const log = opts.log ?? stderrLog;
  const label = opts.label ?? data.label;
  const cfs = opts.clientFramed ?? new FramedSocket(client, { label: `${label} client`, log, accept: DAEMON_TO_AGENT_DATA, head: opts.clientHead });
  if (opts.clientFramed) cfs.allow(DAEMON_TO_AGENT_DATA);
  // Frames forwarded in one turn of the event loop leave in one writev.
  const batch = (to: FramedSocket) => {
    if (to.socket.writableCorked) return;
    to.socket.cork();
    process.nextTick(() => to.socket.uncork());
  };
  const forward = (from: FramedSocket, to: FramedSocket, f: ChunkedFrame) => {
    batch(to);
    if (!to.forward(f)) {
      from.pause();
      to.onceDrain(() => from.resume());
    }
  };
  return new Promise<number>((resolve) => {
    let settled = false;
    const settle = (code: number) => {
      if (settled) return;
      settled = true;
      resolve(code);
    };
    data.onFrame = (f) => {
      if (f.type === MSG_DATA_STDOUT && f.length === 0) data.allow(AFTER_STDOUT_EOF);
      if (f.type === MSG_DATA_EXIT_CODE) {
        const code = parseExitCode(f.payload);
        data.allow(NOTHING);
        // Input the client sent before it saw the exit code (e.g. its stdin EOF) is late, not hostile.
        cfs.onFrame = () => undefined;
        forward(data, cfs, f);
        data.end();
        if (opts.endClient !== false) cfs.end();
        return settle(code);
      }
      forward(data, cfs, f);
    };
    cfs.onFrame = (f) => {
      if (f.length === 0) cfs.allow(NOTHING);
      forward(cfs, data, f);
    };
    data.onClose = (reason) => {
      if (settled) return;
      log(`${label}: agent data connection closed before the exit code${reason ? ` (${reason})` : ''}`);
      cfs.send(MSG_DATA_EXIT_CODE, encodeU32(EXIT_QREXEC_PROBLEM));
      cfs.end();
      settle(EXIT_QREXEC_PROBLEM);
    };
    cfs.onClose = () => {
      if (settled) return;
      // The client is gone: dropping the data connection makes the agent hang up on the command.
      data.close();
      settle(EXIT_QREXEC_PROBLEM);
    };
    data.resume();
  });
}

/**
 * One command running in the qube. Use either the streams (stdin/stdout/stderr/exit: Node semantics, so
 * unread stdout eventually stalls the command) or pipe()/raw() to splice frames; the first access decides.
 */
export class ExecSession {
  private mode: 'new' | 'streams' | 'raw' = 'new';
  private streams: { stdin: Writable; stdout: Readable; stderr: Readable } | null = null;
  private settleExit!: (code: number) => void;
  private settled = false;
  private readonly exitPromise = new Promise<number>((r) => (this.settleExit = r));

  constructor(readonly requestId: number, private readonly framed: FramedSocket | null, private readonly log: (l: string) => void, private readonly label: string) {
    if (!framed) this.settle(0);
  }

  get stdin(): Writable { return this.useStreams().stdin; }
  get stdout(): Readable { return this.useStreams().stdout; }
  get stderr(): Readable { return this.useStreams().stderr; }

  /**
   * The exit code (128+signo for a signal); 125 when the data connection broke first. Never rejects.
   * It settles when the exit code arrives, which may be in the same read as the last output: that output
   * is still in stdout/stderr then, so a caller collecting it awaits their end as well.
   */
  get exit(): Promise<number> {
    if (this.mode === 'new') this.useStreams();
    return this.exitPromise;
  }

  /** The data connection itself, paused, with any frames already received still queued in it. */
  raw(): FramedSocket {
    if (this.mode === 'streams' || !this.framed) throw new Error('ExecSession: streams already in use or no data connection');
    this.mode = 'raw';
    return this.framed;
  }

  /** Splices a CLI client's DATA-frame socket onto this command (see pipeFrames); settles `exit` too. */
  async pipe(client: Socket, opts: PipeFramesOptions = {}): Promise<number> {
    const code = await pipeFrames(client, this.raw(), { log: this.log, label: `${this.label}: request ${this.requestId}`, ...opts });
    this.settle(code);
    return code;
  }

  /** Drops the data connection: the agent sends SIGHUP to the command's process group. */
  hangup(): void {
    this.framed?.close();
  }

  private settle(code: number): void {
    if (this.settled) return;
    this.settled = true;
    this.settleExit(code);
  }

  private useStreams(): { stdin: Writable; stdout: Readable; stderr: Readable } {
    if (this.streams) return this.streams;
    if (this.mode === 'raw') throw new Error('ExecSession: raw() already taken the data connection');
    this.mode = 'streams';
    const fs = this.framed;
    const more = () => fs?.resume();
    const stdout = new Readable({ read: more });
    const stderr = new Readable({ read: more });
    let inputOpen = !!fs;
    const whenWritable = (cb: () => void) => {
      const done = () => (fs!.socket.off('drain', done).off('close', done), cb());
      fs!.socket.once('drain', done).once('close', done);
    };
    // Input to a command that is gone is dropped silently, as an 'error' nobody listens to would kill isolad.
    const stdin = new Writable({
      write: (chunk: Buffer, _enc, cb) => (!inputOpen || fs!.sendData(MSG_DATA_STDIN, chunk) ? cb() : whenWritable(() => cb())),
      final: (cb) => {
        if (inputOpen) fs!.send(MSG_DATA_STDIN, EMPTY);
        inputOpen = false;
        cb();
      },
    });
    this.streams = { stdin, stdout, stderr };
    const ended = new Set<Readable>();
    const end = (r: Readable) => !ended.has(r) && (ended.add(r), r.push(null));
    if (!fs) {
      end(stdout);
      end(stderr);
      return this.streams;
    }
    fs.onFrame = (f) => {
      if (f.type === MSG_DATA_STDOUT && f.length === 0) {
        fs.allow(AFTER_STDOUT_EOF);
        end(stdout);
      } else if (f.type === MSG_DATA_STDOUT || f.type === MSG_DATA_STDERR) {
        const r = f.type === MSG_DATA_STDOUT ? stdout : stderr;
        let ok = true;
        for (const p of f.parts) ok = r.push(p);
        if (!ok) fs.pause();
      } else {
        const code = parseExitCode(f.payload);
        fs.allow(NOTHING);
        inputOpen = false;
        end(stdout);
        end(stderr);
        fs.end();
        this.settle(code);
      }
    };
    fs.onClose = (reason) => {
      inputOpen = false;
      end(stdout);
      end(stderr);
      if (this.settled) return;
      this.log(`${this.label}: request ${this.requestId}: data connection closed before the exit code${reason ? ` (${reason})` : ''}`);
      this.settle(EXIT_QREXEC_PROBLEM);
    };
    fs.resume();
    return this.streams;
  }
}
