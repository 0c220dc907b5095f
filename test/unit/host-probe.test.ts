// Pure parts of `isola doctor`: report layout, cgroup layout from real mountinfo samples,
// kernel and meminfo parsing, and the KVM probe's boot sector.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatReport, parseCgroupLayout, parseKernelVersion, parseMeminfo, ProbeResult, virtModes } from '../../src/backends/host-probe';
import { bootSector, GUEST_RAN_EXIT } from '../../src/backends/kvm-probe';

const ROOT = '22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n';

// Debian 10 / Ubuntu 20.04 style: systemd's "hybrid" mode.
const HYBRID =
  ROOT +
  [
    '31 23 0:28 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755',
    '32 31 0:29 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate',
    '33 31 0:30 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd',
    '36 31 0:33 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,cpu,cpuacct',
    '37 31 0:34 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,memory',
    '38 31 0:35 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,pids',
  ].join('\n');

// Debian 11+ default: unified only.
const V2 = ROOT + '30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n';

// Old kernels / containers without the unified hierarchy.
const V1 =
  ROOT +
  [
    '31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
    '32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu',
    '35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory',
    '36 31 0:33 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset,clone_children',
  ].join('\n');

test('cgroup layout: hybrid', () => {
  const l = parseCgroupLayout(HYBRID);
  assert.equal(l.layout, 'hybrid');
  assert.equal(l.v2Path, '/sys/fs/cgroup/unified');
  assert.deepEqual(l.v1Controllers, ['cpu', 'cpuacct', 'memory', 'pids']);
});

test('cgroup layout: pure v2', () => {
  assert.deepEqual(parseCgroupLayout(V2), { layout: 'v2', v2Path: '/sys/fs/cgroup', v1Controllers: [] });
});

test('cgroup layout: v1 and none', () => {
  const l = parseCgroupLayout(V1);
  assert.equal(l.layout, 'v1');
  assert.equal(l.v2Path, undefined);
  assert.deepEqual(l.v1Controllers, ['cpu', 'cpuset', 'memory']);
  assert.equal(parseCgroupLayout(ROOT).layout, 'none');
  assert.equal(parseCgroupLayout('').layout, 'none');
});

test('kernel version and meminfo parsing', () => {
  assert.deepEqual(parseKernelVersion('6.1.0-21-amd64'), [6, 1, 0]);
  assert.deepEqual(parseKernelVersion('6.18.44-fc-v657'), [6, 18, 44]);
  assert.deepEqual(parseKernelVersion('5.19'), [5, 19, 0]);
  assert.deepEqual(parseKernelVersion('garbage'), [0, 0, 0]);
  const m = parseMeminfo('MemTotal:       24684092 kB\nMemFree:        23000000 kB\nMemAvailable:   24336080 kB\n');
  assert.equal(m.totalBytes, 24684092 * 1024);
  assert.equal(m.availableBytes, 24336080 * 1024);
});

test('formatReport aligns columns, marks failures, lists fixes', () => {
  const results: ProbeResult[] = [
    { name: 'kernel', ok: true, detail: '6.1.0-21-amd64' },
    { name: 'OCI runtime', ok: false, detail: 'neither runc nor crun found', fix: 'apt-get install -y runc' },
    { name: 'KVM', ok: false, detail: 'KVM unusable (failed to initialize kvm); fall back to TCG', fix: 'load kvm_intel' },
  ];
  const out = formatReport(results);
  const lines = out.split('\n');
  assert.equal(lines[0], 'CHECK        STATUS   DETAIL');
  assert.equal(lines[1], 'kernel       OK       6.1.0-21-amd64');
  assert.equal(lines[2], 'OCI runtime  MISSING  neither runc nor crun found');
  // Every detail starts in the same column.
  const col = lines[0].indexOf('DETAIL');
  for (const l of lines.slice(1, 4)) assert.ok(l.length > col && l[col - 1] === ' ' && l[col] !== ' ', l);
  assert.ok(out.includes('2 of 3 checks failed.'));
  assert.ok(out.includes('To fix:\n  OCI runtime: apt-get install -y runc\n  KVM: load kvm_intel\n'));
  assert.ok(formatReport([results[0]]).includes('All checks passed.'));
  assert.ok(!formatReport([results[0]]).includes('To fix'));
});

test('KVM probe boot sector: 512 bytes, signature, writes 0x31 to the debug-exit port', () => {
  const b = bootSector();
  assert.equal(b.length, 512);
  assert.equal(b[510], 0x55);
  assert.equal(b[511], 0xaa);
  assert.deepEqual([...b.subarray(0, 5)], [0xb0, 0x31, 0xe6, 0xf4, 0xf4]);
  assert.equal(GUEST_RAN_EXIT, 99);
});

test('virt modes: what the checks allow, and why a mode is not available', () => {
  const r = (name: string, ok: boolean) => ({ name, ok, detail: '' });
  const base = [r('OCI runtime', true), r('user namespaces', true), r('seccomp', true)];
  assert.equal(virtModes([...base, r('QEMU', true), r('KVM', true)]).detail, 'sandbox, hvm (KVM)');
  assert.match(virtModes([...base, r('QEMU', true), r('KVM', false)]).detail, /^sandbox, hvm \(TCG/);
  assert.match(virtModes([...base, r('QEMU', false), r('KVM', true)]).detail, /^sandbox; not: hvm \(needs QEMU/);
  const none = virtModes([r('OCI runtime', false), r('QEMU', false)]);
  assert.equal(none.ok, false);
  assert.match(none.detail, /^none; not: sandbox .*, hvm/);
});
