// Attacks tried from inside a real qube (Debian template, runc, user namespace, seccomp): each
// test is named after what a compromised qube would try and asserts that it fails.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { canRunIntegration, Instance } from './harness';

const skip = canRunIntegration();

describe('isolation from inside a qube', { skip, concurrency: false }, () => {
  let inst: Instance;
  const planted = `/root/isola-planted-${randomBytes(6).toString('hex')}`;
  const run = (vm: string, cmd: string, user = 'root') => inst.cli('qvm-run', ['-p', '-u', user, vm, cmd]);
  const hostPids = (vm: string): number[] => JSON.parse(inst.runc('ps', '--format', 'json', inst.runtimeId(vm))) as number[];

  before(async () => {
    inst = new Instance();
    await inst.start();
    await inst.installTemplate();
    await inst.ok('qvm-create', '--label', 'red', 'attacker');
    await inst.ok('qvm-create', '--label', 'black', 'victim');
    await inst.ok('qvm-run', '-p', 'victim', 'echo victim-secret > ~/secret-of-victim.txt');
    await inst.ok('qvm-start', 'attacker');
    writeFileSync(planted, 'host-secret\n', { mode: 0o644 });
  });
  after(async () => {
    rmSync(planted, { force: true });
    await inst?.destroy();
  });

  test('an idle qube runs no Node process: its agent is the compiled one, its init', async () => {
    await new Promise((r) => setTimeout(r, 1000)); // past the start: what stays is what idles
    const exes = hostPids('attacker').map((pid) => {
      try {
        return readlinkSync(`/proc/${pid}/exe`);
      } catch {
        return '(gone)';
      }
    });
    assert.ok(exes.length > 0, 'the qube has processes');
    assert.ok(exes.every((e) => !/node/.test(path.basename(e))), `processes of an idle qube: ${exes.join(', ')}`);
    assert.match(exes.join(' '), /isola-agent/, `the agent runs: ${exes.join(', ')}`);
  });

  test('host-process-visibility: the qube sees only its own processes', async () => {
    const r = await run('attacker', 'ls /proc | grep -E "^[0-9]+$" | wc -l; cat /proc/*/cmdline 2>/dev/null | tr "\\0" " "');
    assert.equal(r.code, 0, r.stderr);
    const [count, ...cmdlines] = r.stdout.split('\n');
    assert.ok(Number(count) < 10, `qube sees ${count} processes`);
    assert.doesNotMatch(cmdlines.join(' '), /isolad|systemd|sshd/);
    const kill = await run('attacker', `kill -0 ${process.pid}`);
    assert.notEqual(kill.code, 0, "the test runner's pid is not reachable");
  });

  test('host-file-read: a file planted on the host is not readable or findable', async () => {
    assert.equal(readFileSync(planted, 'utf8'), 'host-secret\n');
    const r = await run('attacker', `cat ${planted}; find / -xdev -name "${planted.split('/').pop()}" 2>/dev/null; cat /proc/1/root${planted}`);
    assert.doesNotMatch(r.stdout, /host-secret|isola-planted/);
  });

  test("cross-qube-private-read: another qube's private files cannot be found", async () => {
    const r = await run('attacker', 'grep -rs victim-secret / --exclude-dir=proc --exclude-dir=sys 2>/dev/null | head -1; ls /rw/home');
    assert.doesNotMatch(r.stdout, /victim-secret/);
    // Guessing the host path of the victim's volumes does not help either: they are not in this mount namespace.
    const r2 = await run('attacker', `ls ${inst.config.poolDir} ${inst.home} 2>&1`);
    assert.doesNotMatch(r2.stdout, /[0-9a-f]{8}-[0-9a-f]{4}-/);
  });

  test('root-is-not-host-root: uid 0 inside is an unprivileged uid on the host', async () => {
    const inside = await run('attacker', 'id -u');
    assert.equal(inside.stdout.trim(), '0');
    const pids = hostPids('attacker');
    assert.ok(pids.length > 0);
    for (const pid of pids) {
      const uids = /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1];
      assert.ok(Number(uids) >= 65536, `host uid of pid ${pid} is ${uids}`);
    }
  });

  test('uid ranges of two qubes do not overlap', async () => {
    await inst.ok('qvm-start', '--skip-if-running', 'victim');
    const uidOf = (vm: string) => Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${hostPids(vm)[0]}/status`, 'utf8'))![1]);
    assert.ok(Math.abs(uidOf('attacker') - uidOf('victim')) >= 65536);
    await inst.ok('qvm-shutdown', '--wait', 'victim');
  });

  test("sudo-escalation: sudo gives the qube's root and no more (seccomp on, namespaces and mounts refused)", async () => {
    const r = await run('attacker', 'grep -E "^(Seccomp|CapBnd):" /proc/self/status');
    assert.match(r.stdout, /Seccomp:\s+2/);
    const bounding = /CapBnd:\s+(\S+)/.exec(r.stdout)![1];
    // The user's root, as in Qubes: root inside a qube is not the boundary.
    const sudo = await run('attacker', 'sudo -n id -u; sudo -n grep -E "^(Seccomp|CapBnd|CapEff):" /proc/self/status', 'user');
    assert.equal(sudo.code, 0, sudo.stderr);
    assert.match(sudo.stdout, /^0\n/);
    assert.match(sudo.stdout, /Seccomp:\s+2/, 'seccomp stays on across the setuid exec');
    assert.match(sudo.stdout, new RegExp(`CapBnd:\\s+${bounding}`), 'a setuid program cannot widen the bounding set');
    assert.match(sudo.stdout, new RegExp(`CapEff:\\s+${bounding}`));
    for (const cmd of ['unshare -U true', 'unshare -m true', 'mount -t tmpfs none /mnt']) {
      for (const [user, prefix] of [['root', ''], ['user', 'sudo -n ']] as const) {
        const a = await run('attacker', prefix + cmd, user);
        assert.notEqual(a.code, 0, `${prefix}${cmd} must fail inside a qube`);
      }
    }
  });

  test('host-sysctl-write: host sysctls cannot be written', async () => {
    const before = readFileSync('/proc/sys/kernel/panic', 'utf8');
    const r = await run('attacker', 'echo 77 > /proc/sys/kernel/panic; echo 3 > /proc/sys/vm/drop_caches; sysctl -w kernel.panic=77');
    assert.notEqual(r.code, 0);
    assert.equal(readFileSync('/proc/sys/kernel/panic', 'utf8'), before);
  });

  test('host-devices: no block, kvm or memory devices, and none can be made', async () => {
    const r = await run('attacker', 'ls /dev');
    for (const dev of ['kvm', 'vda', 'sda', 'mem', 'kmsg', 'nvme0']) assert.doesNotMatch(r.stdout, new RegExp(`^${dev}$`, 'm'));
    const mk = await run('attacker', 'mknod /tmp/disk b 254 0');
    assert.notEqual(mk.code, 0);
  });

  test('network: only the loopback interface exists', async () => {
    const r = await run('attacker', 'ls /sys/class/net');
    assert.deepEqual(r.stdout.trim().split(/\s+/), ['lo']);
  });

  test('symlink-escape-private-home: a symlink planted as /rw/home is not followed on the host', async () => {
    const hostDir = mkdtempSync(path.join(os.tmpdir(), 'isola-target-'));
    chmodSync(hostDir, 0o700);
    writeFileSync(path.join(hostDir, 'host-only'), 'host-secret\n');
    try {
      const r = await run('attacker', `mv /rw/home /rw/home.old && ln -s ${hostDir} /rw/home && ls -ld /rw/home`);
      assert.equal(r.code, 0, r.stderr);
      await inst.ok('qvm-shutdown', '--wait', 'attacker');
      await inst.ok('qvm-start', 'attacker');
      const st = statSync(hostDir);
      assert.equal(st.uid, 0, 'the host directory was not chowned to the qube');
      assert.equal(st.mode & 0o777, 0o700);
      const inside = await run('attacker', 'ls -a /home; cat /home/host-only 2>/dev/null');
      assert.doesNotMatch(inside.stdout, /host-secret|host-only/);
      assert.match((await run('attacker', 'ls /rw')).stdout, /home\.not-a-directory-/, 'the planted link was moved aside');
    } finally {
      rmSync(hostDir, { recursive: true, force: true });
    }
  });

  test('agent-socket-swap: the qube cannot replace the sockets isolad serves it and chmods after a restart', async () => {
    const hostFile = path.join(mkdtempSync(path.join(os.tmpdir(), 'isola-victim-')), 'victim');
    writeFileSync(hostFile, 'host\n', { mode: 0o600 });
    try {
      const r = await run('attacker', [
        `rm -f /run/isola/agent.sock; ln -sf ${hostFile} /run/isola/agent.sock`,
        `rm -f /run/qubes/qrexec-client.sock; ln -sf ${hostFile} /run/qubes/qrexec-client.sock`,
        'touch /run/isola/x /run/qubes/x',
        'ls -l /run/isola/agent.sock /run/qubes/qrexec-client.sock',
      ].join('; '));
      assert.match(r.stdout, /^s.* \/run\/isola\/agent\.sock$/m, 'the agent socket is still isolad\'s');
      assert.match(r.stdout, /^s.* \/run\/qubes\/qrexec-client\.sock$/m);
      assert.match(r.stderr, /Read-only file system/);
      await inst.stopDaemon();
      await inst.start();
      assert.equal(statSync(hostFile).mode & 0o777, 0o600, 'the host file was not made world-writable');
      assert.equal((await run('attacker', 'echo still-here')).stdout, 'still-here\n', 'the qube reconnects to the new isolad');
    } finally {
      rmSync(path.dirname(hostFile), { recursive: true, force: true });
    }
  });

  test('cgroup-release-agent: the qube can neither set a release_agent nor raise its own limits', async () => {
    const r = await run('attacker', [
      'echo /tmp/x > /sys/fs/cgroup/memory/release_agent && echo WROTE-release',
      'echo 1 > /sys/fs/cgroup/memory/notify_on_release && echo WROTE-notify',
      'echo -1 > /sys/fs/cgroup/memory/memory.limit_in_bytes && echo WROTE-limit',
      'echo max > /sys/fs/cgroup/pids/pids.max && echo WROTE-pids',
      'mkdir /tmp/cg && mount -t cgroup -o memory cgroup /tmp/cg && echo MOUNTED',
    ].join('; '));
    assert.doesNotMatch(r.stdout, /WROTE|MOUNTED/);
  });
});
