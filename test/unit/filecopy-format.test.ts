// The qubes.Filecopy format pieces (headers, CRC32) and the receiver against crafted hostile streams:
// each bad stream must stop with the right errno and leave nothing outside the destination.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, readdirSync, readFileSync, writeFileSync, symlinkSync, lstatSync, existsSync, rmSync, statSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { Readable } from 'stream';
import {
  Errno, FILE_HEADER_SIZE, END_MARKER, crc32Update, decodeHeader, encodeHeader, encodeResult, decodeResult,
  checkSymlinkTarget,
} from '../../src/agent/filecopy/format';
import { unpackStream, type UnpackOptions } from '../../src/agent/filecopy/unpack';

const REG = 0o100644, DIR = 0o040755, LNK = 0o120777;

function hdr(namelen: number, mode: number, filelen: bigint | number, mtime = 1_600_000_000): Buffer {
  return encodeHeader({ namelen, mode, filelen: BigInt(filelen), atime: mtime, atimeNsec: 0, mtime, mtimeNsec: 0 });
}

/** One well-formed record (name NUL-terminated, namelen counting it) unless the caller says otherwise. */
function rec(name: string | Buffer, mode: number, data: string | Buffer = '', filelen?: bigint | number): Buffer {
  const n = Buffer.concat([Buffer.isBuffer(name) ? name : Buffer.from(name), Buffer.from([0])]);
  const d = Buffer.from(data);
  return Buffer.concat([hdr(n.length, mode, filelen ?? d.length), n, d]);
}

const dir = (name: string) => rec(name, DIR);
const file = (name: string | Buffer, data: string | Buffer = 'x') => rec(name, REG, data);
const link = (name: string, target: string) => rec(name, LNK, target);
const stream = (...parts: Buffer[]) => Buffer.concat([...parts, END_MARKER]);

test('header encode/decode round trip, 32 bytes little-endian', () => {
  const h = { namelen: 9, mode: 0o100755, filelen: 0x1_0000_0001n, atime: 1, atimeNsec: 2, mtime: 0xfffffffe, mtimeNsec: 999_999_999 };
  const b = encodeHeader(h);
  assert.equal(b.length, FILE_HEADER_SIZE);
  assert.deepEqual(decodeHeader(b), h);
  assert.equal(b.readUInt32LE(0), 9);
  assert.equal(b.readUInt32LE(8), 1);  // low word of filelen first
  assert.equal(b.readUInt32LE(12), 1);
});

test('result header is 16 bytes, ext carries the last name', () => {
  const b = encodeResult(Errno.EEXIST, 0xcbf43926, 'dir/é');
  assert.deepEqual(decodeResult(b), { code: 17, crc32: 0xcbf43926n });
  assert.equal(b.readUInt32LE(16), Buffer.byteLength('dir/é'));
  assert.equal(b.subarray(20).toString(), 'dir/é');
  assert.equal(encodeResult(0, 1).length, 16);
});

test('CRC32 matches zlib/IEEE known values and chains', () => {
  assert.equal(crc32Update(0, Buffer.from('123456789')), 0xcbf43926);
  assert.equal(crc32Update(0, Buffer.alloc(0)), 0);
  assert.equal(crc32Update(0, Buffer.from('The quick brown fox jumps over the lazy dog')), 0x414fa339);
  const big = Buffer.alloc(100_003);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7919) & 0xff;
  const whole = crc32Update(0, big);
  // Odd split points exercise the unaligned head and the byte tail of the word loop.
  assert.equal(crc32Update(crc32Update(crc32Update(0, big.subarray(0, 3)), big.subarray(3, 70_001)), big.subarray(70_001)), whole);
  const zlib = require('zlib') as { crc32?: (d: Uint8Array, v?: number) => number };
  if (zlib.crc32) assert.equal(whole, zlib.crc32(big));
});

test('symlink target rule (Qubes qubes_pure_validate_symbolic_link)', () => {
  assert.equal(checkSymlinkTarget(['a', 'b'], Buffer.from('c'), false), 0);
  assert.equal(checkSymlinkTarget(['a', 'b', 'c'], Buffer.from('../d'), false), 0);
  assert.equal(checkSymlinkTarget(['a', 'b'], Buffer.from('../c'), false), Errno.ENOLINK);
  assert.equal(checkSymlinkTarget(['a', 'b', 'c'], Buffer.from('x/../../d'), false), Errno.ENOLINK);
  assert.equal(checkSymlinkTarget(['a'], Buffer.from('c'), false), Errno.ENOLINK);
  assert.equal(checkSymlinkTarget(['a', 'b'], Buffer.from('/etc'), false), Errno.ENOLINK);
  assert.equal(checkSymlinkTarget(['a', 'b'], Buffer.from('c/'), false), 0);
  assert.equal(checkSymlinkTarget(['a', 'b'], Buffer.from('./c'), false), Errno.EILSEQ);
});

interface Row {
  why: string;
  bytes: Buffer;
  code: number | undefined;
  opts?: UnpackOptions;
  before?: (dest: string, outside: string) => void;
  after?: (dest: string) => void;
}

const u32max = 0xffffffff;
const rows: Row[] = [
  { why: 'a plain good stream is accepted', bytes: stream(dir('d'), file('d/f', 'hello'), dir('d')), code: undefined,
    after: (d) => assert.equal(readFileSync(join(d, 'd/f'), 'utf8'), 'hello') },
  { why: 'parent traversal at the start', bytes: stream(file('../x')), code: Errno.EILSEQ },
  { why: 'traversal in the middle climbs out', bytes: stream(dir('a'), file('a/../../x')), code: Errno.EILSEQ },
  { why: 'absolute name', bytes: stream(file('/etc/passwd')), code: Errno.EILSEQ },
  { why: 'NUL inside the name would truncate it in C', bytes: stream(file(Buffer.from('a\0b'))), code: Errno.EILSEQ },
  { why: 'empty component is non-canonical', bytes: stream(dir('a'), file('a//b')), code: Errno.EILSEQ },
  { why: '"." component is non-canonical', bytes: stream(dir('a'), file('a/./b')), code: Errno.EILSEQ },
  { why: 'trailing slash on a file name', bytes: stream(file('a/')), code: Errno.EILSEQ },
  { why: 'namelen 4 GiB: refused before reading or allocating (ENAMETOOLONG, not EOF)',
    bytes: Buffer.concat([hdr(u32max, REG, 0)]), code: Errno.ENAMETOOLONG },
  { why: 'namelen one above maxNameLength', bytes: stream(file('abc')), opts: { maxNameLength: 3 }, code: Errno.ENAMETOOLONG },
  { why: 'name without its NUL terminator', bytes: Buffer.concat([hdr(3, REG, 0), Buffer.from('abc'), END_MARKER]), code: Errno.EINVAL },
  { why: 'truncated header (stream ends inside it)', bytes: hdr(2, REG, 0).subarray(0, 20), code: Errno.LEGAL_EOF },
  { why: 'stream ends cleanly without the end marker', bytes: file('f'), code: Errno.EREMOTEIO },
  { why: 'lying filelen: data ends early; what arrived stays, mode 000, nothing more',
    bytes: Buffer.concat([rec('t', REG, '0123456789', 100)]), code: Errno.LEGAL_EOF,
    after: (d) => { assert.equal(readFileSync(join(d, 't'), 'utf8'), '0123456789'); assert.equal(statSync(join(d, 't')).mode & 0o7777, 0); } },
  { why: 'filelen 2^63: over any budget, refused before the file is created',
    bytes: Buffer.concat([rec('huge', REG, '', 1n << 63n)]), code: Errno.EDQUOT, after: (d) => assert.ok(!existsSync(join(d, 'huge'))) },
  { why: 'absolute symlink target (/etc)', bytes: stream(dir('d'), link('d/l', '/etc')), code: Errno.ENOLINK },
  { why: 'symlink climbing out (../../x)', bytes: stream(dir('d'), link('d/l', '../../x')), code: Errno.ENOLINK },
  { why: 'top-level symlink (Qubes refuses any)', bytes: stream(file('t'), link('l', 't')), code: Errno.ENOLINK },
  { why: 'symlink target 4096 bytes long', bytes: stream(dir('d'), link('d/l', 'a'.repeat(4096))), code: Errno.ENAMETOOLONG },
  { why: 'a safe symlink inside the tree is accepted', bytes: stream(dir('d'), dir('d/sub'), link('d/l', 'sub')), code: undefined,
    after: (d) => assert.ok(lstatSync(join(d, 'd/l')).isSymbolicLink()) },
  { why: 'symlink then a file through it: the walk never follows links',
    bytes: stream(dir('d'), dir('d/sub'), link('d/l', 'sub'), file('d/l/evil')), code: Errno.ENOTDIR,
    after: (d) => assert.deepEqual(readdirSync(join(d, 'd/sub')), []) },
  { why: 'a symlink already in destDir (pointing outside) is not written through',
    before: (d, o) => symlinkSync(o, join(d, 'pre')), bytes: stream(file('pre/evil')), code: Errno.ENOTDIR },
  { why: 'a file over an existing symlink: O_EXCL|O_NOFOLLOW refuses, the target is untouched',
    before: (d, o) => symlinkSync(join(o, 'victim'), join(d, 'pre')), bytes: stream(file('pre', 'pwned')), code: Errno.EEXIST },
  { why: 'a directory over an existing symlink', before: (d, o) => symlinkSync(o, join(d, 'pre')), bytes: stream(dir('pre')), code: Errno.EEXIST },
  { why: 'character device node', bytes: stream(rec('dev', 0o020644)), code: Errno.EINVAL },
  { why: 'block device node', bytes: stream(rec('dev', 0o060644)), code: Errno.EINVAL },
  { why: 'fifo', bytes: stream(rec('fifo', 0o010644)), code: Errno.EINVAL },
  { why: 'socket', bytes: stream(rec('sock', 0o140644)), code: Errno.EINVAL },
  { why: 'setuid+setgid+sticky file is accepted with those bits stripped',
    bytes: stream(rec('suid', 0o107755, '#!/bin/sh\n')), code: undefined,
    after: (d) => assert.equal(statSync(join(d, 'suid')).mode & 0o7777, 0o755) },
  { why: 'existing file is refused, never overwritten', before: (d) => writeFileSync(join(d, 'exists'), 'original'),
    bytes: stream(file('exists', 'new')), code: Errno.EEXIST,
    after: (d) => assert.equal(readFileSync(join(d, 'exists'), 'utf8'), 'original') },
  { why: 'existing directory is refused, not merged into', before: (d) => mkdirSync(join(d, 'ed')), bytes: stream(dir('ed')), code: Errno.EEXIST },
  { why: 'directory record carrying data', bytes: stream(rec('d', DIR, 'data')), code: Errno.EINVAL },
  { why: 'end marker with garbage (namelen 0, other fields set)', bytes: Buffer.concat([file('f'), hdr(0, REG, 5)]), code: Errno.EINVAL },
  { why: 'nanoseconds out of range', bytes: stream(Buffer.concat([encodeHeader({ namelen: 2, mode: REG, filelen: 0n, atime: 0, atimeNsec: 1e9, mtime: 0, mtimeNsec: 0 }), Buffer.from('f\0')])), code: Errno.EINVAL },
  { why: 'more files than maxFiles; the extra one is not created', opts: { maxFiles: 2 },
    bytes: stream(file('a'), file('b'), file('c')), code: Errno.EDQUOT, after: (d) => assert.ok(!existsSync(join(d, 'c'))) },
  { why: 'more bytes than maxBytes; the file is not created', opts: { maxBytes: 10 },
    bytes: stream(file('a', '12345'), file('b', '123456')), code: Errno.EDQUOT, after: (d) => assert.ok(!existsSync(join(d, 'b'))) },
  { why: 'name not valid UTF-8', bytes: stream(file(Buffer.from([0x61, 0xff, 0xfe]))), code: Errno.EILSEQ },
  { why: 'overlong UTF-8 encoding of "/"', bytes: stream(file(Buffer.from([0x61, 0xc0, 0xaf, 0x62]))), code: Errno.EILSEQ },
  { why: 'newline in a name needs allow-all-names', bytes: stream(file('a\nb')), code: Errno.EILSEQ },
  { why: 'bidi override in a name needs allow-all-names', bytes: stream(file('evil\u202etxt.exe')), code: Errno.EILSEQ },
  { why: 'with allow-all-names a newline is fine', bytes: stream(file('a\nb')), opts: { allowAllNames: true }, code: undefined },
  { why: 'allow-all-names still refuses traversal', bytes: stream(file('../x')), opts: { allowAllNames: true }, code: Errno.EILSEQ },
  { why: 'a file whose parent was never sent', bytes: stream(file('nodir/f')), code: Errno.ENOENT },
];

for (const row of rows) {
  test(`unpack: ${row.why}`, async () => {
    const base = mkdtempSync(join(tmpdir(), 'isola-fc-'));
    const dest = join(base, 'dest');
    const outside = join(base, 'outside');
    mkdirSync(dest);
    mkdirSync(outside);
    try {
      row.before?.(dest, outside);
      const rssBefore = process.memoryUsage().rss;
      const r = await unpackStream(Readable.from([row.bytes]), dest, row.opts);
      assert.equal(r.error?.code, row.code, `got ${JSON.stringify(r.error)}`);
      assert.ok(process.memoryUsage().rss - rssBefore < 64 * 2 ** 20, 'no allocation driven by an untrusted length');
      assert.deepEqual(readdirSync(outside), [], 'nothing may appear outside destDir');
      assert.deepEqual(readdirSync(base).sort(), ['dest', 'outside']);
      if (row.code !== undefined) assert.equal(typeof r.error?.message, 'string');
      row.after?.(dest);
    } finally {
      rmSync(base, { recursive: true, force: true });
    }
  });
}

test('the receiver CRC covers every byte, end marker included', async () => {
  const base = mkdtempSync(join(tmpdir(), 'isola-fc-'));
  try {
    const bytes = stream(dir('d'), file('d/f', 'data'), dir('d'));
    const r = await unpackStream(Readable.from([bytes]), base);
    assert.equal(r.crc32, crc32Update(0, bytes));
    assert.equal(r.files, 3);
    assert.equal(r.lastName, 'd');
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
});
