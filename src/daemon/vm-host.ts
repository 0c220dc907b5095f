// What this isolad needs to run hvm qubes: the guest kernels installed in ISOLA_HOME, the accelerator
// (probed once by booting the real kernel, cached), and the per-start boot files (the kernel, and an
// initramfs = the cached base with the guest library + the qube's boot settings appended).

import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { QubeLaunch } from '../core/backend';
import { probeAccelerator, type Accel, type AccelProbeResult } from '../backends/kvm-probe';
import { bootConfig, VM_AGENT_ENV } from '../backends/vm/boot-config';
import { guestCmdline } from '../backends/vm/guest-cmdline';
import { BOOT_CONF, GUEST_INIT, INITRAMFS_GUEST_LIB } from '../backends/vm/guest-init';
import { baseInitramfs, qubeArchive, writeQubeInitramfs, type ExtraFile } from '../backends/vm/initramfs';
import { ensureDefaultKernel, kernelInfo, listKernels, type KernelInfo } from '../backends/vm/kernel-store';
import type { VmMachine } from '../backends/vm/qemu-args';
import type { DaemonConfig } from './config';
import type { Logger } from './logger';

/** microvm or q35 (ISOLA_VM_MACHINE): see docs/vm-boot-notes.md for the measurements behind the default. */
export function vmMachine(env: NodeJS.ProcessEnv = process.env): VmMachine {
  const m = env.ISOLA_VM_MACHINE || 'q35';
  if (m !== 'microvm' && m !== 'q35') throw new Error(`ISOLA_VM_MACHINE=${JSON.stringify(m).slice(0, 40)}: expected microvm or q35`);
  return m;
}

export class VmHost {
  private kernelNames: string[] = [];
  private kernelReady: Promise<void> = Promise.resolve();
  private probe?: Promise<AccelProbeResult>;
  private probed?: AccelProbeResult;
  private failure?: string;
  private base = new Map<string, Promise<string>>();

  constructor(private readonly config: DaemonConfig, private readonly log: Logger, readonly machine: VmMachine, private readonly guestLib: string) {}

  get kernelsDir(): string {
    return path.join(this.config.home, 'kernels');
  }

  /** Reads the installed kernels; with none, installs Debian's cloud kernel in the background. */
  async init(): Promise<void> {
    await this.refreshKernels();
    if (this.kernelNames.length > 0) return;
    this.kernelReady = ensureDefaultKernel({ home: this.config.home, cacheDir: this.config.cache, log: (l) => this.log.info(`hvm: ${l}`) })
      .then(() => this.refreshKernels())
      .catch((e: Error) => {
        this.failure = `no guest kernel could be installed (${e.message})`;
        this.log.warn(`hvm: ${this.failure}`);
      });
  }

  private async refreshKernels(): Promise<void> {
    this.kernelNames = (await listKernels(this.config.home)).map((k) => k.version);
  }

  /** Settles when the background install of init() has ended (either way). */
  kernelsKnown(): Promise<void> {
    return this.kernelReady;
  }

  /** Installed kernels, newest first (the global default_kernel's default is the first). */
  kernels(): string[] {
    return this.kernelNames;
  }

  /** Why hvm qubes cannot run here, once known (undefined while it is not known, or when they can). */
  problem(): string | undefined {
    if (this.failure) return this.failure;
    if (this.probed && !this.probed.accel) return this.probed.reason;
    return undefined;
  }

  /** The accelerator hvm qubes get; the first call probes (one boot under KVM and one under TCG, cached). */
  async accel(): Promise<Accel> {
    await this.kernelReady;
    if (this.failure) throw new Error(this.failure);
    this.probe ??= this.defaultKernel().then((kernel) =>
      probeAccelerator({ kernel, cacheDir: this.config.cache, machine: this.machine, cacheFile: path.join(this.config.cache, 'accel-probe.json') }));
    const r = await this.probe;
    if (!this.probed) {
      this.probed = r;
      this.log.info(`hvm: ${r.reason}${r.cached ? ' (cached probe)' : ''}`);
    }
    if (!r.accel) throw new Error(r.reason);
    return r.accel;
  }

  private async defaultKernel(): Promise<KernelInfo> {
    const newest = (await listKernels(this.config.home))[0];
    if (!newest) throw new Error(`no guest kernel is installed in ${this.kernelsDir}`);
    return newest;
  }

  /** The kernel of a qube (its `kernel` property, or the newest installed), its initramfs and command line. */
  async bootFiles(launch: QubeLaunch, dir: string): Promise<{ kernel: string; initrd: string; cmdline: string }> {
    await this.kernelReady;
    const name = launch.kernel?.name;
    const kernel = name ? await kernelInfo(this.config.home, name) : await this.defaultKernel();
    if (!kernel) throw new Error(`qube ${launch.name}: kernel '${name}' is not installed (installed: ${this.kernelNames.join(', ') || 'none'})`);
    const base = await this.baseFor(kernel, launch.guestLib || this.guestLib);
    const conf = Buffer.from(bootConfig(launch, VM_AGENT_ENV));
    const initrd = path.join(dir, 'initrd');
    await writeQubeInitramfs(base, qubeArchive([{ name: BOOT_CONF.slice(1), mode: 0o600, data: conf }]), initrd);
    await fs.chmod(initrd, 0o644); // QEMU reads it as the qube's uid; the run dir (root's, 0700) keeps others out
    const extra = (launch.kernel?.opts ?? '').trim();
    return { kernel: kernel.vmlinuz, initrd, cmdline: guestCmdline(this.machine, { extra: extra ? [extra] : [] }) };
  }

  /**
   * The base initramfs of a kernel with the launch's guest library (the one a sandbox would bind at
   * /usr/lib/isola): built once per isolad and library, cached on disk.
   */
  private baseFor(kernel: KernelInfo, guestLib: string): Promise<string> {
    const key = `${kernel.version}\0${guestLib}`;
    let p = this.base.get(key);
    if (!p) {
      p = guestLibFiles(guestLib).then((extra) => baseInitramfs({ kernel, cacheDir: this.config.cache, init: Buffer.from(GUEST_INIT), extra }));
      p.catch(() => this.base.delete(key));
      this.base.set(key, p);
    }
    return p;
  }
}

/** What the guest's init runs from the guest library (guest-init.ts). */
const GUEST_LIB_NEEDS = ['isola-agent', 'isola-vport-bridge'];

/** Every regular file of the guest library, for /isola/lib in the initramfs (the init copies it to /usr/lib/isola). */
async function guestLibFiles(dir: string): Promise<ExtraFile[]> {
  const out: ExtraFile[] = [];
  const walk = async (rel: string): Promise<void> => {
    for (const e of await fs.readdir(path.join(dir, rel), { withFileTypes: true })) {
      const r = path.join(rel, e.name);
      if (e.isDirectory()) await walk(r);
      else if (e.isFile()) out.push({ dst: path.posix.join(INITRAMFS_GUEST_LIB, r), src: path.join(dir, r), mode: (await fs.stat(path.join(dir, r))).mode & 0o7777 });
    }
  };
  await walk('').catch((e: Error) => {
    throw new Error(`cannot read the guest library ${dir}: ${e.message}`);
  });
  // Without them the guest's init cannot hand over and powers off: refuse now, with the reason, rather than
  // report a start that can only end in a VM without an agent.
  for (const need of GUEST_LIB_NEEDS) {
    if (!out.some((f) => f.dst === path.posix.join(INITRAMFS_GUEST_LIB, need))) throw new Error(`the guest library ${dir} has no ${need}`);
  }
  return out.sort((a, b) => (a.dst < b.dst ? -1 : 1));
}
