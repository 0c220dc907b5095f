// npm run bench: a warm qrexec call qube→qube (`test.Echo` of a few bytes), p50/p99 over 200 calls
// made from one process inside the caller, against the floor measured there in the same run:
// starting the same service command locally (`sh -c cat`) with the same input.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Instance } from '../test/integration/harness';
import { report } from './report';

const CALLS = 200;

/** Runs inside the calling qube: the client handshake inline, so only the call itself is timed. */
const DRIVER = `
const net = require('net'); const { spawn } = require('child_process');
const N = ${CALLS}; const hdr = (t, p) => { const b = Buffer.alloc(8 + p.length); b.writeUInt32LE(t, 0); b.writeUInt32LE(p.length, 4); p.copy(b, 8); return b; };
const hello = () => { const p = Buffer.alloc(16); Buffer.from('ISOLAQRX').copy(p); p.writeUInt32LE(1, 8); p.writeUInt32LE(4, 12); return hdr(0x300, p); };
const trigger = () => { const p = Buffer.alloc(64 + 32 + 11); Buffer.from('vault').copy(p); Buffer.from('bench').copy(p, 64); Buffer.from('test.Echo+').copy(p, 96); return hdr(0x212, p); };
function call() { return new Promise((res, rej) => { const t = process.hrtime.bigint(); const s = net.createConnection('/run/qubes/qrexec-client.sock'); let buf = Buffer.alloc(0); let out = ''; let stage = 0;
  s.on('connect', () => { s.write(hello()); s.write(trigger()); });
  s.on('data', (d) => { buf = Buffer.concat([buf, d]); while (buf.length >= 8) { const type = buf.readUInt32LE(0), len = buf.readUInt32LE(4); if (buf.length < 8 + len) return; const p = buf.subarray(8, 8 + len); buf = buf.subarray(8 + len);
    if (type === 0x300) continue; if (type === 0x203) return rej(new Error('refused')); if (type === 0x202) { s.write(hdr(0x190, Buffer.from('ping'))); s.write(hdr(0x190, Buffer.alloc(0))); continue; }
    if (type === 0x191) out += p.toString(); if (type === 0x193) { s.destroy(); if (out !== 'ping') return rej(new Error('bad echo ' + out)); return res(Number(process.hrtime.bigint() - t) / 1e6); } } });
  s.on('error', rej); }); }
function local() { return new Promise((res) => { const t = process.hrtime.bigint(); const c = spawn('/bin/sh', ['-c', 'cat']); let out = ''; c.stdout.on('data', (d) => out += d); c.on('close', () => res(Number(process.hrtime.bigint() - t) / 1e6)); c.stdin.end('ping'); }); }
(async () => { for (let i = 0; i < 10; i++) { await call(); await local(); } const a = [], b = []; for (let i = 0; i < N; i++) { a.push(await call()); b.push(await local()); }
  console.log(JSON.stringify({ calls: a, floor: b })); })().catch((e) => { console.error(e.message); process.exit(1); });
`;

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((x, y) => x - y);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

async function main(): Promise<void> {
  const policyDir = mkdtempSync(path.join(os.tmpdir(), 'isola-bench-policy-'));
  writeFileSync(path.join(policyDir, '30-bench.policy'), 'test.Echo * work vault allow\nqubes.Filecopy * work vault allow\n');
  const inst = new Instance({ env: { ISOLA_POLICY_DIR: policyDir } });
  let result: { calls: number[]; floor: number[] };
  let copy: { copyMs: number; floorMs: number; targetWriteMs: number };
  try {
    await inst.start();
    await inst.installTemplate();
    await inst.ok('qvm-run', '-p', '-u', 'root', 'debian-12', "mkdir -p /etc/qubes-rpc && printf '#!/bin/sh\\nexec cat\\n' > /etc/qubes-rpc/test.Echo && chmod 755 /etc/qubes-rpc/test.Echo");
    await inst.ok('qvm-shutdown', '--wait', 'debian-12');
    await inst.ok('qvm-create', '--label', 'blue', 'work');
    await inst.ok('qvm-create', '--label', 'black', 'vault');
    await inst.ok('qvm-start', 'work');
    await inst.ok('qvm-start', 'vault');
    const r = await inst.cli('qvm-run', ['-p', 'work', 'node'], DRIVER);
    if (r.code !== 0) throw new Error(`driver failed: ${r.stderr}`);
    result = JSON.parse(r.stdout) as { calls: number[]; floor: number[] };
    // 1 GiB qube→qube with qvm-copy-to-vm, against `cat FILE | cat > /dev/null` in the sender, same run.
    const ms = 'echo $(( $(date +%s%N) / 1000000 ))';
    const timed = await inst.ok('qvm-run', '-p', 'work', [
      'head -c 1073741824 /dev/urandom > ~/big.bin && cat ~/big.bin > /dev/null',
      `a=$(${ms}); cat ~/big.bin | cat > /dev/null; b=$(${ms})`,
      `qvm-copy-to-vm --without-progress vault ~/big.bin; c=$(${ms})`,
      'echo "$((c-b)) $((b-a))"; rm ~/big.bin',
    ].join('; '));
    const [copyMs, floorMs] = timed.trim().split(' ').map(Number);
    // Context for the copy: how fast the receiving qube writes a new 1 GiB file at all (no qrexec).
    // The received copy goes first: vault's private volume has Qubes' 2 GiB, and two 1 GiB files do not fit.
    const write = await inst.ok('qvm-run', '-p', 'vault', `rm -rf ~/QubesIncoming; sync; a=$(${ms}); head -c 1073741824 /dev/zero > ~/w.bin; b=$(${ms}); rm ~/w.bin; echo $((b-a))`);
    copy = { copyMs, floorMs, targetWriteMs: Number(write.trim()) };
  } finally {
    await inst.destroy();
    rmSync(policyDir, { recursive: true, force: true });
  }
  const rows = [
    { what: `warm qrexec call work→vault test.Echo (p50 of ${CALLS})`, value: pct(result.calls, 50), floor: pct(result.floor, 50), goal: '≤ 5 ms (Qubes ~260 ms)' },
    { what: `warm qrexec call work→vault test.Echo (p99 of ${CALLS})`, value: pct(result.calls, 99), floor: pct(result.floor, 99), goal: '' },
  ];
  const lines = [['measure', 'value', 'floor: sh -c cat in the caller (same run)', 'ratio', 'goal']];
  for (const x of rows) lines.push([x.what, `${x.value.toFixed(2)} ms`, `${x.floor.toFixed(2)} ms`, `${(x.value / x.floor).toFixed(2)}×`, x.goal]);
  const mbps = (ms: number) => 1073.741824 / (ms / 1000);
  lines.push(['qvm-copy-to-vm of 1 GiB work→vault', `${mbps(copy!.copyMs).toFixed(0)} MB/s`, `cat | cat: ${mbps(copy!.floorMs).toFixed(0)} MB/s`, `${(mbps(copy!.copyMs) / mbps(copy!.floorMs) * 100).toFixed(0)} %`, '≥ 1 GB/s and ≥ 50 % of the floor (Qubes ~18 MB/s)']);
  lines.push(['context: a new 1 GiB file written in vault (head -c 1G /dev/zero > FILE)', `${mbps(copy!.targetWriteMs).toFixed(0)} MB/s`, '', '', 'the receiver\'s ceiling on this machine']);
  report('qrexec', lines, { calls: CALLS, rows, copy: copy! });
}

main().catch((e) => {
  process.stderr.write(`bench: ${(e as Error).message}\n`);
  process.exit(1);
});
