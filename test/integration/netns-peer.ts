// A test peer run inside a network namespace (nsenter --net=… node netns-peer.js MODE JSON):
// `serve` plays the internet's hosts (TCP greeting + echo, UDP echo, a one-answer DNS server) and logs
// every packet it gets as a JSON line; `agent` plays a client qube, doing what the test asks on stdin.

import dgram from 'node:dgram';
import net from 'node:net';
import readline from 'node:readline';

const out = (o: object) => process.stdout.write(JSON.stringify(o) + '\n');

interface ServeConfig {
  tcp: number[];
  udpEcho: { addr: string; port: number }[];
  dns: { addr: string; answer: string }[];
}

/** Answers any query with one A record: enough to show which upstream server a query reached. */
function dnsAnswer(q: Buffer, answer: string): Buffer | undefined {
  if (q.length < 17) return undefined;
  let i = 12;
  while (i < q.length && q[i] !== 0) i += q[i] + 1;
  const question = q.subarray(12, i + 5);
  const header = Buffer.from([q[0], q[1], 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0]);
  const rr = Buffer.from([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, ...answer.split('.').map(Number)]);
  return Buffer.concat([header, question, rr]);
}

function dnsQuery(name: string): Buffer {
  const labels = name.split('.').flatMap((l) => [l.length, ...Buffer.from(l)]);
  return Buffer.from([0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, ...labels, 0, 0, 1, 0, 1]);
}

async function serve(cfg: ServeConfig): Promise<void> {
  const ready: Promise<void>[] = [];
  for (const port of cfg.tcp) {
    const srv = net.createServer((s) => {
      out({ ev: 'tcp', port, local: s.localAddress, from: s.remoteAddress });
      s.on('error', () => {});
      s.write(`hello ${s.remoteAddress?.replace('::ffff:', '')}\n`);
      readline.createInterface({ input: s }).on('line', (l) => s.write(`echo ${l}\n`));
    });
    ready.push(new Promise((r) => srv.listen(port, '0.0.0.0', () => r())));
  }
  const udp = (addr: string, port: number, reply: (m: Buffer, from: string) => Buffer | undefined, ev: string) => {
    const s = dgram.createSocket('udp4');
    s.on('message', (m, r) => {
      out({ ev, local: addr, port, from: r.address });
      const a = reply(m, r.address);
      if (a) s.send(a, r.port, r.address);
    });
    ready.push(new Promise((res) => s.bind(port, addr, () => res())));
  };
  for (const u of cfg.udpEcho) udp(u.addr, u.port, (_m, from) => Buffer.from(`echo ${from}`), 'udp');
  for (const d of cfg.dns) udp(d.addr, 53, (m) => dnsAnswer(m, d.answer), 'dns');
  await Promise.all(ready);
  out({ ev: 'ready' });
}

interface Request {
  id: number;
  op: 'tcp' | 'open' | 'send' | 'udp' | 'dns';
  host?: string;
  port?: number;
  name?: string;
  text?: string;
  localAddress?: string;
  timeoutMs: number;
}

const open = new Map<string, { sock: net.Socket; lines: string[]; waiter?: (l: string | Error) => void }>();

function tcpConnect(req: Request): Promise<{ sock: net.Socket; greeting: string }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: req.host!, port: req.port!, localAddress: req.localAddress });
    const timer = setTimeout(() => (sock.destroy(), reject(Object.assign(new Error('timeout'), { code: 'TIMEOUT' }))), req.timeoutMs);
    sock.once('error', (e) => (clearTimeout(timer), reject(e)));
    sock.once('data', (d) => (clearTimeout(timer), resolve({ sock, greeting: d.toString().trim() })));
  });
}

function udpExchange(host: string, port: number, payload: Buffer, req: Request): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
    const done = (e: Error | undefined, m?: Buffer) => {
      clearTimeout(timer);
      s.close();
      e ? reject(e) : resolve(m!);
    };
    const timer = setTimeout(() => done(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })), req.timeoutMs);
    s.on('error', (e) => done(e));
    s.on('message', (m) => done(undefined, m));
    s.bind({ address: req.localAddress }, () => s.connect(port, host, () => s.send(payload)));
  });
}

async function handle(req: Request): Promise<object> {
  switch (req.op) {
    case 'tcp': {
      const { sock, greeting } = await tcpConnect(req);
      sock.destroy();
      return { data: greeting };
    }
    case 'open': {
      const { sock, greeting } = await tcpConnect(req);
      const entry: { sock: net.Socket; lines: string[]; waiter?: (l: string | Error) => void } = { sock, lines: [] };
      sock.on('error', (e) => entry.waiter?.(e));
      readline.createInterface({ input: sock }).on('line', (l) => (entry.waiter ? entry.waiter(l) : entry.lines.push(l)));
      open.set(req.name!, entry);
      return { data: greeting };
    }
    case 'send': {
      const entry = open.get(req.name!)!;
      entry.sock.write(`${req.text}\n`);
      const line = await new Promise<string | Error>((r) => {
        const timer = setTimeout(() => r(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })), req.timeoutMs);
        entry.waiter = (l) => (clearTimeout(timer), (entry.waiter = undefined), r(l));
      });
      if (line instanceof Error) throw line;
      return { data: line };
    }
    case 'udp':
      return { data: (await udpExchange(req.host!, req.port!, Buffer.from('ping'), req)).toString() };
    case 'dns': {
      const a = await udpExchange(req.host!, 53, dnsQuery(req.name!), req);
      return { data: [...a.subarray(a.length - 4)].join('.') };
    }
  }
}

function agent(): void {
  readline.createInterface({ input: process.stdin }).on('line', (l) => {
    const req = JSON.parse(l) as Request;
    const t0 = Date.now();
    handle(req).then(
      (r) => out({ id: req.id, ok: true, ms: Date.now() - t0, ...r }),
      (e: NodeJS.ErrnoException) => out({ id: req.id, ok: false, ms: Date.now() - t0, code: e.code ?? e.message }),
    );
  });
  out({ ev: 'ready' });
}

const [mode, arg] = process.argv.slice(2);
if (mode === 'serve') void serve(JSON.parse(arg) as ServeConfig);
else if (mode === 'agent') agent();
else throw new Error(`netns-peer: unknown mode ${mode}`);
