// Isola's qrexec wire protocol: Qubes' qrexec v3 header and message numbers carried over unix sockets
// between isolad and isola-agent (docs/agent-protocol.md). Pure encoders and validating decoders only.

import { QubesError } from '../core/errors';

export const PROTOCOL_VERSION = 1;
export const MAGIC = Buffer.from('ISOLAQRX', 'latin1');
export const HEADER_SIZE = 8;
/** Qubes' v3 chunk size: no frame payload is ever larger, so no peer can make us buffer more. */
export const MAX_PAYLOAD = 65536;

// Qubes' values (libqrexec/qrexec.h), so captures and docs can be read side by side.
export const MSG_DATA_STDIN = 0x190;
export const MSG_DATA_STDOUT = 0x191;
export const MSG_DATA_STDERR = 0x192;
export const MSG_DATA_EXIT_CODE = 0x193;
export const MSG_EXEC_CMDLINE = 0x200;
export const MSG_JUST_EXEC = 0x201;
export const MSG_SERVICE_CONNECT = 0x202;
export const MSG_SERVICE_REFUSED = 0x203;
export const MSG_CONNECTION_TERMINATED = 0x211;
export const MSG_TRIGGER_SERVICE3 = 0x212;
export const MSG_HELLO = 0x300;
// Isola's own range, far from Qubes' so a future Qubes number never collides.
export const MSG_DATA_CONNECT = 0x400;
export const MSG_SHUTDOWN = 0x401;
export const MSG_PING = 0x402;
export const MSG_PONG = 0x403;
/** isolad to an in-qube client while its call waits (an `ask`): one line for the user, UTF-8. */
export const MSG_SERVICE_NOTICE = 0x404;
export const MAX_NOTICE = 1024;

/** HELLO flags sent by the agent: which role this connection plays (exactly one bit). */
export const HELLO_FLAG_CONTROL = 0x1;
export const HELLO_FLAG_DATA = 0x2;
/** A qrexec client in the qube (qrexec-client-vm) on the qube's client socket: it sends one service call. */
export const HELLO_FLAG_CLIENT = 0x4;

const NAMES: Record<number, string> = {
  [MSG_DATA_STDIN]: 'MSG_DATA_STDIN', [MSG_DATA_STDOUT]: 'MSG_DATA_STDOUT',
  [MSG_DATA_STDERR]: 'MSG_DATA_STDERR', [MSG_DATA_EXIT_CODE]: 'MSG_DATA_EXIT_CODE',
  [MSG_EXEC_CMDLINE]: 'MSG_EXEC_CMDLINE', [MSG_JUST_EXEC]: 'MSG_JUST_EXEC',
  [MSG_SERVICE_CONNECT]: 'MSG_SERVICE_CONNECT', [MSG_SERVICE_REFUSED]: 'MSG_SERVICE_REFUSED',
  [MSG_CONNECTION_TERMINATED]: 'MSG_CONNECTION_TERMINATED', [MSG_TRIGGER_SERVICE3]: 'MSG_TRIGGER_SERVICE3',
  [MSG_HELLO]: 'MSG_HELLO', [MSG_DATA_CONNECT]: 'MSG_DATA_CONNECT', [MSG_SHUTDOWN]: 'MSG_SHUTDOWN',
  [MSG_PING]: 'MSG_PING', [MSG_PONG]: 'MSG_PONG', [MSG_SERVICE_NOTICE]: 'MSG_SERVICE_NOTICE',
};

export function typeName(type: number): string {
  const hex = '0x' + type.toString(16);
  return NAMES[type] ? `${NAMES[type]} (${hex})` : `unknown type ${hex}`;
}

const HELLO_FIXED = 16;
const HELLO_MAX_IDENT = 240;
const SERVICE_IDENT = 32;
const TARGET_DOMAIN = 64;

/** [min, max] payload length per type; the reader checks it from the header, before any payload is buffered. */
const LIMITS: Record<number, readonly [number, number]> = {
  [MSG_HELLO]: [HELLO_FIXED, HELLO_FIXED + HELLO_MAX_IDENT],
  [MSG_DATA_EXIT_CODE]: [4, 4],
  [MSG_DATA_CONNECT]: [4, 4],
  [MSG_SHUTDOWN]: [4, 4],
  [MSG_PING]: [0, 64],
  [MSG_PONG]: [0, 64],
  [MSG_SERVICE_NOTICE]: [1, MAX_NOTICE],
  [MSG_SERVICE_REFUSED]: [SERVICE_IDENT, SERVICE_IDENT],
  [MSG_EXEC_CMDLINE]: [9, MAX_PAYLOAD],
  [MSG_JUST_EXEC]: [9, MAX_PAYLOAD],
  [MSG_SERVICE_CONNECT]: [9, MAX_PAYLOAD],
  [MSG_CONNECTION_TERMINATED]: [8, MAX_PAYLOAD],
  [MSG_TRIGGER_SERVICE3]: [TARGET_DOMAIN + SERVICE_IDENT + 1, MAX_PAYLOAD],
};

export function payloadLimits(type: number): readonly [number, number] {
  return LIMITS[type] ?? [0, MAX_PAYLOAD];
}

/** What each side accepts in each connection state; anything else is a ProtocolError. */
export const HELLO_ONLY: ReadonlySet<number> = new Set([MSG_HELLO]);
export const NOTHING: ReadonlySet<number> = new Set();
export const DAEMON_TO_AGENT_CONTROL: ReadonlySet<number> = new Set([
  MSG_EXEC_CMDLINE, MSG_JUST_EXEC, MSG_SERVICE_CONNECT, MSG_SERVICE_REFUSED, MSG_SHUTDOWN, MSG_PING, MSG_PONG,
]);
export const AGENT_TO_DAEMON_CONTROL: ReadonlySet<number> = new Set([
  MSG_TRIGGER_SERVICE3, MSG_CONNECTION_TERMINATED, MSG_PING, MSG_PONG,
]);
export const AGENT_TO_DAEMON_BIND: ReadonlySet<number> = new Set([MSG_DATA_CONNECT]);
export const CLIENT_TO_DAEMON_CALL: ReadonlySet<number> = new Set([MSG_TRIGGER_SERVICE3]);
/** Process output: what the agent sends on a data connection, and all a CLI client may receive. */
export const AGENT_TO_DAEMON_DATA: ReadonlySet<number> = new Set([MSG_DATA_STDOUT, MSG_DATA_STDERR, MSG_DATA_EXIT_CODE]);
/** After the STDOUT EOF marker stdout is closed for good. */
export const AFTER_STDOUT_EOF: ReadonlySet<number> = new Set([MSG_DATA_STDERR, MSG_DATA_EXIT_CODE]);
/** Process input: what isolad sends on a data connection, and all a CLI client may send. */
export const DAEMON_TO_AGENT_DATA: ReadonlySet<number> = new Set([MSG_DATA_STDIN]);

export class ProtocolError extends QubesError {
  constructor(message: string) {
    super('ProtocolError', message);
  }
}

export const EMPTY = Buffer.alloc(0);

export function frameHeader(type: number, len: number): Buffer {
  if (len > MAX_PAYLOAD) throw new RangeError(`${typeName(type)} payload of ${len} bytes exceeds ${MAX_PAYLOAD}`);
  const h = Buffer.allocUnsafe(HEADER_SIZE);
  h.writeUInt32LE(type, 0);
  h.writeUInt32LE(len, 4);
  return h;
}

export function encodeFrame(type: number, payload: Buffer = EMPTY): Buffer {
  return Buffer.concat([frameHeader(type, payload.length), payload]);
}

export function encodeU32(value: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32LE(value >>> 0, 0);
  return b;
}

export function parseU32(untrusted: Buffer, what: string): number {
  if (untrusted.length !== 4) throw new ProtocolError(`${what}: expected 4 bytes, got ${untrusted.length}`);
  return untrusted.readUInt32LE(0);
}

export interface Hello {
  version: number;
  flags: number;
  /** Free-form software identification, printable ASCII (e.g. `isola-agent/0.1.0 node/v18.20.4`). */
  ident: string;
}

export function encodeHello(flags: number, ident = ''): Buffer {
  const id = Buffer.from(ident.replace(/[^\x20-\x7e]/g, '?').slice(0, HELLO_MAX_IDENT), 'latin1');
  const b = Buffer.alloc(HELLO_FIXED + id.length);
  MAGIC.copy(b, 0);
  b.writeUInt32LE(PROTOCOL_VERSION, 8);
  b.writeUInt32LE(flags >>> 0, 12);
  id.copy(b, HELLO_FIXED);
  return b;
}

/** Checks magic and version: a peer speaking anything else is not one we can talk to. */
export function parseHello(untrusted: Buffer): Hello {
  if (untrusted.length < HELLO_FIXED || untrusted.length > HELLO_FIXED + HELLO_MAX_IDENT) {
    throw new ProtocolError(`HELLO payload of ${untrusted.length} bytes (expected ${HELLO_FIXED}..${HELLO_FIXED + HELLO_MAX_IDENT})`);
  }
  if (!untrusted.subarray(0, 8).equals(MAGIC)) throw new ProtocolError('bad magic in HELLO (not an Isola qrexec peer)');
  const version = untrusted.readUInt32LE(8);
  if (version !== PROTOCOL_VERSION) {
    throw new ProtocolError(`peer speaks protocol version ${version}, this side speaks ${PROTOCOL_VERSION}`);
  }
  const identBytes = untrusted.subarray(HELLO_FIXED);
  if (identBytes.some((c) => c < 0x20 || c > 0x7e)) throw new ProtocolError('HELLO ident is not printable ASCII');
  return { version, flags: untrusted.readUInt32LE(12), ident: identBytes.toString('latin1') };
}

export interface ExecParams {
  connectDomain: number;
  /** The request id: names the data connection the agent opens for this command. */
  connectPort: number;
  cmdline: string;
}

export function encodeExecParams(p: ExecParams): Buffer {
  const cmd = Buffer.from(p.cmdline, 'utf8');
  const b = Buffer.alloc(8 + cmd.length + 1);
  b.writeUInt32LE(p.connectDomain >>> 0, 0);
  b.writeUInt32LE(p.connectPort >>> 0, 4);
  cmd.copy(b, 8);
  return b;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function decodeUtf8(untrusted: Buffer, what: string): string {
  try {
    return utf8.decode(untrusted);
  } catch {
    throw new ProtocolError(`${what} is not valid UTF-8`);
  }
}

export function parseExecParams(untrusted: Buffer): ExecParams {
  if (untrusted.length < 9) throw new ProtocolError(`exec_params of ${untrusted.length} bytes is too short`);
  const cmd = untrusted.subarray(8);
  if (cmd[cmd.length - 1] !== 0) throw new ProtocolError('exec_params cmdline is not NUL-terminated');
  if (cmd.indexOf(0) !== cmd.length - 1) throw new ProtocolError('exec_params cmdline contains a NUL byte');
  return {
    connectDomain: untrusted.readUInt32LE(0),
    connectPort: untrusted.readUInt32LE(4),
    cmdline: decodeUtf8(cmd.subarray(0, cmd.length - 1), 'exec_params cmdline'),
  };
}

/** Login names as Debian's adduser accepts them, plus `DEFAULT` (the qube's default user). */
const USER_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}\$?$/;

export function isValidUserName(user: string): boolean {
  return USER_RE.test(user);
}

/** Splits Qubes' `USER:COMMAND`; a leading `nogui:` on the command is accepted and dropped (no GUI here). */
export function parseCmdline(cmdline: string): { user: string; command: string } {
  const colon = cmdline.indexOf(':');
  if (colon < 0) throw new ProtocolError('cmdline has no USER: prefix');
  const user = cmdline.slice(0, colon);
  let command = cmdline.slice(colon + 1);
  if (!isValidUserName(user)) throw new ProtocolError(`cmdline user '${user.slice(0, 40)}' is not a valid user name`);
  if (command.startsWith('nogui:')) command = command.slice('nogui:'.length);
  if (command.length === 0) throw new ProtocolError('cmdline has an empty command');
  return { user, command };
}

export function parseExitCode(untrusted: Buffer): number {
  const code = parseU32(untrusted, 'MSG_DATA_EXIT_CODE');
  if (code > 255) throw new ProtocolError(`exit code ${code} is out of range 0..255`);
  return code;
}

function fixedString(untrusted: Buffer, what: string): string {
  const nul = untrusted.indexOf(0);
  if (nul < 0) throw new ProtocolError(`${what} is not NUL-terminated`);
  if (untrusted.subarray(nul).some((c) => c !== 0)) throw new ProtocolError(`${what} has bytes after its NUL`);
  return decodeUtf8(untrusted.subarray(0, nul), what);
}

export interface TriggerService3 {
  targetDomain: string;
  requestId: string;
  serviceName: string;
}

export function encodeTriggerService3(t: TriggerService3): Buffer {
  const name = Buffer.from(t.serviceName, 'utf8');
  const b = Buffer.alloc(TARGET_DOMAIN + SERVICE_IDENT + name.length + 1);
  Buffer.from(t.targetDomain, 'utf8').copy(b, 0, 0, TARGET_DOMAIN - 1);
  Buffer.from(t.requestId, 'utf8').copy(b, TARGET_DOMAIN, 0, SERVICE_IDENT - 1);
  name.copy(b, TARGET_DOMAIN + SERVICE_IDENT);
  return b;
}

/** Only checks the framing; the qrexec router sanitizes names as qrexec-daemon does. */
export function parseTriggerService3(untrusted: Buffer): TriggerService3 {
  if (untrusted.length < TARGET_DOMAIN + SERVICE_IDENT + 1) throw new ProtocolError('MSG_TRIGGER_SERVICE3 is too short');
  const name = untrusted.subarray(TARGET_DOMAIN + SERVICE_IDENT);
  if (name.indexOf(0) !== name.length - 1) throw new ProtocolError('MSG_TRIGGER_SERVICE3 service name is not one NUL-terminated string');
  return {
    targetDomain: fixedString(untrusted.subarray(0, TARGET_DOMAIN), 'target_domain'),
    requestId: fixedString(untrusted.subarray(TARGET_DOMAIN, TARGET_DOMAIN + SERVICE_IDENT), 'request_id'),
    serviceName: decodeUtf8(name.subarray(0, name.length - 1), 'service name'),
  };
}

export function encodeServiceParams(ident: string): Buffer {
  const b = Buffer.alloc(SERVICE_IDENT);
  Buffer.from(ident, 'utf8').copy(b, 0, 0, SERVICE_IDENT - 1);
  return b;
}

export function parseServiceParams(untrusted: Buffer): string {
  if (untrusted.length !== SERVICE_IDENT) throw new ProtocolError(`service_params of ${untrusted.length} bytes (expected ${SERVICE_IDENT})`);
  return fixedString(untrusted, 'service_params ident');
}
