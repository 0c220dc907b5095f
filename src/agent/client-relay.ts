// In-qube qrexec clients (qrexec-client-vm and the tools built on it) reach isolad through the
// agent: a local socket any user of the qube may use, relayed byte for byte to isolad's agent
// socket. isolad knows the caller by that socket, so nothing the client says can change its source.

import { chmodSync, mkdirSync, rmSync, writeFileSync, existsSync } from 'fs';
import { createConnection, createServer, type Server } from 'net';

export const CLIENT_SOCKET = process.env.ISOLA_CLIENT_SOCKET || '/run/qubes/qrexec-client.sock';
/** The in-qube tools: command name -> the bundle in /usr/lib/isola (bound from isolad) and its first arguments. */
const TOOLS: Record<string, string[]> = {
  'qrexec-client-vm': ['qrexec-client-vm.js'],
  'qvm-copy': ['qvm-copy.js', 'qvm-copy'],
  'qvm-copy-to-vm': ['qvm-copy.js', 'qvm-copy-to-vm'],
  'qvm-move': ['qvm-copy.js', 'qvm-move'],
  'qvm-move-to-vm': ['qvm-copy.js', 'qvm-move-to-vm'],
  'qvm-open-in-vm': ['qvm-open-in-vm.js', 'qvm-open-in-vm'],
  'qvm-open-in-dvm': ['qvm-open-in-vm.js', 'qvm-open-in-dvm'],
  'isola-clipboard': ['isola-clipboard'],
};

export function startClientRelay(upstreamPath: string, log: (l: string) => void): Server | undefined {
  try {
    mkdirSync(CLIENT_SOCKET.slice(0, CLIENT_SOCKET.lastIndexOf('/')), { recursive: true, mode: 0o755 });
    rmSync(CLIENT_SOCKET, { force: true });
  } catch (e) {
    log(`qrexec client socket: ${(e as Error).message}`);
    return undefined;
  }
  const server = createServer({ allowHalfOpen: true }, (local) => {
    const upstream = createConnection({ path: upstreamPath, allowHalfOpen: true });
    const drop = () => {
      local.destroy();
      upstream.destroy();
    };
    local.on('error', drop);
    upstream.on('error', drop);
    local.pipe(upstream);
    upstream.pipe(local);
  });
  server.on('error', (e) => log(`qrexec client socket: ${e.message}`));
  server.listen(CLIENT_SOCKET, () => {
    try {
      chmodSync(CLIENT_SOCKET, 0o666);
    } catch {
      /* tests on a host may not own the path's mode */
    }
  });
  return server;
}

/** Puts `qrexec-client-vm` & co. on the PATH (in /usr/local/bin, so template files stay untouched). */
export function installToolWrappers(libDir = '/usr/lib/isola', binDir = '/usr/local/bin'): void {
  for (const [tool, [bundle, ...fixed]] of Object.entries(TOOLS)) {
    const target = `${binDir}/${tool}`;
    if (existsSync(target) || !existsSync(`${libDir}/${bundle}`)) continue;
    try {
      mkdirSync(binDir, { recursive: true });
      const runner = bundle.endsWith('.js') ? '/usr/bin/node' : '/bin/sh';
      writeFileSync(target, `#!/bin/sh\nexec ${runner} ${libDir}/${bundle} ${fixed.join(' ')} "$@"\n`, { mode: 0o755 });
    } catch {
      /* read-only root: the tools are still reachable as node ${libDir}/TOOL.js */
    }
  }
}
