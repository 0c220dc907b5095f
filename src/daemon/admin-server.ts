// The Admin API server on isolad's unix socket: reads one request (Qubes framing), checks the
// method's contract, runs its handler and writes one reply — or an event stream, or, for
// admin.vm.Run, hands the connection over to the qrexec data relay.

import { promises as fs } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { ADMIN_METHODS, isAdminMethod, type AdminMethod, type MethodContract } from '../core/admin-methods';
import { encodeEvent, encodeException, encodeOk, MAX_HEADER, parseRequestHeader, type AdminRequest } from '../core/admin-wire';
import { isQubesError, protocolError, QubesError } from '../core/errors';
import type { EventBus } from './event-bus';
import type { Logger } from './logger';

export interface CallContext {
  req: AdminRequest;
  contract: MethodContract;
}

export type Handler = (ctx: CallContext) => Promise<string> | string;
/** Handlers that take over the socket (admin.vm.Run): they get the bytes already read after the header. */
export type StreamHandler = (ctx: CallContext, sock: net.Socket, rest: Buffer) => Promise<void>;

const MAX_PAYLOAD = 64 * 1024 * 1024;

export class AdminServer {
  private server?: net.Server;

  constructor(
    private readonly handlers: Partial<Record<AdminMethod, Handler>>,
    private readonly streamHandlers: Partial<Record<AdminMethod, StreamHandler>>,
    private readonly events: EventBus,
    private readonly log: Logger,
  ) {}

  async listen(socketPath: string): Promise<void> {
    await fs.mkdir(path.dirname(socketPath), { recursive: true, mode: 0o755 });
    await fs.rm(socketPath, { force: true });
    this.server = net.createServer({ allowHalfOpen: true }, (sock) => this.serve(sock));
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(socketPath, () => resolve());
    });
    // Only root (and root's group) may manage qubes.
    await fs.chmod(socketPath, 0o660);
  }

  close(): Promise<void> {
    return new Promise((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  private serve(sock: net.Socket): void {
    let buf: Buffer = Buffer.alloc(0);
    let header: Omit<AdminRequest, 'payload'> | undefined;
    let contract: MethodContract | undefined;
    const fail = (e: unknown) => this.reply(sock, e);
    sock.on('error', () => undefined);
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      try {
        if (!header) {
          const nul = buf.indexOf(0);
          if (nul === -1) {
            if (buf.length > MAX_HEADER) throw protocolError('request header too long');
            return;
          }
          header = parseRequestHeader(buf.subarray(0, nul).toString('utf8'));
          buf = buf.subarray(nul + 1);
          contract = this.check(header);
          const stream = this.streamHandlers[header.method as AdminMethod];
          if (stream) {
            // Paused so no byte is lost between this reader and the stream handler's.
            sock.pause();
            sock.off('data', onData);
            sock.off('end', onEnd);
            const ctx = { req: { ...header, payload: Buffer.alloc(0) }, contract };
            stream(ctx, sock, buf).catch(fail);
            return;
          }
        }
        if (buf.length > MAX_PAYLOAD) throw protocolError('payload too large');
      } catch (e) {
        sock.off('data', onData);
        fail(e);
      }
    };
    const onEnd = () => {
      if (!header || !contract) return fail(protocolError('connection closed before a complete request'));
      const req: AdminRequest = { ...header, payload: buf };
      if (contract.payload === 'forbidden' && buf.length > 0) return fail(protocolError(`${req.method} takes no payload`));
      if (contract.payload === 'required' && buf.length === 0) return fail(protocolError(`${req.method} needs a payload`));
      if (contract.stream) return this.streamEvents(sock, req);
      this.run({ req, contract }, sock);
    };
    sock.on('data', onData);
    sock.on('end', onEnd);
  }

  /** Enforces the method's contract before anything runs. */
  private check(h: Omit<AdminRequest, 'payload'>): MethodContract {
    if (!isAdminMethod(h.method)) throw protocolError(`unknown method '${h.method}'`);
    // Calls from qubes go through qrexec policy (a later issue): until then only dom0 may call.
    if (h.source !== 'dom0') throw new QubesError('PermissionDenied', `${h.method}: calls from ${h.source} are not allowed`);
    const contract: MethodContract = ADMIN_METHODS[h.method];
    if (contract.dest === 'dom0' && h.dest !== 'dom0') throw protocolError(`${h.method} must be called on dom0`);
    if (contract.dest === 'vm' && h.dest === 'dom0') throw protocolError(`${h.method} cannot be called on dom0`);
    if (contract.arg === 'required' && !h.arg) throw protocolError(`${h.method} needs an argument`);
    if (contract.arg === 'forbidden' && h.arg) throw protocolError(`${h.method} takes no argument`);
    return contract;
  }

  private run(ctx: CallContext, sock: net.Socket): void {
    const handler = this.handlers[ctx.req.method as AdminMethod];
    if (!handler) return this.reply(sock, new QubesError('QubesNotImplementedError', `${ctx.req.method} is not implemented`));
    Promise.resolve()
      .then(() => handler(ctx))
      .then((out) => {
        if (!sock.destroyed) sock.end(encodeOk(out));
      }, (e) => this.reply(sock, e));
  }

  private reply(sock: net.Socket, e: unknown): void {
    if (isQubesError(e)) {
      this.log.info(`call refused: ${e.code}: ${e.message}`);
      if (!sock.destroyed) sock.end(encodeException(e.code, e.message));
      return;
    }
    const err = e as Error;
    this.log.error(`internal error: ${err.stack ?? err.message}`);
    if (!sock.destroyed) sock.end(encodeException('QubesException', err.message.split('\n')[0]));
  }

  private streamEvents(sock: net.Socket, req: AdminRequest): void {
    sock.write(encodeEvent('', 'connection-established', {}));
    const unsubscribe = this.events.subscribe((ev) => {
      if (req.dest !== 'dom0' && ev.subject !== req.dest) return;
      if (!sock.destroyed) sock.write(encodeEvent(ev.subject, ev.event, ev.kwargs));
    });
    sock.on('close', unsubscribe);
  }
}
