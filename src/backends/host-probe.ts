// What `isola doctor` reports, in the spirit of Qubes' HCL report: can this host isolate qubes,
// and with which backend. Every check actually exercises the feature where it cheaply can.

import { promises as fsp, constants as fsc } from 'node:fs';
import { release, tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { probeAccelerator, probeKvm, runCommand, KvmProbe } from './kvm-probe';
import { listKernels } from './vm/kernel-store';

export interface ProbeResult {
  name: string;
  ok: boolean;
  detail: string;
  fix?: string;
}

export interface ProbeOptions {
  /** Where pools live; free space is measured there. Default `$ISOLA_HOME` or /var/lib/isola. */
  isolaHome?: string;
  /** Path of the idmapped-mount helper, if the sandbox backend ships one. */
  idmapHelper?: string;
  /** Leave out the KVM check: it boots a real guest (3-4 s on a nested host; 15 s more where KVM hangs). */
  skipKvm?: boolean;
  /** Where the accelerator probe keeps its initramfs and result. Default `$ISOLA_CACHE` or /var/cache/isola. */
  cacheDir?: string;
}

/** Name of the KVM result, for callers that treat a missing KVM as a warning (TCG still works). */
export const KVM_CHECK_NAME = 'KVM';

const GiB = 1024 ** 3;
const MIN_KERNEL: [number, number] = [5, 10];
const MIN_FREE_DISK = 2 * GiB;
const MIN_AVAILABLE_MEM = 1 * GiB;

export function parseKernelVersion(rel: string): [number, number, number] {
  const m = /^(\d+)\.(\d+)(?:\.(\d+))?/.exec(rel);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)] : [0, 0, 0];
}

const atLeast = (v: [number, number, number], min: [number, number]) => v[0] > min[0] || (v[0] === min[0] && v[1] >= min[1]);

export interface CgroupLayout {
  layout: 'v1' | 'v2' | 'hybrid' | 'none';
  /** Mount point of the unified (v2) hierarchy, if any. */
  v2Path?: string;
  /** Controllers bound to v1 hierarchies (named hierarchies such as name=systemd excluded). */
  v1Controllers: string[];
}

/** Reads the cgroup layout from /proc/self/mountinfo text (systemd's legacy/hybrid/unified). */
export function parseCgroupLayout(mountinfo: string): CgroupLayout {
  let v2Path: string | undefined;
  const v1: string[] = [];
  let v1Mounts = 0;
  for (const line of mountinfo.split('\n')) {
    const [pre, post] = line.split(' - ');
    if (!post) continue;
    const mountPoint = pre.split(' ')[4];
    const [fstype, , superOpts = ''] = post.split(' ');
    if (fstype === 'cgroup2') v2Path ??= mountPoint;
    if (fstype === 'cgroup') {
      v1Mounts++;
      const known = ['rw', 'ro', 'clone_children', 'noprefix', 'xattr', 'nsdelegate', 'favordynmods'];
      v1.push(...superOpts.split(',').filter((o) => !known.includes(o) && !o.includes('=')));
    }
  }
  const layout = v1Mounts && v2Path ? 'hybrid' : v2Path ? 'v2' : v1Mounts ? 'v1' : 'none';
  return { layout, v2Path, v1Controllers: [...new Set(v1)].sort() };
}

export function parseMeminfo(text: string): { totalBytes: number; availableBytes: number } {
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? 0) * 1024;
  return { totalBytes: kb('MemTotal'), availableBytes: kb('MemAvailable') };
}

const gib = (n: number) => `${(n / GiB).toFixed(1)} GiB`;
const firstLine = (s: string) => s.split('\n').map((l) => l.trim()).find(Boolean) ?? '';
const readText = (p: string) => fsp.readFile(p, 'utf8').catch(() => '');

async function findBinary(name: string): Promise<string | undefined> {
  // sbin is often missing from a user's PATH, yet runc and nft live there on Debian.
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];
  for (const d of dirs.filter(Boolean)) {
    const p = join(d, name);
    if (await fsp.access(p, fsc.X_OK).then(() => true, () => false)) return p;
  }
  return undefined;
}

/** A probe for a tool that only has to be installed and print its version. */
async function toolCheck(name: string, bin: string, args: string[], pkg: string): Promise<ProbeResult> {
  const path = await findBinary(bin);
  if (!path) return { name, ok: false, detail: `${bin} not found`, fix: `apt-get install -y ${pkg}` };
  const r = await runCommand(path, args);
  const out = firstLine(r.stdout) || firstLine(r.stderr);
  if (r.code !== 0) return { name, ok: false, detail: `${path} ${args.join(' ')} failed: ${out}`, fix: `apt-get install --reinstall -y ${pkg}` };
  return { name, ok: true, detail: out };
}

const isRoot = () => process.getuid?.() === 0;

async function kernelCheck(): Promise<ProbeResult> {
  const rel = release();
  const ok = atLeast(parseKernelVersion(rel), MIN_KERNEL);
  return { name: 'kernel', ok, detail: rel, fix: ok ? undefined : `boot a kernel >= ${MIN_KERNEL.join('.')} (Debian 12 ships 6.1)` };
}

async function userNamespaceCheck(): Promise<ProbeResult> {
  const name = 'user namespaces';
  const r = await runCommand('unshare', ['--user', '--map-root-user', 'true']);
  if (r.code === 0) return { name, ok: true, detail: `created one (max ${firstLine(await readText('/proc/sys/user/max_user_namespaces')) || '?'})` };
  if (r.spawnError) return { name, ok: false, detail: 'unshare not found', fix: 'apt-get install -y util-linux' };
  let fix = 'sysctl -w user.max_user_namespaces=15000';
  if (firstLine(await readText('/proc/sys/kernel/unprivileged_userns_clone')) === '0') fix = 'sysctl -w kernel.unprivileged_userns_clone=1';
  if (firstLine(await readText('/proc/sys/kernel/apparmor_restrict_unprivileged_userns')) === '1') {
    fix = 'sysctl -w kernel.apparmor_restrict_unprivileged_userns=0';
  }
  return { name, ok: false, detail: `unshare --user failed: ${firstLine(r.stderr)}`, fix };
}

async function overlayCheck(isolaHome: string): Promise<ProbeResult> {
  const name = 'overlayfs';
  const listed = /\toverlay$/m.test(await readText('/proc/filesystems'));
  if (!isRoot()) {
    return { name, ok: listed, detail: listed ? 'in /proc/filesystems (test mount needs root)' : 'not in /proc/filesystems', fix: listed ? undefined : 'modprobe overlay' };
  }
  // Test on the pools' filesystem when it exists: upperdir needs d_type and xattrs there, not in /tmp.
  const base = (await fsp.stat(isolaHome).then((s) => s.isDirectory(), () => false)) ? isolaHome : tmpdir();
  const dir = await fsp.mkdtemp(join(base, '.isola-overlay-probe-'));
  const [lower, upper, work, merged] = ['lower', 'upper', 'work', 'merged'].map((d) => join(dir, d));
  try {
    await Promise.all([lower, upper, work, merged].map((d) => fsp.mkdir(d)));
    await fsp.writeFile(join(lower, 'a'), 'lower');
    const m = await runCommand('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${upper},workdir=${work}`, merged]);
    if (m.code !== 0) {
      return { name, ok: false, detail: `test mount on ${base} failed: ${firstLine(m.stderr)}`, fix: 'modprobe overlay; put ISOLA_HOME on ext4 or xfs (ftype=1)' };
    }
    try {
      await fsp.writeFile(join(merged, 'a'), 'upper');
      const copiedUp = (await readText(join(upper, 'a'))) === 'upper' && (await readText(join(lower, 'a'))) === 'lower';
      return copiedUp
        ? { name, ok: true, detail: `test mount with copy-up works on ${base}` }
        : { name, ok: false, detail: 'test mount did not copy up a written file', fix: 'use a distribution kernel with overlayfs' };
    } finally {
      await runCommand('umount', [merged]);
    }
  } finally {
    await fsp.rm(dir, { recursive: true, force: true });
  }
}

async function idmapCheck(helper?: string): Promise<ProbeResult> {
  const name = 'idmapped mounts';
  const kernelOk = atLeast(parseKernelVersion(release()), [5, 19]);
  const detail = kernelOk ? 'kernel supports them (5.19+)' : `kernel ${release()} is older than 5.19`;
  if (!kernelOk) return { name, ok: false, detail, fix: 'boot a kernel >= 5.19; qubes fall back to chowned copies' };
  if (!helper) return { name, ok: true, detail };
  const usable = await fsp.access(helper, fsc.X_OK).then(() => true, () => false);
  return usable
    ? { name, ok: true, detail: `${detail}; helper ${helper}` }
    : { name, ok: true, detail: `${detail}; helper ${helper} not installed, kernel support only` };
}

async function cgroupCheck(): Promise<{ result: ProbeResult; layout: CgroupLayout }> {
  const name = 'cgroups';
  const layout = parseCgroupLayout(await readText('/proc/self/mountinfo'));
  if (layout.layout === 'none') {
    return { layout, result: { name, ok: false, detail: 'no cgroup filesystem mounted', fix: 'mount cgroup2 at /sys/fs/cgroup (systemd does this at boot)' } };
  }
  const v2Controllers = layout.v2Path ? firstLine(await readText(join(layout.v2Path, 'cgroup.controllers'))).split(' ').filter(Boolean) : [];
  const have = new Set([...layout.v1Controllers, ...v2Controllers]);
  const missing = ['memory', 'cpu', 'pids'].filter((c) => !have.has(c));
  const parts: string[] = [layout.layout];
  if (layout.v1Controllers.length) parts.push(`v1: ${layout.v1Controllers.join(',')}`);
  if (layout.v2Path) parts.push(`v2 at ${layout.v2Path}${v2Controllers.length ? `: ${v2Controllers.join(',')}` : ' (no controllers)'}`);
  if (missing.length) parts.push(`missing ${missing.join(',')}`);
  return {
    layout,
    result: {
      name,
      ok: missing.length === 0,
      detail: parts.join('; '),
      fix: missing.length ? `enable the ${missing.join(', ')} controller(s), e.g. cgroup_enable=memory on the kernel command line` : undefined,
    },
  };
}

async function seccompCheck(): Promise<ProbeResult> {
  const name = 'seccomp';
  const status = await readText('/proc/self/status');
  const actions = firstLine(await readText('/proc/sys/kernel/seccomp/actions_avail'));
  if (!/^Seccomp:/m.test(status) || !actions) {
    return { name, ok: false, detail: 'kernel without seccomp filters', fix: 'use a kernel with CONFIG_SECCOMP_FILTER (any distribution kernel)' };
  }
  const ok = actions.split(' ').includes('errno');
  return { name, ok, detail: `actions: ${actions}`, fix: ok ? undefined : 'use a kernel whose seccomp supports SECCOMP_RET_ERRNO' };
}

async function ociCheck(layout: CgroupLayout): Promise<ProbeResult> {
  const name = 'OCI runtime';
  const found: string[] = [];
  let runcOk = false;
  let crunOk = false;
  for (const bin of ['runc', 'crun']) {
    const path = await findBinary(bin);
    if (!path) continue;
    const r = await runCommand(path, ['--version']);
    if (r.code !== 0) continue;
    found.push(`${firstLine(r.stdout)} (${path})`);
    if (bin === 'runc') runcOk = true;
    else crunOk = true;
  }
  const notes: string[] = [];
  if (crunOk && layout.layout !== 'v2') {
    notes.push(`crun needs pure cgroup v2 (this host: ${layout.layout})${runcOk ? ', runc will be used' : ''}`);
    crunOk = false;
  }
  const ok = runcOk || crunOk;
  return {
    name,
    ok,
    detail: [found.length ? found.join('; ') : 'neither runc nor crun found', ...notes].join('; '),
    fix: ok ? undefined : 'apt-get install -y runc',
  };
}

async function nftCheck(): Promise<ProbeResult> {
  const base = await toolCheck('nftables', 'nft', ['--version'], 'nftables');
  if (!base.ok || !isRoot()) return base;
  // The binary can exist on a kernel without nf_tables; listing needs the kernel side.
  const r = await runCommand((await findBinary('nft')) ?? 'nft', ['list', 'tables']);
  return r.code === 0 ? base : { ...base, ok: false, detail: `${base.detail}; kernel: ${firstLine(r.stderr)}`, fix: 'modprobe nf_tables' };
}

/** Which accelerator hvm qubes get: the real guest kernel is booted when one is installed. */
async function kvmCheck(isolaHome: string, cacheDir: string): Promise<ProbeResult> {
  const name = KVM_CHECK_NAME;
  const [kernel] = await listKernels(isolaHome);
  if (kernel) {
    const r = await probeAccelerator({ kernel, cacheDir, machine: 'microvm', cacheFile: join(cacheDir, 'accel-probe.json') });
    const detail = r.reason.replace(/^KVM: /, '') + (r.cached ? ' (cached)' : '');
    if (r.accel === 'kvm') return { name, ok: true, detail };
    const fix = r.accel === null
      ? 'apt-get install -y qemu-system-x86'
      : 'hvm qubes run under TCG (slow); for KVM: load kvm_intel/kvm_amd, enable nested virtualisation on the outer host';
    return { name, ok: false, detail, fix };
  }
  // No guest kernel yet: only the boot sector can run, and it runs where Linux may still hang.
  const p: KvmProbe = await probeKvm();
  const untried = '; a Linux guest not tried yet (no guest kernel in ISOLA_HOME/kernels)';
  if (p.kvm) return { name, ok: true, detail: p.detail + untried };
  const fix = !p.tcg
    ? 'apt-get install -y qemu-system-x86'
    : /Permission denied/.test(p.attempts.kvm.error)
      ? 'run as root or add the user to the kvm group; until then vm qubes use TCG (slow)'
      : 'vm qubes will use TCG (slow); for KVM: load kvm_intel/kvm_amd, enable nested virtualisation on the outer host';
  return { name, ok: false, detail: p.detail, fix };
}

async function memoryCheck(): Promise<ProbeResult> {
  const m = parseMeminfo(await readText('/proc/meminfo'));
  const ok = m.availableBytes >= MIN_AVAILABLE_MEM;
  return { name: 'memory', ok, detail: `${gib(m.totalBytes)} total, ${gib(m.availableBytes)} available`, fix: ok ? undefined : 'free memory: each running qube needs its `memory` property' };
}

async function diskCheck(isolaHome: string): Promise<ProbeResult> {
  let at = isolaHome;
  while (!(await fsp.stat(at).then(() => true, () => false)) && dirname(at) !== at) at = dirname(at);
  const st = await fsp.statfs(at);
  const free = st.bavail * st.bsize;
  const ok = free >= MIN_FREE_DISK;
  const where = at === isolaHome ? isolaHome : `${isolaHome} (measured at ${at})`;
  return { name: 'disk', ok, detail: `${gib(free)} free in ${where}`, fix: ok ? undefined : `free space or point ISOLA_HOME elsewhere (need ${gib(MIN_FREE_DISK)})` };
}

/** Volume bounds need mkfs.ext4 and loop devices; a plain pre-existing pool directory has none. */
async function storageCheck(isolaHome: string): Promise<ProbeResult> {
  const fix = 'apt-get install -y e2fsprogs util-linux';
  if (!(await findBinary('mkfs.ext4')) || !(await findBinary('losetup'))) return { name: 'storage', ok: false, detail: 'mkfs.ext4 or losetup not found: volumes cannot be bounded', fix };
  if (!(await fsp.stat('/dev/loop-control').then(() => true, () => false))) return { name: 'storage', ok: false, detail: 'no /dev/loop-control: volume images cannot be mounted', fix: 'load the loop module (modprobe loop)' };
  const pool = join(isolaHome, 'pools', 'default');
  const mounted = (await readText('/proc/self/mountinfo').catch(() => '')).split('\n').some((l) => l.split(' ')[4] === pool);
  const legacy = !mounted && (await fsp.readdir(pool).then((e) => e.length > 0, () => false))
    && !(await fsp.stat(`${pool}.img`).then(() => true, () => false));
  if (legacy) return { name: 'storage', ok: false, detail: `${pool} is a plain directory (older isolad): volumes made before have no size or inode bounds, and the pool can fill the host filesystem`, fix: 'move the qubes to a new ISOLA_HOME (qvm-backup when available)' };
  return { name: 'storage', ok: true, detail: `one ext4 image per volume (size and inode bounds) in ${pool}${mounted ? ' (mounted pool image)' : ''}` };
}

export async function probeHost(opts: ProbeOptions = {}): Promise<ProbeResult[]> {
  const isolaHome = opts.isolaHome ?? process.env.ISOLA_HOME ?? '/var/lib/isola';
  const cacheDir = opts.cacheDir ?? (process.env.ISOLA_CACHE || '/var/cache/isola');
  // A check that throws is a failed check, never a failed report.
  const guard = (name: string, p: Promise<ProbeResult>) =>
    p.catch((e: Error): ProbeResult => ({ name, ok: false, detail: `probe failed: ${e.message.split('\n')[0]}` }));
  const cg = cgroupCheck();
  const cgResult = cg.then((c) => c.result);
  const results = await Promise.all([
    guard('kernel', kernelCheck()),
    guard('user namespaces', userNamespaceCheck()),
    guard('overlayfs', overlayCheck(isolaHome)),
    guard('idmapped mounts', idmapCheck(opts.idmapHelper)),
    guard('cgroups', cgResult),
    guard('seccomp', seccompCheck()),
    guard('OCI runtime', cg.then((c) => ociCheck(c.layout))),
    guard('mmdebstrap', toolCheck('mmdebstrap', 'mmdebstrap', ['--version'], 'mmdebstrap')),
    guard('nftables', nftCheck()),
    guard('iproute2', toolCheck('iproute2', 'ip', ['-V'], 'iproute2')),
    // The firewall cuts connections its new rules forbid (as Qubes does) with it.
    guard('conntrack', toolCheck('conntrack', 'conntrack', ['--version'], 'conntrack')),
    guard('QEMU', toolCheck('QEMU', 'qemu-system-x86_64', ['--version'], 'qemu-system-x86')),
    opts.skipKvm ? undefined : guard(KVM_CHECK_NAME, kvmCheck(isolaHome, cacheDir)),
    guard('memory', memoryCheck()),
    guard('disk', diskCheck(isolaHome)),
    guard('storage', storageCheck(isolaHome)),
  ]);
  const have = results.filter((r): r is ProbeResult => r !== undefined);
  return [...have, virtModes(have)];
}

/** Qubes' virt_mode values this host can run, and why the others are not, from the checks above. */
export function virtModes(results: readonly ProbeResult[]): ProbeResult {
  const ok = (name: string) => results.find((r) => r.name === name)?.ok === true;
  const modes: string[] = [];
  const missing: string[] = [];
  if (ok('OCI runtime') && ok('user namespaces') && ok('seccomp')) modes.push('sandbox');
  else missing.push('sandbox (needs an OCI runtime, user namespaces and seccomp)');
  const kvm = results.find((r) => r.name === KVM_CHECK_NAME);
  if (!ok('QEMU')) missing.push('hvm (needs QEMU: apt-get install qemu-system-x86)');
  else modes.push(kvm?.ok ? 'hvm (KVM)' : 'hvm (TCG, emulated: slower; KVM does not run a guest here)');
  const detail = `${modes.join(', ') || 'none'}${missing.length ? `; not: ${missing.join(', ')}` : ''}`;
  return { name: 'virt modes', ok: modes.length > 0, detail, fix: modes.length ? undefined : 'see the checks above' };
}

/** Aligned table with OK/MISSING, then one line per fix. */
export function formatReport(results: ProbeResult[]): string {
  const w = Math.max(5, ...results.map((r) => r.name.length));
  const lines = results.map((r) => `${r.name.padEnd(w)}  ${(r.ok ? 'OK' : 'MISSING').padEnd(7)}  ${r.detail}`.trimEnd());
  const fixes = results.filter((r) => !r.ok && r.fix).map((r) => `  ${r.name}: ${r.fix}`);
  const failed = results.filter((r) => !r.ok).length;
  const summary = failed === 0 ? 'All checks passed.' : `${failed} of ${results.length} checks failed.`;
  return [`${'CHECK'.padEnd(w)}  STATUS   DETAIL`, ...lines, '', summary, ...(fixes.length ? ['To fix:', ...fixes] : [])].join('\n') + '\n';
}
