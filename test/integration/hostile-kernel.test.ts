// Attacks on the shared kernel's less-watched doors, tried from inside a real qube as its user and
// its root: the i386 and x32 syscall ABIs (a 64-bit program can use both), modify_ldt, and what the
// qube can read of the host through /proc and /sys. The attack program is C, compiled here.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { canRunIntegration, Instance, REPO } from './harness';

const skip = canRunIntegration() ?? (existsSync('/usr/bin/gcc') ? undefined : 'gcc is not installed');
const PROBE_SRC = path.join(REPO, 'test/integration/fixtures/abi-probe.c');
const PROBE = '/tmp/abi-probe';
const USERS = ['user', 'root'] as const;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
// 128 + SIGSYS: what the shell reports for a process the seccomp filter killed.
const KILLED_BY_SIGSYS = 128 + os.constants.signals.SIGSYS;

/** Non-empty identifying attributes of the host's disks, as the host reads them. */
function hostDiskSerials(): { file: string; value: string }[] {
  const out: { file: string; value: string }[] = [];
  for (const disk of readdirSync('/sys/block')) {
    const file = `/sys/block/${disk}/serial`;
    try {
      const value = readFileSync(file, 'utf8').trim();
      if (value) out.push({ file, value });
    } catch {
      // no serial attribute on this device
    }
  }
  return out;
}

describe('hostile kernel interfaces from inside a qube', { skip, concurrency: false }, () => {
  let inst: Instance;
  let tmp: string;
  const run = (cmd: string, user = 'root') => inst.cli('qvm-run', ['-p', '-u', user, 'attacker', cmd]);
  /** Runs one probe; returns its line and the shell's exit status. */
  const probe = async (name: string, user: string): Promise<{ line: string; status: number; stderr: string }> => {
    const r = await run(`${PROBE} ${name}; echo "exit=$?"`, user);
    const status = Number(/exit=(\d+)/.exec(r.stdout)?.[1] ?? NaN);
    return { line: r.stdout.replace(/exit=\d+\n?/, '').trim(), status, stderr: r.stderr };
  };
  const assertKilled = async (name: string, user: string): Promise<void> => {
    const p = await probe(name, user);
    assert.equal(p.line, '', `${name} as ${user} must not return (got "${p.line}")`);
    assert.equal(p.status, KILLED_BY_SIGSYS, `${name} as ${user}: killed by SIGSYS (${p.stderr.trim()})`);
    assert.match(p.stderr, /Bad system call/);
  };

  before(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'isola-abi-probe-'));
    const bin = path.join(tmp, 'abi-probe');
    execFileSync('gcc', ['-O2', '-Wall', '-Wextra', '-Werror', '-static', '-o', bin, PROBE_SRC]);
    inst = await Instance.withAppVMs([['attacker', 'red']]);
    await inst.ok('qvm-start', 'attacker');
    const copy = await inst.cli('qvm-run', ['-p', '-u', 'root', 'attacker', `base64 -d > ${PROBE} && chmod 755 ${PROBE}`],
      readFileSync(bin).toString('base64'));
    assert.equal(copy.code, 0, copy.stderr);
    // The probe works at all: the 64-bit ABI answers, and 64-bit vsock is refused (as before).
    for (const user of USERS) {
      assert.match((await probe('x86_64-getpid', user)).line, /^x86_64-getpid: returned \d+$/);
      assert.equal((await probe('x86_64-socket-vsock', user)).line, 'x86_64-socket-vsock: error EPERM');
    }
  });
  after(async () => {
    await inst?.destroy();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  test('i386-socketcall-vsock: socketcall(SYS_SOCKET, AF_VSOCK) and socket(AF_VSOCK) through int 0x80 get no socket', async () => {
    for (const user of USERS) {
      await assertKilled('i386-socketcall-vsock', user);
      await assertKilled('i386-socket-vsock', user);
    }
  });

  test('i386-syscall-abi: any i386 syscall (getpid through int 0x80) kills the caller', async () => {
    for (const user of USERS) await assertKilled('i386-getpid', user);
  });

  test('x32-syscall-abi: x32 numbers (| 0x40000000) through the 64-bit syscall instruction kill the caller', async () => {
    for (const user of USERS) {
      await assertKilled('x32-getpid', user);
      await assertKilled('x32-socket-vsock', user);
    }
  });

  test('modify-ldt: modify_ldt can neither read nor install an LDT entry', async () => {
    for (const user of USERS) {
      assert.equal((await probe('modify-ldt-read', user)).line, 'modify-ldt-read: error EPERM');
      assert.equal((await probe('modify-ldt-write', user)).line, 'modify-ldt-write: error EPERM');
    }
  });

  test("host-info-leak: the host's cmdline, boot_id, vmcoreinfo, pressure and disk serials are not the qube's to read", async () => {
    const hostCmdline = readFileSync('/proc/cmdline', 'utf8');
    const hostBootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    const read = async (file: string, user = 'user') => (await run(`cat ${file}`, user)).stdout;

    assert.notEqual(hostCmdline.trim(), '');
    const cmdline = await read('/proc/cmdline');
    assert.notEqual(cmdline, hostCmdline);
    assert.ok(!cmdline.includes(hostCmdline.trim()));

    const bootId = (await read('/proc/sys/kernel/random/boot_id')).trim();
    assert.match(bootId, UUID_RE);
    assert.notEqual(bootId, hostBootId);

    if (existsSync('/sys/kernel/vmcoreinfo') && readFileSync('/sys/kernel/vmcoreinfo', 'utf8').trim() !== '') {
      assert.equal(await read('/sys/kernel/vmcoreinfo', 'root'), '', 'vmcoreinfo gives the qube nothing');
    }
    if (existsSync('/proc/pressure/cpu')) {
      assert.equal((await run('ls -A /proc/pressure')).stdout, '', "the host's pressure stall figures are hidden");
    }
    const serials = hostDiskSerials();
    for (const { file, value } of serials) {
      const disk = path.basename(path.dirname(file));
      const dev = readFileSync(`/sys/block/${disk}/dev`, 'utf8').trim();
      const inside = await run(`cat ${file} /sys/class/block/${disk}/serial /sys/dev/block/${dev}/serial`, 'root');
      assert.ok(!inside.stdout.includes(value), `${file} (${value}) is readable in the qube: ${inside.stdout}`);
    }
    if (readdirSync('/sys/devices/virtual/block').length > 0) {
      assert.equal((await run('ls -A /sys/devices/virtual/block')).stdout, '', "the host's loop/dm devices are hidden");
    }
    if (serials.length === 0) console.log('# host-info-leak: no disk on this host has a serial; that part checked nothing');

    // The qube's root cannot take the covers off or write through them.
    const tamper = await run([
      'echo evil > /proc/cmdline && echo WROTE-cmdline',
      'echo evil > /proc/sys/kernel/random/boot_id && echo WROTE-boot_id',
      'umount /proc/cmdline && echo UNMOUNTED-cmdline',
      'umount -l /proc/sys/kernel/random/boot_id && echo UNMOUNTED-boot_id',
      'umount /sys/kernel/vmcoreinfo && echo UNMOUNTED-vmcoreinfo',
    ].join('; '));
    assert.doesNotMatch(tamper.stdout, /WROTE|UNMOUNTED/);
    assert.equal(await read('/proc/cmdline'), cmdline);
    assert.equal((await read('/proc/sys/kernel/random/boot_id')).trim(), bootId);

    // A new start is a new boot, as in a VM.
    await inst.ok('qvm-shutdown', '--wait', 'attacker');
    await inst.ok('qvm-start', 'attacker');
    const bootId2 = (await read('/proc/sys/kernel/random/boot_id')).trim();
    assert.match(bootId2, UUID_RE);
    assert.notEqual(bootId2, bootId);
    assert.notEqual(bootId2, hostBootId);
    assert.equal(await read('/proc/cmdline'), cmdline, 'the cmdline is neutral, not per start');
    // The restart left no host file behind: the covers live in the qube's own mounts only.
    assert.equal(readFileSync('/proc/cmdline', 'utf8'), hostCmdline);
  });

  test('host-info-masks: with the host hidden, ps, top, uptime, free and apt still work in the qube', async () => {
    const r = await run('set -e; ps aux; top -bn1; uptime; free -m; apt-get check');
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /Unable|cannot|error/i);
    assert.match(r.stdout, /^USER +PID/m, 'ps');
    assert.match(r.stdout, /^top - .*load average/m, 'top has its summary');
    assert.match(r.stdout, /%Cpu\(s\):/, 'top reads /proc/stat');
    assert.match(r.stdout, /^Mem: +\d+/m, 'free');
  });
});
