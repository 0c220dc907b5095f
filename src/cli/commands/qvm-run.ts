// qvm-run: runs a command in a qube through isolad (admin.vm.Run), starting the qube unless
// --no-autostart; with --pass-io, stdin/stdout/stderr are streamed and the exit code returned.

import type { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { encodeRequest, decodeReply } from '../../core/admin-wire';
import { EXIT_QREXEC_PROBLEM, runDataSession } from '../../qrexec/client';
import { encodeExecParams, encodeFrame, MSG_EXEC_CMDLINE, MSG_JUST_EXEC } from '../../qrexec/protocol';
import { addTargetOptions, newProgram, reportError, resolveTargets, UsageError, type CliDeps, type TargetOptions } from './common';

export const description = 'Run a command in one or more qubes.';

export interface RunDeps extends CliDeps {
  /** Opens a raw connection to isolad (AdminClient.connect). */
  connect?: () => Promise<Socket>;
  stdin?: Readable;
  out?: Writable;
  err?: Writable;
}

interface RunOptions extends TargetOptions {
  user?: string;
  passIo?: boolean;
  autostart: boolean;
}

/** Quotes each word for /bin/sh, so `qvm-run VM cmd arg1 arg2` runs exactly those words. */
export function shellJoin(words: readonly string[]): string {
  return words.map((w) => (/^[A-Za-z0-9_./=:@%+-]+$/.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`)).join(' ');
}

export async function run(argv: string[], deps: RunDeps): Promise<number> {
  const p = addTargetOptions(newProgram('qvm-run', description, deps))
    .usage('[options] VMNAME COMMAND [ARG...] | --all [options] COMMAND')
    .argument('<ARGS...>', 'qube name (unless --all) and the command')
    .option('-u, --user <USER>', "run as USER (default: the qube's default_user)")
    .option('-p, --pass-io', 'pass stdin/stdout/stderr through and return the exit code')
    .option('-n, --no-autostart', 'do not start the qube if it is not running')
    .option('--no-auto', 'alias of --no-autostart')
    .passThroughOptions();
  p.parse(argv, { from: 'user' });
  const o = p.opts<RunOptions & { auto?: boolean }>();
  const args = [...p.args];
  const names = o.all ? [] : [args.shift()!];
  if (args.length === 0) throw new UsageError('a COMMAND is required');
  const command = args.length === 1 ? args[0] : shellJoin(args);
  const targets = await resolveTargets(deps, names, o);
  if (o.passIo && targets.length > 1) throw new UsageError('--pass-io can be used with one qube only');
  const autostart = o.autostart !== false && o.auto !== false;
  let code = 0;
  for (const vm of targets) {
    try {
      code = Math.max(code, await runOne(deps, vm, o.user ?? 'DEFAULT', command, Boolean(o.passIo), autostart));
    } catch (e) {
      code = Math.max(code, reportError('qvm-run', e, deps));
    }
  }
  return code;
}

async function runOne(deps: RunDeps, vm: string, user: string, command: string, passIo: boolean, autostart: boolean): Promise<number> {
  if (!deps.connect) throw new Error('qvm-run needs a connection to isolad');
  const sock = await deps.connect();
  sock.write(encodeRequest({ method: 'admin.vm.Run', arg: autostart ? 'autostart' : 'noautostart', dest: vm, payload: Buffer.alloc(0) }));
  const params = encodeExecParams({ connectDomain: 0, connectPort: 0, cmdline: `${user}:${command}` });
  sock.write(encodeFrame(passIo ? MSG_EXEC_CMDLINE : MSG_JUST_EXEC, params));
  const head = await readReplyHead(sock);
  if (!passIo) {
    sock.destroy();
    return 0;
  }
  const done = runDataSession(sock, { stdin: deps.stdin ?? process.stdin, stdout: deps.out ?? process.stdout, stderr: deps.err ?? process.stderr }, { head, log: () => undefined });
  sock.resume();
  return done.catch((e: Error) => {
    deps.stderr(`qvm-run: error: ${vm}: ${e.message}\n`);
    return EXIT_QREXEC_PROBLEM;
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
