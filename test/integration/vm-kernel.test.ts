// The guest kernel end to end: installed from the cached Debian .deb into a temporary home, an initramfs
// built around it, and real TCG boots (microvm and q35) that load every module and see the disk and
// the agent's port; a per-qube archive appended to the base overrides its files.

import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { probeAccelerator } from '../../src/backends/kvm-probe';
import { guestCmdline, hostTscKhz, Machine } from '../../src/backends/vm/guest-cmdline';
import { baseInitramfs, qubeArchive, writeQubeInitramfs } from '../../src/backends/vm/initramfs';
import { ensureDefaultKernel, GUEST_MODULES, KernelInfo, listKernels } from '../../src/backends/vm/kernel-store';

/** The cache the test command fills (scripts/test.sh downloads the kernel .debs once, as isolad would). */
const DEBS = path.join(process.env.ISOLA_CACHE || '/var/cache/isola', 'kernels');
const QEMU = 'qemu-system-x86_64';
const haveQemu = spawnSync(QEMU, ['--version']).status === 0;
const skip = !haveQemu ? `${QEMU} not installed` : false;

const TEST_INIT = `#!/bin/sh
mkdir -p /proc /sys /dev
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /lib/isola-modules/modules.order); do insmod /lib/isola-modules/$m || echo "INSMOD-FAILED $m"; done
sed 's/^\\([^ ]*\\) .*/LOADED \\1/' /proc/modules
for b in /sys/block/*; do echo "BLOCK \${b##*/}"; done
for p in /sys/class/virtio-ports/*/name; do echo "PORT $(cat $p)"; done
echo "FILE $(cat /etc/isola-test)"
echo ISOLA-TEST-DONE
poweroff -f
`;

interface Boot { out: string; ms: number; code: number | null }

function boot(machine: Machine, kernel: KernelInfo, initrd: string, disk: string): Promise<Boot> {
  const bus = machine === 'microvm' ? 'device' : 'pci';
  const args = [
    '-M', machine, '-accel', 'tcg', '-m', '256', '-nodefaults', '-no-reboot', '-display', 'none', '-monitor', 'none', '-serial', 'stdio',
    '-kernel', kernel.vmlinuz, '-initrd', initrd, '-append', guestCmdline(machine, { tscKhz: hostTscKhz() }),
    '-drive', `id=disk0,file=${disk},format=raw,if=none,readonly=on`, '-device', `virtio-blk-${bus},drive=disk0`,
    '-chardev', 'null,id=agent', '-device', `virtio-serial-${bus}`, '-device', 'virtserialport,name=org.isola.agent,chardev=agent',
  ];
  return new Promise((resolve) => {
    const t0 = Date.now();
    let out = '';
    const child = spawn(QEMU, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
    child.stdout.on('data', (d: Buffer) => (out += d.toString('latin1')));
    child.stderr.on('data', (d: Buffer) => (out += d.toString('latin1')));
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ out, ms: Date.now() - t0, code });
    });
  });
}

const linesOf = (out: string, tag: string) => out.split(/\r?\n/).filter((l) => l.startsWith(tag + ' ')).map((l) => l.slice(tag.length + 1).trim());

describe('guest kernel and initramfs (real TCG boots) [slow]', { skip, concurrency: false }, () => {
  let dir: string;
  let kernel: KernelInfo;
  let base: string;
  let disk: string;
  const cacheDir = () => path.join(dir, 'cache');
  before(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'isola-vm-kernel-test-'));
    mkdirSync(path.join(cacheDir(), 'kernels'), { recursive: true });
    // The metapackage (which names the version) and its image, fetched once into the shared cache.
    await ensureDefaultKernel({ home: path.join(dir, 'fetch'), cacheDir: path.dirname(DEBS) });
    if (!readdirSync(DEBS).some((n) => n.startsWith('linux-image-cloud-amd64_'))) {
      execFileSync('apt-get', ['download', '-q', 'linux-image-cloud-amd64'], { cwd: DEBS, stdio: 'ignore' });
    }
    for (const f of readdirSync(DEBS).filter((n) => n.endsWith('.deb'))) symlinkSync(path.join(DEBS, f), path.join(cacheDir(), 'kernels', f));
    disk = path.join(dir, 'disk.raw');
    writeFileSync(disk, Buffer.alloc(1 << 20));
    writeFileSync(path.join(dir, 'marker'), 'base\n');
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  // offline: the cached metapackage names the version, so a newer one in apt's lists downloads nothing.
  test('installs the kernel from the cached .deb, keeping vmlinuz and the guest modules in load order; again is a no-op', async () => {
    const log: string[] = [];
    const t0 = Date.now();
    kernel = await ensureDefaultKernel({ home: path.join(dir, 'home'), cacheDir: cacheDir(), log: (l) => log.push(l), offline: true });
    console.log(`# install: ${Date.now() - t0} ms; ${log.join(' | ')}`);
    assert.match(kernel.version, /^\d+\.\d+\.\d+-\d+-cloud-amd64$/);
    assert.ok(statSync(kernel.vmlinuz).size > 1 << 20);
    const order = readFileSync(path.join(kernel.modules, 'modules.order'), 'utf8').trim().split('\n');
    for (const m of GUEST_MODULES) assert.ok(order.includes(`${m}.ko`), `${m} kept`);
    assert.deepEqual(readdirSync(kernel.modules).sort(), [...order, 'modules.order'].sort(), 'only the listed modules are kept');
    assert.ok(order.indexOf('virtio_ring.ko') < order.indexOf('virtio.ko'));
    assert.ok(order.indexOf('failover.ko') < order.indexOf('net_failover.ko'));
    assert.deepEqual(readdirSync(path.join(dir, 'home', 'kernels')), [kernel.version], 'no staging directory left');
    const again: string[] = [];
    assert.deepEqual(await ensureDefaultKernel({ home: path.join(dir, 'home'), cacheDir: cacheDir(), log: (l) => again.push(l), offline: true }), kernel);
    assert.match(again.join('\n'), /already installed/);
    assert.deepEqual((await listKernels(path.join(dir, 'home'))).map((k) => k.version), [kernel.version]);
    assert.deepEqual(readdirSync(path.join(cacheDir(), 'kernels')).sort(), readdirSync(DEBS).filter((n) => n.endsWith('.deb')).sort(), 'nothing downloaded');
  });

  test('offline without the .deb in the cache fails with a message naming what is missing', async () => {
    const empty = path.join(dir, 'empty-cache');
    await assert.rejects(() => ensureDefaultKernel({ home: path.join(dir, 'home2'), cacheDir: empty, offline: true }), /offline: no linux-image-cloud-amd64_\*\.deb in/);
    assert.equal(existsSync(path.join(dir, 'home2', 'kernels')), false);
  });

  test('the base initramfs is cached by its inputs', async () => {
    const extra = [{ dst: '/etc/isola-test', src: path.join(dir, 'marker'), mode: 0o644 }];
    const t0 = Date.now();
    base = await baseInitramfs({ kernel, cacheDir: cacheDir(), init: Buffer.from(TEST_INIT), extra });
    const ms = Date.now() - t0;
    console.log(`# base initramfs: ${statSync(base).size} bytes, built in ${ms} ms`);
    assert.equal(statSync(base).size % 4, 0);
    assert.equal(await baseInitramfs({ kernel, cacheDir: cacheDir(), init: Buffer.from(TEST_INIT), extra }), base);
    const other = await baseInitramfs({ kernel, cacheDir: cacheDir(), init: Buffer.from(TEST_INIT + '\n'), extra });
    assert.notEqual(other, base, 'a changed init builds another archive');
    assert.deepEqual(readdirSync(path.join(cacheDir(), 'initramfs')).filter((n) => n.includes('partial')), []);
  });

  for (const machine of ['microvm', 'q35'] as const) {
    test(`[slow] boots under TCG on ${machine}: every module loads, the disk and the agent port appear (3 runs)`, async () => {
      const times: number[] = [];
      for (let run = 0; run < 3; run++) {
        const b = await boot(machine, kernel, base, disk);
        times.push(b.ms);
        assert.match(b.out, /ISOLA-TEST-DONE/, `${machine} run ${run} did not finish:\n${b.out.slice(-2000)}`);
        assert.deepEqual(linesOf(b.out, 'INSMOD-FAILED'), []);
        const loaded = new Set(linesOf(b.out, 'LOADED'));
        const wanted = readFileSync(path.join(kernel.modules, 'modules.order'), 'utf8').trim().split('\n').map((k) => k.replace(/\.ko$/, ''));
        assert.deepEqual(wanted.filter((m) => !loaded.has(m)), [], 'all modules loaded');
        assert.ok(linesOf(b.out, 'BLOCK').includes('vda'), `no vda in ${linesOf(b.out, 'BLOCK')}`);
        assert.deepEqual(linesOf(b.out, 'PORT'), ['org.isola.agent']);
        assert.deepEqual(linesOf(b.out, 'FILE'), ['base']);
        assert.equal(b.code, 0, 'poweroff -f ends QEMU cleanly');
      }
      console.log(`# ${machine} TCG boot, QEMU start to exit: ${times.map((t) => `${(t / 1000).toFixed(2)} s`).join(', ')}`);
    });
  }

  test('[slow] a per-qube archive appended after the base overrides its file and adds new ones', async () => {
    const qube = qubeArchive([{ name: '/etc/isola-test', mode: 0o644, data: Buffer.from('qube\n') }, { name: '/etc/isola/new', mode: 0o600, data: Buffer.from('x') }]);
    const initrd = path.join(dir, 'qube-initramfs');
    await writeQubeInitramfs(base, qube, initrd);
    const b = await boot('microvm', kernel, initrd, disk);
    assert.match(b.out, /ISOLA-TEST-DONE/, b.out.slice(-2000));
    assert.deepEqual(linesOf(b.out, 'FILE'), ['qube']);
    console.log(`# microvm boot with appended archive: ${(b.ms / 1000).toFixed(2)} s`);
  });

  test('ISOLA_ACCEL=tcg picks TCG without booting anything', async () => {
    const t0 = Date.now();
    const r = await probeAccelerator({ kernel, cacheDir: cacheDir(), machine: 'microvm', cacheFile: path.join(dir, 'forced.json'), env: { ISOLA_ACCEL: 'tcg' } });
    assert.equal(r.accel, 'tcg');
    assert.ok(r.tcg.skipped);
    assert.deepEqual(r.qemuArgs, ['-accel', 'tcg']);
    assert.ok(Date.now() - t0 < 5000);
  });

  test('[slow] the accelerator probe boots the real kernel, says which accelerator hvm qubes get, and caches it', async () => {
    const cacheFile = path.join(dir, 'accel-probe.json');
    const t0 = Date.now();
    const r = await probeAccelerator({ kernel, cacheDir: cacheDir(), machine: 'microvm', cacheFile, env: {} });
    const ms = Date.now() - t0;
    console.log(`# probe: ${ms} ms; kvm ${JSON.stringify(r.kvm)}; tcg ${JSON.stringify(r.tcg)}; ${r.reason}`);
    assert.equal(r.tcg.ok, true, `TCG must boot the guest: ${r.tcg.error}`);
    assert.ok(r.accel === 'kvm' || r.accel === 'tcg');
    if (r.accel === 'tcg') assert.match(r.reason, /^KVM: no — .*; hvm qubes run under TCG$/);
    assert.equal(r.cached, false);
    const t1 = Date.now();
    const again = await probeAccelerator({ kernel, cacheDir: cacheDir(), machine: 'microvm', cacheFile, env: {} });
    assert.equal(again.cached, true);
    assert.equal(again.accel, r.accel);
    assert.ok(Date.now() - t1 < 3000, 'a cached probe boots nothing');
    const forced = await probeAccelerator({ kernel, cacheDir: cacheDir(), machine: 'microvm', cacheFile, env: { ISOLA_ACCEL: 'kvm' } });
    assert.equal(forced.accel, 'kvm');
    if (!r.kvm.ok) assert.match(forced.reason, /forced by ISOLA_ACCEL=kvm although it cannot run a Linux guest here/);
  });
});
