// A second baseline for the network bench: the same number of hops as qube → sys-firewall → sys-net →
// host → test host, as bare veth pairs between namespaces with routing only (no nftables, no
// conntrack, no NAT). What the chain loses beyond this is what Isola's rules cost; what this loses
// against the direct transfer is the kernel's forwarding on this machine.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';

/** A sink in the last namespace; `head` is where the sender runs, `target` the sink's address. */
export interface VethChain {
  head: string;
  target: string;
  destroy(): void;
}

const SINK = `require('node:net').createServer((s) => { let n = 0; s.on('data', (d) => (n += d.length)); s.on('end', () => s.end(String(n))); }).listen(9000, '0.0.0.0', () => process.stdout.write('ready\\n'));`;

export async function vethChain(hops: number): Promise<VethChain> {
  const tag = randomBytes(3).toString('hex');
  const ns = Array.from({ length: hops + 1 }, (_, i) => `isolabench-${tag}-${i}`);
  // Private namespaces only, never routed from the host: the documentation range cannot leak.
  const target = '198.51.100.250';
  const ip = (...args: string[]) => execFileSync('ip', args);
  let sink: ChildProcess | undefined;
  const destroy = () => {
    if (sink?.pid) process.kill(sink.pid, 'SIGKILL');
    for (const n of ns) {
      try {
        ip('netns', 'del', n);
      } catch {
        // not made
      }
    }
  };
  try {
    for (const n of ns) {
      ip('netns', 'add', n);
      ip('-n', n, 'link', 'set', 'lo', 'up');
      execFileSync('ip', ['netns', 'exec', n, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
    }
    for (let i = 0; i < hops; i++) {
      const [l, r] = [`198.51.100.${128 + 4 * i + 1}`, `198.51.100.${128 + 4 * i + 2}`];
      ip('link', 'add', `bc${i}`, 'netns', ns[i], 'type', 'veth', 'peer', 'name', `bd${i}`, 'netns', ns[i + 1]);
      ip('-n', ns[i], 'addr', 'add', `${l}/30`, 'dev', `bc${i}`);
      ip('-n', ns[i + 1], 'addr', 'add', `${r}/30`, 'dev', `bd${i}`);
      ip('-n', ns[i], 'link', 'set', `bc${i}`, 'up');
      ip('-n', ns[i + 1], 'link', 'set', `bd${i}`, 'up');
      ip('-n', ns[i], 'route', 'add', `${target}/32`, 'via', r);
      ip('-n', ns[i + 1], 'route', 'add', '198.51.100.128/26', 'via', l);
    }
    ip('-n', ns[hops], 'addr', 'add', `${target}/32`, 'dev', 'lo');
    sink = spawn('ip', ['netns', 'exec', ns[hops], process.execPath, '-e', SINK], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      sink!.stdout!.once('data', () => resolve());
      sink!.once('exit', (code) => reject(new Error(`the chain's sink exited (${code})`)));
    });
  } catch (e) {
    destroy();
    throw e;
  }
  return { head: `/run/netns/${ns[0]}`, target, destroy };
}
