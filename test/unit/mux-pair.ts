// Two ends of a byte stream for the Mux tests: a Mux pair over a real unix socket, and a hand-driven hostile
// peer that speaks the codec directly (to send what no honest Mux would).

import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Mux, type MuxOptions } from '../../src/qrexec/mux';
import {
  MUX_RESET, MuxDecoder, RESET_FLAG_UP, encodeReset, type MuxMessage,
} from '../../src/qrexec/mux-codec';

export interface SocketPair { a: net.Socket; b: net.Socket; close: () => void }

/** A connected pair of unix sockets (server side b), in a fresh temp directory. */
export async function socketPair(): Promise<SocketPair> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'isola-mux-'));
  const sockPath = path.join(dir, 's');
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(sockPath, r));
  const accepted = once(server, 'connection') as Promise<[net.Socket]>;
  const a = net.createConnection(sockPath);
  await once(a, 'connect');
  const [b] = await accepted;
  server.close();
  return {
    a, b,
    close: () => {
      a.destroy();
      b.destroy();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface MuxPair { agent: Mux; isolad: Mux; logs: string[]; sockets: SocketPair; close: () => void }

export async function muxPair(extra: Partial<MuxOptions> = {}): Promise<MuxPair> {
  const sockets = await socketPair();
  const logs: string[] = [];
  const log = (l: string) => logs.push(l);
  const agent = new Mux(sockets.a, { role: 'open', label: 'agent', log, ...extra });
  const isolad = new Mux(sockets.b, { role: 'accept', label: 'isolad', log, ...extra });
  await Promise.all([upOf(agent), upOf(isolad)]);
  return { agent, isolad, logs, sockets, close: () => (agent.close(), isolad.close(), sockets.close()) };
}

export function upOf(m: Mux): Promise<void> {
  return m.up ? Promise.resolve() : new Promise((r) => m.once('up', () => r()));
}

/** A peer that writes raw bytes and reads the Mux's messages with the codec. */
export class RawPeer {
  readonly messages: MuxMessage[] = [];
  readonly session = randomBytes(16);
  private readonly decoder = new MuxDecoder();
  private waiters: (() => void)[] = [];

  constructor(readonly socket: net.Socket) {
    socket.on('data', (c: Buffer) => {
      this.decoder.push(c);
      for (let m = this.decoder.next(); m; m = this.decoder.next()) this.messages.push(m);
      for (const w of this.waiters.splice(0)) w();
    });
    socket.on('error', () => undefined);
  }

  /** Completes the reset handshake as an honest peer would. */
  async handshake(): Promise<Buffer> {
    const mark = this.messages.length;
    this.socket.write(encodeReset(this.session, null));
    const r = await this.waitFor((m) => m.type === MUX_RESET && m.echo.equals(this.session), 3000, mark);
    if (r.type !== MUX_RESET) throw new Error('unreachable');
    this.socket.write(encodeReset(this.session, r.session, RESET_FLAG_UP));
    return r.session;
  }

  /** Resolves with the first message (from `from` on) that matches; rejects after ms. */
  waitFor(pred: (m: MuxMessage) => boolean, ms = 3000, from = 0): Promise<MuxMessage> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('no such message in time')), ms);
      const check = () => {
        const m = this.messages.slice(from).find(pred);
        if (m) {
          clearTimeout(t);
          resolve(m);
        } else this.waiters.push(check);
      };
      check();
    });
  }
}

export const tick = (ms = 20) => new Promise((r) => setTimeout(r, ms));
