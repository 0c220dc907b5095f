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
import { errorText } from '../core/error-text';

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
  /** Event streams never end by themselves: close() ends them, or the server would wait forever. */
  private readonly streams = new Set<net.Socket>();

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
    const closed = new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    for (const s of this.streams) s.destroy();
    return closed;
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
      try {
        this.checkPayload(req, contract);
      } catch (e) {
        return fail(e);
      }
      if (contract.stream) return this.streamEvents(sock, req);
      this.run({ req, contract }, sock);
    };
    sock.on('data', onData);
    sock.on('end', onEnd);
  }

  /**
   * Enforces the method's contract before anything runs. On the socket the caller is dom0 (the socket
   * is root's): a header naming another source is refused. Calls from qubes arrive through qrexec
   * (callFromQube), already allowed by the policy, with the source isolad itself determined.
   */
  private check(h: Omit<AdminRequest, 'payload'>, viaQrexec = false): MethodContract {
    if (!isAdminMethod(h.method)) throw protocolError(`unknown method '${h.method}'`);
    if (!viaQrexec && h.source !== 'dom0') throw new QubesError('PermissionDenied', `${h.method}: calls from ${h.source} come through qrexec, not this socket`);
    const contract: MethodContract = ADMIN_METHODS[h.method];
    if (contract.dest === 'dom0' && h.dest !== 'dom0') throw protocolError(`${h.method} must be called on dom0`);
    if (contract.dest === 'vm' && h.dest === 'dom0') throw protocolError(`${h.method} cannot be called on dom0`);
    if (contract.arg === 'required' && !h.arg) throw protocolError(`${h.method} needs an argument`);
    if (contract.arg === 'forbidden' && h.arg) throw protocolError(`${h.method} takes no argument`);
    return contract;
  }

  private checkPayload(req: AdminRequest, contract: MethodContract): void {
    if (contract.payload === 'forbidden' && req.payload.length > 0) throw protocolError(`${req.method} takes no payload`);
    if (contract.payload === 'required' && req.payload.length === 0) throw protocolError(`${req.method} needs a payload`);
  }

  /** Runs one call to completion and returns the reply bytes (OK or exception); never throws. */
  private async execute(ctx: CallContext): Promise<Buffer> {
    try {
      const handler = this.handlers[ctx.req.method as AdminMethod];
      if (!handler) throw new QubesError('QubesNotImplementedError', `${ctx.req.method} is not implemented`);
      return encodeOk(await handler(ctx));
    } catch (e) {
      return this.exceptionReply(e);
    }
  }

  /** An Admin API call a qube made through qrexec, after the policy allowed it: Qubes' reply bytes. */
  async callFromQube(req: AdminRequest): Promise<Buffer> {
    try {
      const contract = this.check(req, true);
      if (contract.stream || this.streamHandlers[req.method as AdminMethod]) throw new QubesError('QubesNotImplementedError', `${req.method} cannot be called this way from a qube`);
      this.checkPayload(req, contract);
      return await this.execute({ req, contract });
    } catch (e) {
      return this.exceptionReply(e);
    }
  }

  private run(ctx: CallContext, sock: net.Socket): void {
    void this.execute(ctx).then((out) => {
      if (!sock.destroyed) sock.end(out);
    });
  }

  private reply(sock: net.Socket, e: unknown): void {
    if (!sock.destroyed) sock.end(this.exceptionReply(e));
  }

  private exceptionReply(e: unknown): Buffer {
    if (isQubesError(e)) {
      this.log.info(`call refused: ${e.code}: ${e.message}`);
      return encodeException(e.code, e.message);
    }
    const err = e as Error;
    this.log.error(`internal error: ${err.stack ?? err.message}`);
    // The log keeps Node's text; the caller reads it in words (no errno code, no syscall).
    return encodeException('QubesException', errorText(err).split('\n')[0]);
  }

  private streamEvents(sock: net.Socket, req: AdminRequest): void {
    sock.write(encodeEvent('', 'connection-established', {}));
    const unsubscribe = this.events.subscribe((ev) => {
      if (req.dest !== 'dom0' && ev.subject !== req.dest) return;
      if (!sock.destroyed) sock.write(encodeEvent(ev.subject, ev.event, ev.kwargs));
    });
    this.streams.add(sock);
    sock.on('close', () => {
      unsubscribe();
      this.streams.delete(sock);
    });
  }
}
