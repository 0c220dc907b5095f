// Client of isolad's Admin API over its unix socket (Qubes' wire format). The CLI talks to
// isolad only through this module.

import net from 'node:net';
import { decodeEvents, decodeReply, encodeRequest, headerTokenProblem, type AdminEvent } from '../core/admin-wire';
import type { AdminMethod } from '../core/admin-methods';
import { QubesError } from '../core/errors';
import { errorText } from '../core/error-text';

export function socketPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.ISOLA_SOCKET || '/run/isola/isolad.sock';
}

/** Why the socket could not be reached, in the user's terms (never Node's `connect EACCES …`). */
export function connectError(path: string, e: NodeJS.ErrnoException): QubesError {
  if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED') return new QubesError('QubesException', 'isolad is not running (start it with `npm start` or `isolad`)');
  if (e.code === 'EACCES' || e.code === 'EPERM') return new QubesError('QubesException', `cannot connect to isolad at ${path}: permission denied (run as root)`);
  if (e.code === 'ENOTSOCK' || e.code === 'ENOTDIR') return new QubesError('QubesException', `cannot connect to isolad at ${path}: not a socket (check ISOLA_SOCKET)`);
  return new QubesError('QubesException', `cannot connect to isolad at ${path}: ${errorText(e)}`);
}

function lostConnection(e: NodeJS.ErrnoException): QubesError {
  return new QubesError('QubesException', `lost the connection to isolad before its answer (${errorText(e)})`);
}

export interface CallOptions {
  arg?: string;
  payload?: string | Buffer;
}

export class AdminClient {
  constructor(readonly path: string = socketPath()) {}

  connect(): Promise<net.Socket> {
    return new Promise((resolve, reject) => {
      const sock = net.createConnection(this.path);
      sock.once('connect', () => resolve(sock));
      sock.once('error', (e: NodeJS.ErrnoException) => reject(connectError(this.path, e)));
    });
  }

  /** One call: sends the request, half-closes, returns the OK content or throws the QubesError. */
  async call(method: AdminMethod, dest: string, opts: CallOptions = {}): Promise<string> {
    // Refused here with a readable message; isolad would only see a malformed header.
    const problem = headerTokenProblem(opts.arg ?? '') ?? headerTokenProblem(dest);
    if (problem) throw new QubesError('QubesValueError', problem);
    const sock = await this.connect();
    const payload = typeof opts.payload === 'string' ? Buffer.from(opts.payload) : (opts.payload ?? Buffer.alloc(0));
    return new Promise((resolve, reject) => {
      const chunks: Buffer[] = [];
      sock.on('data', (d) => chunks.push(d));
      sock.on('error', (e: NodeJS.ErrnoException) => reject(lostConnection(e)));
      sock.on('end', () => {
        try {
          resolve(decodeReply(Buffer.concat(chunks)));
        } catch (e) {
          reject(e);
        }
      });
      sock.end(encodeRequest({ method, arg: opts.arg ?? '', dest, payload }));
    });
  }

  /** Subscribes to admin.Events; returns a function that closes the stream. */
  async events(onEvent: (e: AdminEvent) => void, dest = 'dom0'): Promise<() => void> {
    const sock = await this.connect();
    let buf: Buffer = Buffer.alloc(0);
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      const { events, rest } = decodeEvents(buf);
      buf = rest;
      for (const e of events) onEvent(e);
    });
    sock.on('error', () => undefined);
    sock.end(encodeRequest({ method: 'admin.Events', arg: '', dest, payload: Buffer.alloc(0) }));
    await new Promise<void>((resolve) => {
      const check = (e: AdminEvent) => e.event === 'connection-established';
      const orig = onEvent;
      onEvent = (e) => (check(e) ? resolve() : orig(e));
    });
    return () => sock.destroy();
  }
}
