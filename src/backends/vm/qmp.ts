// A QMP client over QEMU's unix socket. QEMU is untrusted here: a guest that escaped into it owns the
// other end, so every byte is bounded, parsed defensively, and any breach of the protocol drops the
// connection with one line saying why. Nothing the peer sends may throw out of this module or hang a caller.

import { EventEmitter } from 'node:events';
import * as net from 'node:net';

/** A line longer than this is not QMP (QEMU's longest replies, query-qmp-schema aside, are a few KiB). */
export const QMP_MAX_LINE_BYTES = 1 << 20;
const DEFAULT_GREETING_TIMEOUT_MS = 5_000;
const DEFAULT_COMMAND_TIMEOUT_MS = 10_000;
/** Ids of commands we gave up on: their late replies are expected, not a protocol breach. */
const MAX_ABANDONED = 256;

export interface QmpOptions {
  greetingTimeoutMs?: number;
  commandTimeoutMs?: number;
  maxLineBytes?: number;
}

export interface QmpEvent {
  event: string;
  data: unknown;
}

/** A QMP `error` reply: the command ran and QEMU refused it (the connection stays up). */
export class QmpCommandError extends Error {
  constructor(readonly command: string, readonly errorClass: string, desc: string) {
    super(`QMP ${command}: ${errorClass}: ${desc}`);
  }
}

interface Pending {
  command: string;
  resolve: (v: unknown) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/** Printable, short: a peer's text goes into our error lines and logs. */
function quote(untrusted: unknown, max = 80): string {
  const s = typeof untrusted === 'string' ? untrusted : JSON.stringify(untrusted) ?? String(untrusted);
  return s.replace(/[^\x20-\x7e]/g, '?').slice(0, max);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Events: 'event' (QmpEvent) for each asynchronous QEMU event (SHUTDOWN, STOP, RESUME, …);
 * 'close' (reason: string) once, when the connection ends for any cause.
 */
export class QmpClient extends EventEmitter {
  private buf: Buffer[] = [];
  private bufLen = 0;
  private nextId = 1;
  private readonly pending = new Map<string, Pending>();
  private readonly abandoned = new Set<string>();
  private closedReason?: string;
  private greeted = false;
  private onGreeting?: (err?: Error) => void;

  private constructor(private readonly sock: net.Socket, private readonly opts: Required<QmpOptions>) {
    super();
    sock.on('data', (chunk: Buffer) => this.onData(chunk));
    sock.on('error', (err) => this.fail(`QMP socket error: ${err.message}`));
    sock.on('close', () => this.fail(this.greeted ? 'QMP connection closed by QEMU' : 'QMP connection closed before the greeting'));
  }

  /** Connects, reads the greeting, negotiates capabilities; rejects with one line on any failure. */
  static connect(socketPath: string, options: QmpOptions = {}): Promise<QmpClient> {
    const opts: Required<QmpOptions> = {
      greetingTimeoutMs: options.greetingTimeoutMs ?? DEFAULT_GREETING_TIMEOUT_MS,
      commandTimeoutMs: options.commandTimeoutMs ?? DEFAULT_COMMAND_TIMEOUT_MS,
      maxLineBytes: options.maxLineBytes ?? QMP_MAX_LINE_BYTES,
    };
    return new Promise((resolve, reject) => {
      const sock = net.createConnection(socketPath);
      const client = new QmpClient(sock, opts);
      // Before the greeting nobody listens for 'close': the promise carries the reason.
      const swallow = () => undefined;
      client.on('close', swallow);
      const timer = setTimeout(() => client.fail(`QMP greeting not received within ${opts.greetingTimeoutMs} ms`), opts.greetingTimeoutMs);
      client.onGreeting = (err) => {
        clearTimeout(timer);
        client.onGreeting = undefined;
        if (err) {
          reject(err);
          return;
        }
        client.execute('qmp_capabilities').then(
          () => {
            client.off('close', swallow);
            resolve(client);
          },
          (e: Error) => {
            client.close();
            reject(e);
          },
        );
      };
    });
  }

  get closed(): boolean {
    return this.closedReason !== undefined;
  }

  /** Runs one command; resolves with its `return` value, rejects with QmpCommandError or a connection error. */
  execute(command: string, args?: Record<string, unknown>, timeoutMs = this.opts.commandTimeoutMs): Promise<unknown> {
    if (this.closedReason !== undefined) return Promise.reject(new Error(`QMP ${command}: ${this.closedReason}`));
    const id = `isola-${this.nextId++}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        this.abandoned.add(id);
        if (this.abandoned.size > MAX_ABANDONED) this.abandoned.delete(this.abandoned.values().next().value as string);
        reject(new Error(`QMP ${command}: no reply within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { command, resolve, reject, timer });
      const msg: Record<string, unknown> = { execute: command, id };
      if (args) msg.arguments = args;
      this.sock.write(JSON.stringify(msg) + '\n');
    });
  }

  /** Ends the connection; pending commands reject. Idempotent. */
  close(): void {
    this.fail('QMP connection closed by isolad');
  }

  private fail(reason: string): void {
    if (this.closedReason !== undefined) return;
    this.closedReason = reason;
    this.sock.destroy();
    this.buf = [];
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      this.pending.delete(id);
      p.reject(new Error(`QMP ${p.command}: ${reason}`));
    }
    this.onGreeting?.(new Error(reason));
    this.emit('close', reason);
  }

  private onData(chunk: Buffer): void {
    let start = 0;
    for (let nl = chunk.indexOf(0x0a); nl !== -1 && this.closedReason === undefined; nl = chunk.indexOf(0x0a, start)) {
      if (this.bufLen + nl - start > this.opts.maxLineBytes) break;
      this.buf.push(chunk.subarray(start, nl));
      const line = Buffer.concat(this.buf);
      this.buf = [];
      this.bufLen = 0;
      start = nl + 1;
      this.onLine(line);
    }
    if (this.closedReason !== undefined) return;
    const rest = chunk.subarray(start);
    this.bufLen += rest.length;
    if (this.bufLen > this.opts.maxLineBytes) {
      this.fail(`QMP protocol error: a line longer than ${this.opts.maxLineBytes} bytes`);
      return;
    }
    if (rest.length) this.buf.push(rest);
  }

  private onLine(line: Buffer): void {
    const text = line.toString('utf8').trim();
    if (text === '') return;
    let msg: unknown;
    try {
      msg = JSON.parse(text);
    } catch {
      this.fail(`QMP protocol error: unparseable line '${quote(text, 40)}'`);
      return;
    }
    if (!isObject(msg)) {
      this.fail(`QMP protocol error: a message that is not an object ('${quote(text, 40)}')`);
      return;
    }
    if (!this.greeted) {
      if (!isObject(msg.QMP)) {
        this.fail(`QMP protocol error: expected the greeting, got '${quote(text, 40)}'`);
        return;
      }
      this.greeted = true;
      this.onGreeting?.();
      return;
    }
    if (typeof msg.event === 'string') {
      this.emit('event', { event: quote(msg.event, 64), data: msg.data } satisfies QmpEvent);
      return;
    }
    if ('return' in msg || isObject(msg.error)) this.onReply(msg);
    else this.fail(`QMP protocol error: a message that is neither reply nor event ('${quote(text, 40)}')`);
  }

  private onReply(msg: Record<string, unknown>): void {
    const id = typeof msg.id === 'string' ? msg.id : undefined;
    const p = id === undefined ? undefined : this.pending.get(id);
    if (!p) {
      if (id !== undefined && this.abandoned.delete(id)) return;
      this.fail(`QMP protocol error: a reply with unknown id ${quote(msg.id ?? '(none)', 40)}`);
      return;
    }
    this.pending.delete(id!);
    clearTimeout(p.timer);
    if ('return' in msg) p.resolve(msg.return);
    else {
      const err = msg.error as Record<string, unknown>;
      p.reject(new QmpCommandError(p.command, quote(err.class ?? 'GenericError', 40), quote(err.desc ?? '', 200)));
    }
  }
}
