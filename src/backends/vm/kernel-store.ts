// The guest kernel of hvm qubes: Debian's linux-image-cloud-amd64, downloaded once into the cache and
// installed per version under ISOLA_HOME/kernels with only vmlinuz and the virtio modules a guest loads.

import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { canonicalModuleName, loadOrder, moduleDepends } from './module-deps';

const run = promisify(execFile);

export interface KernelInfo {
  /** Kernel release, e.g. 6.1.0-50-cloud-amd64. */
  version: string;
  dir: string;
  vmlinuz: string;
  /** Directory of the kept .ko files and their modules.order. */
  modules: string;
}

export const META_PACKAGE = 'linux-image-cloud-amd64';

/**
 * The modules a guest needs, in the order that breaks ties: virtio_ring goes before virtio (virtio's
 * modinfo names no dependency, yet insmod of virtio first fails here, docs/vm-boot-notes.md).
 */
export const GUEST_MODULES = [
  'virtio_ring', 'virtio', 'virtio_mmio', 'virtio_pci_modern_dev', 'virtio_pci_legacy_dev', 'virtio_pci',
  'virtio_blk', 'virtio_console', 'failover', 'net_failover', 'virtio_net', 'overlay', 'virtio_balloon',
];

const VERSION = /^[0-9A-Za-z._+-]+$/;

/** A kernel version as a path component: the release string's alphabet, never '.' or '..'. */
export function validKernelVersion(untrusted: string): string {
  if (!VERSION.test(untrusted) || untrusted.length > 128 || /^\.+$/.test(untrusted) || untrusted.includes('..')) {
    throw new Error(`bad kernel version ${JSON.stringify(untrusted.slice(0, 80))}: expected letters, digits and . _ + - (no '..')`);
  }
  return untrusted;
}

/** The release a versioned image package carries, from its name: linux-image-6.1.0-50-cloud-amd64. */
export function releaseOfPackage(pkg: string): string {
  const m = /^linux-image-(\d[0-9A-Za-z._+-]*)$/.exec(pkg);
  if (!m) throw new Error(`${META_PACKAGE} depends on ${JSON.stringify(pkg)}, not a linux-image-VERSION package`);
  return validKernelVersion(m[1]);
}

/** The versioned package of `apt-cache depends` or a .deb's Depends: field text. */
export function versionedImagePackage(dependsText: string): string | undefined {
  return /(?:^|[\s,:])(linux-image-\d[0-9A-Za-z._+-]*)/m.exec(dependsText)?.[1];
}

const exists = (p: string) => fsp.access(p).then(() => true, () => false);

export async function kernelInfo(home: string, version: string): Promise<KernelInfo | undefined> {
  const v = validKernelVersion(version);
  const dir = join(home, 'kernels', v);
  const info = { version: v, dir, vmlinuz: join(dir, 'vmlinuz'), modules: join(dir, 'modules') };
  // Installs are renamed into place whole, so these two mean the version is complete.
  const ok = (await exists(info.vmlinuz)) && (await exists(join(info.modules, 'modules.order')));
  return ok ? info : undefined;
}

/** Installed kernels, newest version first (by numeric-aware name order). */
export async function listKernels(home: string): Promise<KernelInfo[]> {
  const names = await fsp.readdir(join(home, 'kernels')).catch(() => [] as string[]);
  const out: KernelInfo[] = [];
  for (const n of names) {
    if (!VERSION.test(n) || n.startsWith('.') || n.includes('..')) continue;
    const k = await kernelInfo(home, n);
    if (k) out.push(k);
  }
  return out.sort((a, b) => b.version.localeCompare(a.version, 'en', { numeric: true }));
}

async function debIn(dir: string, pkg: string): Promise<string | undefined> {
  const names = await fsp.readdir(dir).catch(() => [] as string[]);
  const hit = names.filter((n) => n.startsWith(`${pkg}_`) && n.endsWith('_amd64.deb')).sort().pop();
  return hit ? join(dir, hit) : undefined;
}

async function download(pkg: string, dir: string, log: (l: string) => void): Promise<string> {
  log(`downloading ${pkg} into ${dir}`);
  // apt-get download writes into its working directory, so the cache directory is the cwd.
  await run('apt-get', ['download', '-q', pkg], { cwd: dir, maxBuffer: 1 << 24 }).catch((e: Error & { stderr?: string }) => {
    throw new Error(`apt-get download ${pkg} failed: ${(e.stderr ?? e.message).trim().split('\n').pop()}`);
  });
  const deb = await debIn(dir, pkg);
  if (!deb) throw new Error(`apt-get download ${pkg} left no ${pkg}_*.deb in ${dir}`);
  return deb;
}

/** The versioned image package: apt's lists when it has them, else the cached metapackage's Depends. */
async function resolveImagePackage(debs: string, log: (l: string) => void, offline: boolean): Promise<string> {
  const fromApt = offline ? undefined : await run('apt-cache', ['depends', META_PACKAGE]).then((r) => versionedImagePackage(r.stdout), () => undefined);
  if (fromApt) {
    log(`${META_PACKAGE} is ${fromApt} (apt-cache)`);
    return fromApt;
  }
  const cachedMeta = await debIn(debs, META_PACKAGE);
  if (!cachedMeta && offline) throw new Error(`offline: no ${META_PACKAGE}_*.deb in ${debs}`);
  const meta = cachedMeta ?? (await download(META_PACKAGE, debs, log));
  const depends = (await run('dpkg-deb', ['-f', meta, 'Depends'])).stdout;
  const pkg = versionedImagePackage(depends);
  if (!pkg) throw new Error(`${meta}: no linux-image-VERSION in Depends: ${depends.trim()}`);
  log(`${META_PACKAGE} is ${pkg} (${meta})`);
  return pkg;
}

async function findModules(modRoot: string): Promise<Map<string, string>> {
  const found = new Map<string, string>();
  const walk = async (dir: string): Promise<void> => {
    for (const e of await fsp.readdir(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.name.endsWith('.ko')) found.set(canonicalModuleName(e.name.slice(0, -3)), p);
      else if (/\.ko\.(xz|zst|gz)$/.test(e.name)) found.set(canonicalModuleName(e.name.replace(/\.ko\..*$/, '')), p);
    }
  };
  await walk(modRoot);
  return found;
}

/** Copies vmlinuz and the guest's modules (with their dependencies) from an unpacked .deb into `dest`. */
async function keepGuestFiles(unpacked: string, version: string, dest: string): Promise<string[]> {
  const modRoot = join(unpacked, 'lib', 'modules', version);
  if (!(await exists(modRoot))) throw new Error(`the package has no lib/modules/${version}: not the kernel release its name says`);
  const files = await findModules(join(modRoot, 'kernel'));
  const graph = new Map<string, string[]>();
  const pending = [...GUEST_MODULES];
  while (pending.length) {
    const name = pending.shift() as string;
    if (graph.has(name)) continue;
    const file = files.get(name);
    if (!file) throw new Error(`kernel ${version} has no module ${name} (built in? then drop it from GUEST_MODULES)`);
    if (!file.endsWith('.ko')) throw new Error(`${file}: compressed modules are not supported (busybox insmod needs plain .ko)`);
    const deps = moduleDepends(await fsp.readFile(file));
    graph.set(name, deps);
    pending.push(...deps);
  }
  const order = loadOrder(graph, GUEST_MODULES);
  await fsp.mkdir(join(dest, 'modules'), { recursive: true });
  await fsp.copyFile(join(unpacked, 'boot', `vmlinuz-${version}`), join(dest, 'vmlinuz'));
  for (const m of order) await fsp.copyFile(files.get(m) as string, join(dest, 'modules', `${m}.ko`));
  await fsp.writeFile(join(dest, 'modules', 'modules.order'), order.map((m) => `${m}.ko\n`).join(''));
  return order;
}

export interface EnsureKernelOptions {
  home: string;
  cacheDir: string;
  log?: (line: string) => void;
  /** Use the metapackage and image .debs already in cacheDir/kernels, never apt (tests; air-gapped hosts). */
  offline?: boolean;
}

/** Installs (once) and returns the default guest kernel. */
export async function ensureDefaultKernel(opts: EnsureKernelOptions): Promise<KernelInfo> {
  const log = opts.log ?? (() => undefined);
  const debs = join(opts.cacheDir, 'kernels');
  await fsp.mkdir(debs, { recursive: true });
  const pkg = await resolveImagePackage(debs, log, opts.offline ?? false);
  const version = releaseOfPackage(pkg);
  const installed = await kernelInfo(opts.home, version);
  if (installed) {
    log(`kernel ${version} already installed in ${installed.dir}`);
    return installed;
  }
  const cachedDeb = await debIn(debs, pkg);
  if (!cachedDeb && opts.offline) throw new Error(`offline: no ${pkg}_*.deb in ${debs}`);
  const deb = cachedDeb ?? (await download(pkg, debs, log));
  const kernels = join(opts.home, 'kernels');
  await fsp.mkdir(kernels, { recursive: true });
  const unpacked = await fsp.mkdtemp(join(tmpdir(), 'isola-kernel-deb-'));
  // Staged next to its final place, so the rename is atomic and a crash leaves only a dot-directory.
  const staging = await fsp.mkdtemp(join(kernels, `.${version}.partial-`));
  try {
    log(`unpacking ${deb}`);
    await run('dpkg-deb', ['-x', deb, unpacked], { maxBuffer: 1 << 24 });
    const order = await keepGuestFiles(unpacked, version, staging);
    log(`kept vmlinuz and ${order.length} modules: ${order.join(' ')}`);
    const dir = join(kernels, version);
    // mkdtemp made it 0700; QEMU may run as another user.
    await fsp.chmod(staging, 0o755);
    await fsp.rename(staging, dir).catch(async (e: NodeJS.ErrnoException) => {
      // Another install won the race: its copy is as good as ours.
      if (e.code !== 'ENOTEMPTY' && e.code !== 'EEXIST') throw e;
    });
    log(`installed kernel ${version} in ${dir}`);
    const info = await kernelInfo(opts.home, version);
    if (!info) throw new Error(`kernel ${version} missing from ${dir} right after installing it`);
    return info;
  } finally {
    await fsp.rm(unpacked, { recursive: true, force: true });
    await fsp.rm(staging, { recursive: true, force: true });
  }
}
