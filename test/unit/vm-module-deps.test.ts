// Reading `depends=` out of a kernel module's bytes, and the insmod order built from it: real modules,
// synthetic ones, and hostile or truncated files that must fail with ModuleFormatError, never crash.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { elfSection, loadOrder, moduleDepends, ModuleFormatError, parseModinfo } from '../../src/backends/vm/module-deps';

/** A minimal ELF64 LE file: section 0 null, then the given sections, then .shstrtab. */
export function makeElf(sections: { name: string; data: Buffer }[]): Buffer {
  const names = Buffer.concat([Buffer.from('\0'), ...[...sections.map((s) => s.name), '.shstrtab'].map((n) => Buffer.from(n + '\0'))]);
  const bodies = [...sections.map((s) => s.data), names];
  let off = 64;
  const offsets = bodies.map((b) => ((off += b.length), off - b.length));
  const shoff = off;
  const shnum = bodies.length + 1;
  const head = Buffer.alloc(64);
  head.writeUInt32BE(0x7f454c46, 0);
  head[4] = 2;
  head[5] = 1;
  head.writeBigUInt64LE(BigInt(shoff), 0x28);
  head.writeUInt16LE(64, 0x3a);
  head.writeUInt16LE(shnum, 0x3c);
  head.writeUInt16LE(shnum - 1, 0x3e);
  const shdrs = Buffer.alloc(64 * shnum);
  let nameOff = 1;
  bodies.forEach((b, i) => {
    const at = 64 * (i + 1);
    shdrs.writeUInt32LE(nameOff, at);
    nameOff += Buffer.byteLength(i < sections.length ? sections[i].name : '.shstrtab') + 1;
    shdrs.writeBigUInt64LE(BigInt(offsets[i]), at + 0x18);
    shdrs.writeBigUInt64LE(BigInt(b.length), at + 0x20);
  });
  return Buffer.concat([head, ...bodies, shdrs]);
}

const modinfo = (...kv: string[]) => Buffer.from(kv.join('\0') + '\0', 'latin1');
const ko = (...kv: string[]) => makeElf([{ name: '.text', data: Buffer.from('code') }, { name: '.modinfo', data: modinfo(...kv) }]);

test('depends= of a module lists the modules it needs, canonical names', () => {
  assert.deepEqual(moduleDepends(ko('license=GPL', 'depends=virtio_ring,virtio-pci_modern_dev,virtio', 'vermagic=6.1')), ['virtio_ring', 'virtio_pci_modern_dev', 'virtio']);
  assert.deepEqual(moduleDepends(ko('license=GPL', 'depends=')), []);
  assert.deepEqual(moduleDepends(ko('license=GPL')), []);
});

const REAL = '/work/kernel/x/lib/modules/6.1.0-50-cloud-amd64/kernel/drivers/virtio/virtio_pci.ko';
test('the real virtio_pci.ko of the cloud kernel needs virtio_ring, the pci transports and virtio', { skip: !existsSync(REAL) && 'no unpacked kernel in /work/kernel' }, () => {
  assert.deepEqual(moduleDepends(readFileSync(REAL)).sort(), ['virtio', 'virtio_pci_legacy_dev', 'virtio_pci_modern_dev', 'virtio_ring']);
});

test('modinfo strings are split on NUL, as bytes', () => {
  assert.deepEqual(parseModinfo(Buffer.from('a=1\0\0=x\0noequals\0b=\xff\0', 'latin1')), [['a', '1'], ['b', '\xff']]);
  assert.deepEqual(parseModinfo(Buffer.from('depends=a')), [['depends', 'a']]);
});

// Each must fail with a ModuleFormatError: a guest kernel package is downloaded, its bytes are not ours.
const BAD: [string, Buffer][] = [
  ['empty file', Buffer.alloc(0)],
  ['text, not ELF', Buffer.from('#!/bin/sh\necho not a module\n'.repeat(4))],
  ['32-bit ELF', (() => { const b = ko('depends='); b[4] = 1; return b; })()],
  ['section headers past the end', (() => { const b = ko('depends='); b.writeBigUInt64LE(0xffffffffffffn, 0x28); return b; })()],
  ['name table index out of range', (() => { const b = ko('depends='); b.writeUInt16LE(0xffff, 0x3e); return b; })()],
  ['section header size too small', (() => { const b = ko('depends='); b.writeUInt16LE(8, 0x3a); return b; })()],
  ['no .modinfo', makeElf([{ name: '.text', data: Buffer.from('x') }])],
  ['path in depends', ko('depends=../../etc/passwd')],
  ['space in depends', ko('depends=virtio ring')],
  ['non-ASCII byte in depends', Buffer.concat([makeElf([{ name: '.modinfo', data: Buffer.from('depends=vir\xfftio\0', 'latin1') }])])],
  ['overlong name in depends', ko(`depends=${'a'.repeat(65)}`)],
];
for (const [why, bytes] of BAD) {
  test(`a hostile module file is rejected with a clear error: ${why}`, () => {
    assert.throws(() => moduleDepends(bytes), ModuleFormatError);
  });
}

test('a module file truncated at any length, or with any byte of its header flipped, never crashes the reader', () => {
  const good = ko('license=GPL', 'depends=virtio,virtio_ring');
  const tryIt = (b: Buffer) => {
    try {
      const d = moduleDepends(b);
      assert.ok(Array.isArray(d));
    } catch (e) {
      assert.ok(e instanceof ModuleFormatError, `unexpected ${(e as Error).name}: ${(e as Error).message}`);
    }
  };
  for (let n = 0; n < good.length; n++) tryIt(good.subarray(0, n));
  for (let i = 0; i < 64; i++) for (const v of [0, 0x7f, 0xff]) { const b = Buffer.from(good); b[i] = v; tryIt(b); }
  const shoff = Number(good.readBigUInt64LE(0x28));
  for (let i = shoff; i < good.length; i++) { const b = Buffer.from(good); b[i] = 0xff; tryIt(b); }
});

test('the section reader returns the named section only', () => {
  const b = makeElf([{ name: '.modinfo.x', data: Buffer.from('no') }, { name: '.modinfo', data: Buffer.from('yes') }]);
  assert.equal(elfSection(b, '.modinfo')?.toString(), 'yes');
  assert.equal(elfSection(b, '.absent'), undefined);
});

test('load order puts dependencies first and keeps the given order among the free ones', () => {
  const g = new Map<string, string[]>([
    ['virtio_ring', []], ['virtio', []], ['virtio_blk', ['virtio', 'virtio_ring']],
    ['virtio_pci', ['virtio_ring', 'virtio_pci_modern_dev', 'virtio']], ['virtio_pci_modern_dev', []],
    ['virtio_net', ['virtio_ring', 'virtio', 'net_failover']], ['net_failover', ['failover']], ['failover', []],
  ]);
  const order = loadOrder(g, ['virtio_ring', 'virtio', 'virtio_pci', 'virtio_blk', 'virtio_net']);
  assert.deepEqual(order, ['virtio_ring', 'virtio', 'virtio_pci_modern_dev', 'virtio_pci', 'virtio_blk', 'failover', 'net_failover', 'virtio_net']);
  for (const [m, deps] of g) for (const d of deps) assert.ok(order.indexOf(d) < order.indexOf(m), `${d} before ${m}`);
});

test('a dependency cycle between modules is an error naming the cycle, not a hang', () => {
  const g = new Map([['a', ['b']], ['b', ['c']], ['c', ['a']]]);
  assert.throws(() => loadOrder(g, ['a']), /cycle: a -> b -> c -> a/);
  assert.throws(() => loadOrder(new Map([['a', ['a']]]), ['a']), /cycle: a -> a/);
});

test('a dependency missing from the kernel is an error naming who needs it', () => {
  assert.throws(() => loadOrder(new Map([['virtio_blk', ['virtio']]]), ['virtio_blk']), /module virtio \(needed by virtio_blk\) not found/);
});
