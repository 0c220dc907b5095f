// Properties as Qubes defines them: defaults taken from the template and from global prefs,
// type parsing, and the checks that keep references sane. Pure: a World built in the test.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { GLOBAL_PROPERTIES, parseGlobalValue, resolveGlobal } from '../../src/core/global-properties';
import { memoryProblem, parsePropertyValue, propertiesOf, propertyDef, resolveProperty, type World } from '../../src/core/properties';
import { wireType } from '../../src/core/property-types';
import type { PropValue, QubeRecord } from '../../src/core/qube';
import { QubesError } from '../../src/core/errors';

function qube(name: string, klass: QubeRecord['klass'], props: Record<string, PropValue> = {}): QubeRecord {
  return { qid: name.length, uuid: `uuid-${name}`, name, klass, props: { label: 'red', ...props }, features: {}, tags: [] };
}

const dom0 = qube('dom0', 'AdminVM', { label: 'black' });

function world(qubes: QubeRecord[], globals: Record<string, PropValue> = {}, running: Record<string, number> = {}): World {
  const all = [dom0, ...qubes];
  const w: World = {
    qube: (n) => all.find((q) => q.name === n),
    globalProp: (n) => resolveGlobal(n, globals, w).value,
    hostMemoryMiB: 24000,
    hostCpus: 8,
    all: () => all,
    runtime: (q) => (q.name in running ? { startedAt: running[q.name], cardless: q.props.virt_mode === 'hvm' && q.props.netvm === null } : undefined),
  };
  return w;
}

const tpl = qube('debian-12', 'TemplateVM', { memory: 600, vcpus: 4, default_user: 'alice' });
const net = qube('sys-net', 'AppVM', { template: 'debian-12', provides_network: true });
const work = qube('work', 'AppVM', { template: 'debian-12' });
const w = world([tpl, net, work], { default_netvm: 'sys-net', default_qrexec_timeout: 90 });

test('an AppVM takes memory, vcpus and default_user from its template, marked as default', () => {
  assert.deepEqual(resolveProperty(work, 'memory', w), { value: 600, isDefault: true, unset: false });
  assert.equal(resolveProperty(work, 'vcpus', w).value, 4);
  assert.equal(resolveProperty(work, 'default_user', w).value, 'alice');
});

test("a template's own defaults are Qubes' fixed ones", () => {
  const bare = qube('t2', 'TemplateVM');
  assert.equal(resolveProperty(bare, 'memory', w).value, 400);
  assert.equal(resolveProperty(bare, 'vcpus', w).value, 2);
  assert.equal(resolveProperty(bare, 'default_user', w).value, 'user');
  assert.equal(resolveProperty(bare, 'maxmem', w).value, 4000, 'min(memory*10, host/2)');
  assert.equal(resolveProperty(bare, 'virt_mode', w).value, 'sandbox');
});

test('netvm defaults to the global default_netvm, but templates and net qubes get none', () => {
  assert.equal(resolveProperty(work, 'netvm', w).value, 'sys-net');
  assert.equal(resolveProperty(tpl, 'netvm', w).value, null);
  assert.equal(resolveProperty(net, 'netvm', w).value, null);
});

test('qrexec_timeout falls back to the global default through the template', () => {
  assert.equal(resolveProperty(work, 'qrexec_timeout', w).value, 90);
});

test('an explicit value wins and is not marked default', () => {
  assert.deepEqual(resolveProperty({ ...work, props: { ...work.props, memory: 800 } }, 'memory', w), { value: 800, isDefault: false, unset: false });
});

test('updateable is true for templates and standalones only', () => {
  assert.equal(resolveProperty(tpl, 'updateable', w).value, true);
  assert.equal(resolveProperty(work, 'updateable', w).value, false);
  assert.equal(resolveProperty(qube('s', 'StandaloneVM'), 'updateable', w).value, true);
});

test('parses Qubes booleans and integers', () => {
  for (const t of ['True', 'true', '1', 'yes', 'on']) assert.equal(parsePropertyValue(work, 'autostart', t, w), true);
  for (const f of ['False', 'false', '0', 'no', 'off']) assert.equal(parsePropertyValue(work, 'autostart', f, w), false);
  assert.equal(parsePropertyValue(work, 'memory', '800', w), 800);
  assert.equal(parsePropertyValue(work, 'netvm', '', w), null);
  assert.equal(parsePropertyValue(work, 'label', '3', w), 'yellow');
});

const BAD_VALUES: [string, string, string, string][] = [
  ['memory', 'abc', 'not an integer', 'QubesPropertyValueError'],
  ['memory', '0', 'not positive', 'QubesPropertyValueError'],
  ['memory', '1e3', 'exponent notation is not an integer', 'QubesPropertyValueError'],
  ['memory', '99999999999999999', 'beyond safe integers', 'QubesPropertyValueError'],
  ['vcpus', '-2', 'negative', 'QubesPropertyValueError'],
  ['maxmem', '-1', 'negative', 'QubesPropertyValueError'],
  ['autostart', 'maybe', 'not a boolean', 'QubesPropertyValueError'],
  ['label', 'pink', 'no such label', 'QubesLabelNotFoundError'],
  ['netvm', 'work', 'itself', 'QubesPropertyValueError'],
  ['netvm', 'debian-12', 'provides no network', 'QubesPropertyValueError'],
  ['netvm', 'nosuch', 'missing qube', 'QubesPropertyValueError'],
  ['template', 'sys-net', 'an AppVM is not a template', 'QubesPropertyValueError'],
  ['template', '', 'an AppVM needs a template', 'QubesPropertyValueError'],
  ['default_dispvm', 'debian-12', 'not a disposable template', 'QubesPropertyValueError'],
  ['virt_mode', 'pv', 'unknown mode', 'QubesPropertyValueError'],
  ['default_user', 'root;rm', 'not a user name', 'QubesPropertyValueError'],
  ['kernel', '../../etc', 'path in a kernel name', 'QubesPropertyValueError'],
  ['uuid', 'x', 'read-only', 'QubesPropertyValueError'],
  ['name', 'other', 'read-only', 'QubesPropertyValueError'],
  ['colour', 'red', 'no such property', 'QubesNoSuchPropertyError'],
  ['template_for_dispvms', 'True', 'not a property of TemplateVM', 'QubesNoSuchPropertyError'],
];
for (const [prop, value, why, code] of BAD_VALUES) {
  test(`refuses ${prop}=${JSON.stringify(value)}: ${why}`, () => {
    const target = prop === 'template_for_dispvms' ? tpl : work;
    assert.throws(() => parsePropertyValue(target, prop, value, w), (e: unknown) => e instanceof QubesError && e.code === code);
  });
}

test('a netvm loop is refused', () => {
  const a = qube('a', 'AppVM', { template: 'debian-12', provides_network: true });
  const b = qube('b', 'AppVM', { template: 'debian-12', provides_network: true, netvm: 'a' });
  const w2 = world([tpl, a, b]);
  assert.throws(() => parsePropertyValue(a, 'netvm', 'b', w2), /loop/);
});

test("a running qube's new netvm must run (Qubes relinks it at once); a halted qube's need not", () => {
  const other = qube('sys-net2', 'AppVM', { template: 'debian-12', provides_network: true });
  const running = world([tpl, net, other, work], {}, { work: 1, 'sys-net': 1 });
  assert.throws(() => parsePropertyValue(work, 'netvm', 'sys-net2', running), /Cannot dynamically attach to stopped NetVM: 'sys-net2'/);
  assert.equal(parsePropertyValue(work, 'netvm', 'sys-net', running), 'sys-net');
  assert.equal(parsePropertyValue(work, 'netvm', '', running), null, 'offline is always possible');
  assert.equal(parsePropertyValue(work, 'netvm', 'sys-net2', world([tpl, net, other, work])), 'sys-net2');
});

test('a running hvm qube started without a network card cannot be given a netvm until it restarts', () => {
  const vm = qube('vm', 'AppVM', { template: 'debian-12', virt_mode: 'hvm', netvm: null });
  const online = qube('vm2', 'AppVM', { template: 'debian-12', virt_mode: 'hvm', netvm: 'sys-net' });
  const running = world([tpl, net, vm, online], {}, { vm: 1, vm2: 1, 'sys-net': 1 });
  assert.throws(() => parsePropertyValue(vm, 'netvm', 'sys-net', running), /vm is an hvm qube running offline: it gets a network card at its next start/);
  assert.equal(parsePropertyValue(vm, 'netvm', 'sys-net', world([tpl, net, vm], {}, { 'sys-net': 1 })), 'sys-net', 'halted: fine');
  assert.equal(parsePropertyValue(online, 'netvm', '', running), null, 'going offline is fine');
});

test('global prefs check what they point at', () => {
  assert.equal(parseGlobalValue('default_template', 'debian-12', w, ['default']), 'debian-12');
  assert.throws(() => parseGlobalValue('default_template', 'work', w, ['default']), /TemplateVM/);
  assert.throws(() => parseGlobalValue('default_netvm', 'work', w, ['default']), /does not provide network/);
  assert.throws(() => parseGlobalValue('default_pool', 'nosuch', w, ['default']), /no such pool/);
  assert.throws(() => parseGlobalValue('default_qrexec_timeout', '-5', w, ['default']), /positive/);
  assert.throws(() => parseGlobalValue('no_such_pref', 'x', w, ['default']), /Invalid property/);
  assert.equal(parseGlobalValue('default_netvm', '', w, ['default']), null);
});

// Qubes' property lists (qubes/vm/*.py, mix/*.py, current master) for the classes Isola has.
const QUBESVM = [
  'uuid', 'name', 'qid', 'label', 'klass', 'icon', 'bootmode', 'guivm', 'audiovm', 'virt_mode', 'installed_by_rpm', 'memory',
  'maxmem', 'stubdom_mem', 'vcpus', 'kernel', 'kernelopts', 'debug', 'default_user', 'qrexec_timeout', 'shutdown_timeout',
  'autostart', 'include_in_backups', 'backup_timestamp', 'default_dispvm', 'management_dispvm', 'updateable', 'devices_denied',
  'keyboard_layout', 'xid', 'stubdom_uuid', 'stubdom_xid', 'start_time', 'mac', 'ip', 'ip6', 'netvm', 'provides_network',
  'visible_ip', 'visible_ip6', 'visible_gateway', 'visible_gateway6', 'visible_netmask', 'gateway', 'gateway6', 'dns',
];
const QUBES_LISTS: Record<QubeRecord['klass'], string[]> = {
  AdminVM: ['uuid', 'name', 'qid', 'label', 'klass', 'icon', 'default_dispvm', 'include_in_backups', 'updateable', 'devices_denied', 'keyboard_layout', 'maxmem'],
  TemplateVM: [...QUBESVM, 'appvm_default_bootmode'],
  AppVM: [...QUBESVM, 'template', 'template_for_dispvms'],
  StandaloneVM: [...QUBESVM, 'template_for_dispvms'],
  DispVM: [...QUBESVM, 'template', 'dispid', 'auto_cleanup', 'is_preload'],
};
for (const [klass, names] of Object.entries(QUBES_LISTS)) {
  test(`a ${klass} has exactly the properties Qubes' qvm-prefs lists for it`, () => {
    assert.deepEqual(propertiesOf(klass as QubeRecord['klass']).map((p) => p.name).sort(), [...names].sort());
  });
}

test("Qubes' global properties all exist (qubes-prefs)", () => {
  const expected = [
    'default_guivm', 'default_audiovm', 'default_netvm', 'default_template', 'updatevm', 'clockvm', 'default_kernel', 'default_dispvm',
    'management_dispvm', 'default_pool', 'default_pool_private', 'default_pool_root', 'default_pool_volatile', 'default_pool_kernel',
    'default_qrexec_timeout', 'default_shutdown_timeout', 'stats_interval', 'check_updates_vm', 'maxmem', 'no_cpus',
    'default_virt_mode', // Isola's: Qubes has no second backend to choose by default
  ];
  assert.deepEqual(GLOBAL_PROPERTIES.map((p) => p.name).sort(), expected.sort());
});

test('klass, icon and updateable are computed, so they are always marked default (D)', () => {
  assert.deepEqual(resolveProperty(work, 'klass', w), { value: 'AppVM', isDefault: true, unset: false });
  assert.equal(resolveProperty(work, 'icon', w).isDefault, true);
  assert.equal(resolveProperty(work, 'name', w).isDefault, false, "a qube's name is set at creation");
  assert.equal(resolveProperty(dom0, 'name', w).isDefault, true, "dom0's identity is Qubes' fixed default");
  assert.equal(resolveProperty(dom0, 'maxmem', w).value, 24000);
});

test('types on the wire are the five Qubes knows (a uuid is str)', () => {
  assert.equal(wireType(propertyDef(work, 'uuid').type), 'str');
  assert.equal(wireType(propertyDef(work, 'xid').type), 'int');
  assert.equal(wireType(propertyDef(work, 'guivm').type), 'vm');
});

test("Qubes' fixed defaults: mac, debug, guivm/audiovm dom0, keyboard_layout us++, bootmode default, no stubdom", () => {
  const r = (n: string) => resolveProperty(work, n, w).value;
  assert.equal(r('mac'), '00:16:3e:5e:6c:00');
  assert.equal(r('debug'), false);
  assert.equal(r('installed_by_rpm'), false);
  assert.equal(r('guivm'), 'dom0');
  assert.equal(r('audiovm'), 'dom0');
  assert.equal(r('keyboard_layout'), 'us++');
  assert.equal(r('bootmode'), 'default');
  assert.equal(r('kernelopts'), '', 'no kernel, no kernel options');
  assert.equal(r('stubdom_xid'), -1);
  assert.equal(r('devices_denied'), '');
  assert.equal(r('management_dispvm'), null);
  assert.equal(resolveProperty(work, 'backup_timestamp', w).unset, true, 'U in the listing');
  assert.equal(resolveProperty(work, 'stubdom_mem', w).unset, true);
});

test('keyboard_layout follows the guivm (dom0 here)', () => {
  const d = { ...dom0, props: { ...dom0.props, keyboard_layout: 'de+nodeadkeys+' } };
  const w2: World = { ...w, qube: (n) => (n === 'dom0' ? d : w.qube(n)) };
  assert.equal(resolveProperty(work, 'keyboard_layout', w2).value, 'de+nodeadkeys+');
});

test("ip is Qubes' 10.137.0.<qid> for a networked qube and empty for an offline one", () => {
  const q5 = { ...work, qid: 5 };
  assert.equal(resolveProperty(q5, 'ip', w).value, '10.137.0.5');
  assert.equal(resolveProperty(q5, 'visible_ip', w).value, '10.137.0.5');
  assert.equal(resolveProperty(q5, 'dns', w).value, '10.139.1.1 10.139.1.2');
  assert.equal(resolveProperty(tpl, 'ip', w).value, null, 'a template has no netvm');
  assert.equal(resolveProperty(tpl, 'dns', w).value, null);
  assert.equal(resolveProperty({ ...work, qid: 300, props: { ...work.props } }, 'ip', w).value, '10.137.1.46', 'vmid_to_ipv4 above 254');
  assert.equal(resolveProperty({ ...work, props: { ...work.props, netvm: null } }, 'ip', w).value, null);
});

test('ip6 only with the ipv6 feature on the netvm chain, in Qubes\' fd09:24ef:4179::a89:<qid> form', () => {
  assert.equal(resolveProperty({ ...work, qid: 26 }, 'ip6', w).value, null);
  const net6 = { ...net, features: { ipv6: '1' } };
  const w6 = world([tpl, net6, work], { default_netvm: 'sys-net' });
  assert.equal(resolveProperty({ ...work, qid: 26 }, 'ip6', w6).value, 'fd09:24ef:4179::a89:1a');
  assert.equal(resolveProperty(net6, 'gateway6', w6).value, resolveProperty(net6, 'visible_ip6', w6).value);
});

test('a net qube is the gateway of its clients; fake-ip features change what the qube sees', () => {
  assert.equal(resolveProperty(net, 'gateway', w).value, resolveProperty(net, 'ip', w).value);
  assert.equal(resolveProperty(work, 'visible_gateway', w).value, resolveProperty(net, 'ip', w).value);
  assert.equal(resolveProperty(work, 'visible_netmask', w).value, '255.255.255.255');
  assert.equal(resolveProperty(work, 'gateway', w).value, null, 'not a net qube');
  const faked = { ...work, features: { 'net.fake-ip': '192.168.1.2' } };
  assert.equal(resolveProperty(faked, 'visible_ip', w).value, '192.168.1.2');
  assert.equal(resolveProperty(faked, 'ip', w).value, resolveProperty(work, 'ip', w).value);
});

test('xid is -1 and start_time empty when halted; while running, the qid and Python-style seconds', () => {
  assert.equal(resolveProperty(work, 'xid', w).value, -1);
  assert.equal(resolveProperty(work, 'start_time', w).value, null);
  const wr = world([tpl, net, work], { default_netvm: 'sys-net' }, { work: 1700000000250 });
  assert.equal(resolveProperty(work, 'xid', wr).value, work.qid);
  assert.equal(resolveProperty(work, 'start_time', wr).value, '1700000000.25');
  const wz = world([tpl, net, work], {}, { work: 1700000000000 });
  assert.equal(resolveProperty(work, 'start_time', wz).value, '1700000000.0', "Python's str(float)");
});

test('computed properties cannot be set', () => {
  for (const p of ['xid', 'start_time', 'klass', 'visible_ip', 'gateway', 'dns', 'icon', 'stubdom_xid']) {
    assert.throws(() => parsePropertyValue(work, p, '1', w), /read-only/, p);
  }
});

test('values are stored in the form Qubes stores them', () => {
  assert.equal(parsePropertyValue(work, 'mac', '00:16:3E:5E:6C:0A', w), '00:16:3e:5e:6c:0a');
  assert.equal(parsePropertyValue(work, 'ip6', 'FD09:24EF:4179:0000:0000:0000:0a89:0001', w), 'fd09:24ef:4179::a89:1');
  assert.equal(parsePropertyValue(work, 'virt_mode', 'SANDBOX', w), 'sandbox');
  assert.equal(parsePropertyValue(work, 'ip', '10.137.0.50', w), '10.137.0.50');
  assert.equal(parsePropertyValue(work, 'keyboard_layout', 'de+nodeadkeys+grp:alt_shift_toggle', w), 'de+nodeadkeys+grp:alt_shift_toggle');
  assert.equal(parsePropertyValue(work, 'devices_denied', 'u03****b01****', w), 'u03****b01****');
  assert.equal(parsePropertyValue(work, 'guivm', 'None', w), null);
  assert.equal(parsePropertyValue(work, 'maxmem', '0', w), 0, '0: memory is the limit');
});

const MORE_BAD: [string, string, RegExp][] = [
  ['virt_mode', 'pvh', /virt_mode 'pvh' needs Xen; Isola offers 'sandbox' and 'hvm'/],
  ['virt_mode', 'pv', /virt_mode 'pv' needs Xen/],
  ['virt_mode', 'kvm', /Invalid virtualization mode, supported values: sandbox, hvm/],
  ['maxmem', '300', /maxmem \(300\) can not be less than memory \(600\)/], // work's memory comes from its template
  ['memory', '20000', /maxmem \(6000, its default\) can not be less than memory \(20000\)/], // the template's default maxmem
  ['kernelopts', 'x'.repeat(513), /too long \(512 chars max\)/],
  ['mac', '00:16:3e:5e:6c', /Invalid MAC address value/],
  ['ip', '10.137.0.256', /does not appear to be an IPv4 address/],
  ['ip', '010.137.0.1', /does not appear to be an IPv4 address/], // leading zeros, refused by Python too
  ['ip6', 'fd09::1::2', /does not appear to be an IPv6 address/],
  ['keyboard_layout', 'us', /invalid number of keyboard layout parameters/],
  ['keyboard_layout', 'u$+x+', /Invalid keyboard layout provided/],
  ['devices_denied', 'x123456', /Interface code list/],
  ['guivm', 'nosuch', /no such qube 'nosuch'/],
  ['management_dispvm', 'debian-12', /not a disposable template/],
  ['stubdom_mem', '0', /positive/],
  ['backup_timestamp', '-1', /non-negative/],
  ['debug', 'sometimes', /not a boolean/],
];
for (const [prop, value, pattern] of MORE_BAD) {
  test(`refuses ${prop}=${JSON.stringify(value.slice(0, 20))} with the reason`, () => {
    assert.throws(() => parsePropertyValue(work, prop, value, w), (e: unknown) => e instanceof QubesError && e.code === 'QubesPropertyValueError' && pattern.test(e.message));
  });
}

test("virt_mode hvm is taken where the host runs it and refused with the host's reason where it does not", () => {
  assert.equal(parsePropertyValue(work, 'virt_mode', 'HVM', w), 'hvm', 'no host facts: any real mode');
  const able = { ...w, virtModeProblem: () => undefined };
  assert.equal(parsePropertyValue(work, 'virt_mode', 'hvm', able), 'hvm');
  const unable = { ...w, virtModeProblem: (m: string) => (m === 'hvm' ? 'neither KVM nor TCG runs a guest (qemu-system-x86_64: not found)' : undefined) };
  assert.throws(() => parsePropertyValue(work, 'virt_mode', 'hvm', unable), /virt_mode 'hvm' is not available on this host: neither KVM nor TCG runs a guest \(qemu-system-x86_64: not found\)/);
  assert.equal(parsePropertyValue(work, 'virt_mode', 'sandbox', unable), 'sandbox');
});

test('kernel: an installed one is taken, another is refused naming what is installed (Qubes: not installed)', () => {
  const k = { ...w, kernels: () => ['6.1.0-50-cloud-amd64'] };
  assert.equal(parsePropertyValue(work, 'kernel', '6.1.0-50-cloud-amd64', k), '6.1.0-50-cloud-amd64');
  assert.throws(() => parsePropertyValue(work, 'kernel', '6.1.0-99-amd64', k), /Kernel '6.1.0-99-amd64' not installed \(installed: 6.1.0-50-cloud-amd64\)/);
  assert.throws(() => parsePropertyValue(work, 'kernel', 'a/b', k), /Kernel name cannot contain '\/'/);
  assert.equal(parsePropertyValue(work, 'kernel', '', k), '', "empty: the global default's kernel");
});

test('memory above what the host has is refused when set', () => {
  const big = { ...work, props: { ...work.props, maxmem: 0 } };
  assert.throws(() => parsePropertyValue(big, 'memory', '30000', w), /30000 MiB is more than this host has \(24000 MiB\)/);
});

test('default_virt_mode: new qubes without a template take it; an AppVM keeps its template\'s', () => {
  const hvmHost = world([tpl, net, work], { default_virt_mode: 'hvm' });
  assert.equal(resolveProperty(tpl, 'virt_mode', hvmHost).value, 'hvm');
  assert.equal(resolveProperty(work, 'virt_mode', hvmHost).value, 'hvm', 'through its template');
  assert.throws(() => parseGlobalValue('default_virt_mode', 'pvh', w, ['default']), /needs Xen/);
  assert.equal(parseGlobalValue('default_virt_mode', 'HVM', w, ['default']), 'hvm');
});

test('memory above an explicit maxmem is refused, and fine with maxmem 0', () => {
  const capped = { ...work, props: { ...work.props, maxmem: 1000 } };
  assert.throws(() => parsePropertyValue(capped, 'memory', '1200', w), /maxmem \(1000\) can not be less than memory \(1200\)/);
  assert.equal(parsePropertyValue(capped, 'memory', '1000', w), 1000, 'equal is fine');
  assert.equal(parsePropertyValue({ ...work, props: { ...work.props, maxmem: 0 } }, 'memory', '1200', w), 1200);
});

test("a template's memory raised past a child's maxmem is named at start (memoryProblem)", () => {
  const child = { ...work, props: { ...work.props, maxmem: 500 } };
  assert.match(memoryProblem(child, w) ?? '', /maxmem \(500\) can not be less than memory \(600\)/);
  assert.equal(memoryProblem(work, w), undefined);
});

test('a net qube still used by others keeps provides_network', () => {
  assert.throws(() => parsePropertyValue(net, 'provides_network', 'False', w), /still used by other qubes, change theirs 'netvm' first/);
  const unused = qube('sys-x', 'AppVM', { template: 'debian-12', provides_network: true });
  assert.equal(parsePropertyValue(unused, 'provides_network', 'False', world([tpl, unused])), false);
});

test('global prefs: Qubes defaults, pools following default_pool, read-only host facts', () => {
  const g = (n: string, set: Record<string, PropValue> = {}) => resolveGlobal(n, set, w);
  assert.deepEqual(g('default_guivm'), { value: 'dom0', isDefault: true });
  assert.equal(g('default_audiovm').value, 'dom0');
  assert.equal(g('stats_interval').value, 3);
  assert.equal(g('check_updates_vm').value, true);
  assert.equal(g('management_dispvm').value, null);
  assert.equal(g('default_pool_root').value, 'default');
  assert.deepEqual(g('default_pool_private', { default_pool: 'fast' }), { value: 'fast', isDefault: true });
  assert.equal(g('maxmem').value, 24000);
  assert.equal(g('no_cpus').value, 8);
  assert.throws(() => parseGlobalValue('maxmem', '1', w, ['default']), /read-only/);
  assert.throws(() => parseGlobalValue('no_cpus', '1', w, ['default']), /read-only/);
  assert.equal(parseGlobalValue('check_updates_vm', 'False', w, ['default']), false);
  assert.throws(() => parseGlobalValue('check_updates_vm', 'perhaps', w, ['default']), /not a boolean/);
  assert.throws(() => parseGlobalValue('default_pool_root', 'nosuch', w, ['default']), /no such pool/);
  assert.throws(() => parseGlobalValue('management_dispvm', 'debian-12', w, ['default']), /not a disposable template/);
  assert.throws(() => parseGlobalValue('default_guivm', 'nosuch', w, ['default']), /no such qube/);
  assert.equal(parseGlobalValue('default_guivm', '', w, ['default']), null);
});
