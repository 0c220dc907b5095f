// Which kernel modules a module needs, read from its own `.modinfo` ELF section (Debian's kernel .deb
// ships no modules.dep and this host has no modinfo), and an order that insmod can follow.

export class ModuleFormatError extends Error {
  override name = 'ModuleFormatError';
}

const MODULE_NAME = /^[A-Za-z0-9_-]{1,64}$/;

/** Kernel module names treat '-' and '_' alike; the canonical form uses '_'. */
export const canonicalModuleName = (name: string) => name.replace(/-/g, '_');

/** Bytes of a named section of an ELF64 little-endian file; every offset is checked against the buffer. */
export function elfSection(untrustedElf: Buffer, wanted: string): Buffer | undefined {
  const b = untrustedElf;
  const fail = (why: string): never => {
    throw new ModuleFormatError(`not a loadable kernel module: ${why}`);
  };
  if (b.length < 64) fail(`${b.length} bytes is shorter than an ELF header`);
  if (b.readUInt32BE(0) !== 0x7f454c46) fail('no ELF magic');
  if (b[4] !== 2 || b[5] !== 1) fail('not 64-bit little-endian ELF');
  const shoff = b.readBigUInt64LE(0x28);
  const shentsize = b.readUInt16LE(0x3a);
  const shnum = b.readUInt16LE(0x3c);
  const shstrndx = b.readUInt16LE(0x3e);
  if (shentsize < 64) fail(`section header size ${shentsize}`);
  if (shstrndx >= shnum) fail('section name table index out of range');
  if (shoff + BigInt(shnum) * BigInt(shentsize) > BigInt(b.length)) fail('section headers past the end of the file');
  const header = (i: number) => {
    const at = Number(shoff) + i * shentsize;
    const offset = b.readBigUInt64LE(at + 0x18);
    const size = b.readBigUInt64LE(at + 0x20);
    if (offset + size > BigInt(b.length)) fail(`section ${i} past the end of the file`);
    return { nameOff: b.readUInt32LE(at), offset: Number(offset), size: Number(size) };
  };
  const names = header(shstrndx);
  const nameTable = b.subarray(names.offset, names.offset + names.size);
  const want = Buffer.from(wanted + '\0', 'latin1');
  for (let i = 0; i < shnum; i++) {
    const h = header(i);
    if (h.nameOff >= nameTable.length) continue;
    if (nameTable.subarray(h.nameOff, h.nameOff + want.length).equals(want)) return b.subarray(h.offset, h.offset + h.size);
  }
  return undefined;
}

/** `key=value` strings of a .modinfo section (NUL-separated; keys may repeat, e.g. alias). */
export function parseModinfo(untrustedSection: Buffer): [string, string][] {
  const out: [string, string][] = [];
  let start = 0;
  for (let i = 0; i <= untrustedSection.length; i++) {
    if (i < untrustedSection.length && untrustedSection[i] !== 0) continue;
    const entry = untrustedSection.subarray(start, i);
    start = i + 1;
    const eq = entry.indexOf(0x3d);
    if (eq <= 0) continue;
    // latin1 maps every byte to one char, so odd bytes survive to be rejected by the name check.
    out.push([entry.subarray(0, eq).toString('latin1'), entry.subarray(eq + 1).toString('latin1')]);
  }
  return out;
}

/** The modules a .ko needs loaded first, from its `depends=` (absent or empty: none). */
export function moduleDepends(untrustedKo: Buffer): string[] {
  const section = elfSection(untrustedKo, '.modinfo');
  if (!section) throw new ModuleFormatError('not a loadable kernel module: no .modinfo section');
  const deps = new Set<string>();
  for (const [key, value] of parseModinfo(section)) {
    if (key !== 'depends') continue;
    for (const d of value.split(',').filter(Boolean)) {
      if (!MODULE_NAME.test(d)) throw new ModuleFormatError(`bad module name in depends=: ${JSON.stringify(d.slice(0, 80))}`);
      deps.add(canonicalModuleName(d));
    }
  }
  return [...deps];
}

/**
 * Dependencies before dependents. Among modules free to go, the one listed earlier in `roots` goes first
 * (virtio_ring before virtio, which modinfo does not say but the notes measured). Throws on a cycle
 * or on a dependency missing from the graph.
 */
export function loadOrder(graph: Map<string, string[]>, roots: string[]): string[] {
  const order: string[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (name: string, path: string[]) => {
    const s = state.get(name);
    if (s === 'done') return;
    if (s === 'visiting') throw new ModuleFormatError(`module dependency cycle: ${[...path, name].join(' -> ')}`);
    const deps = graph.get(name);
    if (!deps) throw new ModuleFormatError(`module ${name} (needed by ${path[path.length - 1] ?? 'the guest'}) not found`);
    state.set(name, 'visiting');
    for (const d of deps) visit(d, [...path, name]);
    state.set(name, 'done');
    order.push(name);
  };
  for (const r of roots) visit(canonicalModuleName(r), []);
  return order;
}
