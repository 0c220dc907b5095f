// The initramfs of hvm qubes: a cached base (init, busybox, the kernel's guest modules, the agent) and a
// small per-qube archive appended after it (Linux unpacks concatenated archives, later files winning).

import { createHash } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { cpioArchive, cpioName, CpioEntry, parentDirs, S_IFLNK, S_IFREG } from './cpio';
import { KernelInfo } from './kernel-store';

/** The applets an init script may call; each becomes a /bin symlink to busybox. */
export const BUSYBOX_APPLETS = [
  'sh', 'mount', 'umount', 'mkdir', 'insmod', 'switch_root', 'poweroff', 'cat', 'sleep', 'ls', 'echo',
  'mknod', 'ln', 'chmod', 'chown', 'grep', 'sed', 'readlink', 'ip',
];

export const GUEST_MODULE_DIR = 'lib/isola-modules';

/** Where Debian's busybox-static puts its binary. */
export const DEFAULT_BUSYBOX = '/bin/busybox';

const FORMAT = 'isola-initramfs-1';

export interface ExtraFile {
  /** Path in the guest. */
  dst: string;
  /** Path on the host. */
  src: string;
  mode: number;
}

export interface BaseInitramfsOptions {
  kernel: KernelInfo;
  cacheDir: string;
  init: Buffer;
  extra?: ExtraFile[];
  /** A static busybox; default /bin/busybox (busybox-static). */
  busybox?: string;
}

async function readBusybox(path: string): Promise<Buffer> {
  const data = await fsp.readFile(path).catch((e: NodeJS.ErrnoException) => {
    throw new Error(`read ${path}: ${e.code ?? e.message} (apt-get install -y busybox-static)`);
  });
  // A dynamic busybox would find no libc in the initramfs.
  if (hasInterpreter(data)) throw new Error(`${path} is dynamically linked; the initramfs needs busybox-static`);
  return data;
}

/** Whether an ELF64 executable names a dynamic loader (a PT_INTERP program header). */
export function hasInterpreter(elf: Buffer): boolean {
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2) throw new Error('busybox: not a 64-bit ELF executable');
  const phoff = Number(elf.readBigUInt64LE(0x20));
  const size = elf.readUInt16LE(0x36);
  const count = elf.readUInt16LE(0x38);
  for (let i = 0; i < count; i++) {
    const at = phoff + i * size;
    if (at + 4 > elf.length) throw new Error('busybox: program headers past the end of the file');
    if (elf.readUInt32LE(at) === 3) return true;
  }
  return false;
}

/** The files of the base archive, in archive order (directories first where they are needed). */
export async function baseEntries(opts: BaseInitramfsOptions): Promise<CpioEntry[]> {
  const files: CpioEntry[] = [{ name: 'init', mode: S_IFREG | 0o755, data: opts.init }];
  files.push({ name: 'bin/busybox', mode: S_IFREG | 0o755, data: await readBusybox(opts.busybox ?? DEFAULT_BUSYBOX) });
  for (const a of BUSYBOX_APPLETS) files.push({ name: `bin/${a}`, mode: S_IFLNK | 0o777, target: 'busybox' });
  const order = (await fsp.readFile(join(opts.kernel.modules, 'modules.order'), 'latin1')).split('\n').filter(Boolean);
  for (const ko of order) {
    if (!/^[A-Za-z0-9_-]+\.ko$/.test(ko)) throw new Error(`${opts.kernel.modules}/modules.order: bad entry ${JSON.stringify(ko)}`);
    files.push({ name: `${GUEST_MODULE_DIR}/${ko}`, mode: S_IFREG | 0o644, data: await fsp.readFile(join(opts.kernel.modules, ko)) });
  }
  files.push({ name: `${GUEST_MODULE_DIR}/modules.order`, mode: S_IFREG | 0o644, data: Buffer.from(order.map((k) => k + '\n').join('')) });
  for (const x of opts.extra ?? []) {
    files.push({ name: cpioName(x.dst), mode: S_IFREG | (x.mode & 0o7777), data: await fsp.readFile(x.src) });
  }
  return [...parentDirs(files.map((f) => f.name)), ...files];
}

/** Hash of everything that ends up in the archive, so a changed agent or kernel builds a new one. */
function entriesKey(entries: CpioEntry[]): string {
  const h = createHash('sha256').update(FORMAT);
  for (const e of entries) {
    const body = e.data ?? Buffer.from(e.target ?? '');
    h.update(`\0${e.name}\0${e.mode}\0${e.uid ?? 0}\0${e.gid ?? 0}\0${body.length}\0`).update(body);
  }
  return h.digest('hex').slice(0, 32);
}

/** Path of the gzip'd base archive, built on first use into cacheDir/initramfs/. */
export async function baseInitramfs(opts: BaseInitramfsOptions): Promise<string> {
  const entries = await baseEntries(opts);
  const dir = join(opts.cacheDir, 'initramfs');
  const file = join(dir, `${entriesKey(entries)}.cpio.gz`);
  if (await fsp.access(file).then(() => true, () => false)) return file;
  await fsp.mkdir(dir, { recursive: true });
  const partial = `${file}.partial-${process.pid}-${Date.now()}`;
  try {
    // Level 6: the kernel inflates it at every boot; level 9 buys little, level 1 costs ~10 % more bytes.
    const gz = gzipSync(cpioArchive(entries), { level: 6 });
    // Linux looks for an appended uncompressed archive only at a 4-byte offset, skipping zeros up to it.
    await fsp.writeFile(partial, Buffer.concat([gz, Buffer.alloc((4 - (gz.length % 4)) % 4)]));
    await fsp.rename(partial, file);
  } finally {
    await fsp.rm(partial, { force: true });
  }
  return file;
}

/** An uncompressed archive of one qube's files (with their parent directories), to append after the base. */
export function qubeArchive(files: { name: string; mode: number; data: Buffer }[]): Buffer {
  const entries: CpioEntry[] = files.map((f) => ({ name: cpioName(f.name), mode: S_IFREG | (f.mode & 0o7777), data: f.data }));
  return cpioArchive([...parentDirs(entries.map((e) => e.name)), ...entries]);
}

/** Writes base + per-qube archive to dest (QEMU's -initrd takes one file); dest's directory must exist. */
export async function writeQubeInitramfs(base: string, qube: Buffer, dest: string): Promise<void> {
  const baseBytes = await fsp.readFile(base);
  const pad = Buffer.alloc((4 - (baseBytes.length % 4)) % 4);
  const partial = `${dest}.partial-${process.pid}`;
  try {
    await fsp.writeFile(partial, Buffer.concat([baseBytes, pad, qube]), { mode: 0o600 });
    await fsp.rename(partial, dest);
  } finally {
    await fsp.rm(partial, { force: true });
  }
}
