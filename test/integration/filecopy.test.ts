// qubes.Filecopy end to end without qubes: the packer streams real trees through a real pipe into a
// receiver process, as qvm-copy and the qubes.Filecopy service will; content, modes and mtimes must survive.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  chmodSync, chownSync, closeSync, lstatSync, mkdirSync, mkdtempSync, openSync, readdirSync, readlinkSync,
  rmSync, statSync, symlinkSync, utimesSync, writeFileSync, writeSync, ftruncateSync, createReadStream, lutimesSync,
} from 'fs';
import { createHash, randomBytes } from 'crypto';
import { spawn, spawnSync } from 'child_process';
import { tmpdir } from 'os';
import { join } from 'path';
import { PassThrough, Transform } from 'stream';
import { packPaths, FilecopyError, unpackStream, writeResult, Errno, type UnpackOptions } from '../../src/agent/filecopy';

const UNPACK_JS = join(__dirname, '../../src/agent/filecopy/unpack.js');
// The receiver as the qubes.Filecopy service will run it: its own process, stream on stdin, reply on stdout.
const CHILD = `
const { unpackStream, writeResult } = require(${JSON.stringify(UNPACK_JS)});
const base = process.memoryUsage().rss; let peak = base;
const iv = setInterval(() => { peak = Math.max(peak, process.memoryUsage().rss); }, 20);
unpackStream(process.stdin, process.argv[1], JSON.parse(process.argv[2])).then(async (r) => {
  clearInterval(iv);
  await writeResult(process.stdout, r);
  process.stderr.write(JSON.stringify({ ...r, rssGrowth: peak - base }));
});`;

async function copyViaChild(paths: string[], dest: string, opts: UnpackOptions = {}) {
  const child = spawn(process.execPath, ['-e', CHILD, dest, JSON.stringify(opts)], { stdio: ['pipe', 'pipe', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d) => { err += d; });
  const exited = new Promise<void>((res) => child.on('close', () => res()));
  const t0 = process.hrtime.bigint();
  try {
    const sent = await packPaths(paths, child.stdin, { reply: child.stdout });
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    return { sent, seconds, receiver: async () => { await exited; return JSON.parse(err); } };
  } finally {
    child.stdin.end();
    await exited;
  }
}

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'isola-fcint-'));
}

const sha256 = (p: string) => new Promise<string>((res, rej) => {
  const h = createHash('sha256');
  createReadStream(p).on('data', (d) => h.update(d)).on('end', () => res(h.digest('hex'))).on('error', rej);
});

/** Everything a copy must keep, per relative path. */
async function describe(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (abs: string, rel: string): Promise<void> => {
    const st = lstatSync(abs);
    const mtime = Math.round(st.mtimeMs);
    const mode = (st.mode & 0o777).toString(8);
    if (st.isSymbolicLink()) out[rel] = `link ${readlinkSync(abs)} ${mtime}`;
    else if (st.isFile()) out[rel] = `file ${mode} ${mtime} ${await sha256(abs)}`;
    else {
      out[rel] = `dir ${mode} ${mtime}`;
      for (const n of readdirSync(abs)) await walk(join(abs, n), `${rel}/${n}`);
    }
  };
  await walk(root, '.');
  return out;
}

test('a tree with odd names, modes, mtimes and symlinks arrives identical', async () => {
  const base = tmp();
  try {
    const src = join(base, 'src', 'my tree');
    mkdirSync(join(src, 'nested/deeper/deepest'), { recursive: true });
    writeFileSync(join(src, 'with space.txt'), 'spaces');
    writeFileSync(join(src, 'ünïcødé ✓ 日本.txt'), 'unicode');
    writeFileSync(join(src, '-leading-dash'), 'dash');
    writeFileSync(join(src, '--rf'), 'dashes');
    writeFileSync(join(src, 'empty'), '');
    writeFileSync(join(src, 'nested/deeper/deepest/blob.bin'), randomBytes(3 * 1024 * 1024 + 7));
    writeFileSync(join(src, 'script.sh'), '#!/bin/sh\necho hi\n', { mode: 0o755 });
    writeFileSync(join(src, 'suid'), 'x');
    chmodSync(join(src, 'suid'), 0o4755);
    writeFileSync(join(src, 'readonly'), 'ro');
    chmodSync(join(src, 'readonly'), 0o444);
    symlinkSync('nested/deeper', join(src, 'link-to-dir'));
    symlinkSync('../../empty', join(src, 'nested/deeper/up-link'));
    lutimesSync(join(src, 'link-to-dir'), 1_500_000_000, 1_500_000_000);
    if (process.getuid?.() === 0) {
      // As root the sender reads files it does not own; the receiver makes them its own.
      writeFileSync(join(src, 'nobodys'), 'private');
      chmodSync(join(src, 'nobodys'), 0o600);
      chownSync(join(src, 'nobodys'), 65534, 65534);
    }
    let t = 1_400_000_000;
    for (const p of ['with space.txt', 'empty', 'nested/deeper/deepest/blob.bin', 'script.sh']) utimesSync(join(src, p), t, t += 1000.25);
    chmodSync(join(src, 'nested/deeper'), 0o750);
    for (const d of ['nested/deeper/deepest', 'nested/deeper', 'nested', '.']) utimesSync(join(src, d), t, t += 1000);
    const dest = join(base, 'dest');
    mkdirSync(dest);
    const { sent, receiver } = await copyViaChild([src], dest);
    const got = await receiver();
    assert.equal(got.error, undefined);
    assert.equal(got.crc32, sent.crc32);
    const expected = await describe(src);
    assert.deepEqual(await describe(join(dest, 'my tree')), expected);
    assert.equal(statSync(join(dest, 'my tree/suid')).mode & 0o7777, 0o755);
    if (process.getuid?.() === 0) assert.equal(statSync(join(dest, 'my tree/nobodys')).uid, 0);
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
});

test('names Qubes refuses need allow-all-names; the sender gets EILSEQ and the name', async () => {
  const base = tmp();
  try {
    const src = join(base, 'odd');
    mkdirSync(src);
    writeFileSync(join(src, 'new\nline'), 'nl');
    mkdirSync(join(base, 'd1'));
    await assert.rejects(copyViaChild([src], join(base, 'd1')), (e: FilecopyError) =>
      e.code === Errno.EILSEQ && e.lastName === 'odd/new\nline' && /allow-all-names/.test(e.message) && !e.message.includes('\n'));
    mkdirSync(join(base, 'd2'));
    await copyViaChild([src], join(base, 'd2'), { allowAllNames: true });
    assert.equal(readdirSync(join(base, 'd2/odd'))[0], 'new\nline');
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
});

test('sender refuses fifos and top-level symlinks clearly; ignoreSymlinks skips links', async () => {
  const base = tmp();
  try {
    mkdirSync(join(base, 't'));
    spawnSync('mkfifo', [join(base, 't', 'pipe')]);
    const sink = new PassThrough();
    sink.resume();
    await assert.rejects(packPaths([join(base, 't')], sink), /is a fifo; only regular files, directories and symlinks/);
    symlinkSync('t', join(base, 'top-link'));
    await assert.rejects(packPaths([join(base, 'top-link')], sink), /is a symlink/);
    const r = await packPaths([join(base, 'top-link')], sink, { ignoreSymlinks: true });
    assert.equal(r.files, 0);
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
});

test('a corrupted byte in the middle is caught by the CRC and reported to the sender', async () => {
  const base = tmp();
  try {
    writeFileSync(join(base, 'data'), randomBytes(1 << 20));
    const dest = join(base, 'dest');
    mkdirSync(dest);
    let seen = 0;
    const corrupt = new Transform({
      transform(chunk: Buffer, _e, cb) {
        const at = 500_000 - seen;
        if (at >= 0 && at < chunk.length) { chunk = Buffer.from(chunk); chunk[at] ^= 0x40; }
        seen += chunk.length;
        cb(null, chunk);
      },
    });
    const reply = new PassThrough();
    const receiving = unpackStream(corrupt, dest).then((r) => writeResult(reply, r));
    const wire = new PassThrough();
    wire.pipe(corrupt);
    await assert.rejects(packPaths([join(base, 'data')], wire, { reply }), /corrupted in transit: CRC32/);
    await receiving;
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
});

test('a refusal in the middle of a big file stops the sender at once (no deadlock)', async () => {
  const base = tmp();
  try {
    const fd = openSync(join(base, 'big'), 'w');
    ftruncateSync(fd, 256 * 2 ** 20);
    closeSync(fd);
    mkdirSync(join(base, 'dest'));
    writeFileSync(join(base, 'dest', 'big'), 'already here');
    const wire = new PassThrough();
    const reply = new PassThrough();
    // The receiver answers and then stops reading, as a real one exits.
    unpackStream(wire, join(base, 'dest')).then((r) => writeResult(reply, r));
    await assert.rejects(packPaths([join(base, 'big')], wire, { reply }), (e: FilecopyError) =>
      e.code === Errno.EEXIST && e.lastName === 'big' && /already exists/.test(e.message));
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
});

function timeShell(cmd: string, file: string): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync('sh', ['-c', cmd, 'sh', file], { stdio: 'ignore' });
  assert.equal(r.status, 0);
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

test('1 GiB file through a pipe: sha256 equal, receiver memory bounded, speed vs cat', async () => {
  const base = tmp();
  try {
    const src = join(base, 'big.img');
    const size = 2 ** 30;
    const fd = openSync(src, 'w');
    ftruncateSync(fd, size);  // sparse, with real data sprinkled so the hash means something
    for (let i = 0; i < 64; i++) writeSync(fd, randomBytes(64 * 1024), 0, 64 * 1024, Math.floor((i * size) / 64));
    closeSync(fd);
    const dest = join(base, 'dest');
    mkdirSync(dest);
    const parentBase = process.memoryUsage().rss;
    const { sent, seconds, receiver } = await copyViaChild([src], dest);
    const got = await receiver();
    const parentGrowth = process.memoryUsage().rss - parentBase;
    assert.equal(got.error, undefined);
    assert.equal(got.bytes, size);
    assert.equal(await sha256(join(dest, 'big.img')), await sha256(src));
    assert.ok(got.rssGrowth < 200 * 2 ** 20, `receiver rss grew ${got.rssGrowth}`);
    assert.ok(parentGrowth < 200 * 2 ** 20, `sender rss grew ${parentGrowth}`);
    const catSeconds = timeShell('cat "$1" > /dev/null', src);
    const catCatSeconds = timeShell('cat "$1" | cat > /dev/null', src);
    const mbps = (s: number) => (size / 1e6 / s).toFixed(0);
    const line = `filecopy 1 GiB pipe: ${mbps(seconds)} MB/s (${seconds.toFixed(2)} s); cat FILE > /dev/null: ${mbps(catSeconds)} MB/s; `
      + `cat FILE | cat > /dev/null: ${mbps(catCatSeconds)} MB/s; receiver rss growth ${(got.rssGrowth / 2 ** 20).toFixed(0)} MiB`;
    console.log(line);
    assert.ok(sent.bytes > size);
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
});
