// Attacks tried from inside an hvm qube (its own kernel under QEMU, TCG on this host), as root in the
// guest: the sandbox suite's escape probes (isolation.test.ts) adapted to a VM, and the VM-specific ones:
// the guest's devices, QEMU's QMP, hostile bytes on the virtio-serial ports, QEMU's host process, and a
// QEMU killed from outside. Each test is named after the attack. Slow: about 3 to 4 minutes under TCG,
// with at most two VMs running at once.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readdirSync, readFileSync, readlinkSync, readSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { MUX_CLOSE, MUX_DATA, MUX_EOF, MUX_MAX_DATA, MUX_OPEN, MUX_WINDOW_ADJUST, encodeBare, encodeMuxHeader, encodeReset, encodeWindow } from '../../src/qrexec/mux-codec';
import { canRunIntegration, Instance, sleep } from './harness';

const skip = canRunIntegration() ?? (statSafe('/usr/bin/qemu-system-x86_64') ? undefined : 'QEMU is not installed');

function statSafe(p: string): boolean {
  try {
    statSync(p);
    return true;
  } catch {
    return false;
  }
}

/** ext4's UUID: 16 bytes at offset 0x468 (superblock at 1024, s_uuid at 0x68), as hex. */
function ext4Uuid(file: string): string {
  const fd = openSync(file, 'r');
  try {
    const b = Buffer.alloc(16);
    readSync(fd, b, 0, 16, 1024 + 0x68);
    return b.toString('hex');
  } finally {
    closeSync(fd);
  }
}

/** What a guest root can make isolad's Mux read: every way a frame can be wrong, each after a fresh RESET. */
function malformedFrames(): Buffer {
  const reset = () => encodeReset(randomBytes(16), null);
  const parts: Buffer[] = [];
  const badMagic = reset();
  badMagic.write('NOTAMUX!', 12, 'latin1');
  parts.push(badMagic);
  const badVersion = reset();
  badVersion.writeUInt32LE(99, 20);
  parts.push(badVersion);
  parts.push(encodeMuxHeader(1, 0, 10), Buffer.alloc(10)); // a RESET of the wrong length
  parts.push(reset(), encodeMuxHeader(0x7fffffff, 1, 0)); // an unknown type
  parts.push(reset(), encodeMuxHeader(MUX_DATA, 1, 0xffffffff)); // a 4 GiB DATA announced
  parts.push(reset(), encodeBare(MUX_OPEN, 1), encodeMuxHeader(MUX_DATA, 1, MUX_MAX_DATA + 1), Buffer.alloc(MUX_MAX_DATA + 1));
  parts.push(reset(), encodeMuxHeader(MUX_DATA, 77, 1024), Buffer.alloc(1024)); // DATA on a channel never opened
  parts.push(reset(), encodeBare(MUX_OPEN, 0), encodeBare(MUX_OPEN, 0xffffffff));
  parts.push(reset(), encodeBare(MUX_OPEN, 2), encodeBare(MUX_OPEN, 2)); // the same channel twice
  parts.push(reset(), encodeBare(MUX_OPEN, 3), encodeWindow(3, 0xffffffff), encodeWindow(3, 0xffffffff)); // credit overflow
  parts.push(reset(), encodeBare(MUX_EOF, 9), encodeBare(MUX_CLOSE, 9), encodeMuxHeader(MUX_WINDOW_ADJUST, 4, 2), Buffer.alloc(2));
  // More channels than a stream may hold, each sent a full window it was never granted.
  parts.push(reset());
  for (let c = 1; c <= 1000; c++) parts.push(encodeBare(MUX_OPEN, 100 + c), encodeMuxHeader(MUX_DATA, 100 + c, 16), Buffer.alloc(16, 0x41));
  parts.push(Buffer.from('\0\0\0'), randomBytes(4096)); // and a frame cut short by garbage
  return Buffer.concat(parts);
}

describe('attacks from inside an hvm qube', { skip, concurrency: false, timeout: 900_000 }, () => {
  let inst: Instance;
  const secret = `victim-secret-${randomBytes(8).toString('hex')}`;
  const planted = `/root/isola-planted-${randomBytes(6).toString('hex')}`;
  const run = (vm: string, cmd: string, input?: string) => inst.cli('qvm-run', ['-p', '-u', 'root', vm, cmd], input);
  const t0 = Date.now();

  /** vault's run dir (root's, on the host): description.json, started, QEMU's sockets. */
  const runDir = (vm: string): string => {
    const ids = readdirSync(inst.config.vmRoot).filter((n) => n.startsWith(`${vm}.`));
    assert.equal(ids.length, 1, `one runtime for ${vm}: ${ids.join(', ')}`);
    return path.join(inst.config.vmRoot, ids[0]);
  };
  const qemuPid = (vm: string): number => (JSON.parse(readFileSync(path.join(runDir(vm), 'started'), 'utf8')) as { pid: number }).pid;
  const description = (vm: string) =>
    JSON.parse(readFileSync(path.join(runDir(vm), 'description.json'), 'utf8')) as { kernel: string; initrd: string; disks: { file: string; readonly: boolean }[] };
  const alive = (pid: number): boolean => {
    try {
      return !/^State:\s+[ZX]/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
    } catch {
      return false;
    }
  };

  /**
   * Runs an attack as guest root on vault's virtio-serial ports: kills the vport bridge (which holds the
   * ports, and through which this very command came), runs `attack` with the ports its own, then starts the
   * bridge again as the guest's init did. Returns once the agent answers again, with what the attack printed.
   */
  async function onThePorts(attack: string, input?: string): Promise<{ log: string; dark: { ls: string; bystander: string; vaultRun: number } }> {
    const w = await run('vault', `cat > /tmp/attack.sh && rm -f /tmp/attack.log`, attack);
    assert.equal(w.code, 0, w.stderr);
    if (input !== undefined) {
      const f = await run('vault', 'base64 -d > /tmp/attack.in', input);
      assert.equal(f.code, 0, f.stderr);
    }
    const bridge = (await run('vault', 'tr "\\0" " " < /proc/$(pgrep -x isola-vport-bri)/cmdline')).stdout.trim();
    assert.match(bridge, /^\/usr\/lib\/isola\/isola-vport-bridge /);
    // Back to a working channel afterwards: the init bound the bridge's sockets onto themselves; root unbinds them.
    const go = await run('vault', `setsid sh -c 'sleep 1; pkill -x isola-vport-bri; sleep 0.5; sh /tmp/attack.sh; echo attack-done; umount /run/isola/agent.sock /run/qubes/qrexec-client.sock; exec ${bridge}' </dev/null >/tmp/attack.log 2>&1 & echo launched`);
    assert.equal(go.stdout.trim(), 'launched', go.stderr);
    await sleep(2500);
    // While the guest owns its ports: isolad answers, other qubes work, vault's agent is just unreachable.
    const ls = await inst.cli('qvm-ls', []);
    assert.equal(ls.code, 0, ls.stderr);
    const by = await inst.cli('qvm-run', ['-p', 'bystander', 'echo bystander-ok']);
    assert.equal(by.stdout, 'bystander-ok\n', by.stderr);
    const during = await run('vault', 'true');
    const until = Date.now() + 240_000;
    for (;;) {
      const r = await run('vault', 'cat /tmp/attack.log');
      if (r.code === 0 && r.stdout.includes('attack-done')) return { log: r.stdout, dark: { ls: ls.stdout, bystander: by.stdout, vaultRun: during.code } };
      assert.ok(Date.now() < until, `vault's agent did not come back after the attack: ${r.stderr}`);
      await sleep(1000);
    }
  }

  before(async () => {
    inst = new Instance();
    await inst.start();
    await inst.installTemplate();
    await inst.ok('qvm-create', '--label', 'black', 'victim');
    await inst.ok('qvm-prefs', 'victim', 'virt_mode', 'hvm');
    await inst.ok('qvm-run', '-p', 'victim', `echo ${secret} > ~/secret-of-victim.txt && sync`);
    await inst.ok('qvm-shutdown', '--wait', 'victim');
    await inst.ok('qvm-create', '--label', 'green', 'bystander'); // a sandbox qube, cheap to keep running
    await inst.ok('qvm-start', 'bystander');
    await inst.ok('qvm-create', '--label', 'red', 'vault');
    await inst.ok('qvm-prefs', 'vault', 'virt_mode', 'hvm');
    await inst.ok('qvm-start', 'vault');
    writeFileSync(planted, 'host-secret\n', { mode: 0o644 });
  });
  after(async () => {
    rmSync(planted, { force: true });
    // destroy() ends the QEMUs isolad leaves running.
    await inst?.destroy();
    console.log(`# vm-hostile: ${((Date.now() - t0) / 1000).toFixed(1)} s wall`);
  });

  test('guest-is-root: the probes below run as root of the guest kernel, not of a sandbox', async () => {
    const r = await run('vault', 'id -u; uname -r; grep -E "^(CapEff|Seccomp):" /proc/self/status');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^0\n/);
    assert.match(r.stdout, /CapEff:\s+000001ffffffffff|CapEff:\s+0000003fffffffff/, 'full capabilities in the guest');
    assert.match(r.stdout, /Seccomp:\s+0/);
  });

  test('host-file-read: no host filesystem is shared (no 9p, no virtiofs) and a planted host file is not found', async () => {
    const r = await run('vault', `cat /proc/filesystems; echo ---; cat /proc/mounts; echo ---; cat ${planted}; find / -xdev -name "${path.basename(planted)}" 2>/dev/null; find /run/isola/disks -name "${path.basename(planted)}" 2>/dev/null`);
    const [fss, mounts, rest] = r.stdout.split('---\n');
    assert.doesNotMatch(fss, /\b(9p|virtiofs|fuse|nfs|cifs)\b/, 'the guest kernel cannot even mount a shared filesystem');
    assert.doesNotMatch(mounts, /\b(9p|virtiofs|fuse|nfs|cifs)\b/);
    assert.doesNotMatch(rest, /host-secret|isola-planted/);
  });

  test('host-process-visibility: the guest sees its own kernel and processes only', async () => {
    const r = await run('vault', 'ls /proc | grep -cE "^[0-9]+$"; cat /proc/*/cmdline 2>/dev/null | tr "\\0" " "');
    assert.equal(r.code, 0, r.stderr);
    const [count, ...cmdlines] = r.stdout.split('\n');
    assert.ok(Number(count) < 200, `the guest sees ${count} processes`);
    assert.doesNotMatch(cmdlines.join(' '), /isolad|qemu-system|systemd|runc|node /);
    const host = await run('vault', `cat /proc/${inst.daemonPid}/cmdline 2>/dev/null | tr "\\0" " "`);
    assert.doesNotMatch(host.stdout, /isolad/, "isolad's pid in the guest is not isolad");
  });

  test('host-devices: only its disks, the serial ports and the machine\'s own chipset; no network, no host device', async () => {
    const r = await run('vault', [
      'for d in /sys/bus/pci/devices/*; do [ -e "$d" ] && echo "pci $(cat $d/vendor):$(cat $d/device)"; done',
      'for d in /sys/bus/virtio/devices/*; do echo "virtio $(cat $d/device)"; done',
      'ls /sys/class/net | sed "s/^/net /"',
      'ls /dev | sed "s/^/dev /"',
    ].join('; '));
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    const pci = lines.filter((l) => l.startsWith('pci ')).map((l) => l.slice(4)).sort();
    const virtio = lines.filter((l) => l.startsWith('virtio ')).map((l) => l.slice(7)).sort();
    const disks = description('vault').disks.length;
    // Virtio ids: 2 block, 3 console; no 1 net, 9 9p, 0x13 vsock, 0x1a virtiofs, 5 balloon unless asked for.
    assert.deepEqual(virtio, [...Array(disks).fill('0x0002'), '0x0003'], `virtio devices: ${virtio.join(' ')}`);
    if (pci.length) {
      // q35: host bridge, LPC, its built-in AHCI (no drive on it: -nodefaults), SMBus; then the virtio functions.
      const chipset = ['0x8086:0x29c0', '0x8086:0x2918', '0x8086:0x2922', '0x8086:0x2930'];
      const expected = [...chipset, ...Array(disks).fill('0x1af4:0x1001'), '0x1af4:0x1003'].sort();
      assert.deepEqual(pci, expected, `PCI devices: ${pci.join(' ')}`);
    }
    assert.deepEqual(lines.filter((l) => l.startsWith('net ')), ['net lo'], 'no network device');
    const devs = lines.filter((l) => l.startsWith('dev ')).map((l) => l.slice(4));
    for (const d of ['kvm', 'sda', 'sr0', 'nvme0', 'vhost-vsock', 'vhost-net', 'vfio']) assert.ok(!devs.includes(d), `/dev/${d} exists in the guest`);
  });

  test('block-devices: every disk the guest sees is one of its own volumes, in order, and no other qube\'s', async () => {
    const r = await run('vault', 'for b in /sys/block/*; do n=${b##*/}; echo "$n $(cat $b/serial 2>/dev/null) $(cat $b/size) $(dd if=/dev/$n bs=1 skip=1128 count=16 2>/dev/null | od -An -tx1 | tr -d " \\n")"; done');
    assert.equal(r.code, 0, r.stderr);
    const seen = r.stdout.trim().split('\n').map((l) => l.split(' '));
    const own = description('vault').disks;
    assert.equal(seen.length, own.length, `guest block devices: ${r.stdout}`);
    const vaultUuid = (await inst.ok('qvm-prefs', 'vault', 'uuid')).trim();
    const templateUuid = (await inst.ok('qvm-prefs', 'debian-12', 'uuid')).trim();
    const victimUuid = (await inst.ok('qvm-prefs', 'victim', 'uuid')).trim();
    const pool = inst.config.poolDir;
    const victimFs = new Set(readdirSync(path.join(pool, victimUuid)).filter((f) => /\.(img|changes)$/.test(f)).map((f) => ext4Uuid(path.join(pool, victimUuid, f))));
    const templateRoot = ext4Uuid(path.join(pool, templateUuid, 'root.img'));
    own.forEach((d, i) => {
      const [name, serial, sectors, fsUuid] = seen[i];
      assert.match(name, /^vd[a-z]$/, `a virtio disk: ${seen[i].join(' ')}`);
      assert.equal(serial, `isola-d${i}`);
      assert.equal(Number(sectors) * 512, statSync(d.file).size, `disk ${i} is the size of ${d.file}`);
      assert.equal(fsUuid, ext4Uuid(d.file), `disk ${i} holds the filesystem of ${d.file}`);
      // Its own volumes, and the template's committed root read-only: nothing else on the host.
      const mine = d.file.startsWith(path.join(pool, vaultUuid) + '/');
      assert.ok(mine || (d.readonly && d.file === path.join(pool, templateUuid, 'root.img')), `disk ${i} is ${d.file}`);
      if (fsUuid !== templateRoot) assert.ok(!victimFs.has(fsUuid), `disk ${i} is one of the victim's volumes`);
    });
  });

  test("cross-qube-private-read: the victim's data is on none of the guest's filesystems", async () => {
    const r = await run('vault', `grep -rsl ${secret} / /run/isola/disks --exclude-dir=proc --exclude-dir=sys --exclude-dir=dev 2>/dev/null | head -3; ls /home /rw/home /run/isola/disks/*/ 2>&1`);
    assert.doesNotMatch(r.stdout, new RegExp(secret));
    assert.doesNotMatch(r.stdout, /secret-of-victim/);
    const guess = await run('vault', `ls ${inst.config.poolDir} ${inst.home} 2>&1`);
    assert.doesNotMatch(guess.stdout, /[0-9a-f]{8}-[0-9a-f]{4}-/);
  });

  test('qmp-port: no virtio port leads to QMP, and QMP commands written to every port do nothing to QEMU', async () => {
    const names = await run('vault', 'cat /sys/class/virtio-ports/*/name');
    assert.deepEqual(names.stdout.trim().split('\n').sort(), ['org.isola.agent', 'org.isola.client']);
    const pid = qemuPid('vault');
    const qmp = ['qmp_capabilities', 'quit', 'system_reset', 'stop'].map((c) => JSON.stringify({ execute: c })).join('\n') +
      `\n${JSON.stringify({ execute: 'human-monitor-command', arguments: { 'command-line': 'quit' } })}\n`;
    const { log, dark } = await onThePorts(
      `for p in /dev/vport*p*; do for i in 1 2 3; do printf '%s' '${qmp}' > $p && echo "wrote $p"; sleep 0.3; done; done\n`,
    );
    assert.match(log, /wrote \/dev\/vport\d+p1/, log);
    assert.match(log, /wrote \/dev\/vport\d+p2/, log);
    assert.notEqual(dark.vaultRun, 0, 'with the bridge gone the agent is unreachable, and qvm-run says so');
    assert.ok(alive(pid), 'QEMU did not quit');
    assert.equal(qemuPid('vault'), pid, 'and was not restarted: the same QEMU runs');
    const st = await run('vault', 'cat /proc/uptime');
    assert.equal(st.code, 0, 'the guest was not reset or stopped: its agent answers');
    assert.match((await inst.ok('qvm-ls', 'vault')), /vault\s+Running/);
  });

  test('serial-flood: 50 MB of random bytes then malformed frames on both ports leave isolad up and vault usable', async () => {
    const daemonLogBefore = inst.daemonLog.split('\n').length;
    const pid = qemuPid('vault');
    const t = Date.now();
    const { log } = await onThePorts(
      'for p in /dev/vport*p*; do timeout 120 head -c 50000000 /dev/urandom > $p; echo "flood $p $?"; done\n' +
        'for p in /dev/vport*p*; do for i in 1 2 3; do cat /tmp/attack.in > $p; done; echo "frames $p $?"; done\n',
      malformedFrames().toString('base64'),
    );
    console.log(`# serial-flood: attack and recovery in ${((Date.now() - t) / 1000).toFixed(1)} s`);
    assert.match(log, /flood \/dev\/vport\d+p1 0/, log);
    assert.match(log, /flood \/dev\/vport\d+p2 0/, log);
    assert.match(log, /frames \/dev\/vport\d+p2 0/, log);
    assert.equal((await inst.cli('qvm-ls', [])).code, 0, 'isolad answers');
    assert.equal((await inst.cli('qvm-run', ['-p', 'bystander', 'echo ok'])).stdout, 'ok\n');
    // At worst restarted cleanly: here the same QEMU runs on, and its agent works once the bridge is back.
    assert.ok(alive(pid));
    const r = await run('vault', 'echo still-here');
    assert.equal(r.stdout, 'still-here\n', r.stderr);
    // What the guest made isolad log is rate-limited: a flood of bad frames is not a flood of log lines.
    const attackLog = inst.daemonLog.split('\n').slice(daemonLogBefore - 1);
    // The bytes reached isolad's Mux (nothing in between swallowed them) and it refused them.
    assert.match(attackLog.join('\n'), /serial agent: protocol error: .*stream reset/);
    assert.match(attackLog.join('\n'), /serial client: protocol error: .*stream reset/);
    const added = attackLog.length - 1;
    assert.ok(added < 200, `isolad logged ${added} lines for the attack`);
  });

  test('qemu-host-process: not root, no capabilities, no new privileges, seccomp, own namespaces', async () => {
    const pid = qemuPid('vault');
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const field = (k: string) => new RegExp(`^${k}:[ \\t]*(.*)$`, 'm').exec(status)?.[1].trim();
    const uids = field('Uid')!.split(/\s+/).map(Number);
    const gids = field('Gid')!.split(/\s+/).map(Number);
    assert.ok(uids.every((u) => u === uids[0] && u >= 65536), `QEMU's uids: ${uids.join(' ')}`);
    assert.ok(gids.every((g) => g === gids[0] && g >= 65536), `QEMU's gids: ${gids.join(' ')}`);
    assert.equal(field('Groups'), '', 'no supplementary groups');
    for (const cap of ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb']) assert.equal(field(cap), '0000000000000000', cap);
    assert.equal(field('NoNewPrivs'), '1');
    assert.equal(field('Seccomp'), '2', "QEMU's -sandbox on is a seccomp filter");
    assert.match(readFileSync(`/proc/${pid}/comm`, 'utf8'), /^isola-vault\./);
    for (const ns of ['mnt', 'pid', 'net', 'ipc']) {
      assert.notEqual(readlinkNs(pid, ns), readlinkNs(process.pid, ns), `QEMU has its own ${ns} namespace`);
    }
  });

  test("qemu-mount-namespace: QEMU's filesystem holds no pool and no ISOLA_HOME paths beyond its kernel", async () => {
    const pid = qemuPid('vault');
    const d = description('vault');
    const mounts = readFileSync(`/proc/${pid}/mountinfo`, 'utf8').trim().split('\n').map((l) => l.split(' '));
    assert.equal(mounts[0][4], '/', 'the first mount is its root');
    assert.match(mounts[0].slice(6).join(' '), /- tmpfs .*\bro\b/, 'its root is a read-only tmpfs');
    for (const m of mounts) {
      const [, , , source, target] = m;
      for (const p of [source, target]) {
        assert.ok(!p.startsWith(inst.config.poolDir), `pool path mounted in QEMU's namespace: ${m.join(' ')}`);
        if (p.startsWith(inst.home + '/')) assert.equal(p, d.kernel, `ISOLA_HOME path in QEMU's namespace: ${m.join(' ')}`);
        if (p.startsWith(inst.config.vmRoot + '/')) assert.equal(p, d.initrd, `run dir path in QEMU's namespace: ${m.join(' ')}`);
      }
    }
    // Its disks come as descriptors the jail opened: every one is this qube's or the template's root.
    const fds = readdirSync(`/proc/${pid}/fd`).map((fd) => {
      try {
        return readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        return '';
      }
    });
    const files = new Set(d.disks.map((x) => x.file));
    for (const f of fds.filter((x) => x.startsWith(inst.config.poolDir))) assert.ok(files.has(f.replace(/ \(deleted\)$/, '')), `QEMU holds ${f}`);
  });

  test('qemu-killed-from-outside: kill -9 of QEMU leaves vault Halted promptly with the reason, and it starts again', async () => {
    const pid = qemuPid('vault');
    const t = Date.now();
    process.kill(pid, 'SIGKILL');
    let ls = await inst.cli('qvm-ls', ['vault']);
    while (!/vault\s+Halted/.test(ls.stdout) && Date.now() - t < 15_000) {
      await sleep(100);
      ls = await inst.cli('qvm-ls', ['vault']);
    }
    const took = Date.now() - t;
    console.log(`# qemu-killed-from-outside: Halted ${took} ms after the kill`);
    assert.match(ls.stdout, /vault\s+Halted/);
    assert.ok(took < 5_000, `noticed after ${took} ms`);
    assert.match(ls.stderr, /vault: last run: runtime died: QEMU was killed \(SIGKILL\)/);
    const check = await inst.cli('qvm-check', ['--running', 'vault']);
    assert.notEqual(check.code, 0);
    assert.equal(readdirSync(inst.config.vmRoot).filter((n) => n.startsWith('vault.')).length, 0, 'its run dir is gone');
    const r = await run('vault', 'echo again');
    assert.equal(r.stdout, 'again\n', r.stderr);
    assert.notEqual(qemuPid('vault'), pid);
  });
});

function readlinkNs(pid: number, ns: string): string {
  return readlinkSync(`/proc/${pid}/ns/${ns}`);
}
