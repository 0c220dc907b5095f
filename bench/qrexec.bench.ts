// npm run bench: a warm qrexec call qube→qube (`test.Echo` of a few bytes), p50/p99 over 200 calls
// made from one process inside the caller, against the floor measured there in the same run:
// starting the same service command locally (`sh -c cat`) with the same input; and qvm-copy-to-vm
// throughput. For the pairs sandbox→sandbox (the baseline), sandbox→hvm and hvm→hvm, in the same run.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Instance } from '../test/integration/harness';
import { report } from './report';

const CALLS = 200;
/** hvm qubes copy less: under TCG their /dev/urandom and disks are far slower than the sandbox's. */
const COPY_MIB = { sandbox: 1024, hvm: 64 };

/** Runs inside the calling qube: the client handshake inline, so only the call itself is timed. */
const driver = (target: string) => `
const net = require('net'); const { spawn } = require('child_process');
const N = ${CALLS}; const hdr = (t, p) => { const b = Buffer.alloc(8 + p.length); b.writeUInt32LE(t, 0); b.writeUInt32LE(p.length, 4); p.copy(b, 8); return b; };
const hello = () => { const p = Buffer.alloc(16); Buffer.from('ISOLAQRX').copy(p); p.writeUInt32LE(1, 8); p.writeUInt32LE(4, 12); return hdr(0x300, p); };
const trigger = () => { const p = Buffer.alloc(64 + 32 + 11); Buffer.from('${target}').copy(p); Buffer.from('bench').copy(p, 64); Buffer.from('test.Echo+').copy(p, 96); return hdr(0x212, p); };
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

interface Pair {
  from: string;
  to: string;
  label: string;
}

interface PairResult extends Pair {
  calls: number[];
  floor: number[];
  copyMiB: number;
  copyMs: number;
  floorMs: number;
  targetWriteMs: number;
}

async function measurePair(inst: Instance, pair: Pair, copyMiB: number): Promise<PairResult> {
  const { from, to } = pair;
  const r = await inst.cli('qvm-run', ['-p', from, 'node'], driver(to));
  if (r.code !== 0) throw new Error(`driver ${from}→${to} failed: ${r.stderr}`);
  const result = JSON.parse(r.stdout) as { calls: number[]; floor: number[] };
  // qvm-copy-to-vm FILE, against `cat FILE | cat > /dev/null` in the sender, same run.
  const ms = 'echo $(( $(date +%s%N) / 1000000 ))';
  const bytes = copyMiB * 1048576;
  const timed = await inst.ok('qvm-run', '-p', from, [
    `head -c ${bytes} /dev/urandom > ~/big.bin && cat ~/big.bin > /dev/null`,
    `a=$(${ms}); cat ~/big.bin | cat > /dev/null; b=$(${ms})`,
    `qvm-copy-to-vm --without-progress ${to} ~/big.bin; c=$(${ms})`,
    'echo "$((c-b)) $((b-a))"; rm ~/big.bin',
  ].join('; '));
  const [copyMs, floorMs] = timed.trim().split(' ').map(Number);
  // Context for the copy: how fast the receiving qube writes a new file of that size at all (no qrexec).
  const write = await inst.ok('qvm-run', '-p', to, `rm -rf ~/QubesIncoming; sync; a=$(${ms}); head -c ${bytes} /dev/zero > ~/w.bin; b=$(${ms}); rm ~/w.bin; echo $((b-a))`);
  return { ...pair, ...result, copyMiB, copyMs, floorMs, targetWriteMs: Number(write.trim()) };
}

async function main(): Promise<void> {
  const policyDir = mkdtempSync(path.join(os.tmpdir(), 'isola-bench-policy-'));
  writeFileSync(path.join(policyDir, '30-bench.policy'), 'test.Echo * @anyvm @anyvm allow\nqubes.Filecopy * @anyvm @anyvm allow\n');
  const inst = new Instance({ env: { ISOLA_POLICY_DIR: policyDir } });
  const pairs: Pair[] = [
    { from: 'work', to: 'vault', label: 'sandbox→sandbox' },
    { from: 'work', to: 'hvault', label: 'sandbox→hvm' },
    { from: 'hwork', to: 'hvault', label: 'hvm→hvm' },
  ];
  const results: PairResult[] = [];
  try {
    await inst.start();
    await inst.installTemplate();
    await inst.ok('qvm-run', '-p', '-u', 'root', 'debian-12', "mkdir -p /etc/qubes-rpc && printf '#!/bin/sh\\nexec cat\\n' > /etc/qubes-rpc/test.Echo && chmod 755 /etc/qubes-rpc/test.Echo");
    await inst.ok('qvm-shutdown', '--wait', 'debian-12');
    for (const [name, label, mode] of [['work', 'blue', 'sandbox'], ['vault', 'black', 'sandbox'], ['hwork', 'blue', 'hvm'], ['hvault', 'black', 'hvm']]) {
      await inst.ok('qvm-create', '--label', label, name);
      await inst.ok('qvm-prefs', name, 'virt_mode', mode);
      await inst.ok('qvm-start', name);
    }
    for (const p of pairs) results.push(await measurePair(inst, p, p.label === 'sandbox→sandbox' ? COPY_MIB.sandbox : COPY_MIB.hvm));
  } finally {
    await inst.destroy();
    rmSync(policyDir, { recursive: true, force: true });
  }
  const base = results[0];
  const lines = [['measure', 'value', 'floor: sh -c cat in the caller (same run)', 'vs sandbox→sandbox', 'goal']];
  const rows = [];
  for (const x of results) {
    for (const p of [50, 99]) {
      const v = pct(x.calls, p);
      rows.push({ what: `${x.label} qrexec call p${p}`, value: v, floor: pct(x.floor, p) });
      lines.push([`warm qrexec call ${x.from}→${x.to} test.Echo (${x.label}, p${p} of ${CALLS})`, `${v.toFixed(2)} ms`, `${pct(x.floor, p).toFixed(2)} ms`,
        x === base ? 'baseline' : `${(v / pct(base.calls, p)).toFixed(2)}×`, x === base && p === 50 ? '≤ 5 ms (Qubes ~260 ms)' : '']);
    }
  }
  const mbps = (x: PairResult, ms: number) => (x.copyMiB * 1.048576) / (ms / 1000);
  for (const x of results) {
    lines.push([`qvm-copy-to-vm of ${x.copyMiB} MiB ${x.from}→${x.to} (${x.label})`, `${mbps(x, x.copyMs).toFixed(0)} MB/s`, `cat | cat: ${mbps(x, x.floorMs).toFixed(0)} MB/s`,
      x === base ? 'baseline' : `${((mbps(x, x.copyMs) / mbps(base, base.copyMs)) * 100).toFixed(0)} %`, x === base ? '≥ 1 GB/s and ≥ 50 % of the floor (Qubes ~18 MB/s)' : '']);
    lines.push([`context: a new ${x.copyMiB} MiB file written in ${x.to}`, `${mbps(x, x.targetWriteMs).toFixed(0)} MB/s`, '', '', "the receiver's ceiling on this machine"]);
  }
  report('qrexec', lines, { calls: CALLS, rows, pairs: results.map(({ calls, floor, ...rest }) => ({ ...rest, callsP50: pct(calls, 50), callsP99: pct(calls, 99) })) });
}

main().catch((e) => {
  process.stderr.write(`bench: ${(e as Error).message}\n`);
  process.exit(1);
});
