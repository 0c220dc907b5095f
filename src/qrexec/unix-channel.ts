// An agent channel made of unix sockets on the host (the sandbox backend binds their directories into
// the qube): one listening socket per endpoint, so the socket a connection arrived on says who it is.

import { chmodSync, lstatSync, statSync, unlinkSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { AgentChannel, ChannelEndpoint } from '../core/backend';
import { QubesError } from '../core/errors';

export interface UnixEndpoint {
  path: string;
  endpoint: ChannelEndpoint;
}

interface Listening { server: Server; path: string; ino: number }

export class UnixSocketChannel implements AgentChannel {
  private readonly listening: Listening[] = [];

  constructor(private readonly endpoints: UnixEndpoint[], private readonly log: (line: string) => void = () => undefined) {}

  async listen(accept: (conn: Duplex, from: ChannelEndpoint) => void): Promise<void> {
    for (const e of this.endpoints) await this.listenAt(e, accept);
  }

  private async listenAt(e: UnixEndpoint, accept: (conn: Socket, from: ChannelEndpoint) => void): Promise<void> {
    try {
      if (!lstatSync(e.path).isSocket()) throw new QubesError('QubesException', `${e.path}: exists and is not a socket; remove it`);
      unlinkSync(e.path); // left by an isolad that died: listen() would fail with EADDRINUSE
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
    const server = createServer((s) => accept(s, e.endpoint));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(e.path, () => (server.off('error', reject), resolve()));
    });
    // Open to any uid: the directory around the socket is the guard (agent: 0700, the qube's root; client: the qube's mount).
    chmodSync(e.path, 0o666);
    server.on('error', (err) => this.log(`${e.path}: ${err.message}`));
    this.listening.push({ server, path: e.path, ino: statSync(e.path).ino });
  }

  async close(): Promise<void> {
    const all = this.listening.splice(0);
    await Promise.all(all.map((l) => new Promise<void>((r) => l.server.close(() => r()))));
    for (const l of all) {
      try {
        // Only our own socket: a newer listener may already have replaced it at the same path.
        if (statSync(l.path).ino === l.ino) unlinkSync(l.path);
      } catch {
        /* already gone */
      }
    }
  }
}
