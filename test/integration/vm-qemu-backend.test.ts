// QemuBackend with real QEMU under TCG, a busybox initramfs (init prints a line, then sleeps) and the
// cloud kernel. One VM serves most checks (each TCG boot costs seconds); a second one the QMP quit path.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import type { QubeLaunch } from '../../src/core/backend';
import { QemuBackend } from '../../src/backends/vm/qemu-backend';
import { testKernel } from './vm-test-kernel';

let KERNEL = process.env.ISOLA_TEST_KERNEL || '';
const QEMU = '/usr/bin/qemu-system-x86_64';
const READY_LINE = 'isola-test-init: up';

function skipReason(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (namespaces, a qube uid)';
  if (!fs.existsSync(QEMU)) return 'qemu-system-x86_64 is not installed';
  if (spawnSync('busybox', ['true']).status !== 0) return 'busybox is not installed';
  return undefined;
}
const skip = skipReason();
const uidBase = 0xd0000000 + crypto.randomInt(0, 0x1f00) * 65536;
let tmp = '';
let backend: QemuBackend;
const exits: { id: string; reason: string }[] = [];
const logs: string[] = [];

function makeInitrd(dir: string): string {
  const root = path.join(dir, 'initramfs');
  fs.mkdirSync(path.join(root, 'bin'), { recursive: true });
  for (const d of ['proc', 'dev', 'sys']) fs.mkdirSync(path.join(root, d));
  fs.copyFileSync(spawnSync('sh', ['-c', 'command -v busybox'], { encoding: 'utf8' }).stdout.trim(), path.join(root, 'bin/busybox'));
  fs.chmodSync(path.join(root, 'bin/busybox'), 0o755);
  fs.writeFileSync(path.join(root, 'init'),
    `#!/bin/busybox sh\n/bin/busybox mount -t proc proc /proc\n/bin/busybox echo "${READY_LINE} $(/bin/busybox cut -d' ' -f1 /proc/uptime)"\nwhile :; do /bin/busybox sleep 3600; done\n`,
    { mode: 0o755 });
  const out = path.join(dir, 'initrd.gz');
  const r = spawnSync('sh', ['-c', `cd "${root}" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1 > "${out}"`]);
  assert.equal(r.status, 0, 'initramfs packed');
  return out;
}

function launch(n: number): QubeLaunch {
  const disk = (name: string) => {
    const f = path.join(tmp, 'pool', `q${n}`, name);
    fs.mkdirSync(path.dirname(f), { recursive: true });
    fs.writeFileSync(f, Buffer.alloc(1 << 20));
    return f;
  };
  return {
    runtimeId: `vmtest.${n}`, name: `vmtest${n}`, uuid: `uuid-${n}`,
    ids: { base: uidBase + n * 65536, count: 65536 },
    limits: { memoryMiB: 256, maxmemMiB: 0, vcpus: 1, pidsLimit: 64 },
    volumes: {
      root: { name: 'root', readonly: true, image: { disks: [{ file: disk('root.img'), readonly: true }], lower: [{ disk: 0, dir: '/' }] } },
      private: { name: 'private', readonly: false, image: { disks: [{ file: disk('private.img'), readonly: false }], lower: [], upper: { disk: 1, dir: '/' } } },
    },
    guestLib: '/nonexistent', agentEnv: {}, logFile: path.join(tmp, 'log', `q${n}.log`),
  };
}

async function waitFor<T>(what: string, fn: () => T | undefined | false, ms = 60_000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const consoleReady = (l: QubeLaunch) => () => {
  try {
    return fs.readFileSync(l.logFile, 'utf8').includes(READY_LINE);
  } catch {
    return false;
  }
};
let launch0: QubeLaunch;
let pid = 0;

before(async () => {
  if (skip) return;
  KERNEL ||= (await testKernel()).vmlinuz;
  tmp = fs.mkdtempSync('/tmp/isola-vm-');
  const initrd = makeInitrd(tmp);
  // Another qube's pool dir: QEMU must not see it.
  fs.mkdirSync(path.join(tmp, 'pool', 'other-qube'), { recursive: true });
  fs.writeFileSync(path.join(tmp, 'pool', 'other-qube', 'private.img'), 'secret');
  backend = new QemuBackend({
    runRoot: path.join(tmp, 'run'), machine: 'microvm', accel: async () => 'tcg', log: (l) => logs.push(l),
    bootFiles: async () => ({ kernel: KERNEL, initrd, cmdline: 'console=ttyS0 quiet panic=-1' }),
    onExit: (id, reason) => exits.push({ id, reason }),
  });
  launch0 = launch(0);
});

after(async () => {
  if (skip || !tmp) return;
  for (const n of [0, 1]) await backend.destroy(`vmtest.${n}`).catch(() => undefined);
  if (!process.env.ISOLA_TEST_KEEP) fs.rmSync(tmp, { recursive: true, force: true });
});

test('start: QEMU runs detached, reports running, and the guest console reaches the log', { skip }, async (t) => {
  await backend.create(launch0);
  assert.equal((await backend.state('vmtest.0'))?.status, 'created');
  const t0 = Date.now();
  const info = await backend.start('vmtest.0');
  t.diagnostic(`start() to QMP ready: ${Date.now() - t0} ms (${logs.at(-1)})`);
  pid = info.pid;
  assert.equal(info.status, 'running');
  assert.deepEqual(await backend.pids('vmtest.0'), [pid]);
  assert.match(fs.readFileSync(`/proc/${pid}/cmdline`, 'latin1'), /^\/usr\/bin\/qemu-system-x86_64\0/);
  await waitFor('the guest init line in the log', consoleReady(launch0));
  t.diagnostic(`boot to init line: ${Date.now() - t0} ms`);
  assert.equal((await backend.state('vmtest.0'))?.status, 'running');
  assert.deepEqual((await backend.list()).map((i) => [i.id, i.status]), [['vmtest.0', 'running']]);
});

test("QEMU runs as the qube's uid, not root, with no capabilities", { skip }, () => {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (k: string) => new RegExp(`^${k}:[ \\t]*(.*)$`, "m").exec(status)?.[1].trim();
  const uid = String(uidBase);
  assert.deepEqual(field('Uid')!.split(/\s+/), [uid, uid, uid, uid]);
  assert.deepEqual(field('Gid')!.split(/\s+/), [uid, uid, uid, uid]);
  assert.equal(field('Groups'), '');
  for (const k of ['CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb']) assert.equal(field(k), '0000000000000000', k);
  assert.equal(field('NoNewPrivs'), '1');
  assert.equal(field('Seccomp'), '2');
  // Its own namespaces, none shared with the host.
  for (const ns of ['mnt', 'pid', 'ipc', 'uts', 'net']) {
    assert.notEqual(fs.readlinkSync(`/proc/${pid}/ns/${ns}`), fs.readlinkSync(`/proc/self/ns/${ns}`), ns);
  }
});

test("QEMU's mount namespace holds only its own files", { skip }, () => {
  const points = fs.readFileSync(`/proc/${pid}/mountinfo`, 'utf8').trim().split('\n').map((l) => l.split(' ')[4]);
  const runDir = path.join(tmp, 'run', 'vmtest.0');
  const allowed = new Set(['/', '/usr/bin/qemu-system-x86_64', '/etc/ld.so.cache', '/dev/null', '/dev/zero', '/dev/urandom',
    KERNEL, path.join(tmp, 'initrd.gz')]);
  const system = /^\/(usr\/)?(lib|lib64|lib\/x86_64-linux-gnu|share\/qemu|share\/seabios|lib\/x86_64-linux-gnu\/qemu|lib\/qemu)$/;
  for (const p of points) assert.ok(allowed.has(p) || system.test(p), `unexpected mount ${p}`);
  // Beyond the files it was given (its kernel may live under /var/cache): nothing of the host's state.
  for (const p of points) if (!allowed.has(p)) assert.doesNotMatch(p, /^\/(home|root|run|proc|sys|var|work)/);
  const root = `/proc/${pid}/root`;
  for (const hidden of ['/home', '/run', '/proc/1', '/etc/passwd', path.join(tmp, 'pool'), path.join(runDir, 'description.json'), path.join(runDir, 'pid')]) {
    assert.equal(fs.existsSync(root + hidden), false, `${hidden} is visible to QEMU`);
  }
  assert.match(fs.readFileSync(`/proc/${pid}/mountinfo`, 'utf8').split('\n')[0], / \/ ro,/, 'its root is read-only');
});

test("qemu-swaps-its-socket: QEMU owns no socket file, so it cannot point isolad's QMP or agent connection elsewhere", { skip }, () => {
  const runDir = path.join(tmp, 'run', 'vmtest.0');
  for (const f of ['qmp.sock', 'agent.sock', 'client.sock']) {
    const st = fs.lstatSync(path.join(runDir, f));
    assert.ok(st.isSocket(), f);
    assert.equal(st.uid, 0, `${f} is root's`);
    assert.equal(st.mode & 0o077, 0, `${f} is only root's to connect to`);
  }
  const dir = fs.statSync(runDir);
  assert.equal(dir.uid, 0);
  assert.equal(dir.mode & 0o022, 0, 'QEMU cannot rename or replace entries of the run dir');
  // QEMU serves the sockets through inherited listeners, not by path.
  const argv = fs.readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0');
  assert.ok(!argv.some((a) => /socket,.*path=/.test(a)), 'no socket path in QEMU\'s argv');
});

test('QEMU holds its disks as descriptors, the read-only one without write access, and no image path', { skip }, () => {
  const disks = [launch0.volumes.root.image!.disks[0].file, launch0.volumes.private.image!.disks[0].file];
  const modes = (file: string) => fs.readdirSync(`/proc/${pid}/fd`).filter((fd) => {
    try {
      return fs.readlinkSync(`/proc/${pid}/fd/${fd}`) === file;
    } catch {
      return false;
    }
  }).map((fd) => Number.parseInt(/^flags:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'))![1], 8) & 3);
  assert.ok(modes(disks[0]).length > 0 && modes(disks[0]).every((m) => m === 0), 'the read-only disk is open only O_RDONLY');
  assert.ok(modes(disks[1]).includes(2), 'the private disk is open O_RDWR');
});

test('QEMU cannot reach /dev/kvm under TCG', { skip }, () => {
  assert.equal(fs.existsSync(`/proc/${pid}/root/dev/kvm`), false);
  const fds = fs.readdirSync(`/proc/${pid}/fd`).map((fd) => { try { return fs.readlinkSync(`/proc/${pid}/fd/${fd}`); } catch { return ''; } });
  assert.ok(!fds.includes('/dev/kvm'), 'no open /dev/kvm');
});

test('pause and unpause through QMP', { skip }, async () => {
  await backend.pause('vmtest.0');
  assert.equal((await backend.state('vmtest.0'))?.status, 'paused');
  await backend.unpause('vmtest.0');
  assert.equal((await backend.state('vmtest.0'))?.status, 'running');
});

test('SIGTERM asks the guest to power down (this init ignores it) and leaves QEMU running', { skip }, async () => {
  await backend.signal('vmtest.0', 'SIGTERM');
  await new Promise((r) => setTimeout(r, 300));
  assert.equal((await backend.state('vmtest.0'))?.status, 'running');
  assert.deepEqual(exits, []);
});

test('a QEMU killed from outside is noticed at once: onExit with the reason, state stopped', { skip }, async () => {
  assert.ok(pid > 1, 'the VM of the first test runs');
  const t0 = Date.now();
  process.kill(pid, 'SIGKILL');
  const ev = await waitFor('onExit', () => exits.find((e) => e.id === 'vmtest.0'), 5_000);
  assert.equal(ev.reason, 'QEMU was killed (SIGKILL)');
  assert.ok(Date.now() - t0 < 3_000, 'noticed within 3 s');
  assert.deepEqual(await backend.state('vmtest.0'), { id: 'vmtest.0', status: 'stopped', pid: 0 });
  assert.deepEqual(await backend.pids('vmtest.0'), []);
});

test('destroy removes the run dir and is idempotent', { skip }, async () => {
  await backend.destroy('vmtest.0');
  assert.equal(fs.existsSync(path.join(tmp, 'run', 'vmtest.0')), false);
  await backend.destroy('vmtest.0');
  assert.equal(await backend.state('vmtest.0'), undefined);
});

test('SIGKILL through QMP quit ends a second VM; onExit says so', { skip }, async () => {
  await backend.create(launch(1));
  const info = await backend.start('vmtest.1');
  await backend.signal('vmtest.1', 'SIGKILL');
  assert.equal(fs.existsSync(`/proc/${info.pid}/stat`) && !/\) Z /.test(fs.readFileSync(`/proc/${info.pid}/stat`, 'latin1')), false);
  assert.equal((await backend.state('vmtest.1'))?.status, 'stopped');
  const ev = await waitFor('onExit', () => exits.find((e) => e.id === 'vmtest.1'), 5_000);
  assert.match(ev.reason, /^QEMU exited \(status 0\)( after shutdown \(host-qmp-quit\))?$/);
  await backend.destroy('vmtest.1');
});

test('create refuses more memory than the host has, naming the qube', { skip }, async () => {
  const l = launch(2);
  l.limits.memoryMiB = 1 << 30;
  await assert.rejects(backend.create(l), /qube vmtest2: memory 1073741824 MiB is more than the host has \(\d+ MiB\)$/);
  const missing = launch(2);
  missing.volumes.private.image!.disks[0].file = path.join(tmp, 'nope.img');
  await assert.rejects(backend.create(missing), /qube vmtest2: disk .*nope\.img does not exist/);
});
