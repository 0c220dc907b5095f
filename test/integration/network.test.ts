// Network compartments against a real isolad: sys-net (the uplink) and sys-firewall (its client and
// every qube's netvm) as Qubes' installer sets them up, qubes reaching the tests' own hosts through
// the chain, vault with no network at all, and the boundaries tried from inside a qube as its root.

import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { canRunIntegration, Instance } from './harness';
import { networkedInstance, TestInternet } from './net-world';

const skip = canRunIntegration();

/** A node one-liner run in a qube: GET a URL, print the body or `ERR <code>`. */
const httpGet = (url: string, timeoutMs = 4000) =>
  `node -e "const r=require('http').get('${url}',{timeout:${timeoutMs}},(s)=>s.pipe(process.stdout));` +
  `r.on('timeout',()=>{console.log('ERR timeout');process.exit(3)});r.on('error',(e)=>{console.log('ERR',e.code);process.exit(3)})"`;

describe('network compartments: sys-net, sys-firewall and the qubes behind them', { skip, concurrency: false }, () => {
  let inst: Instance;
  let inet: TestInternet;
  before(async () => {
    inet = await TestInternet.create({ 'deb.test': '198.51.100.10', 'far.test': '203.0.113.20' });
    inst = await networkedInstance();
    for (const [name, label] of [['work', 'blue'], ['personal', 'yellow'], ['vault', 'black']]) await inst.ok('qvm-create', '--label', label, name);
    await inst.ok('qvm-prefs', 'vault', 'netvm', '');
  });
  after(async () => {
    await inst?.destroy();
    inet?.destroy();
  });

  const run = (vm: string, cmd: string, user?: string) => inst.cli('qvm-run', ['-p', ...(user ? ['-u', user] : []), vm, cmd]);

  test('starting work starts its netvm chain, and work reaches the test hosts by address and by name', async () => {
    await inst.ok('qvm-start', 'work');
    for (const vm of ['sys-firewall', 'sys-net']) assert.equal((await inst.cli('qvm-check', ['--running', vm])).code, 0, `${vm} runs`);
    const ls = await inst.ok('qvm-ls', '--raw-data', '--fields', 'NAME,NETVM,IP');
    assert.match(ls, /^work\|sys-firewall\|10\.137\.0\.\d+$/m);
    assert.match(ls, /^vault\|-\|-$/m);
    for (const host of inet.hosts) {
      const r = await run('work', httpGet(`http://${host}/`));
      assert.equal(r.stdout, `hello from ${host}\n`, `work → ${host}: ${r.stderr}`);
    }
    const byName = await run('work', 'getent hosts deb.test far.test; cat /etc/resolv.conf');
    assert.match(byName.stdout, /^198\.51\.100\.10\s+deb\.test$/m);
    assert.match(byName.stdout, /^203\.0\.113\.20\s+far\.test$/m);
    assert.match(byName.stdout, /^nameserver 10\.139\.1\.1$/m, 'Qubes\' virtual DNS');
  });

  test('ping works for the qube\'s user (ICMP sockets, no raw-socket capability)', async () => {
    const r = await run('work', 'ping -c 1 -W 3 198.51.100.20');
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /1 received/);
  });

  test('vault has loopback only: no interface, no route', async () => {
    const r = await run('vault', 'ip -o link; echo routes; ip route');
    assert.equal(r.code, 0, r.stderr);
    const [links, routes] = r.stdout.split('routes\n');
    assert.deepEqual(links.trim().split('\n').map((l) => l.split(':')[1].trim()), ['lo']);
    assert.equal(routes.trim(), '');
    assert.match((await run('vault', httpGet('http://198.51.100.10/', 1500))).stdout, /^ERR (ENETUNREACH|EHOSTUNREACH)/);
  });

  test('root in a qube cannot change its address, routes or firewall (no CAP_NET_ADMIN over its namespace)', async () => {
    for (const cmd of ['ip addr add 10.137.0.250/32 dev eth0', 'ip route del default', 'ip link set eth0 down', 'ip link add x type dummy']) {
      const r = await run('work', cmd, 'root');
      assert.notEqual(r.code, 0, `${cmd} worked`);
      assert.match(r.stderr + r.stdout, /Operation not permitted/);
    }
    const still = await run('work', httpGet('http://198.51.100.10/'));
    assert.equal(still.stdout, 'hello from 198.51.100.10\n');
  });

  test('netvm-root-lifts-firewall: root in sys-firewall cannot flush its rules, reroute, or sniff beyond its own namespace', async () => {
    for (const cmd of ['nft flush ruleset', 'nft delete table inet isola-' + inst.config.instance, 'ip route del default', 'ip link set eth0 down', 'sysctl -w net.ipv4.ip_forward=0']) {
      const r = await run('sys-firewall', cmd, 'root');
      assert.notEqual(r.code, 0, `${cmd} worked in sys-firewall`);
    }
    const still = await run('work', httpGet('http://198.51.100.10/'));
    assert.equal(still.stdout, 'hello from 198.51.100.10\n', 'work is still served through sys-firewall');
  });

  test('a qube cannot reach another qube behind the same netvm', async () => {
    await inst.ok('qvm-start', 'personal');
    const personalIp = (await inst.ok('qvm-prefs', 'personal', 'ip')).trim();
    const r = await run('work', `ping -c 1 -W 2 ${personalIp}`);
    assert.notEqual(r.code, 0, `work pinged personal: ${r.stdout}`);
    const back = await run('personal', httpGet('http://198.51.100.10/'));
    assert.equal(back.stdout, 'hello from 198.51.100.10\n', 'personal itself is online');
  });

  test("the host's own services are out of reach of every qube, sys-net included", async () => {
    let connections = 0;
    const server = net.createServer((s) => (connections++, s.end('host secret\n')));
    await new Promise<void>((r) => server.listen(18088, inet.hostIp, r));
    try {
      const r = await run('work', httpGet(`http://${inet.hostIp}:18088/`, 2000));
      assert.match(r.stdout, /^ERR /);
      const fromNet = await run('sys-net', httpGet(`http://${inet.hostIp}:18088/`, 2000));
      assert.match(fromNet.stdout, /^ERR /);
      assert.equal(connections, 0);
    } finally {
      server.close();
    }
  });

  test('a netvm that starts again gives its running qubes their network back', async () => {
    const refused = await inst.cli('qvm-shutdown', ['--wait', 'sys-firewall']);
    assert.notEqual(refused.code, 0, 'refused while work and personal use it');
    assert.match(refused.stderr, /work/);
    await inst.ok('qvm-shutdown', '--wait', '--force', 'sys-firewall');
    assert.match((await run('work', httpGet('http://198.51.100.10/', 1500))).stdout, /^ERR /);
    await inst.ok('qvm-start', 'sys-firewall');
    const r = await run('work', httpGet('http://198.51.100.10/'));
    assert.equal(r.stdout, 'hello from 198.51.100.10\n', r.stderr);
  });

  test('stopping the uplink qube removes its host side; nothing of this instance stays on the host', async () => {
    await inst.ok('qvm-shutdown', '--wait', '--force', 'sys-net');
    const { execFileSync } = await import('node:child_process');
    const links = execFileSync('ip', ['-o', 'link']).toString();
    assert.doesNotMatch(links, new RegExp(`i${inst.config.instance}u`));
    const tables = execFileSync('nft', ['list', 'tables']).toString();
    assert.doesNotMatch(tables, new RegExp(`isola-${inst.config.instance}-u`));
  });
  test('qvm-shutdown --all --wait halts qubes and their netvms together without an error, and leaves nothing on the host', async () => {
    // The netvms halt while their clients do: a client's unlink may find its netvm's namespace gone.
    for (let round = 0; round < 3; round++) {
      await inst.ok('qvm-start', '--skip-if-running', 'work');
      await inst.ok('qvm-start', '--skip-if-running', 'personal');
      const r = await inst.cli('qvm-shutdown', ['--all', '--wait']);
      assert.equal(r.stderr, '', `round ${round}`);
      assert.equal(r.code, 0);
      const running = (await inst.ok('qvm-ls', '--raw-data', '--fields', 'NAME,STATE')).split('\n').filter((l) => l.endsWith('|Running'));
      assert.deepEqual(running, ['dom0|Running']);
    }
    const { execFileSync } = await import('node:child_process');
    assert.doesNotMatch(execFileSync('nft', ['list', 'tables']).toString(), new RegExp(`isola-${inst.config.instance}-u`));
  });
});
