// Both ends of a DATA-frame stream outside the agent: the CLI's pump between its own stdio and a socket
// (runDataSession, for qvm-run), and isolad's splice of a CLI client onto an agent data connection (pipeFrames).

import type { Socket } from 'net';
import type { Readable, Writable } from 'stream';
import { FramedSocket, type Frame } from './frame-reader';
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
    const write = (w: Writable, payload: Buffer) => {
      if (!w.write(payload)) {
        fs.pause();
        w.once('drain', () => fs.resume());
      }
    };
    fs.onFrame = (f: Frame) => {
      if (f.type === MSG_DATA_STDOUT) {
        if (f.payload.length === 0) fs.allow(AFTER_STDOUT_EOF);
        else write(io.stdout, f.payload);
      } else if (f.type === MSG_DATA_STDERR) {
        if (f.payload.length > 0) write(io.stderr, f.payload);
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
export function pipeFrames(client: Socket, data: FramedSocket, opts: PipeFramesOptions = {}): Promise<number> {
  const log = opts.log ?? stderrLog;
  const label = opts.label ?? data.label;
  const cfs = new FramedSocket(client, { label: `${label} client`, log, accept: DAEMON_TO_AGENT_DATA, head: opts.clientHead });
  const forward = (from: FramedSocket, to: FramedSocket, f: Frame) => {
    if (!to.send(f.type, f.payload)) {
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
      if (f.type === MSG_DATA_STDOUT && f.payload.length === 0) data.allow(AFTER_STDOUT_EOF);
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
      if (f.payload.length === 0) cfs.allow(NOTHING);
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
