// admin.vm.Run (Isola extension; Qubes' dom0 uses qrexec-client for this): after the request
// header the client sends one MSG_EXEC_CMDLINE / MSG_JUST_EXEC frame, isolad starts the qube if
// asked, replies `30 00`, and splices the client onto the agent's data connection frame by frame.
// The command is `USER:COMMAND` (run by sh) or, as qrexec-client sends it, a service call from dom0:
// `USER:QUBESRPC SERVICE[+ARG] dom0` (what qvm-run uses: qubes.VMShell, qubes.VMRootShell, --service).

import type net from 'node:net';
import { protocolError, QubesError } from '../core/errors';
import { splitServiceCall, serviceCallProblem } from '../policy/request';
import { HEADER_SIZE, MAX_PAYLOAD, MSG_EXEC_CMDLINE, MSG_JUST_EXEC, parseCmdline, parseExecParams } from '../qrexec/protocol';
import type { StreamHandler } from './admin-server';
import type { HandlerDeps } from './handlers/context';

const FIRST_FRAME_TIMEOUT_MS = 10_000;

/** Reads exactly one frame; returns it and whatever arrived after it. The socket is left paused. */
function readFirstFrame(sock: net.Socket, head: Buffer): Promise<{ type: number; payload: Buffer; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    let buf = head;
    const timer = setTimeout(() => done(protocolError('no exec request frame')), FIRST_FRAME_TIMEOUT_MS);
    const done = (err: Error | null, value?: { type: number; payload: Buffer; rest: Buffer }) => {
      clearTimeout(timer);
      sock.pause();
      sock.off('data', onData);
      sock.off('end', onEnd);
      if (err) reject(err);
      else resolve(value!);
    };
    const tryParse = () => {
      if (buf.length < HEADER_SIZE) return;
      const type = buf.readUInt32LE(0);
      const len = buf.readUInt32LE(4);
      if (type !== MSG_EXEC_CMDLINE && type !== MSG_JUST_EXEC) return done(protocolError(`expected an exec request, got frame type 0x${type.toString(16)}`));
      if (len > MAX_PAYLOAD) return done(protocolError('exec request too long'));
      if (buf.length < HEADER_SIZE + len) return;
      done(null, { type, payload: buf.subarray(HEADER_SIZE, HEADER_SIZE + len), rest: buf.subarray(HEADER_SIZE + len) });
    };
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      tryParse();
    };
    const onEnd = () => done(protocolError('connection closed before the exec request'));
    sock.on('data', onData);
    sock.on('end', onEnd);
    sock.resume();
    tryParse();
  });
}

/**
 * A service call through admin.vm.Run comes from dom0 and says so: the source is always `dom0` (a
 * caller cannot make a service believe another qube called it) and the name is checked as the qrexec
 * router checks a qube's call. Anything else that starts with QUBESRPC is a ProtocolError.
 */
export function checkRunCommand(untrustedCommand: string): string {
  if (untrustedCommand !== 'QUBESRPC' && !untrustedCommand.startsWith('QUBESRPC ')) return untrustedCommand;
  const parts = untrustedCommand.split(' ');
  if (parts.length !== 3) throw protocolError('a service call is QUBESRPC SERVICE[+ARG] dom0');
  if (parts[2] !== 'dom0') throw protocolError(`a service call through admin.vm.Run comes from dom0, not '${parts[2].slice(0, 40)}'`);
  const { service, argument } = splitServiceCall(parts[1]);
  const problem = serviceCallProblem(service, argument);
  if (problem) throw protocolError(problem);
  return untrustedCommand;
}

export function runHandler(d: HandlerDeps): StreamHandler {
  return async (ctx, sock, head) => {
    const flag = ctx.req.arg;
    if (flag !== 'autostart' && flag !== 'noautostart') throw protocolError(`invalid admin.vm.Run argument '${flag}'`);
    const frame = await readFirstFrame(sock, head);
    const { user, command: untrustedCommand } = parseCmdline(parseExecParams(frame.payload).cmdline);
    const command = checkRunCommand(untrustedCommand);
    const col = d.collection;
    const q = col.get(ctx.req.dest);
    if (q.klass === 'AdminVM') throw new QubesError('QubesVMError', 'commands run in dom0 directly, not through isolad');
    // A start in progress finishes (or fails) before we look at the state.
    await d.lifecycle.locked(q, async () => undefined);
    if (col.powerState(q) === 'Halted') {
      if (flag !== 'autostart') throw new QubesError('QubesVMNotRunningError', `Domain is not running: ${q.name} (not started: --no-autostart)`);
      await d.lifecycle.start(q.name).catch((e: QubesError) => {
        if (e.code !== 'QubesVMNotHaltedError') throw e;
      });
    }
    const session = await d.lifecycle.agent(q).exec(user, command, { justExec: frame.type === MSG_JUST_EXEC });
    sock.write(Buffer.from([0x30, 0x00]));
    if (frame.type === MSG_JUST_EXEC) {
      sock.end();
      return;
    }
    const piped = session.pipe(sock, { clientHead: frame.rest });
    sock.resume();
    await piped;
  };
}
