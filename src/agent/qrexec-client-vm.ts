// qrexec-client-vm TARGET SERVICE[+ARGUMENT]: calls a qrexec service in another qube, as in Qubes.
// stdin/stdout are the service's (or a LOCAL_PROGRAM's); exit code is the service's, 126 if refused,
// 125 on a qrexec problem. The other qube's output shown on a terminal is filtered (-t/-T).

import { randomBytes } from 'crypto';
import { spawn } from 'child_process';
import { createConnection, type Socket } from 'net';
import { PassThrough, type Writable } from 'stream';
import { CLIENT_SOCKET, EXIT_NOT_FOUND, exitCodeOf } from './qube-env';
import { EXIT_QREXEC_PROBLEM, runDataSession } from '../qrexec/client';
import {
  HEADER_SIZE, HELLO_FLAG_CLIENT, MAX_NOTICE, MAX_PAYLOAD, MSG_HELLO, MSG_SERVICE_CONNECT, MSG_SERVICE_NOTICE, MSG_SERVICE_REFUSED, MSG_TRIGGER_SERVICE3,
  encodeFrame, encodeHello, encodeTriggerService3, parseHello,
} from '../qrexec/protocol';
import { errorText } from '../core/error-text';
import { inertString } from '../core/terminal-filter';
import { terminalOutput } from '../qrexec/terminal-output';

export const EXIT_REFUSED = 126;

/** What the program is called, for the notices it prints (qvm-copy-to-vm, qrexec-client-vm, …). */
function programName(): string {
  return (process.argv[1] ?? 'qrexec-client-vm').split('/').pop()!.replace(/\.js$/, '');
}

/** isolad's word while a call waits (an `ask`), on stderr; control bytes are never passed to a terminal. */
function notice(payload: Buffer): void {
  process.stderr.write(`${programName()}: ${inertString(payload.toString('utf8'))}\n`);
}

/** Reads frames until isolad's decision; returns it and the bytes after it (the first data frames). */
function readDecision(sock: Socket): Promise<{ type: number; rest: Buffer }> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    let helloSeen = false;
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= HEADER_SIZE) {
        const type = buf.readUInt32LE(0);
        const len = buf.readUInt32LE(4);
        if (len > MAX_PAYLOAD) return fail(new Error('oversized frame from isolad'));
        if (buf.length < HEADER_SIZE + len) return;
        const payload = buf.subarray(HEADER_SIZE, HEADER_SIZE + len);
        buf = buf.subarray(HEADER_SIZE + len);
        if (!helloSeen) {
          if (type !== MSG_HELLO) return fail(new Error('isolad did not say hello'));
          parseHello(payload);
          helloSeen = true;
          continue;
        }
        if (type === MSG_SERVICE_NOTICE && len <= MAX_NOTICE) {
          notice(payload);
          continue;
        }
        if (type !== MSG_SERVICE_CONNECT && type !== MSG_SERVICE_REFUSED) return fail(new Error(`unexpected frame 0x${type.toString(16)}`));
        sock.pause();
        sock.off('data', onData);
        sock.off('end', onEnd);
        return resolve({ type, rest: buf });
      }
    };
    const onEnd = () => fail(new Error('isolad closed the connection before deciding'));
    const fail = (e: unknown) => {
      sock.off('data', onData);
      sock.destroy();
      reject(e);
    };
    sock.on('data', onData);
    sock.on('end', onEnd);
    sock.on('error', fail);
  });
}

/** The start of a call from inside a qube: `refused`, or a socket that now carries DATA frames. */
export type CallStart = { refused: true } | { refused: false; sock: Socket; head: Buffer };

export async function startServiceCall(target: string, call: string, socketPath = CLIENT_SOCKET): Promise<CallStart> {
  const sock = createConnection(socketPath);
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', () => resolve());
    sock.once('error', reject);
  });
  sock.write(encodeFrame(MSG_HELLO, encodeHello(HELLO_FLAG_CLIENT, 'qrexec-client-vm')));
  sock.write(encodeFrame(MSG_TRIGGER_SERVICE3, encodeTriggerService3({ targetDomain: target, requestId: randomBytes(8).toString('hex'), serviceName: call })));
  const decision = await readDecision(sock);
  if (decision.type === MSG_SERVICE_REFUSED) {
    sock.destroy();
    return { refused: true };
  }
  return { refused: false, sock, head: decision.rest };
}

/** A call of the in-qube tools (qvm-copy, qvm-open-in-vm): the service's stdin and stdout as streams of ours. */
export type StreamCall = { refused: true } | { refused: false; sock: Socket; toRemote: PassThrough; fromRemote: PassThrough; session: Promise<number> };

export async function callWithStreams(target: string, call: string, socketPath = CLIENT_SOCKET): Promise<StreamCall> {
  const start = await startServiceCall(target, call, socketPath);
  if (start.refused) return start;
  const toRemote = new PassThrough();
  const fromRemote = new PassThrough();
  // The other qube's stderr reaches our terminal filtered, as Qubes' qrexec-client-vm does by default.
  const stderr = terminalOutput(process.stderr, process.stderr.isTTY === true);
  const session = runDataSession(start.sock, { stdin: toRemote, stdout: fromRemote, stderr }, { head: start.head, log: () => undefined });
  start.sock.resume();
  return { refused: false, sock: start.sock, toRemote, fromRemote, session };
}

const HELP = [
  '',
  "Call the qrexec service SERVICE in the qube TARGET (a name or @default, @dispvm, ...) if policy",
  "allows it: stdin and stdout are the service's, or LOCAL_PROGRAM's when given.",
  '',
  'options:',
  '  -t, --filter-escape-chars-stdout  replace escape and control characters in the service\'s stdout',
  '                                    (default when stdout is a terminal and no LOCAL_PROGRAM is given)',
  '  -T, --filter-escape-chars-stderr  the same for its stderr (default when stderr is a terminal)',
  '  --no-filter-escape-chars-stdout   opposite of --filter-escape-chars-stdout',
  '  --no-filter-escape-chars-stderr   opposite of --filter-escape-chars-stderr',
  '',
].join('\n');
const USAGE = 'usage: qrexec-client-vm [options] TARGET SERVICE[+ARGUMENT] [LOCAL_PROGRAM [ARGS...]]\n';

/** Qubes' filter options; undefined: not given (the default depends on the terminal). */
interface FilterOptions {
  stdout?: boolean;
  stderr?: boolean;
}

const FILTER_OPTIONS: Record<string, (o: FilterOptions) => void> = {
  '-t': (o) => void (o.stdout = true),
  '--filter-escape-chars-stdout': (o) => void (o.stdout = true),
  '-T': (o) => void (o.stderr = true),
  '--filter-escape-chars-stderr': (o) => void (o.stderr = true),
  '--no-filter-escape-chars-stdout': (o) => void (o.stdout = false),
  '--no-filter-escape-chars-stderr': (o) => void (o.stderr = false),
};

export async function qrexecClientVm(argv: string[], socketPath = CLIENT_SOCKET): Promise<number> {
  const filter: FilterOptions = {};
  let i = 0;
  // Only before TARGET: after SERVICE, words belong to LOCAL_PROGRAM. `-tT` as getopt reads it.
  for (; i < argv.length; i++) {
    const a = argv[i];
    if (Object.prototype.hasOwnProperty.call(FILTER_OPTIONS, a)) FILTER_OPTIONS[a](filter);
    else if (/^-[tT]{2,}$/.test(a)) for (const c of a.slice(1)) FILTER_OPTIONS[`-${c}`](filter);
    else break;
  }
  const [target, call, ...local] = argv.slice(i);
  if (target === '-h' || target === '--help') {
    process.stdout.write(USAGE + HELP);
    return 0;
  }
  if (target === undefined || !call || target.startsWith('-')) { // '' is @default, as in Qubes
    process.stderr.write(USAGE);
    return 2;
  }
  if (Buffer.byteLength(target) > 63 || Buffer.byteLength(call) > 255) {
    process.stderr.write('qrexec-client-vm: target or service name too long\n');
    return 2;
  }
  const start = await startServiceCall(target, call, socketPath);
  if (start.refused) {
    process.stderr.write('Request refused\n');
    return EXIT_REFUSED;
  }
  // Qubes' defaults: stderr filtered on a terminal; stdout too, unless a LOCAL_PROGRAM reads it.
  const stderr = terminalOutput(process.stderr, filter.stderr ?? process.stderr.isTTY === true);
  if (local.length) return withLocalProgram(start.sock, start.head, local, stderr);
  const stdout = terminalOutput(process.stdout, filter.stdout ?? process.stdout.isTTY === true);
  const done = runDataSession(start.sock, { stdin: process.stdin, stdout, stderr }, { head: start.head, log: () => undefined });
  start.sock.resume();
  return done.catch((e: unknown) => {
    process.stderr.write(`qrexec-client-vm: ${errorText(e)}\n`);
    return EXIT_QREXEC_PROBLEM;
  });
}

/**
 * Qubes' LOCAL_PROGRAM: the service's output is the program's stdin and the program's output the
 * service's input (qvm-open-in-vm and qvm-copy are built so in Qubes). The exit code is the
 * program's when it fails, else the service's.
 */
async function withLocalProgram(sock: Socket, head: Buffer, [program, ...args]: string[], stderr: Writable): Promise<number> {
  const child = spawn(program, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  const spawned = await new Promise<Error | null>((resolve) => child.once('spawn', () => resolve(null)).once('error', resolve));
  if (spawned) {
    sock.destroy();
    process.stderr.write(`qrexec-client-vm: cannot run ${program}: ${errorText(spawned)}\n`);
    return EXIT_NOT_FOUND;
  }
  child.stdin!.on('error', () => undefined); // the program may stop reading early: not our failure
  const localExit = new Promise<number>((resolve) => child.once('close', (code, signal) => resolve(exitCodeOf(code, signal))));
  const done = runDataSession(sock, { stdin: child.stdout!, stdout: child.stdin!, stderr }, { head, log: () => undefined });
  sock.resume();
  const remote = await done.catch((e: unknown) => {
    process.stderr.write(`qrexec-client-vm: ${errorText(e)}\n`);
    return EXIT_QREXEC_PROBLEM;
  });
  child.stdin!.end();
  const localCode = await localExit;
  return localCode !== 0 ? localCode : remote;
}
