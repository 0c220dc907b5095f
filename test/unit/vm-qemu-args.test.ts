// The QEMU command line of an hvm qube, line by line: what the guest finds (disk serials, port names),
// what QEMU may do (sandbox, no defaults), where its sockets are.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bootCmdline, diskArgs, FIRST_DISK_FD, listenSockets, qemuArgs, serialSockets, TAP_NAME, type VmDescription } from '../../src/backends/vm/qemu-args';
import { checkJailPath, jailArgv } from '../../src/backends/vm/vmm-jail';
import { exitReason } from '../../src/backends/vm/qemu-backend';

const base: VmDescription = {
  runtimeId: 'work.3', name: 'work', machine: 'microvm', accel: 'tcg', memoryMiB: 256, vcpus: 2,
  kernel: '/k/vmlinuz', initrd: '/k/initrd', cmdline: 'console=ttyS0 quiet',
  disks: [
    { file: '/pool/tpl/root.img', readonly: true, direct: true },
    { file: '/pool/work/private,1.img', readonly: false, direct: false },
  ],
  runDir: '/run/isola-vm/i/work.3',
};

test('microvm under TCG: the exact command line', () => {
  assert.deepEqual(qemuArgs(base), [
    '-name', 'work,process=isola-work.3',
    '-M', 'microvm,acpi=on,isa-serial=on,rtc=on', '-accel', 'tcg,tb-size=16', '-cpu', 'max', '-m', '256M', '-smp', '2',
    '-nodefaults', '-no-user-config', '-nographic', '-no-reboot',
    '-sandbox', 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny',
    '-kernel', '/k/vmlinuz', '-initrd', '/k/initrd', '-append', 'console=ttyS0 quiet',
    '-chardev', 'stdio,id=console,signal=off', '-serial', 'chardev:console',
    '-chardev', 'socket,id=qmp,fd=7,server=on,wait=off', '-mon', 'chardev=qmp,mode=control',
    '-add-fd', 'fd=3,set=1,opaque=/pool/tpl/root.img',
    '-drive', 'file=/dev/fdset/1,if=none,id=d0,format=raw,cache.direct=on,discard=unmap,readonly=on,file.locking=off',
    '-device', 'virtio-blk-device,drive=d0,serial=isola-d0',
    '-add-fd', 'fd=5,set=2,opaque=/pool/work/private,,1.img', '-add-fd', 'fd=6,set=2,opaque=/pool/work/private,,1.img',
    '-drive', 'file=/dev/fdset/2,if=none,id=d1,format=raw,cache.direct=off,discard=unmap',
    '-device', 'virtio-blk-device,drive=d1,serial=isola-d1',
    '-device', 'virtio-serial-device,max_ports=3',
    '-chardev', 'socket,id=agent,fd=8,server=on,wait=off',
    '-device', 'virtserialport,chardev=agent,name=org.isola.agent',
    '-chardev', 'socket,id=client,fd=9,server=on,wait=off',
    '-device', 'virtserialport,chardev=client,name=org.isola.client',
  ]);
});

test('q35 under KVM uses PCI devices and the host CPU', () => {
  const a = qemuArgs({ ...base, machine: 'q35', accel: 'kvm' });
  assert.deepEqual(a.slice(2, 10), ['-M', 'q35', '-accel', 'kvm', '-cpu', 'host', '-m', '256M']);
  assert.ok(a.includes('virtio-blk-pci,drive=d0,serial=isola-d0'));
  assert.ok(a.includes('virtio-serial-pci,max_ports=3'));
  assert.ok(!a.some((x) => x.includes('virtio-rng')), 'no virtio-rng: it made microvm boots hang under TCG');
  assert.ok(!a.some((x) => x.includes('-device,')), 'no mmio devices on q35');
});

test('TCG gets a 16 MiB translation buffer (QEMU\'s 1 GiB default costs an idle qube ~20 MiB more); KVM has none', () => {
  const a = qemuArgs(base);
  assert.equal(a[a.indexOf('-accel') + 1], 'tcg,tb-size=16');
  assert.equal(a.filter((x) => x.startsWith('tcg')).length, 1);
  const k = qemuArgs({ ...base, accel: 'kvm' });
  assert.equal(k[k.indexOf('-accel') + 1], 'kvm');
  assert.ok(!k.some((x) => x.includes('tb-size')));
});

test('a writable disk keeps QEMU\'s image lock, so two QEMUs cannot write one image', () => {
  const rw = diskArgs('q35', [base.disks[1]])[5];
  assert.doesNotMatch(rw, /locking=off|readonly/);
  assert.match(diskArgs('q35', [base.disks[0]])[3], /readonly=on,file.locking=off/);
});

test('disks are numbered in order, root first: the guest finds them by serial', () => {
  const disks = Array.from({ length: 4 }, (_, i) => ({ file: `/d/${i}`, readonly: i < 2, direct: false }));
  const serials = diskArgs('microvm', disks).filter((x) => x.startsWith('virtio-blk')).map((x) => /serial=(\S+)/.exec(x)![1]);
  assert.deepEqual(serials, ['isola-d0', 'isola-d1', 'isola-d2', 'isola-d3']);
});

test('QEMU owns no socket file: the jail listens on the run dir\'s sockets and QEMU inherits them after the disks', () => {
  assert.deepEqual(serialSockets('/r/x'), { agent: '/r/x/agent.sock', client: '/r/x/client.sock' });
  assert.deepEqual(listenSockets('/r/x'), ['/r/x/qmp.sock', '/r/x/agent.sock', '/r/x/client.sock']);
  assert.ok(!qemuArgs(base).some((a) => /path=/.test(a)), 'no socket path reaches QEMU');
  const argv = jailArgv({ uid: 5, gid: 6, stateDir: '/s', ro: [], rw: [], devices: [], disks: [], listen: listenSockets('/r/x'), qemu: '/q', args: [] });
  assert.deepEqual(argv.slice(6), ['--listen', '/r/x/qmp.sock', '--listen', '/r/x/agent.sock', '--listen', '/r/x/client.sock', '--', '/q']);
});

test('the jail refuses relative paths and .. in any bind', () => {
  for (const bad of ['rel/file', '/a/../etc/shadow', '/a/./b', '/', '/a\0b']) assert.throws(() => checkJailPath(bad, 'bind'), /not an absolute path/);
  const disks = [{ file: '/p/root.img', readonly: true }, { file: '/p/private.img', readonly: false, direct: true }];
  const argv = jailArgv({ uid: 5, gid: 6, stateDir: '/s', ro: ['/r'], rw: ['/w'], devices: ['/dev/null'], disks, qemu: '/q', args: ['-x'] });
  assert.deepEqual(argv, ['--uid', '5', '--gid', '6', '--state-dir', '/s', '--ro', '/r', '--rw', '/w', '--dev', '/dev/null',
    '--disk-ro', '/p/root.img', '--disk-rw-direct', '/p/private.img', '--', '/q', '-x']);
  assert.throws(() => jailArgv({ uid: 5, gid: 6, stateDir: '/s', ro: ['/pool/../home'], rw: [], devices: [], disks: [], qemu: '/q', args: [] }), /read-only bind/);
  assert.throws(() => jailArgv({ uid: 5, gid: 6, stateDir: '/s', ro: [], rw: [], devices: [], disks: [{ file: 'x.img', readonly: true }], qemu: '/q', args: [] }), /disk/);
});

test('how QEMU ended, in words', () => {
  assert.equal(exitReason('killed SIGKILL'), 'QEMU was killed (SIGKILL)');
  assert.equal(exitReason('exited 0', 'guest-shutdown'), 'QEMU exited (status 0) after shutdown (guest-shutdown)');
  assert.equal(exitReason(undefined), 'QEMU ended (status unknown)');
  assert.equal(exitReason('exited 1; rm -rf /'), 'QEMU ended (status unknown)');
});

test('microvm under TCG is told the TSC rate (no HPET to calibrate against); q35 and KVM are not', () => {
  assert.equal(bootCmdline({ ...base, tscKhz: 2596122 }), 'console=ttyS0 quiet tsc_early_khz=2596122');
  assert.equal(bootCmdline({ ...base, tscKhz: 2596122, machine: 'q35' }), 'console=ttyS0 quiet');
  assert.equal(bootCmdline({ ...base, tscKhz: 2596122, accel: 'kvm' }), 'console=ttyS0 quiet');
  assert.equal(bootCmdline({ ...base, cmdline: 'tsc_early_khz=1000', tscKhz: 5 }), 'tsc_early_khz=1000');
});

test('a qube with a netvm gets a virtio-net card with its mac on the jail\'s tap, after the listeners; no vhost', () => {
  const withNic = qemuArgs({ ...base, nic: { mac: '00:16:3e:5e:6c:03' } });
  const i = withNic.indexOf('-netdev');
  assert.deepEqual(withNic.slice(i), ['-netdev', 'tap,id=n0,fd=10,vhost=off', '-device', 'virtio-net-device,netdev=n0,mac=00:16:3e:5e:6c:03']);
  assert.equal(FIRST_DISK_FD + 2 * base.disks.length + listenSockets(base.runDir).length, 10);
  assert.ok(qemuArgs({ ...base, machine: 'q35', nic: { mac: '00:16:3e:5e:6c:03' } }).includes('virtio-net-pci,netdev=n0,mac=00:16:3e:5e:6c:03,romfile='));
  assert.ok(!qemuArgs(base).includes('-netdev'), 'offline: no card at all');
  assert.throws(() => qemuArgs({ ...base, nic: { mac: '00:16:3e:5e:6c:03,script=/x' } }), /bad MAC address/);
  const argv = jailArgv({ uid: 5, gid: 6, stateDir: '/s', ro: [], rw: [], devices: [], disks: [], tap: TAP_NAME, qemu: '/q', args: [] });
  assert.deepEqual(argv.slice(6), ['--tap', 'tap0', '--', '/q']);
  assert.throws(() => jailArgv({ uid: 5, gid: 6, stateDir: '/s', ro: [], rw: [], devices: [], disks: [], tap: 'eth0 up', qemu: '/q', args: [] }), /tap name/);
});
