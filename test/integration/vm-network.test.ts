// hvm qubes on the same netvm chain as sandboxes: the same addresses, DNS, firewall and isolation, with
// their own kernel configuring the card the host gave them, and the host wiring QEMU's tap to the netvm.
// The guest's root holds CAP_NET_ADMIN over its own kernel: it can change its address, but what leaves
// its card is checked in the netvm, where it cannot reach. Slow-ish: a few TCG boots of ~5 s each.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { canRunIntegration, Instance } from './harness';
import { networkedInstance, TestInternet } from './net-world';

const skip = canRunIntegration();

/** GET / from a test host with bash's /dev/tcp (node takes seconds to start under TCG): body, or `ERR`. */
const httpGet = (host: string, secs = 4) =>
  `timeout ${secs} bash -c 'exec 3<>/dev/tcp/${host}/80 && printf "GET / HTTP/1.0\\r\\n\\r\\n" >&3 && sed "1,/^\\r\\?$/d" <&3' 2>/dev/null || echo ERR`;

describe('hvm qubes on the network', { skip, concurrency: false }, () => {
  let inst: Instance;
  let inet: TestInternet;
  const run = (vm: string, cmd: string, user = 'user') => inst.cli('qvm-run', ['-p', '-u', user, vm, cmd]);
  const okRun = async (vm: string, cmd: string, user = 'user') => {
    const r = await run(vm, cmd, user);
    assert.equal(r.code, 0, `${vm}: ${cmd}: ${r.stderr}`);
    return r.stdout;
  };

  before(async () => {
    inet = await TestInternet.create({ 'deb.test': '198.51.100.10', 'far.test': '203.0.113.20' });
    inst = await networkedInstance();
    for (const [name, label] of [['work', 'blue'], ['personal', 'yellow'], ['vault', 'black']]) await inst.ok('qvm-create', '--label', label, name);
    await inst.ok('qvm-prefs', 'vault', 'netvm', '');
    for (const vm of ['work', 'vault']) await inst.ok('qvm-prefs', vm, 'virt_mode', 'hvm');
  });
  after(async () => {
    await inst?.destroy();
    inet?.destroy();
  });

  test('an hvm qube reaches the test hosts by address and by name through sys-firewall and sys-net', async () => {
    await inst.ok('qvm-start', 'work');
    const ip = (await inst.ok('qvm-prefs', 'work', 'ip')).trim();
    const gw = (await inst.ok('qvm-prefs', 'work', 'visible_gateway')).trim();
    const mac = (await inst.ok('qvm-prefs', 'work', 'mac')).trim();
    const conf = await okRun('work', 'ip -o -4 addr show dev eth0; ip route; cat /sys/class/net/eth0/address; cat /etc/resolv.conf');
    assert.match(conf, new RegExp(`inet ${ip.replace(/\./g, '\\.')}/32`), conf);
    assert.match(conf, new RegExp(`^default via ${gw.replace(/\./g, '\\.')} dev eth0`, 'm'));
    assert.match(conf, new RegExp(`^${mac}$`, 'm'), 'the card has the mac property');
    assert.match(conf, /^nameserver 10\.139\.1\.1$/m, "Qubes' virtual DNS");
    for (const host of inet.hosts) assert.equal(await okRun('work', httpGet(host)), `hello from ${host}\n`, `work → ${host}`);
    assert.match(await okRun('work', 'getent hosts deb.test'), /^198\.51\.100\.10\s+deb\.test$/m);
    assert.match(await okRun('work', 'ping -c 1 -W 3 198.51.100.20'), /1 received/);
  });

  test("the hvm qube's firewall is enforced in its netvm, applied live, drop rejecting at once", async () => {
    await inst.ok('qvm-firewall', 'work', 'add', 'action=accept', 'dsthost=198.51.100.10', 'proto=tcp', 'dstports=80');
    await inst.ok('qvm-firewall', 'work', 'add', 'action=drop');
    await inst.ok('qvm-firewall', 'work', 'del', '--rule-no', '0'); // Qubes' default accept-all went first
    assert.equal(await okRun('work', httpGet('198.51.100.10')), 'hello from 198.51.100.10\n');
    const t0 = Date.now();
    assert.equal(await okRun('work', httpGet('203.0.113.20', 10)), 'ERR\n');
    assert.ok(Date.now() - t0 < 8000, 'rejected, not left to time out');
    await inst.ok('qvm-firewall', 'work', 'reset');
    assert.equal(await okRun('work', httpGet('203.0.113.20')), 'hello from 203.0.113.20\n');
  });

  test('spoofed-source-from-vm: the guest root may add another address, but packets from it go nowhere', async () => {
    const other = '10.137.0.250';
    await okRun('work', `ip addr add ${other}/32 dev eth0`, 'root');
    try {
      const spoofed = await run('work', `ping -c 2 -W 2 -I ${other} 198.51.100.20`, 'root');
      assert.notEqual(spoofed.code, 0, spoofed.stdout);
      assert.match(await okRun('work', 'ping -c 1 -W 3 198.51.100.20'), /1 received/, 'its own address still works');
    } finally {
      await okRun('work', `ip addr del ${other}/32 dev eth0`, 'root');
    }
  });

  test('an hvm qube and a sandbox qube behind the same netvm cannot reach each other', async () => {
    await inst.ok('qvm-start', 'personal');
    const personalIp = (await inst.ok('qvm-prefs', 'personal', 'ip')).trim();
    const workIp = (await inst.ok('qvm-prefs', 'work', 'ip')).trim();
    assert.notEqual((await run('work', `ping -c 1 -W 2 ${personalIp}`)).code, 0, 'work (hvm) reached personal');
    assert.notEqual((await run('personal', `ping -c 1 -W 2 ${workIp}`)).code, 0, 'personal reached work (hvm)');
  });

  test("QEMU's namespace holds only the tap, the bridge and the netvm's end: no host interface, no address", async () => {
    const pid = Number(readFileSync(path.join(inst.config.vmRoot, 'work.' + (await inst.ok('qvm-prefs', 'work', 'qid')).trim(), 'pid'), 'utf8'));
    const links = execFileSync('nsenter', [`--net=/proc/${pid}/ns/net`, 'ip', '-o', 'link']).toString();
    assert.deepEqual(links.trim().split('\n').map((l) => l.split(':')[1].trim().replace(/@.*/, '')).sort(), ['br0', 'eth0', 'lo', 'tap0']);
    const addrs = execFileSync('nsenter', [`--net=/proc/${pid}/ns/net`, 'ip', '-o', 'addr']).toString();
    assert.doesNotMatch(addrs, /inet6? (?!127\.0\.0\.1|::1)/, addrs);
  });

  test('live netvm change of a running hvm qube: to sys-net directly, to none, and back', async () => {
    await inst.ok('qvm-prefs', 'work', 'netvm', 'sys-net');
    assert.equal(await okRun('work', httpGet('198.51.100.10')), 'hello from 198.51.100.10\n', 'through sys-net, with the gateway it started with');
    await inst.ok('qvm-prefs', 'work', 'netvm', '');
    assert.equal(await okRun('work', httpGet('198.51.100.10', 3)), 'ERR\n', 'offline');
    await inst.ok('qvm-prefs', 'work', 'netvm', 'sys-firewall');
    assert.equal(await okRun('work', httpGet('198.51.100.10')), 'hello from 198.51.100.10\n', 'back behind sys-firewall');
  });

  test('a netvm that starts again, and an isolad that starts again, leave the hvm qube its network', async () => {
    await inst.ok('qvm-shutdown', '--wait', '--force', 'sys-firewall');
    assert.equal(await okRun('work', httpGet('198.51.100.10', 3)), 'ERR\n', 'no netvm, no network');
    await inst.ok('qvm-start', 'sys-firewall');
    assert.equal(await okRun('work', httpGet('198.51.100.10')), 'hello from 198.51.100.10\n', 'relinked');
    await inst.kill9();
    await inst.start();
    assert.equal(await okRun('work', httpGet('198.51.100.10')), 'hello from 198.51.100.10\n', 'after reconcile');
    await inst.ok('qvm-prefs', 'work', 'netvm', 'sys-net');
    assert.equal(await okRun('work', httpGet('198.51.100.10')), 'hello from 198.51.100.10\n', 'a live change after reconcile');
    await inst.ok('qvm-prefs', 'work', 'netvm', 'sys-firewall');
  });

  test('an offline hvm qube has loopback only, and cannot be given a netvm while it runs', async () => {
    await inst.ok('qvm-start', 'vault');
    const out = await okRun('vault', 'ip -o link; echo routes; ip route');
    const [links, routes] = out.split('routes\n');
    assert.deepEqual(links.trim().split('\n').map((l) => l.split(':')[1].trim()), ['lo']);
    assert.equal(routes.trim(), '');
    const r = await inst.cli('qvm-prefs', ['vault', 'netvm', 'sys-firewall']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /running offline.*next start/);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.equal((await inst.ok('qvm-prefs', 'vault', 'netvm')).trim(), '', 'unchanged');
  });

  test('an hvm qube keeps its address across restarts; an hvm netvm is refused in one line', async () => {
    const ip = (await inst.ok('qvm-prefs', 'work', 'ip')).trim();
    await inst.ok('qvm-shutdown', '--wait', 'work');
    await inst.ok('qvm-start', 'work');
    assert.match(await okRun('work', 'ip -o -4 addr show dev eth0'), new RegExp(`inet ${ip.replace(/\./g, '\\.')}/32`));
    assert.equal(await okRun('work', httpGet('198.51.100.10')), 'hello from 198.51.100.10\n');
    await inst.ok('qvm-create', '--label', 'red', '--prop', 'provides_network=True', '--prop', 'netvm=sys-net', '--prop', 'virt_mode=hvm', 'sys-vmnet');
    const r = await inst.cli('qvm-start', ['sys-vmnet']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /cannot provide network yet/);
    assert.match(await inst.ok('qvm-ls', 'sys-vmnet'), /sys-vmnet\s+Halted/);
  });
});
