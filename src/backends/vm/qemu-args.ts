// The QEMU command line of one hvm qube, from its description: pure, so each line can be tested exactly.

import * as path from 'node:path';
import type { VolumeDisk } from '../../core/backend';

export type VmMachine = 'microvm' | 'q35';
export type VmAccel = 'kvm' | 'tcg';

/** A disk as QEMU opens it; `direct`: the file's filesystem takes O_DIRECT (tmpfs does not). */
export interface VmDisk extends VolumeDisk {
  direct: boolean;
}

/** Everything the command line depends on; written as JSON into the run dir by create(). */
export interface VmDescription {
  runtimeId: string;
  name: string;
  machine: VmMachine;
  accel: VmAccel;
  memoryMiB: number;
  vcpus: number;
  kernel: string;
  initrd: string;
  cmdline: string;
  /**
   * The host's TSC rate (kHz): under TCG the guest reads the host's TSC, and microvm has no HPET or
   * PM timer to calibrate it against; the PIT calibration fails on a busy host and the boot then hangs.
   */
  tscKhz?: number;
  /** Root's disks then private's, flattened: index i is the guest's disk with serial isola-d<i>. */
  disks: VmDisk[];
  /** The qube's run dir (root's): QEMU's sockets are there, bound by the jail (listenSockets). */
  runDir: string;
  /** A network card (the qube has a netvm): virtio-net on the tap the jail creates (TAP_NAME). */
  nic?: { mac: string };
}

/** The tap isola-vmm-jail creates in QEMU's network namespace; QEMU gets it after the listeners. */
export const TAP_NAME = 'tap0';

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/** Virtio-serial port names the guest agent opens (/dev/virtio-ports/<name>). */
export const AGENT_PORT = 'org.isola.agent';
export const CLIENT_PORT = 'org.isola.client';

/**
 * QEMU's sockets, in the run dir (root's, 0700): isola-vmm-jail binds and listens on each as root and
 * QEMU inherits the listeners, so QEMU owns no socket file and cannot swap one for another qube's.
 * In this order: descriptors FIRST_DISK_FD + 2·disks + j.
 */
export function qmpSocket(runDir: string): string {
  return path.join(runDir, 'qmp.sock');
}

export function serialSockets(runDir: string): { agent: string; client: string } {
  return { agent: path.join(runDir, 'agent.sock'), client: path.join(runDir, 'client.sock') };
}

export function listenSockets(runDir: string): string[] {
  const s = serialSockets(runDir);
  return [qmpSocket(runDir), s.agent, s.client];
}

/** QEMU's option syntax: a comma inside a value is written twice. */
function v(value: string): string {
  return value.replace(/,/g, ',,');
}

/** microvm has no PCI: its devices are virtio-mmio (`-device`); q35's are PCI. */
function dev(machine: VmMachine, kind: 'blk' | 'serial' | 'net'): string {
  return `virtio-${kind}-${machine === 'microvm' ? 'device' : 'pci'}`;
}

/**
 * isola-vmm-jail hands QEMU disk i, opened by root, read-only as descriptor 3+2i and, if writable,
 * read-write as 4+2i (QEMU opens read-only first, then reopens to write): QEMU sees no image path.
 */
export const FIRST_DISK_FD = 3;

export function diskArgs(machine: VmMachine, disks: readonly VmDisk[]): string[] {
  const out: string[] = [];
  disks.forEach((d, i) => {
    // Read-only files may be shared by many qubes at once (a template's root): QEMU's image lock
    // would refuse the second; a writable one keeps it, so two QEMUs can never write one image.
    const drive = [`file=/dev/fdset/${i + 1}`, `if=none`, `id=d${i}`, `format=raw`, `cache.direct=${d.direct ? 'on' : 'off'}`, 'discard=unmap'];
    if (d.readonly) drive.push('readonly=on', 'file.locking=off');
    out.push('-add-fd', `fd=${FIRST_DISK_FD + 2 * i},set=${i + 1},opaque=${v(d.file)}`);
    if (!d.readonly) out.push('-add-fd', `fd=${FIRST_DISK_FD + 2 * i + 1},set=${i + 1},opaque=${v(d.file)}`);
    out.push('-drive', drive.join(','));
    out.push('-device', `${dev(machine, 'blk')},drive=d${i},serial=isola-d${i}`);
  });
  return out;
}

/** TCG's translation buffer in MiB (-accel tcg,tb-size=N). */
export const TCG_TB_SIZE_MIB = 16;

function machineArgs(d: VmDescription): string[] {
  // microvm: ACPI is how the cloud kernel finds virtio-mmio devices (no cmdline devices in its config).
  const m = d.machine === 'microvm' ? 'microvm,acpi=on,isa-serial=on,rtc=on' : 'q35';
  // TCG's translation buffer: QEMU's default (1 GiB, touched as code is translated) let an idle guest's
  // QEMU keep 36-42 MiB of translated code; 16 MiB saves ~20 MiB per qube and, measured by
  // bench/vm.bench.ts (docs/vm-boot-notes.md), does not slow boot beyond the host's noise; 8 MiB did.
  const accel = d.accel === 'kvm' ? ['-accel', 'kvm', '-cpu', 'host'] : ['-accel', `tcg,tb-size=${TCG_TB_SIZE_MIB}`, '-cpu', 'max'];
  return ['-M', m, ...accel, '-m', `${d.memoryMiB}M`, '-smp', String(d.vcpus)];
}

export function bootCmdline(d: VmDescription): string {
  const needsTsc = d.machine === 'microvm' && d.accel === 'tcg' && d.tscKhz && !/\btsc_early_khz=/.test(d.cmdline);
  return needsTsc ? `${d.cmdline} tsc_early_khz=${Math.round(d.tscKhz!)}` : d.cmdline;
}

/** The full argv after the QEMU binary. */
export function qemuArgs(d: VmDescription): string[] {
  const firstListener = FIRST_DISK_FD + 2 * d.disks.length;
  const serverSocket = (id: string, j: number) => ['-chardev', `socket,id=${id},fd=${firstListener + j},server=on,wait=off`];
  return [
    '-name', `${v(d.name)},process=isola-${v(d.runtimeId)}`,
    ...machineArgs(d),
    '-nodefaults', '-no-user-config', '-nographic', '-no-reboot',
    // Once running, QEMU needs none of this; a guest that takes it over gets none of it either.
    '-sandbox', 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny',
    '-kernel', d.kernel, '-initrd', d.initrd, '-append', bootCmdline(d),
    // The console (ttyS0) on stdout, which the log relay reads; stdin is an empty pipe.
    '-chardev', 'stdio,id=console,signal=off', '-serial', 'chardev:console',
    ...serverSocket('qmp', 0), '-mon', 'chardev=qmp,mode=control',
    ...diskArgs(d.machine, d.disks),
    '-device', `${dev(d.machine, 'serial')},max_ports=3`,
    ...serverSocket('agent', 1), '-device', `virtserialport,chardev=agent,name=${AGENT_PORT}`,
    ...serverSocket('client', 2), '-device', `virtserialport,chardev=client,name=${CLIENT_PORT}`,
    ...nicArgs(d, firstListener + listenSockets(d.runDir).length),
  ];
}

/** The card on the jail's tap (descriptor fd); no vhost: QEMU has no /dev/vhost-net, and the host may lack it. */
export function nicArgs(d: Pick<VmDescription, 'machine' | 'nic' | 'name'>, fd: number): string[] {
  if (!d.nic) return [];
  if (!MAC.test(d.nic.mac)) throw new Error(`qube ${d.name}: bad MAC address '${d.nic.mac}'`);
  // No option ROM (PXE boot code): the kernel is booted directly, and the jail binds no ROM files.
  const rom = d.machine === 'q35' ? ',romfile=' : '';
  return ['-netdev', `tap,id=n0,fd=${fd},vhost=off`, '-device', `${dev(d.machine, 'net')},netdev=n0,mac=${d.nic.mac}${rom}`];
}
