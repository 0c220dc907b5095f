// qvm-run's side of one call: the admin.vm.Run request (a service call from dom0, as qrexec-client
// makes it), the prefix on stdin, and where the qube's output goes: nowhere (Qubes' default), the
// terminal with its escape sequences filtered, or a local command (--localcmd).

import { spawn } from 'node:child_process';
import type { Socket } from 'node:net';
import { constants as osConstants } from 'node:os';
import { Writable, type Readable } from 'node:stream';
import { decodeReply, encodeRequest } from '../core/admin-wire';
import { runDataSession } from '../qrexec/client';
import { filterTerminalBytes } from '../core/terminal-filter';
import { terminalOutput } from '../qrexec/terminal-output';
import { MAX_PAYLOAD, MSG_DATA_STDIN, MSG_EXEC_CMDLINE, MSG_JUST_EXEC, encodeExecParams, encodeFrame } from '../qrexec/protocol';

/**
 * Qubes' qrexec filter (-t/-T of qrexec-client) on one whole buffer: see TerminalFilter. The input
 * is not modified.
 */
export function filterEscapes(chunk: Buffer): Buffer {
  return filterTerminalBytes(chunk);
}

/** A writable in front of `target`, filtering what passes when asked; never ends the target. */
export const outputTo = terminalOutput;

export const discard = (): Writable => new Writable({ write: (_c, _e, cb) => cb() });

/** What one qvm-run call asks isolad for. */
export interface ServiceCall {
  /** The user for the service (`DEFAULT`: the qube's default_user). */
  user: string;
  /** `SERVICE[+ARG]`, e.g. `qubes.VMShell`. */
  service: string;
  /** Bytes the service reads before our stdin (`COMMAND; exit\n` for qubes.VMShell). */
  prefix: Buffer | null;
  /** Start the service and return without waiting (Qubes' `qrexec-client -e`, --service without -p). */
  justExec: boolean;
  autostart: boolean;
}

/** Where the qube's stdin comes from and its output goes. */
export type Io =
  | { kind: 'discard' }
  | { kind: 'pass'; stdin: Readable; stdout: Writable; stderr: Writable }
  | { kind: 'local'; command: string; stderr: Writable };

/** Sends the request, the exec frame and the prefix, and waits for isolad's go-ahead (or its refusal, thrown). */
export async function openCall(connect: () => Promise<Socket>, vm: string, call: ServiceCall): Promise<{ sock: Socket; head: Buffer }> {
  const sock = await connect();
  const frames = [
    encodeRequest({ method: 'admin.vm.Run', arg: call.autostart ? 'autostart' : 'noautostart', dest: vm, payload: Buffer.alloc(0) }),
    encodeFrame(call.justExec ? MSG_JUST_EXEC : MSG_EXEC_CMDLINE, encodeExecParams({ connectDomain: 0, connectPort: 0, cmdline: `${call.user}:QUBESRPC ${call.service} dom0` })),
  ];
  for (let off = 0; call.prefix && !call.justExec && off < call.prefix.length; off += MAX_PAYLOAD) {
    frames.push(encodeFrame(MSG_DATA_STDIN, call.prefix.subarray(off, off + MAX_PAYLOAD)));
  }
  sock.write(Buffer.concat(frames));
  const head = await readReplyHead(sock);
  return { sock, head };
}

/**
 * Runs the call to its end and returns the exit codes: the service's, then the local command's
 * (--localcmd). With justExec, 0 as soon as isolad started it.
 */
export async function runCall(connect: () => Promise<Socket>, vm: string, call: ServiceCall, io: Io): Promise<number[]> {
  const { sock, head } = await openCall(connect, vm, call);
  if (call.justExec) {
    sock.destroy();
    return [0];
  }
  if (io.kind === 'discard') return [await session(sock, head, { stdin: null, stdout: discard(), stderr: discard() })];
  if (io.kind === 'pass') return [await session(sock, head, io)];
  // --localcmd: the local command's stdout is the service's stdin and the service's stdout its stdin.
  const local = spawn('/bin/sh', ['-c', io.command], { stdio: ['pipe', 'pipe', 'pipe'] });
  local.stdin.on('error', () => undefined); // the local command may exit without reading everything
  local.stderr.pipe(outputTo(io.stderr, false));
  const localExit = new Promise<number>((resolve) => {
    local.once('error', () => resolve(127));
    local.once('close', (code, signal) => resolve(code ?? 128 + (signal ? (osConstants.signals[signal] ?? 0) : 0)));
  });
  let remote: number;
  try {
    remote = await session(sock, head, { stdin: local.stdout, stdout: local.stdin, stderr: io.stderr });
  } finally {
    local.stdin.end();
  }
  return [remote, await localExit];
}

/** The data stream ended before the exit code (qube or isolad gone): not a refusal, Qubes' exit code 125. */
export class StreamBrokenError extends Error {}

function session(sock: Socket, head: Buffer, io: { stdin: Readable | null; stdout: Writable; stderr: Writable }): Promise<number> {
  const done = runDataSession(sock, io, { head, log: () => undefined });
  sock.resume();
  return done.catch((e: Error) => {
    throw new StreamBrokenError(e.message);
  });
}

/** Waits for `30 00` (go on: data frames follow) or a whole exception reply (thrown). */
function readReplyHead(sock: Socket): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length >= 2 && buf[0] === 0x30) {
        sock.pause();
        sock.off('data', onData);
        sock.off('end', onEnd);
        resolve(buf.subarray(2));
      }
    };
    const onEnd = () => {
      try {
        decodeReply(buf);
        reject(new Error('isolad closed the connection'));
      } catch (e) {
        reject(e);
      }
    };
    sock.on('data', onData);
    sock.on('end', onEnd);
    sock.on('error', reject);
  });
}
