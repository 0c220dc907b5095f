// The newc writer, checked by the reader Linux's own tools agree with: busybox cpio extracts what we wrote.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { lstatSync, mkdtempSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cpioArchive, cpioName, parentDirs, S_IFDIR, S_IFLNK, S_IFREG } from '../../src/backends/vm/cpio';
import { qubeArchive } from '../../src/backends/vm/initramfs';

function extract(archive: Buffer): string {
  const dir = mkdtempSync(join(tmpdir(), 'isola-cpio-test-'));
  const r = spawnSync('busybox', ['cpio', '-i', '-d', '-m'], { cwd: dir, input: archive });
  assert.equal(r.status, 0, `busybox cpio -i: ${r.stderr}`);
  return dir;
}

/** Walks the records back: every header starts on a 4-byte boundary with the newc magic. */
function records(archive: Buffer): { name: string; mode: number; size: number; at: number }[] {
  const out = [];
  let at = 0;
  for (;;) {
    assert.equal(at % 4, 0);
    assert.equal(archive.toString('latin1', at, at + 6), '070701');
    const f = (i: number) => parseInt(archive.toString('latin1', at + 6 + i * 8, at + 14 + i * 8), 16);
    const nameSize = f(11);
    const size = f(6);
    const name = archive.toString('utf8', at + 110, at + 110 + nameSize - 1);
    out.push({ name, mode: f(1), size, at });
    let next = at + 110 + nameSize;
    next += (4 - (next % 4)) % 4;
    next += size;
    next += (4 - (next % 4)) % 4;
    at = next;
    if (name === 'TRAILER!!!') break;
  }
  assert.equal(at, archive.length, 'nothing after the trailer');
  return out;
}

test('busybox cpio extracts the files, modes, owners and symlinks that cpioArchive wrote', () => {
  const big = Buffer.alloc(70001, 7);
  const archive = cpioArchive([
    { name: 'bin', mode: S_IFDIR | 0o755 },
    { name: 'bin/tool', mode: S_IFREG | 0o755, data: Buffer.from('#!/bin/sh\necho hi\n') },
    { name: 'bin/sh', mode: S_IFLNK | 0o777, target: 'tool' },
    { name: '/etc', mode: S_IFDIR | 0o700 },
    { name: 'etc/odd', mode: S_IFREG | 0o640, data: Buffer.from([0, 1, 2]), uid: 1000, gid: 1001 },
    { name: 'etc/empty', mode: S_IFREG | 0o600 },
    { name: 'big', mode: S_IFREG | 0o644, data: big },
  ]);
  const dir = extract(archive);
  try {
    assert.equal(readFileSync(join(dir, 'bin/tool'), 'utf8'), '#!/bin/sh\necho hi\n');
    assert.equal(lstatSync(join(dir, 'bin/tool')).mode & 0o7777, 0o755);
    assert.equal(readlinkSync(join(dir, 'bin/sh')), 'tool');
    assert.equal(lstatSync(join(dir, 'etc')).mode & 0o7777, 0o700);
    const odd = lstatSync(join(dir, 'etc/odd'));
    assert.deepEqual([odd.mode & 0o7777, odd.uid, odd.gid], [0o640, 1000, 1001]);
    assert.deepEqual(readFileSync(join(dir, 'etc/odd')), Buffer.from([0, 1, 2]));
    assert.equal(lstatSync(join(dir, 'etc/empty')).size, 0);
    assert.deepEqual(readFileSync(join(dir, 'big')), big);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const recs = records(archive);
  assert.deepEqual(recs.map((r) => r.name), ['bin', 'bin/tool', 'bin/sh', 'etc', 'etc/odd', 'etc/empty', 'big', 'TRAILER!!!']);
});

test('an empty archive is just the trailer', () => {
  assert.deepEqual(records(cpioArchive([])).map((r) => r.name), ['TRAILER!!!']);
});

test('names that would climb out of the archive root, or are empty, are refused', () => {
  for (const bad of ['', '/', '../etc/passwd', 'a/../../b', 'a//b', './a', 'a\0b']) {
    assert.throws(() => cpioArchive([{ name: bad, mode: S_IFREG | 0o644 }]), /cpio:/, JSON.stringify(bad));
  }
  assert.equal(cpioName('/init'), 'init');
});

test('entries of unsupported types or out-of-range fields are refused', () => {
  assert.throws(() => cpioArchive([{ name: 'dev/null', mode: 0o020666 }]), /unsupported file type/);
  assert.throws(() => cpioArchive([{ name: 'l', mode: S_IFLNK | 0o777 }]), /symlink needs a target/);
  assert.throws(() => cpioArchive([{ name: 'f', mode: S_IFREG, uid: -1 }]), /bad uid/);
  assert.throws(() => cpioArchive([{ name: 'f', mode: S_IFREG, gid: 2 ** 32 }]), /bad gid/);
});

test('parentDirs lists each missing parent once, parents first', () => {
  assert.deepEqual(parentDirs(['a/b/c', 'a/b/d', 'e', 'a/f/g'], new Set(['a'])).map((e) => e.name), ['a/b', 'a/f']);
});

test('a per-qube archive carries its parent directories and extracts on its own', () => {
  const a = qubeArchive([{ name: '/etc/isola/qube.json', mode: 0o600, data: Buffer.from('{"name":"work"}') }]);
  assert.deepEqual(records(a).map((r) => r.name), ['etc', 'etc/isola', 'etc/isola/qube.json', 'TRAILER!!!']);
  const dir = extract(a);
  try {
    assert.equal(readFileSync(join(dir, 'etc/isola/qube.json'), 'utf8'), '{"name":"work"}');
    assert.equal(lstatSync(join(dir, 'etc/isola/qube.json')).mode & 0o7777, 0o600);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
