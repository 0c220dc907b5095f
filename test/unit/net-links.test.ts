// The link and uplink plans as iproute2 and nft would get them: names within IFNAMSIZ, a /30 that
// clashes with nothing on the host, the host's rules confined to their own table.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { clientSideLines, netvmSideLines, vifName } from '../../src/net/client-link';
import { chooseUplink, hostDnsServers, hostRules, uplinkNames } from '../../src/net/uplink';
import { deviceDnsOf, deviceUplinkLines, deviceUplinkOf } from '../../src/net/device-uplink';
import { vmBridgeLines, vmPortLines, vmVifSettings } from '../../src/net/vm-link';

test("a qube's link: the pair made in the netvm with its peer in the qube, /32 addresses, the gateway its only route", () => {
  const l = { ip: '10.137.0.7', mac: '00:16:3e:5e:6c:00', gateway: '10.137.0.6', vif: vifName(7) };
  assert.deepEqual(netvmSideLines(l, '4242'), [
    'link add vif7 address fe:ff:ff:ff:ff:ff type veth peer name eth0 netns 4242',
    'addr add 10.137.0.6/32 dev vif7',
    'link set vif7 up',
    'route replace 10.137.0.7/32 dev vif7',
  ]);
  assert.deepEqual(clientSideLines(l).slice(-3), ['link set eth0 up', 'route add 10.137.0.6/32 dev eth0', 'route add default via 10.137.0.6 dev eth0']);
  assert.ok(clientSideLines(l).includes('addr add 10.137.0.7/32 dev eth0'));
});

test('an uplink is a /30 of 100.64.0.0/10, stable per instance and qube, skipping blocks in use on the host', () => {
  const a = chooseUplink('1a2b3c4d', 3, []);
  assert.deepEqual(chooseUplink('1a2b3c4d', 3, ['192.0.2.10']), a, 'stable');
  assert.match(a.hostIp, /^100\.(6[4-9]|[7-9]\d|1[01]\d|12[0-7])\.\d+\.\d+$/);
  const [o1, o2, o3, o4] = a.hostIp.split('.').map(Number);
  assert.equal(o4 % 4, 1, 'host end is the first address of its /30');
  assert.equal(a.qubeIp, [o1, o2, o3, o4 + 1].join('.'));
  const moved = chooseUplink('1a2b3c4d', 3, [a.qubeIp]);
  assert.notEqual(moved.hostIp, a.hostIp, 'a block holding a host address is skipped');
  assert.notEqual(chooseUplink('1a2b3c4d', 4, []).hostIp, a.hostIp, 'another qube, another block');
  assert.ok(a.hostIf.length <= 15, a.hostIf);
  assert.deepEqual(uplinkNames('1a2b3c4d', 3), { hostIf: a.hostIf, table: a.table });
  assert.equal(uplinkNames('1a2b3c4d', 4321).hostIf.length, 14);
});

test("the host's rules for an uplink: NAT, no way into the host, no way to other uplinks, all in the uplink's own table", () => {
  const u = chooseUplink('1a2b3c4d', 3, []);
  const rules = hostRules(u);
  assert.match(rules, new RegExp(`^table ip ${u.table} \\{`));
  assert.equal(rules.match(/^table /gm)?.length, 1, 'one table, nothing outside it');
  assert.match(rules, new RegExp(`ip saddr ${u.qubeIp.replace(/\./g, '\\.')} oifname != "${u.hostIf}" masquerade`));
  assert.match(rules, new RegExp(`iifname "${u.hostIf}" drop`), 'input from the uplink is dropped');
  assert.match(rules, /ip daddr 100\.64\.0\.0\/10 drop/);
});

test("upstream DNS: the host's servers, never a loopback one (systemd-resolved's real servers instead)", () => {
  const files: Record<string, string> = {
    '/etc/resolv.conf': 'nameserver 127.0.0.53\noptions edns0\n',
    '/run/systemd/resolve/resolv.conf': '# resolved\nnameserver 192.0.2.53\nnameserver 192.0.2.54\n',
  };
  assert.deepEqual(hostDnsServers((f) => files[f] ?? ''), ['192.0.2.53', '192.0.2.54']);
  assert.deepEqual(hostDnsServers((f) => (f === '/etc/resolv.conf' ? 'nameserver 192.0.2.1\n' : '')), ['192.0.2.1']);
  assert.deepEqual(hostDnsServers(() => { throw new Error('ENOENT'); }), []);
});

test("an hvm qube's link: the bridge joins QEMU's tap and the netvm's end; its vif answers ARP for what the netvm routes", () => {
  assert.deepEqual(vmBridgeLines('tap0'), ['link add br0 type bridge', 'link set tap0 master br0', 'link set tap0 up', 'link set br0 up']);
  assert.deepEqual(vmPortLines(), ['link set eth0 master br0', 'link set eth0 up']);
  assert.deepEqual(vmVifSettings('vif7'), { 'net.ipv4.conf.vif7.proxy_arp': '1' });
});

test("a handed-over interface: the features checked, each bad one refused in one line naming it", () => {
  assert.equal(deviceUplinkOf('sys-net', {}), undefined, 'no feature: the veth to the host');
  const u = deviceUplinkOf('sys-net', { 'uplink-interface': 'enp1s0', 'uplink-address': '192.0.2.5/24', 'uplink-gateway': '192.0.2.1' });
  assert.deepEqual(u, { iface: 'enp1s0', address: '192.0.2.5/24', gateway: '192.0.2.1' });
  assert.deepEqual(deviceUplinkLines(u!), ['addr add 192.0.2.5/24 dev enp1s0', 'link set enp1s0 up', 'route add default via 192.0.2.1 dev enp1s0']);
  const bad: Record<string, string>[] = [
    { 'uplink-interface': 'enp1s0 up', 'uplink-address': '192.0.2.5/24' },
    { 'uplink-interface': 'lo', 'uplink-address': '192.0.2.5/24' },
    { 'uplink-interface': 'vif3', 'uplink-address': '192.0.2.5/24' },
    { 'uplink-interface': 'enp1s0' },
    { 'uplink-interface': 'enp1s0', 'uplink-address': '192.0.2.5/33' },
    { 'uplink-interface': 'enp1s0', 'uplink-address': '192.0.2.5/24', 'uplink-gateway': '192.0.2.1; reboot' },
  ];
  for (const f of bad) assert.throws(() => deviceUplinkOf('sys-net', f), /^Error: sys-net: feature uplink-\w+ '.*' is not valid$/, JSON.stringify(f));
  assert.deepEqual(deviceDnsOf({ 'uplink-interface': 'enp1s0', 'uplink-dns': '192.0.2.53, 2001:db8::1 x 192.0.2.54' }), ['192.0.2.53', '192.0.2.54']);
});
