// The channel layer's wire format: TS encoders and decoder agree with each other and with src/native/mux/mux.c
// (each decodes what the other encoded), bad headers are refused from the header alone, and mux.c survives fuzzing.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { describe, it } from 'node:test';
import {
  MUX_CLOSE, MUX_DATA, MUX_EOF, MUX_MAX_DATA, MUX_OPEN, MUX_RESET, MUX_WINDOW_ADJUST, MuxDecoder,
  MuxProtocolError, RESET_FLAG_UP, checkMuxHeader, encodeBare, encodeDataHeader, encodeMuxHeader, encodeReset,
  encodeWindow, type MuxMessage,
} from '../../src/qrexec/mux-codec';

const TOOL = path.resolve(__dirname, '../../native-test/mux-tool');
const FUZZ = path.resolve(__dirname, '../../native-test/mux-fuzz');
/** mux-tool's sessions are fixed: 0xC0.. first, 0xD0.. after a reset. */
const C_SESSION = Buffer.from(Array.from({ length: 16 }, (_, i) => 0xc0 + i));
const C_SESSION_2 = Buffer.from(Array.from({ length: 16 }, (_, i) => 0xd0 + i));

function decodeAll(bytes: Buffer, piece = 1): MuxMessage[] {
  const d = new MuxDecoder();
  const out: MuxMessage[] = [];
  for (let off = 0; off < bytes.length; off += piece) {
    d.push(bytes.subarray(off, off + piece));
    for (let m = d.next(); m; m = d.next()) out.push(m);
  }
  return out;
}

const dataOf = (m: MuxMessage) => (m.type === MUX_DATA ? Buffer.concat(m.parts) : null);

describe('mux codec', () => {
  it('decodes what it encodes, whatever the read boundaries', () => {
    const s = randomBytes(16), e = randomBytes(16), payload = randomBytes(MUX_MAX_DATA);
    const stream = Buffer.concat([
      randomBytes(50), // a stream picked up mid-frame: ignored until the first RESET
      encodeReset(s, e, RESET_FLAG_UP), encodeBare(MUX_OPEN, 7), encodeDataHeader(7, payload.length), payload,
      encodeWindow(7, 12345), encodeBare(MUX_EOF, 7), encodeBare(MUX_CLOSE, 7),
    ]);
    for (const piece of [1, 5, 13, 4096, stream.length]) {
      const got = decodeAll(stream, piece);
      assert.deepEqual(got.map((m) => [m.type, m.channel]), [[MUX_RESET, 0], [MUX_OPEN, 7], [MUX_DATA, 7], [MUX_WINDOW_ADJUST, 7], [MUX_EOF, 7], [MUX_CLOSE, 7]]);
      const r = got[0];
      assert.ok(r.type === MUX_RESET && r.session.equals(s) && r.echo.equals(e) && r.flags === RESET_FLAG_UP);
      assert.ok(dataOf(got[2])!.equals(payload));
      assert.ok(got[3].type === MUX_WINDOW_ADJUST && got[3].increment === 12345);
    }
  });

  it('refuses bad headers from the header alone', () => {
    const bad: [number, number, number, string][] = [
      [MUX_DATA, 1, MUX_MAX_DATA + 1, 'larger than the v1 chunk: would make us hold more than one frame'],
      [MUX_DATA, 1, 0, 'an empty DATA means nothing (EOF is its own type)'],
      [MUX_DATA, 0, 10, 'channel 0 is the stream itself'],
      [MUX_RESET, 3, 48, 'RESET belongs to the stream, not a channel'],
      [MUX_RESET, 0, 47, 'RESET has one fixed layout'],
      [MUX_OPEN, 1, 1, 'OPEN carries nothing'],
      [MUX_WINDOW_ADJUST, 1, 8, 'WINDOW is one u32'],
      [0, 1, 0, 'type 0 is not a type'],
      [7, 1, 0, 'unknown types cannot be skipped safely'],
      [0xffffffff, 0xffffffff, 0xffffffff, 'all ones'],
    ];
    for (const [type, ch, len, why] of bad) {
      assert.throws(() => checkMuxHeader(type, ch, len), MuxProtocolError, why);
      const d = new MuxDecoder();
      d.push(Buffer.concat([encodeReset(randomBytes(16), null), encodeMuxHeader(type, ch, len)]));
      assert.equal(d.next()!.type, MUX_RESET);
      assert.throws(() => d.next(), MuxProtocolError, why);
      assert.ok(d.isHunting, `after "${why}" the decoder hunts for the next RESET`);
    }
  });

  it('never throws anything but a protocol error, and holds at most a frame, on random input', () => {
    for (let i = 0; i < 3000; i++) {
      const d = new MuxDecoder();
      const junk = randomBytes(1 + (i % 300));
      d.push(Buffer.concat([encodeReset(randomBytes(16), null), junk]));
      try {
        while (d.next());
      } catch (e) {
        assert.ok(e instanceof MuxProtocolError, String(e));
      }
      assert.ok(d.buffered <= MUX_MAX_DATA + 12);
    }
  });
});

describe('mux.c against the TS codec', () => {
  it('mux.c decodes a session the TS encoder wrote', () => {
    const peer = randomBytes(16);
    const big = randomBytes(70_000);
    const stream = Buffer.concat([
      encodeReset(peer, C_SESSION, RESET_FLAG_UP), encodeBare(MUX_OPEN, 1),
      encodeDataHeader(1, MUX_MAX_DATA), big.subarray(0, MUX_MAX_DATA), encodeDataHeader(1, big.length - MUX_MAX_DATA), big.subarray(MUX_MAX_DATA),
      encodeWindow(1, 0), encodeBare(MUX_EOF, 1), encodeBare(MUX_OPEN, 2), encodeDataHeader(2, 1), Buffer.from('x'), encodeBare(MUX_CLOSE, 2),
      encodeDataHeader(7, 3), Buffer.from('abc'), encodeDataHeader(1, 10), randomBytes(10),
      encodeMuxHeader(MUX_DATA, 1, MUX_MAX_DATA + 1),
    ]);
    const r = spawnSync(TOOL, ['decode', 'accept'], { input: stream, maxBuffer: 16 << 20 });
    assert.equal(r.status, 0, r.stderr.toString());
    const lines = r.stdout.toString().trim().split('\n');
    const events = lines.filter((l) => !l.startsWith('DATA ') && !l.startsWith('OUT ')).map((l) => l.split(' ').slice(0, 2).join(' '));
    assert.deepEqual(events, ['UP 0', 'OPEN 1', 'CREDIT 1', 'EOF 1', 'OPEN 2', 'CLOSED 2', 'IGNORED 7', 'DROPPED 1', 'RESET 0']);
    const data1 = lines.filter((l) => l.startsWith('DATA 1 ')).map((l) => l.split(' ')[2]).join('');
    assert.equal(data1, big.toString('hex'), 'channel 1 got every byte, in order, across pieces');
    assert.deepEqual(lines.filter((l) => l.startsWith('DATA 2 ')).map((l) => l.split(' ')[2]), ['78']);
    assert.match(lines.find((l) => l.startsWith('DROPPED'))!, /DATA after EOF/);
    assert.match(lines.find((l) => l.startsWith('RESET'))!, /DATA longer than 65536 bytes/);
    // What mux.c sent back, read by the TS decoder: its RESET confirming ours, CLOSE 1, a fresh RESET.
    const out = decodeAll(Buffer.from(lines.filter((l) => l.startsWith('OUT ')).map((l) => l.slice(4)).join(''), 'hex'));
    assert.deepEqual(out.map((m) => [m.type, m.channel]), [[MUX_RESET, 0], [MUX_CLOSE, 1], [MUX_RESET, 0]]);
    const [first, , second] = out;
    assert.ok(first.type === MUX_RESET && first.session.equals(C_SESSION) && first.echo.equals(peer) && first.flags === RESET_FLAG_UP);
    assert.ok(second.type === MUX_RESET && second.session.equals(C_SESSION_2) && second.echo.equals(Buffer.alloc(16)) && second.flags === 0);
  });

  it('the TS decoder reads a session mux.c encoded', () => {
    const r = spawnSync(TOOL, ['encode'], { maxBuffer: 16 << 20 });
    assert.equal(r.status, 0, r.stderr.toString());
    const got = decodeAll(r.stdout, 4000);
    assert.deepEqual(got.map((m) => [m.type, m.channel]), [[MUX_RESET, 0], [MUX_OPEN, 1], [MUX_DATA, 1], [MUX_DATA, 1], [MUX_EOF, 1], [MUX_OPEN, 2], [MUX_CLOSE, 2]]);
    assert.ok(got[0].type === MUX_RESET && got[0].session.equals(C_SESSION) && got[0].echo.equals(Buffer.alloc(16)));
    const payload = Buffer.concat([dataOf(got[2])!, dataOf(got[3])!]);
    assert.equal(payload.length, 100_000);
    assert.ok(payload.every((b, i) => b === ((i * 7) & 0xff)));
  });

  it('two mux.c ends come up, use a window to its end and get it granted back, and see each other\'s reset', () => {
    const r = spawnSync(TOOL, ['selftest'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, 'selftest ok\n');
  });

  it('mux.c\'s decoder survives 5 s of random and mutated input under ASan and UBSan (mux-decoder-fuzz)', { timeout: 60_000 }, () => {
    const seed = String(1 + Math.floor(Math.random() * 1e9));
    const r = spawnSync(FUZZ, ['5', seed], { encoding: 'utf8' });
    assert.equal(r.status, 0, `seed ${seed}: ${r.stderr}`);
    assert.match(r.stdout, /mux-fuzz: \d+ inputs in 5\.0 s, seed \d+, no invariant broken/);
  });
});
