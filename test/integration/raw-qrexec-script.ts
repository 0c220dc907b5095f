// A hostile qrexec client that runs inside a qube (plain Node, no Isola code): it writes the
// frames of src/qrexec/protocol.ts by hand, so it can put anything in any field and misbehave
// after its trigger. Installed with `cat > /tmp/rq.js`, run as `node /tmp/rq.js MODE ...`.
//
//   hold N TARGET SERVICE EXTRA HOLD_MS  N calls, each followed by EXTRA junk bytes, then held open
//   calls N TARGET SERVICE              N calls (50 at a time), each closed after isolad's answer
//   spoof TARGET SERVICE NAME           one call naming NAME in every field a caller can write
//   connect PATH...                     tries to connect to each unix socket path
// Writes its result to stdout and (hold: when every call was answered) to /tmp/rq.status.

export const RAW_QREXEC_SCRIPT = String.raw`
const net = require('net');
const fs = require('fs');
const SOCK = '/run/qubes/qrexec-client.sock';
const frame = (type, payload) => { const h = Buffer.alloc(8); h.writeUInt32LE(type, 0); h.writeUInt32LE(payload.length, 4); return Buffer.concat([h, payload]); };
const hello = (ident) => { const id = Buffer.from(ident, 'latin1'); const b = Buffer.alloc(16 + id.length); b.write('ISOLAQRX', 0, 'latin1'); b.writeUInt32LE(1, 8); b.writeUInt32LE(4, 12); id.copy(b, 16); return frame(0x300, b); };
const trigger = (target, id, svc) => { const name = Buffer.from(svc); const b = Buffer.alloc(96 + name.length + 1); Buffer.from(target).copy(b, 0, 0, 63); Buffer.from(id).copy(b, 64, 0, 31); name.copy(b, 96); return frame(0x212, b); };
const stdin = (data) => frame(0x190, data);
const junk = (n) => { const parts = []; for (let left = n; left > 0; left -= 65536) parts.push(stdin(Buffer.alloc(Math.min(65536, left), 0x41))); return Buffer.concat(parts); };

// One call: resolves with 'refused', 'connect' or 'closed' (isolad hung up without a decision).
function call(target, svc, opts) {
  return new Promise((resolve) => {
    const s = net.createConnection(SOCK);
    let buf = Buffer.alloc(0); let done = false;
    const finish = (what) => { if (done) return; done = true; resolve({ what, sock: s }); if (!opts.hold) s.destroy(); };
    s.on('error', () => finish('closed'));
    s.on('close', () => finish('closed'));
    s.on('connect', () => {
      s.write(Buffer.concat([hello(opts.ident || 'qrexec-client-vm'), trigger(target, opts.id || String(Math.random()).slice(2, 18), svc)]));
      if (opts.extra) s.write(junk(opts.extra));
    });
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 8 && buf.length >= 8 + buf.readUInt32LE(4)) {
        const type = buf.readUInt32LE(0); buf = buf.subarray(8 + buf.readUInt32LE(4));
        if (type === 0x203) finish('refused');
        if (type === 0x202) finish('connect');
      }
    });
  });
}

async function main() {
  const [mode, ...a] = process.argv.slice(2);
  if (mode === 'hold') {
    const [n, target, svc, extra, holdMs] = [Number(a[0]), a[1], a[2], Number(a[3]), Number(a[4])];
    const results = [];
    for (let i = 0; i < n; i += 50) results.push(...await Promise.all(Array.from({ length: Math.min(50, n - i) }, () => call(target, svc, { extra, hold: true }))));
    const count = (w) => results.filter((r) => r.what === w).length;
    const line = 'answered=' + results.length + ' refused=' + count('refused') + ' closed=' + count('closed');
    fs.writeFileSync('/tmp/rq.status', line + '\n');
    await new Promise((r) => setTimeout(r, holdMs));
    console.log(line);
    process.exit(0);
  }
  if (mode === 'calls') {
    const [n, target, svc] = [Number(a[0]), a[1], a[2]];
    const seen = {};
    for (let i = 0; i < n; i += 50) for (const r of await Promise.all(Array.from({ length: Math.min(50, n - i) }, () => call(target, svc, {})))) seen[r.what] = (seen[r.what] || 0) + 1;
    console.log(JSON.stringify(seen));
    process.exit(0);
  }
  if (mode === 'spoof') {
    const [target, svc, name] = a;
    const r = await call(target, svc, { ident: name, id: name, hold: true });
    console.log(r.what);
    process.exit(0);
  }
  if (mode === 'connect') {
    for (const p of a) {
      const r = await new Promise((resolve) => {
        const s = net.createConnection(p);
        s.on('connect', () => (s.destroy(), resolve('connected')));
        s.on('error', (e) => resolve(e.code));
      });
      console.log(p + ' ' + r);
    }
    process.exit(0);
  }
  console.error('unknown mode ' + mode);
  process.exit(2);
}
main();
`;
