// Unit tests of what the sandbox profile refuses beyond Docker's list (other syscall ABIs, modify_ldt,
// the i386 multiplexers) and of what a qube is kept from reading of the host (masks, /proc files).

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import type { QubeRuntimeSpec } from '../../src/backends/sandbox/sandbox-spec';
import { buildOciSpec, seccompProfile } from '../../src/backends/sandbox';
import { blockIdentityFiles } from '../../src/backends/sandbox/host-identity';
import { BOOT_ID_FILE, NEUTRAL_CMDLINE, procBindHook, qubeProcFiles } from '../../src/backends/sandbox/qube-proc-files';

const spec: QubeRuntimeSpec = {
  id: 'work.3', hostname: 'work', rootfs: '/var/lib/isola/run/work/root', mounts: [],
  uidBase: 1_000_000, uidCount: 65536, memoryMiB: 400, maxmemMiB: 4000, vcpus: 2, pidsLimit: 4096,
  init: ['/usr/bin/tini'], env: [], logFile: '/var/log/isola/work.log', cgroupParent: 'isola-default',
};
const BOOT_ID = '0f8e2f4c-1b7a-4c55-9a43-2b9e1f0d6a11';
const tmp = mkdtempSync(path.join(os.tmpdir(), 'isola-sysfs-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

const allowedNames = (): Set<string> =>
  new Set(seccompProfile().syscalls.filter((r) => r.action === 'SCMP_ACT_ALLOW').flatMap((r) => r.names));

test('seccomp admits the x86-64 ABI only: i386 (int 0x80) and x32 calls get the bad-arch action', () => {
  const p = seccompProfile();
  assert.deepEqual(p.architectures, ['SCMP_ARCH_X86_64']);
  p.architectures.push('SCMP_ARCH_X86');
  assert.deepEqual(seccompProfile().architectures, ['SCMP_ARCH_X86_64'], 'each call builds a fresh copy');
});

test('seccomp: modify_ldt and the i386 multiplexers socketcall and ipc are never allowed', () => {
  const allowed = allowedNames();
  for (const name of ['modify_ldt', 'socketcall', 'ipc']) assert.ok(!allowed.has(name), name);
  // Their direct x86-64 counterparts stay (socket itself only with its AF_VSOCK check).
  for (const name of ['msgget', 'semop', 'shmat', 'connect', 'sendmsg', 'recvmsg', 'arch_prctl']) assert.ok(allowed.has(name), name);
  const socket = seccompProfile().syscalls.filter((r) => r.names.includes('socket'));
  assert.deepEqual(socket.map((r) => r.args), [[{ index: 0, value: 40, op: 'SCMP_CMP_NE' }]]);
});

test('seccomp lists no 32-bit-only names (they would be dead text on an x86-64-only filter)', () => {
  const allowed = allowedNames();
  for (const name of ['mmap2', 'stat64', 'fcntl64', 'chown32', 'setuid32', '_llseek', '_newselect', 'send', 'recv',
    'sigreturn', 'waitpid', 'ugetrlimit', 'futex_time64', 'clock_gettime64']) {
    assert.ok(!allowed.has(name), name);
  }
});

test('masked paths: host pressure, vmcoreinfo and virtual disks, plus the probed identity files', () => {
  const plain = buildOciSpec(spec).linux.maskedPaths;
  for (const p of ['/proc/pressure', '/sys/kernel/vmcoreinfo', '/sys/devices/virtual/block']) assert.ok(plain.includes(p), p);
  assert.ok(!plain.includes('/proc/stat') && !plain.includes('/proc/loadavg'), 'ps, top and uptime need them');
  const serial = '/sys/devices/pci0000:00/0000:00:02.0/virtio1/block/vda/serial';
  const masked = buildOciSpec(spec, { hostIdentityFiles: [serial, '/etc/shadow', 'sys/relative'] }).linux.maskedPaths;
  assert.deepEqual(masked, [...plain, serial], 'only absolute /sys paths are taken');
});

test('proc files: a neutral cmdline and the given boot id, bound by a createContainer hook', () => {
  assert.equal(buildOciSpec(spec).hooks, undefined);
  const files = qubeProcFiles('/usr/libexec/isola/isola-proc-bind', BOOT_ID);
  const cfg = buildOciSpec(spec, { procFiles: files });
  assert.deepEqual(cfg.hooks, {
    createContainer: [{
      path: '/usr/libexec/isola/isola-proc-bind',
      args: ['isola-proc-bind', '/proc/cmdline', NEUTRAL_CMDLINE, BOOT_ID_FILE, `${BOOT_ID}\n`],
      timeout: 10,
    }],
  });
  assert.doesNotMatch(NEUTRAL_CMDLINE, /root=|console=|init=|vsock|--/);
  assert.throws(() => qubeProcFiles('isola-proc-bind', BOOT_ID), /absolute path/);
  assert.throws(() => qubeProcFiles('/x', 'not-a-uuid'), /not a lower-case UUID/);
  assert.throws(() => procBindHook({ helper: '/x', files: [{ destination: '/etc/passwd', content: 'x' }] }), /under \/proc/);
  assert.throws(() => procBindHook({ helper: '/x', files: [{ destination: '/proc/cmdline', content: 'a\0b' }] }), /NUL/);
});

test('block identity files: serials and ids of real disks found through /sys/block symlinks', () => {
  const sys = path.join(tmp, 'sys');
  const vda = path.join(sys, 'devices/pci0000:00/virtio1/block/vda');
  const nvme = path.join(sys, 'devices/pci0000:00/nvme/nvme0');
  const loop = path.join(sys, 'devices/virtual/block/loop0');
  for (const d of [vda, path.join(nvme, 'nvme0n1'), path.join(loop, 'loop'), path.join(sys, 'block')]) mkdirSync(d, { recursive: true });
  writeFileSync(path.join(vda, 'serial'), 'SERIAL-1\n');
  writeFileSync(path.join(vda, 'size'), '100\n');
  writeFileSync(path.join(nvme, 'serial'), 'S4EVNX0\n');
  writeFileSync(path.join(nvme, 'nvme0n1', 'wwid'), 'eui.0025\n');
  symlinkSync(nvme, path.join(nvme, 'nvme0n1', 'device'));
  writeFileSync(path.join(loop, 'loop', 'backing_file'), '/var/lib/isola/pool.img\n');
  writeFileSync(path.join(loop, 'serial'), 'loop-serial\n');
  symlinkSync('../devices/pci0000:00/virtio1/block/vda', path.join(sys, 'block', 'vda'));
  symlinkSync('../devices/pci0000:00/nvme/nvme0/nvme0n1', path.join(sys, 'block', 'nvme0n1'));
  symlinkSync('../devices/virtual/block/loop0', path.join(sys, 'block', 'loop0'));
  assert.deepEqual(blockIdentityFiles(sys), [
    '/sys/devices/pci0000:00/nvme/nvme0/nvme0n1/wwid',
    '/sys/devices/pci0000:00/nvme/nvme0/serial',
    '/sys/devices/pci0000:00/virtio1/block/vda/serial',
  ], 'virtual disks are masked as a whole directory instead');
  assert.deepEqual(blockIdentityFiles(path.join(tmp, 'nowhere-sys')), []);
});
