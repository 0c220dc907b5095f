// Unit tests of the sandbox's generated OCI config: the security-relevant fields and bad input.
// Pure: nothing here touches runc, cgroups or the filesystem.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { QubeRuntimeSpec } from '../../src/backends/sandbox/sandbox-spec';
import {
  buildOciSpec, CLONE_NAMESPACE_FLAGS, FORBIDDEN_SYSCALLS, isPureCgroupV2, MASKED_PATHS,
  probeOciRuntime, READONLY_PATHS, runcErrorLine, seccompProfile,
} from '../../src/backends/sandbox';

function spec(over: Partial<QubeRuntimeSpec> = {}): QubeRuntimeSpec {
  return {
    id: 'work-3f2a',
    hostname: 'work',
    rootfs: '/var/lib/isola/run/work/root',
    mounts: [
      { source: '/var/lib/isola/vols/work/private', destination: '/rw', readonly: false },
      { source: '/var/lib/isola/run/work/agent', destination: '/run/isola', readonly: true },
    ],
    uidBase: 1_000_000,
    uidCount: 65536,
    memoryMiB: 400,
    maxmemMiB: 4000,
    vcpus: 2,
    pidsLimit: 4096,
    init: ['/usr/lib/isola/isola-agent', '--sandbox'],
    env: ['LANG=C.UTF-8'],
    logFile: '/var/log/isola/work.log',
    cgroupParent: 'isola-default',
    ...over,
  };
}

type Any = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
const linux = (s: QubeRuntimeSpec = spec()): Any => buildOciSpec(s).linux as Any;

test('user namespace maps qube root to uidBase, for uids and gids alike', () => {
  const l = linux();
  assert.ok(l.namespaces.some((n: Any) => n.type === 'user' && n.path === undefined));
  assert.deepEqual(l.uidMappings, [{ containerID: 0, hostID: 1_000_000, size: 65536 }]);
  assert.deepEqual(l.gidMappings, [{ containerID: 0, hostID: 1_000_000, size: 65536 }]);
});

test('every namespace is new (none joined from the host)', () => {
  const types = linux().namespaces.map((n: Any) => { assert.equal(n.path, undefined); return n.type; }).sort();
  assert.deepEqual(types, ['cgroup', 'ipc', 'mount', 'network', 'pid', 'user', 'uts']);
});

test('no host devices: no linux.devices, deny-all cgroup rule first, only the OCI default char set allowed', () => {
  const l = linux();
  assert.ok(l.devices === undefined || l.devices.length === 0);
  const rules = l.resources.devices as Any[];
  assert.deepEqual(rules[0], { allow: false, access: 'rwm' });
  const allowed = new Set(['1:3', '1:5', '1:7', '1:8', '1:9', '5:0', '5:2', '136:*']);
  for (const r of rules.slice(1)) {
    assert.equal(r.allow, true);
    assert.equal(r.type, 'c', 'no block device is ever allowed');
    assert.ok(allowed.has(`${r.major}:${r.minor ?? '*'}`), `unexpected device ${r.major}:${r.minor}`);
  }
  assert.ok(!rules.some((r) => r.major === 10 && r.minor === 232), '/dev/kvm');
  const cfg = buildOciSpec(spec());
  assert.ok(!cfg.mounts.some((m) => m.type === 'bind' && m.source.startsWith('/dev')), 'no bind from host /dev');
});

test('masked and read-only paths cover Docker\'s lists', () => {
  const l = linux();
  for (const p of ['/proc/acpi', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list',
    '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware', '/sys/devices/virtual/powercap']) {
    assert.ok(l.maskedPaths.includes(p), p);
  }
  for (const p of ['/proc/asound', '/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger']) {
    assert.ok(l.readonlyPaths.includes(p), p);
  }
  assert.deepEqual(l.maskedPaths, [...MASKED_PATHS], 'nothing host-specific without hostIdentityFiles');
  assert.deepEqual(l.readonlyPaths, [...READONLY_PATHS]);
});

test('process: argv, root inside, setuid allowed (sudo as in Qubes), a small capability set', () => {
  const p = buildOciSpec(spec()).process as Any;
  assert.deepEqual(p.args, ['/usr/lib/isola/isola-agent', '--sandbox']);
  assert.deepEqual(p.user, { uid: 0, gid: 0 });
  assert.equal(p.cwd, '/');
  assert.equal(p.noNewPrivileges, false, 'sudo works in qubes, as in Qubes');
  assert.equal(p.apparmorProfile, undefined);
  assert.ok(p.env.some((e: string) => e.startsWith('PATH=')));
  assert.ok(p.env.includes('LANG=C.UTF-8'));
  const c = p.capabilities;
  assert.deepEqual(c.effective, c.bounding);
  assert.deepEqual(c.permitted, c.bounding);
  assert.equal(c.ambient, undefined);
  assert.equal(c.inheritable, undefined);
  for (const bad of ['CAP_SYS_ADMIN', 'CAP_NET_RAW', 'CAP_MKNOD', 'CAP_SYS_PTRACE', 'CAP_SYS_MODULE',
    'CAP_NET_ADMIN', 'CAP_SYS_RAWIO', 'CAP_SYS_TIME', 'CAP_DAC_READ_SEARCH', 'CAP_SYS_BOOT', 'CAP_BPF']) {
    assert.ok(!c.bounding.includes(bad), bad);
  }
  assert.deepEqual(p.rlimits, [{ type: 'RLIMIT_NOFILE', soft: 1024, hard: 1048576 }]);
  const online = (buildOciSpec({ ...spec(), networked: true }, {}).process as Any).capabilities;
  assert.deepEqual(online.bounding, [...c.bounding, 'CAP_NET_RAW'], 'a networked qube gets raw sockets (ping), nothing more');
  const capped = buildOciSpec(spec(), { nofileHard: 20000 }).process as Any;
  assert.equal(capped.rlimits[0].hard, 20000);
});

test('seccomp: EPERM by default, x86-64 only, no namespace or kernel-wide syscalls', () => {
  const s = linux().seccomp;
  assert.equal(s.defaultAction, 'SCMP_ACT_ERRNO');
  assert.equal(s.defaultErrnoRet, 1);
  assert.deepEqual(s.architectures, ['SCMP_ARCH_X86_64']);
  const allowedUnconditionally = new Set<string>();
  for (const r of s.syscalls as Any[]) if (r.action === 'SCMP_ACT_ALLOW' && !r.args) r.names.forEach((n: string) => allowedUnconditionally.add(n));
  for (const name of [...FORBIDDEN_SYSCALLS, 'clone', 'clone3', 'personality', 'socket']) {
    assert.ok(!allowedUnconditionally.has(name), `${name} must not be allowed unconditionally`);
  }
  for (const name of FORBIDDEN_SYSCALLS) {
    assert.ok(!(s.syscalls as Any[]).some((r) => r.action === 'SCMP_ACT_ALLOW' && r.names.includes(name)), name);
  }
  for (const name of ['read', 'write', 'execve', 'openat', 'futex', 'epoll_wait', 'ptrace']) {
    assert.ok(allowedUnconditionally.has(name), name);
  }
});

test('seccomp: clone refuses namespace flags, clone3 is ENOSYS, personality only safe values', () => {
  const rules = seccompProfile().syscalls;
  const clone = rules.filter((r) => r.names.includes('clone'));
  assert.equal(clone.length, 1);
  assert.deepEqual(clone[0].args, [{ index: 0, value: CLONE_NAMESPACE_FLAGS, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }]);
  assert.equal(CLONE_NAMESPACE_FLAGS, 0x7e020000);
  const clone3 = rules.filter((r) => r.names.includes('clone3'));
  assert.deepEqual(clone3, [{ names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: 38 }]);
  const pers = rules.filter((r) => r.names.includes('personality'));
  assert.deepEqual(pers.map((r) => r.args?.[0].value).sort((a, b) => (a ?? 0) - (b ?? 0)), [0, 8, 0x20000, 0x20008, 0xffffffff]);
  assert.ok(pers.every((r) => r.args?.[0].op === 'SCMP_CMP_EQ'));
});

test('resources: memory hard/soft limits, cpu quota from vcpus, pids', () => {
  const r = linux().resources;
  assert.equal(r.memory.limit, 4000 * 1024 * 1024);
  assert.equal(r.memory.reservation, 400 * 1024 * 1024);
  assert.equal(r.memory.swap, r.memory.limit, 'no swap beyond the hard limit');
  assert.deepEqual(r.cpu, { quota: 200000, period: 100000 });
  assert.deepEqual(r.pids, { limit: 4096 });
  assert.equal(linux(spec({ maxmemMiB: 0 })).resources.memory.limit, 400 * 1024 * 1024);
  assert.equal((buildOciSpec(spec(), { swapLimit: false }).linux as Any).resources.memory.swap, undefined);
});

test('cgroup path is absolute under the instance parent; no sysctls', () => {
  assert.equal(linux().cgroupsPath, '/isola-default/work-3f2a');
  assert.equal(linux(spec({ cgroupParent: 'isola/inst-1/' })).cgroupsPath, '/isola/inst-1/work-3f2a');
  assert.equal(linux().sysctl, undefined);
});

test('mounts: pseudo filesystems hardened, volumes bound with their read-only flag', () => {
  const cfg = buildOciSpec(spec());
  assert.equal(cfg.hostname, 'work');
  assert.deepEqual(cfg.root, { path: '/var/lib/isola/run/work/root', readonly: false });
  const by = (d: string) => cfg.mounts.find((m) => m.destination === d)!;
  assert.equal(by('/proc').type, 'proc');
  assert.ok(by('/sys').options.includes('ro'));
  assert.ok(by('/sys/fs/cgroup').options.includes('ro'));
  assert.ok(by('/dev/pts').options.includes('newinstance'));
  assert.ok(by('/dev/pts').options.includes('gid=5'));
  assert.deepEqual(by('/rw'), { destination: '/rw', type: 'bind', source: '/var/lib/isola/vols/work/private', options: ['rbind', 'rprivate', 'nosuid', 'nodev', 'rw'] });
  assert.ok(by('/run/isola').options.includes('ro'));
  assert.ok(!by('/run/isola').options.includes('rw'));
});

test('pure: same input gives the same output and the input is not changed', () => {
  const s = spec();
  const before = JSON.stringify(s);
  assert.deepEqual(buildOciSpec(s), buildOciSpec(s));
  assert.equal(JSON.stringify(s), before);
  const a = buildOciSpec(s);
  (a.process.args as string[]).push('x');
  assert.deepEqual(buildOciSpec(s).process.args, s.init);
});

test('bad input throws one line naming the qube and the field', () => {
  const cases: Array<[Partial<QubeRuntimeSpec>, RegExp]> = [
    [{ uidCount: 0 }, /work-3f2a: uidCount 0/],
    [{ uidBase: 0 }, /uidBase 0 .*host root/],
    [{ uidBase: 0xffffffff - 10 }, /uid range/],
    [{ init: [] }, /init must be a non-empty argv/],
    [{ init: [''] }, /init\[0\]/],
    [{ id: '' }, /\(no id\): id ""/],
    [{ id: '../x' }, /id/],
    [{ hostname: 'a b' }, /hostname/],
    [{ rootfs: 'relative/root' }, /rootfs/],
    [{ rootfs: '/' }, /rootfs/],
    [{ memoryMiB: 0 }, /memoryMiB/],
    [{ maxmemMiB: 100 }, /maxmemMiB 100 is below memoryMiB 400/],
    [{ vcpus: 1.5 }, /vcpus/],
    [{ pidsLimit: -1 }, /pidsLimit/],
    [{ env: ['NOEQUALS'] }, /env/],
    [{ cgroupParent: '../escape' }, /cgroupParent/],
    [{ logFile: 'x.log' }, /logFile/],
    [{ mounts: [{ source: '/srv', destination: '/proc/sys', readonly: false }] }, /would cover \/proc/],
    [{ mounts: [{ source: '/srv', destination: '/', readonly: true }] }, /would cover \//],
    [{ mounts: [{ source: '/srv', destination: '/a/../dev', readonly: true }] }, /not normalised/],
    [{ mounts: [{ source: 'srv', destination: '/srv', readonly: true }] }, /source must be an absolute/],
  ];
  for (const [over, re] of cases) {
    assert.throws(() => buildOciSpec(spec(over)), (err: Error) => {
      assert.match(err.message, re);
      assert.ok(!err.message.includes('\n'), 'one line');
      return true;
    }, JSON.stringify(over));
  }
});

test('runtime probe: pure cgroup v2 detection and ISOLA_RUNTIME override', () => {
  const hybrid = '31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n';
  const v2 = '30 23 0:27 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n';
  assert.equal(isPureCgroupV2(hybrid), false);
  assert.equal(isPureCgroupV2(v2), true);
  assert.equal(isPureCgroupV2(''), false);
  assert.throws(() => probeOciRuntime({ ISOLA_RUNTIME: '/nonexistent/runc' }), /ISOLA_RUNTIME=\/nonexistent\/runc/);
  const chosen = probeOciRuntime({ ISOLA_RUNTIME: process.execPath });
  assert.equal(chosen.path, process.execPath);
  assert.match(chosen.reason, /ISOLA_RUNTIME/);
});

test('runc error lines are extracted from JSON and text logs', () => {
  assert.equal(runcErrorLine('{"level":"info","msg":"x"}\n{"level":"error","msg":"container does not exist","time":"t"}\n'), 'container does not exist');
  assert.equal(runcErrorLine('time="t" level=error msg="exec: \\"/nope\\": not found"\n'), 'exec: "/nope": not found');
  assert.equal(runcErrorLine('container does not exist\n'), 'container does not exist');
  assert.equal(runcErrorLine(''), '(no error message)');
  assert.equal(runcErrorLine([
    '{"level":"fatal","msg":"nsexec-0[23124]: failed to open mount source /x: No such file or directory"}',
    '{"level":"warning","msg":"Failed to remove cgroup (will retry)"}',
    '{"level":"error","msg":"runc run failed: unable to start container process: can\'t get final child\'s PID from pipe: EOF"}',
  ].join('\n')), 'failed to open mount source /x: No such file or directory');
  assert.equal(runcErrorLine('{"level":"error","msg":"runc run failed: exec: \\"/x\\": not found"}'), 'exec: "/x": not found');
});
