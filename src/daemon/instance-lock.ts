// One isolad per instance: a daemon holds two Linux abstract unix sockets, named after its
// ISOLA_HOME and its ISOLA_SOCKET. The kernel releases them when the process dies (even by
// kill -9), so there is no stale lock to clean; a second daemon finds them taken and is told the
// pid of the first, which each lock socket answers to whoever connects.

import { createHash } from 'node:crypto';
import net from 'node:net';
import type { DaemonConfig } from './config';

export interface InstanceLock {
  release(): Promise<void>;
}

const nameOf = (kind: string, value: string) => `\0isolad-${kind}-${createHash('sha256').update(value).digest('hex').slice(0, 32)}`;

/** The pid the holder of a lock announces, or undefined when it does not answer in time. */
function holderPid(name: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    const sock = net.createConnection(name);
    let text = '';
    const done = (pid: number | undefined) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(pid);
    };
    const timer = setTimeout(() => done(undefined), 1000);
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => (text += d).length > 32 && done(undefined));
    sock.on('end', () => done(/^[0-9]{1,10}\n$/.test(text) ? Number(text) : undefined));
    sock.on('error', () => done(undefined));
  });
}

function hold(name: string): Promise<net.Server | 'taken'> {
  return new Promise((resolve, reject) => {
    const server = net.createServer((sock) => sock.end(`${process.pid}\n`));
    server.once('error', (e: NodeJS.ErrnoException) => (e.code === 'EADDRINUSE' ? resolve('taken') : reject(e)));
    server.listen(name, () => resolve(server));
    server.unref();
  });
}

export async function acquireInstanceLock(cfg: Pick<DaemonConfig, 'home' | 'socket'>): Promise<InstanceLock> {
  const held: net.Server[] = [];
  const release = async () => {
    for (const s of held.splice(0)) await new Promise<void>((r) => s.close(() => r()));
  };
  for (const [kind, value, what] of [['home', cfg.home, `ISOLA_HOME=${cfg.home}`], ['socket', cfg.socket, `its socket ${cfg.socket}`]] as const) {
    const name = nameOf(kind, value);
    const server = await hold(name);
    if (server === 'taken') {
      await release();
      const pid = await holderPid(name);
      throw new Error(`another isolad${pid ? ` (pid ${pid})` : ''} already runs for ${what}; stop it first (one isolad per instance)`);
    }
    held.push(server);
  }
  return { release };
}
