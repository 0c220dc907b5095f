// The tests' own "internet": a network namespace reached from the host's namespace by one veth, holding
// test hosts on the documentation ranges (198.51.100.0/24, 203.0.113.0/24) that serve HTTP (answering
// with the address asked) and DNS (answering the names the test gives). Traffic of the tests goes there
// and nowhere else: never the host's real uplink or resolver.

import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Instance } from './harness';

/** One test internet per host at a time (its addresses and route are the host's): others wait their turn. */
const LOCK = '/run/isola-test-internet.lock';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function takeLock(waitMs = 20 * 60_000): Promise<void> {
  for (const until = Date.now() + waitMs; ; await new Promise((r) => setTimeout(r, 500))) {
    try {
      mkdirSync(LOCK);
      writeFileSync(`${LOCK}/pid`, String(process.pid));
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      let holder = 0;
      try {
        holder = Number(readFileSync(`${LOCK}/pid`, 'utf8'));
      } catch {
        // being written or removed: look again
      }
      if (holder > 0 && !alive(holder)) rmSync(LOCK, { recursive: true, force: true });
      if (Date.now() > until) throw new Error(`the test internet is held by pid ${holder} (${LOCK})`);
    }
  }
}

function hostHas(ip: string): boolean {
  return execFileSync('ip', ['-o', '-4', 'addr', 'show']).toString().includes(` ${ip}/`);
}

function releaseLock(): void {
  try {
    if (Number(readFileSync(`${LOCK}/pid`, 'utf8')) === process.pid) rmSync(LOCK, { recursive: true, force: true });
  } catch {
    // not ours, or gone
  }
}

/** A tiny DNS server and an HTTP server on every address, run inside the namespace as one node process. */
const SERVERS = String.raw`
const dgram = require('node:dgram'), http = require('node:http');
const names = JSON.parse(process.argv[1]), files = process.argv[2] || '';
// With a directory, /repo/... serves its files (a test's apt repository); each request is logged on stdout.
http.createServer((req, res) => {
  process.stdout.write('REQ ' + req.socket.remoteAddress + ' ' + req.method + ' ' + JSON.stringify(req.url) + '\n');
  const m = /^\/repo\/([A-Za-z0-9._+\/-]*)$/.exec(req.url || '');
  if (!files || !m) return res.end('hello from ' + req.socket.localAddress + '\n');
  const parts = m[1].split('/').filter((p) => p !== '.' && p !== ''); // apt asks a flat repository for ./Packages
  if (parts.includes('..')) { res.statusCode = 400; return res.end(); }
  const rel = parts.join('/');
  require('node:fs').readFile(require('node:path').join(files, rel), (err, data) => {
    if (err) { res.statusCode = 404; return res.end('not found\n'); }
    res.end(data);
  });
}).listen(80, '0.0.0.0');
// A sink for throughput: counts what it got and answers the count when the sender is done.
require('node:net').createServer((s) => { let n = 0; s.on('data', (d) => (n += d.length)); s.on('end', () => s.end(String(n))); }).listen(9000, '0.0.0.0');
const dns = dgram.createSocket('udp4');
dns.on('message', (q, rinfo) => {
  if (q.length < 17) return;
  let i = 12; const labels = [];
  while (i < q.length && q[i] !== 0 && labels.length < 64) { labels.push(q.subarray(i + 1, i + 1 + q[i]).toString('latin1')); i += q[i] + 1; }
  const end = i + 5; if (end > q.length) return;
  const name = labels.join('.').toLowerCase(), type = q.readUInt16BE(i + 1), ip = names[name];
  const head = Buffer.from(q.subarray(0, end)); head[2] = 0x84 | (q[2] & 1); head[3] = ip ? 0 : 3;
  head.writeUInt16BE(1, 4); head.writeUInt16BE(ip && type === 1 ? 1 : 0, 6); head.writeUInt32BE(0, 8);
  const answer = ip && type === 1 ? Buffer.from([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, ...ip.split('.').map(Number)]) : Buffer.alloc(0);
  dns.send(Buffer.concat([head, answer]), rinfo.port, rinfo.address);
});
dns.bind(53, '203.0.113.53', () => process.stdout.write('ready\n'));
`;

export const DNS_SERVER = '203.0.113.53';
/** The test hosts of 203.0.113.0/24, each routed from the host on its own. */
const FAR_HOSTS = ['203.0.113.10', '203.0.113.20', DNS_SERVER];

export class TestInternet {
  readonly ns: string;
  /** The host's end of the veth to the test hosts. */
  readonly hostIf: string;
  readonly hostIp = '198.51.100.1';
  /** Test hosts that answer HTTP on port 80 (and count bytes sent to port 9000). */
  readonly hosts = ['198.51.100.10', '198.51.100.20', '203.0.113.10', '203.0.113.20'];
  /** `METHOD "URL"` of each HTTP request the test hosts got, with the client's address first. */
  readonly requests: string[] = [];
  private servers?: ChildProcess;

  private constructor(tag: string, private readonly names: Record<string, string>, private readonly files: string) {
    this.ns = `isolatest-${tag}`;
    this.hostIf = `itn${tag}`;
  }

  /**
   * names: DNS names the test DNS server answers (`deb.test` → `198.51.100.10`); files: a directory
   * every test host serves under /repo/ (an apt repository, say).
   */
  static async create(names: Record<string, string> = {}, files = ''): Promise<TestInternet> {
    await takeLock();
    // A run of an older tree takes no lock: wait until its addresses are gone too.
    for (const until = Date.now() + 20 * 60_000; hostHas('198.51.100.1') && Date.now() < until; ) await new Promise((r) => setTimeout(r, 1000));
    const t = new TestInternet(randomBytes(3).toString('hex'), names, files);
    try {
      await t.setup();
    } catch (e) {
      t.destroy();
      throw e;
    }
    return t;
  }

  private ip(args: string[], ns?: string): void {
    execFileSync('ip', ns ? ['-n', ns, ...args] : args, { stdio: ['ignore', 'ignore', 'pipe'] });
  }

  private async setup(): Promise<void> {
    this.ip(['netns', 'add', this.ns]);
    this.ip(['link', 'add', this.hostIf, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', this.ns]);
    this.ip(['addr', 'add', `${this.hostIp}/24`, 'dev', this.hostIf]);
    this.ip(['link', 'set', this.hostIf, 'up']);
    this.ip(['link', 'set', 'lo', 'up'], this.ns);
    for (const a of ['198.51.100.2/24', '198.51.100.10/24', '198.51.100.20/24']) this.ip(['addr', 'add', a, 'dev', 'eth0'], this.ns);
    this.ip(['link', 'set', 'eth0', 'up'], this.ns);
    // The far network on loopback (this kernel has no dummy interfaces): reached only by routing.
    for (const a of FAR_HOSTS) this.ip(['addr', 'add', `${a}/32`, 'dev', 'lo'], this.ns);
    this.ip(['route', 'add', 'default', 'via', this.hostIp], this.ns);
    // From the host, these addresses only lead into the test's namespace. Only these: the rest of
    // 203.0.113.0/24 may be the machine's own (this one's Debian mirror is 203.0.113.80, in /etc/hosts).
    for (const a of FAR_HOSTS) this.ip(['route', 'add', `${a}/32`, 'via', '198.51.100.2', 'dev', this.hostIf]);
    const child = spawn('ip', ['netns', 'exec', this.ns, process.execPath, '-e', SERVERS, JSON.stringify(this.names), this.files], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.servers = child;
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`test servers did not start: ${err}`)), 10_000);
      let out = '';
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        const lines = out.split('\n');
        out = lines.pop()!;
        for (const l of lines) {
          if (l === 'ready') clearTimeout(timer), resolve();
          else if (l.startsWith('REQ ')) this.requests.push(l.slice(4));
        }
      });
      child.once('exit', () => (clearTimeout(timer), reject(new Error(`test servers exited: ${err}`))));
    });
  }

  destroy(): void {
    if (this.servers?.pid && this.servers.exitCode === null) this.servers.kill('SIGKILL');
    const quiet = (args: string[]) => {
      try {
        execFileSync('ip', args, { stdio: 'ignore' });
      } catch {
        // already gone
      }
    };
    for (const a of FAR_HOSTS) quiet(['route', 'del', `${a}/32`, 'via', '198.51.100.2', 'dev', this.hostIf]);
    quiet(['link', 'del', this.hostIf]);
    quiet(['netns', 'del', this.ns]);
    releaseLock();
  }
}

/**
 * An isolad whose sys-net has the test internet's DNS upstream, with Qubes' two net qubes as
 * `isola setup` makes them (test/unit covers that it does) and default_netvm sys-firewall.
 */
export async function networkedInstance(): Promise<Instance> {
  const inst = new Instance({ env: { ISOLA_UPLINK_DNS: DNS_SERVER } });
  await inst.start();
  await inst.installTemplate();
  await inst.ok('qvm-create', '--label', 'red', '--prop', 'provides_network=True', '--prop', 'netvm=', 'sys-net');
  await inst.ok('qvm-create', '--label', 'green', '--prop', 'provides_network=True', '--prop', 'netvm=sys-net', 'sys-firewall');
  await inst.ok('qubes-prefs', 'default_netvm', 'sys-firewall');
  return inst;
}
