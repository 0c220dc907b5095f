// sys-net with an interface of its own, as Qubes hands it the NIC: the interface leaves the host for as
// long as sys-net runs, the host keeps no address, route or rule for that network, and the qubes behind
// sys-firewall reach the network through it. The "NIC" is one end of a veth whose other end is a test
// LAN in a namespace of the test's own (no traffic leaves this machine).

import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { canRunIntegration, Instance } from './harness';

const skip = canRunIntegration();

const LAN_NS = `isola-lan-${process.pid}`;
const NIC = `isonic${process.pid % 100000}`;
const LAN_HOST = '198.51.100.77';
const SYS_NET_ADDR = '198.51.100.78';

/** An HTTP server on the LAN that answers with the address the request came from. */
const SERVER = `require('http').createServer((q, s) => s.end('seen ' + q.socket.remoteAddress.replace(/^::ffff:/, '') + '\\n'))
  .listen(80, '${LAN_HOST}', () => process.stdout.write('ready\\n'));`;

const ip = (...args: string[]) => execFileSync('ip', args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();

describe("sys-net with a host interface handed over (feature uplink-interface)", { skip, concurrency: false }, () => {
  let inst: Instance;
  let server: ChildProcess | undefined;
  before(async () => {
    ip('netns', 'add', LAN_NS);
    ip('link', 'add', NIC, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', LAN_NS);
    ip('-n', LAN_NS, 'addr', 'add', `${LAN_HOST}/24`, 'dev', 'eth0');
    ip('-n', LAN_NS, 'link', 'set', 'eth0', 'up');
    server = spawn('ip', ['netns', 'exec', LAN_NS, process.execPath, '-e', SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      server!.stdout!.once('data', () => resolve());
      server!.once('exit', () => reject(new Error('the LAN server did not start')));
    });
    inst = new Instance();
    await inst.start();
    await inst.installTemplate();
    await inst.ok('qvm-create', '--label', 'red', '--prop', 'provides_network=True', '--prop', 'netvm=', 'sys-net');
    await inst.ok('qvm-create', '--label', 'green', '--prop', 'provides_network=True', '--prop', 'netvm=sys-net', 'sys-firewall');
    await inst.ok('qvm-create', '--label', 'blue', '--prop', 'netvm=sys-firewall', 'work');
  });
  after(async () => {
    await inst?.destroy();
    if (server?.pid && server.exitCode === null) server.kill('SIGKILL');
    for (const args of [['link', 'del', NIC], ['netns', 'del', LAN_NS]]) {
      try {
        ip(...args);
      } catch {
        // gone already
      }
    }
  });

  test('a bad setting is refused at start in one line, and the interface stays with the host', async () => {
    await inst.ok('qvm-features', 'sys-net', 'uplink-interface', NIC);
    await inst.ok('qvm-features', 'sys-net', 'uplink-dns', LAN_HOST); // never the host's resolver
    await inst.ok('qvm-features', 'sys-net', 'uplink-address', '198.51.100.300/24');
    const r = await inst.cli('qvm-start', ['sys-net']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /feature uplink-address '198\.51\.100\.300\/24' is not valid/);
    assert.match(ip('-o', 'link', 'show'), new RegExp(`: ${NIC}@`), 'still on the host');
    await inst.ok('qvm-features', 'sys-net', 'uplink-interface', 'nosuchnic0');
    await inst.ok('qvm-features', 'sys-net', 'uplink-address', `${SYS_NET_ADDR}/24`);
    assert.match((await inst.cli('qvm-start', ['sys-net'])).stderr, /uplink-interface 'nosuchnic0' is not an interface of the host/);
    await inst.ok('qvm-features', 'sys-net', 'uplink-interface', NIC);
  });

  test('the interface moves into sys-net; work reaches the LAN through sys-firewall and sys-net; the host has nothing of it', async () => {
    await inst.ok('qvm-start', 'work');
    assert.doesNotMatch(ip('-o', 'link', 'show'), new RegExp(`: ${NIC}[@:]`), 'gone from the host while sys-net runs');
    assert.doesNotMatch(execFileSync('nft', ['list', 'tables']).toString(), new RegExp(`isola-${inst.config.instance}-u`), 'no NAT table on the host');
    const inNet = await inst.cli('qvm-run', ['-p', 'sys-net', `ip -o -4 addr show dev ${NIC}`]);
    assert.match(inNet.stdout, new RegExp(`inet ${SYS_NET_ADDR.replace(/\./g, '\\.')}/24`));
    const get = await inst.cli('qvm-run', ['-p', 'work', `node -e "require('http').get('http://${LAN_HOST}/',(s)=>s.pipe(process.stdout)).on('error',(e)=>console.log('ERR',e.code))"`]);
    assert.equal(get.stdout, `seen ${SYS_NET_ADDR}\n`, `the LAN sees sys-net's address (NAT in sys-net): ${get.stderr}`);
  });

  test("sys-net's root cannot take the interface out of its namespace or reconfigure it", async () => {
    for (const cmd of [`ip link set ${NIC} netns 1`, `ip addr add 198.51.100.99/24 dev ${NIC}`, `ip link set ${NIC} down`]) {
      const r = await inst.cli('qvm-run', ['-p', '-u', 'root', 'sys-net', cmd]);
      assert.notEqual(r.code, 0, `${cmd} worked`);
    }
  });
});
