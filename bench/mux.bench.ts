// npm run bench: throughput of the channel layer for hvm qubes (src/qrexec/mux.ts) over a unix socket, the
// agent's end in a worker thread (its own event loop, as the agent's own process), against the same bytes over
// the bare socket in the same run. `--mib N` sets the bytes per run. Writes bench/results/mux-<time>.json.

import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { Mux } from '../src/qrexec/mux';
import { report } from './report';

const ROUNDS = 3;
const CHUNK = 64 * 1024;

interface Job { sock: string; mode: 'raw' | 'mux'; channels: number; bytes: number }

/** The sending end: writes `bytes` on each channel (or on the bare socket), honouring backpressure. */
async function sender(job: Job): Promise<void> {
  const s = net.createConnection(job.sock);
  await once(s, 'connect');
  const buf = Buffer.alloc(CHUNK, 0x5a);
  const pump = async (w: NodeJS.WritableStream & { end: () => void }) => {
    for (let sent = 0; sent < job.bytes; sent += CHUNK) if (!w.write(buf)) await once(w, 'drain');
    w.end();
  };
  if (job.mode === 'raw') return pump(s);
  const mux = new Mux(s, { role: 'open' });
  await once(mux, 'up');
  await Promise.all(Array.from({ length: job.channels }, () => pump(mux.open())));
  await new Promise((r) => setTimeout(r, 200)); // let the last frames leave before the worker exits
}

async function run(job: Omit<Job, 'sock'>, dir: string): Promise<number> {
  const sock = path.join(dir, `s-${job.mode}-${job.channels}`);
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(sock, r));
  const accepted = once(server, 'connection') as Promise<[net.Socket]>;
  const worker = new Worker(__filename, { workerData: { ...job, sock } });
  const [conn] = await accepted;
  const t0 = process.hrtime.bigint();
  let received = 0;
  const total = job.bytes * job.channels;
  await new Promise<void>((resolve) => {
    const count = (c: Buffer) => {
      received += c.length;
      if (received >= total) resolve();
    };
    if (job.mode === 'raw') conn.on('data', count);
    else new Mux(conn, { role: 'accept' }).on('channel', (ch) => ch.on('data', count));
  });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  conn.destroy();
  server.close();
  await worker.terminate();
  return total / seconds / 1e6;
}

async function main(): Promise<void> {
  const i = process.argv.indexOf('--mib');
  const bytes = (i > 0 ? Number(process.argv[i + 1]) : 256) * 1024 * 1024;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'isola-mux-bench-'));
  const cases: Omit<Job, 'sock'>[] = [
    { mode: 'raw', channels: 1, bytes },
    { mode: 'mux', channels: 1, bytes },
    { mode: 'mux', channels: 4, bytes: bytes / 4 },
  ];
  const results: Record<string, number[]> = {};
  try {
    // Alternated rounds: a busy machine slows every case alike.
    for (let r = 0; r < ROUNDS; r++) for (const c of cases) (results[`${c.mode} x${c.channels}`] ??= []).push(await run(c, dir));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const raw = median(results['raw x1']);
  const table = [['case', 'MB/s (median of 3)', 'runs', 'vs bare socket']];
  for (const [name, xs] of Object.entries(results)) {
    table.push([name === 'raw x1' ? 'bare unix socket' : `mux, ${name.slice(5)} channel(s)`, median(xs).toFixed(0), xs.map((x) => x.toFixed(0)).join(' '), (median(xs) / raw).toFixed(2)]);
  }
  report('mux', table, { bytesPerRun: bytes, results });
}

if (isMainThread) void main();
else void sender(workerData as Job).then(() => parentPort?.postMessage('done'));
