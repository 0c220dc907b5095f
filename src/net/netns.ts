// Running iproute2, nft and sysctl inside a qube's network namespace. The namespaces are the qubes'
// own (made by their runtime, reached through a process of theirs); only isolad, as host root,
// configures them: no qube holds CAP_NET_ADMIN, so none can change its addresses, routes or rules.

import { spawn } from 'node:child_process';

/** A network namespace, as a path nsenter can enter (`/proc/PID/ns/net`); undefined: the host's own. */
export type NetnsPath = string | undefined;

export const netnsOfPid = (pid: number): string => `/proc/${pid}/ns/net`;

/** The first line of a tool's complaint, without its "Error: " prefix: what a user is shown. */
function firstLine(text: string): string {
  const line = text.split('\n').map((l) => l.trim()).find((l) => l !== '') ?? '';
  return line.replace(/^Error:\s*/, '').slice(0, 300);
}

/** Runs argv (in ns, if given) with input on stdin; rejects with a one-line error naming what. */
export function runIn(ns: NetnsPath, argv: string[], input: string, what: string): Promise<string> {
  const [cmd, ...args] = ns === undefined ? argv : ['nsenter', `--net=${ns}`, '--', ...argv];
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', (e) => reject(new Error(`${what}: ${e.message}`)));
    child.on('close', (code) => {
      if (code === 0) resolve(Buffer.concat(out).toString('utf8'));
      else reject(new Error(`${what}: ${firstLine(Buffer.concat(err).toString('utf8')) || `${cmd} exited with ${code}`}`));
    });
    child.stdin.on('error', () => undefined); // a tool that exits early: its exit code tells
    child.stdin.end(input);
  });
}

/** iproute2 commands, one per line, in one process (one spawn for a whole link's setup). */
export function ipBatch(ns: NetnsPath, lines: string[], what: string, opts: { force?: boolean } = {}): Promise<string> {
  if (lines.length === 0) return Promise.resolve('');
  return runIn(ns, ['ip', ...(opts.force ? ['-force'] : []), '-batch', '-'], lines.join('\n') + '\n', what);
}

/** An nft script applied as one transaction: all of it, or nothing. */
export function nftRun(ns: NetnsPath, script: string, what: string): Promise<string> {
  return runIn(ns, ['nft', '-f', '-'], script, what);
}

/** Kernel settings of the namespace (`net.ipv4.ip_forward=1`): /proc/sys/net is the opener's namespace. */
export function sysctls(ns: NetnsPath, settings: Record<string, string>, what: string): Promise<string> {
  const args = Object.entries(settings).map(([k, v]) => `${k}=${v}`);
  return runIn(ns, ['sysctl', '-q', '-w', ...args], '', what);
}
