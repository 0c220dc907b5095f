// The agent's half of Qubes' updates proxy, on a host: Qubes' TCP services (a symlink to
// /dev/tcp/IPV4/PORT, how qubes.UpdatesProxy reaches tinyproxy in a netvm), the template's forwarder
// on 127.0.0.1:8082 (each connection handed to a qrexec client as its stdin and stdout), and apt's
// 01qubes-proxy written or removed at start.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AGENT_BINARY, AgentUnderTest, haveAgent } from './c-agent';

const skip = !haveAgent && 'build the agent first (scripts/build.sh)';

/** A free TCP port on 127.0.0.1 (bound and released). */
async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

/** Sends `data`, half-closes, returns all that came back (or the error code). */
function exchange(port: number, data: string | Buffer, host = '127.0.0.1', timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, host);
    let got = '';
    s.setTimeout(timeoutMs, () => (s.destroy(), resolve(`TIMEOUT ${got}`)));
    s.on('connect', () => s.end(data));
    s.on('data', (d: Buffer) => (got += d.toString()));
    s.on('close', () => resolve(got));
    s.on('error', (e: NodeJS.ErrnoException) => resolve(`ERR ${e.code}`));
  });
}

describe('Qubes TCP services: a symlink to /dev/tcp/IPV4/PORT', { skip }, () => {
  const agent = new AgentUnderTest();
  const etc = path.join(agent.dir, 'etc');
  let server: net.Server;
  const seen: string[] = [];
  before(async () => {
    mkdirSync(etc);
    server = net.createServer((s) => {
      let all = '';
      s.on('data', (d: Buffer) => (all += d.toString()));
      s.on('end', () => (seen.push(all), s.end(all.toUpperCase())));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    symlinkSync(`/dev/tcp/127.0.0.1/${(server.address() as net.AddressInfo).port}`, path.join(etc, 'test.Tcp'));
    symlinkSync(`/dev/tcp/127.0.0.1/${await freePort()}`, path.join(etc, 'test.DeadTcp'));
    const bad: [string, string][] = [
      ['test.Name', '/dev/tcp/localhost/80'], // names are not resolved: an address only
      ['test.Short', '/dev/tcp/127.1/80'], // inet_aton's short forms are not Qubes' dotted quad
      ['test.PortZero', '/dev/tcp/127.0.0.1/0'],
      ['test.PortBig', '/dev/tcp/127.0.0.1/65536'],
      ['test.PortJunk', '/dev/tcp/127.0.0.1/80x'],
      ['test.NoPort', '/dev/tcp/127.0.0.1'],
      ['test.LeadingZero', '/dev/tcp/127.0.0.1/080'],
      ['test.Extra', '/dev/tcp/127.0.0.1/80/x'],
    ];
    for (const [name, target] of bad) symlinkSync(target, path.join(etc, name));
    await agent.start({ ISOLA_SERVICE_PATH: etc, ISOLA_DEFAULT_USER: os.userInfo().username });
  });
  after(async () => {
    server.close();
    await agent.stop();
  });

  test('connects and relays both ways, without the descriptor a unix socket service gets', async () => {
    assert.deepEqual(await agent.run('DEFAULT', 'QUBESRPC test.Tcp+ work', 'hello\n'), { code: 0, out: 'HELLO\n', err: '' });
    assert.equal(seen.at(-1), 'hello\n');
  });

  test("an input that ends at once still reaches the service as an EOF (the connect may not be done yet)", async () => {
    for (let i = 0; i < 20; i++) {
      const t0 = Date.now();
      assert.deepEqual(await agent.run('DEFAULT', 'QUBESRPC test.Tcp+ work', ''), { code: 0, out: '', err: '' });
      assert.ok(Date.now() - t0 < 3000, `call ${i} waited ${Date.now() - t0} ms for an EOF`);
    }
  });

  test('a port nobody listens on: exit 125 and one line, as a dead socket service', async () => {
    const r = await agent.run('DEFAULT', 'QUBESRPC test.DeadTcp+ work', 'GET / HTTP/1.0\r\n\r\n');
    assert.equal(r.code, 125);
    assert.equal(r.err, 'cannot connect to service socket: Connection refused\n');
  });

  for (const name of ['test.Name', 'test.Short', 'test.PortZero', 'test.PortBig', 'test.PortJunk', 'test.NoPort', 'test.LeadingZero', 'test.Extra']) {
    test(`${name}: a /dev/tcp link that is not exactly /dev/tcp/A.B.C.D/PORT is no service`, async () => {
      const r = await agent.run('DEFAULT', `QUBESRPC ${name}+ work`);
      assert.equal(r.code, 127, r.err);
      assert.match(r.err, /does not exist in this qube/);
    });
  }
});

describe("the template's forwarder on 127.0.0.1:8082 (service updates-proxy-setup)", { skip }, () => {
  const agent = new AgentUnderTest();
  const client = path.join(agent.dir, 'fake-qrexec-client-vm');
  let port = 0;
  before(async () => {
    // Stands in for qrexec-client-vm: says how it was called, then echoes its stdin upper-cased to stdout.
    writeFileSync(client, '#!/bin/sh\necho "argv: $*"\nexec tr a-z A-Z\n');
    chmodSync(client, 0o755);
    port = await freePort();
    await agent.start({
      ISOLA_SERVICES: 'updates-proxy-setup',
      ISOLA_UPDATES_FORWARD_PORT: String(port),
      ISOLA_UPDATES_CLIENT: client,
      ISOLA_DEFAULT_USER: os.userInfo().username,
    });
    for (let i = 0; i < 50 && !(await exchange(port, '')).startsWith('argv'); i++) await new Promise((r) => setTimeout(r, 50));
  });
  after(() => agent.stop());

  test("each connection becomes `qrexec-client-vm --use-stdin-socket '' qubes.UpdatesProxy` with the socket as stdin and stdout", async () => {
    assert.equal(await exchange(port, 'get / http/1.0\r\n\r\n'), "argv: --use-stdin-socket  qubes.UpdatesProxy\nGET / HTTP/1.0\r\n\r\n");
  });

  test('listens on loopback only', async () => {
    const other = Object.values(os.networkInterfaces()).flat().find((a) => a && a.family === 'IPv4' && !a.internal);
    if (!other) return; // no other address on this host to try
    assert.match(await exchange(port, 'x', other.address, 3000), /^ERR (ECONNREFUSED|EHOSTUNREACH)|^TIMEOUT $/);
  });

  test('template-floods-forwarder: 200 silent connections and 10 MiB of garbage do not block the agent, and it serves again after', async () => {
    const idle: net.Socket[] = [];
    for (let i = 0; i < 200; i++) {
      const s = net.connect(port, '127.0.0.1');
      s.on('error', () => undefined);
      idle.push(s);
    }
    const garbage = exchange(port, Buffer.alloc(10 << 20, 0xff), '127.0.0.1', 30_000);
    await new Promise((r) => setTimeout(r, 500));
    // The agent still runs commands while every forwarder slot is held.
    const t0 = Date.now();
    assert.deepEqual(await agent.run('DEFAULT', 'echo alive'), { code: 0, out: 'alive\n', err: '' });
    assert.ok(Date.now() - t0 < 5000);
    for (const s of idle) s.destroy();
    assert.ok((await garbage).startsWith('argv: '), 'the garbage was handed to a client like any bytes');
    assert.equal(await exchange(port, 'again'), "argv: --use-stdin-socket  qubes.UpdatesProxy\nAGAIN");
    assert.ok(agent.child.exitCode === null, 'the agent is alive');
  });
});

describe("apt's 01qubes-proxy: written in a template, removed elsewhere (Qubes' update-proxy-configs)", { skip }, () => {
  const dir = path.join(os.tmpdir(), `isola-apt-conf-${process.pid}`);
  const file = path.join(dir, '01qubes-proxy');
  const agentSays = (onOff: string) => execFileSync(AGENT_BINARY, ['--apt-proxy-conf', onOff, file]);
  before(() => mkdirSync(dir, { recursive: true }));
  after(() => execFileSync('rm', ['-rf', '--', dir]));

  test('on: exactly the proxy line; off: gone; both idempotent', () => {
    agentSays('on');
    agentSays('on');
    assert.equal(readFileSync(file, 'utf8'), 'Acquire::http::Proxy "http://127.0.0.1:8082/";\n');
    writeFileSync(file, 'Acquire::http::Proxy "http://evil.example:3128/";\n');
    agentSays('on');
    assert.equal(readFileSync(file, 'utf8'), 'Acquire::http::Proxy "http://127.0.0.1:8082/";\n', 'a changed file is put back');
    agentSays('off');
    agentSays('off');
    assert.equal(existsSync(file), false);
  });

  test('a symlink at the name is replaced, never followed', () => {
    const victim = path.join(dir, 'victim');
    writeFileSync(victim, 'keep me\n');
    symlinkSync(victim, file);
    agentSays('on');
    assert.equal(lstatSync(file).isSymbolicLink(), false);
    assert.equal(readFileSync(victim, 'utf8'), 'keep me\n');
    agentSays('off');
    symlinkSync(victim, file);
    agentSays('off');
    assert.equal(existsSync(file), false);
    assert.equal(readFileSync(victim, 'utf8'), 'keep me\n', 'removing the link leaves its target alone');
  });
});
