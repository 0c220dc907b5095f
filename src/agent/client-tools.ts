// In-qube qrexec clients (qrexec-client-vm and the tools built on it) call isolad on the qube's own client
// socket, which isolad serves from the host (mounted read-only at /run/qubes): isolad knows the caller by that
// socket, so nothing the client says can change its source, and it accepts qrexec calls only there.

import { existsSync, mkdirSync, writeFileSync } from 'fs';

export const CLIENT_SOCKET = process.env.ISOLA_CLIENT_SOCKET || '/run/qubes/qrexec-client.sock';
/** The in-qube tools: command name -> the bundle (or shell script) in /usr/lib/isola (bound from isolad) and its first arguments. */
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
