// The qrexec wire format: encoders and decoders agree, the frame reader gives the same frames however the
// bytes are cut, and every malformed input is a ProtocolError (never a crash, never a huge allocation).

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  AGENT_TO_DAEMON_DATA, DAEMON_TO_AGENT_CONTROL, HELLO_FLAG_CONTROL, HELLO_ONLY, MAX_PAYLOAD, MSG_DATA_EXIT_CODE,
  MSG_DATA_STDERR, MSG_DATA_STDOUT, MSG_EXEC_CMDLINE, MSG_HELLO, MSG_SHUTDOWN, PROTOCOL_VERSION, ProtocolError,
  encodeExecParams, encodeFrame, encodeHello, encodeTriggerService3, encodeU32, parseCmdline, parseExecParams,
  parseExitCode, parseHello, parseTriggerService3, FrameReader, type Frame,
} from '../../src/qrexec';

const hello = encodeFrame(MSG_HELLO, encodeHello(HELLO_FLAG_CONTROL, 'test/1'));
const stream = Buffer.concat([
  hello,
  encodeFrame(MSG_DATA_STDOUT, Buffer.from('hello world\n')),
  encodeFrame(MSG_DATA_STDERR, Buffer.alloc(70_000 % MAX_PAYLOAD, 7)),
  encodeFrame(MSG_DATA_STDOUT, Buffer.alloc(MAX_PAYLOAD, 1)),
  encodeFrame(MSG_DATA_STDOUT),
  encodeFrame(MSG_DATA_EXIT_CODE, encodeU32(3)),
]);

/** What a connection does: HELLO first (magic and version checked), then the data types, then EOF. */
function consume(chunks: Buffer[], after: ReadonlySet<number> = AGENT_TO_DAEMON_DATA): Frame[] {
  const reader = new FrameReader(HELLO_ONLY);
  const frames: Frame[] = [];
  let greeted = false;
  for (const chunk of chunks) {
    reader.push(chunk);
    for (let f = reader.next(); f; f = reader.next()) {
      if (!greeted) {
        parseHello(f.payload);
        greeted = true;
        reader.allow(after);
      }
      frames.push({ type: f.type, payload: Buffer.from(f.payload) });
    }
  }
  reader.end();
  return frames;
}

function cut(buf: Buffer, sizes: number[]): Buffer[] {
  const out: Buffer[] = [];
  for (let off = 0, i = 0; off < buf.length; i++) {
    const n = sizes[i % sizes.length];
    out.push(buf.subarray(off, off + n));
    off += n;
  }
  return out;
}

describe('qrexec frame reader', () => {
  const whole = consume([stream]);

  it('parses a whole stream into its frames in order', () => {
    assert.deepEqual(whole.map((f) => f.type), [MSG_HELLO, MSG_DATA_STDOUT, MSG_DATA_STDERR, MSG_DATA_STDOUT, MSG_DATA_STDOUT, MSG_DATA_EXIT_CODE]);
    assert.equal(whole[1].payload.toString(), 'hello world\n');
    assert.equal(whole[3].payload.length, MAX_PAYLOAD);
    assert.equal(whole[4].payload.length, 0);
    assert.equal(parseExitCode(whole[5].payload), 3);
  });

  it('gives the same frames when fed one byte at a time', () => {
    assert.deepEqual(consume(cut(stream, [1])), whole);
  });

  it('gives the same frames for odd chunk sizes that split headers and payloads', () => {
    for (const sizes of [[2], [3], [5, 7], [7, 1, 13], [9], [8, 4096, 1], [65_537], [65_543, 3]]) {
      assert.deepEqual(consume(cut(stream, sizes)), whole, `chunk sizes ${sizes}`);
    }
  });

  it('refuses an oversized length from the header alone, before any payload arrives', () => {
    const reader = new FrameReader(AGENT_TO_DAEMON_DATA);
    const header = Buffer.alloc(8);
    header.writeUInt32LE(MSG_DATA_STDOUT, 0);
    header.writeUInt32LE(0xffffffff, 4);
    reader.push(header);
    assert.throws(() => reader.next(), ProtocolError);
  });

  it('keeps the payload bounds per type: exactly 64 KiB is accepted, a 4-byte type must be 4 bytes', () => {
    assert.doesNotThrow(() => consume([hello, encodeFrame(MSG_DATA_STDOUT, Buffer.alloc(MAX_PAYLOAD))]));
    assert.throws(() => consume([hello, encodeFrame(MSG_DATA_EXIT_CODE, Buffer.alloc(5))]), ProtocolError);
  });
});

function withHeader(type: number, len: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt32LE(type, 0);
  h.writeUInt32LE(len, 4);
  return Buffer.concat([h, payload]);
}

function helloWith(mutate: (payload: Buffer) => void): Buffer {
  const payload = encodeHello(HELLO_FLAG_CONTROL);
  mutate(payload);
  return encodeFrame(MSG_HELLO, payload);
}

const BAD_INPUT: { name: string; why: string; bytes: Buffer }[] = [
  { name: 'oversized length', why: 'a peer must not make us wait for or buffer more than one 64 KiB chunk', bytes: Buffer.concat([hello, withHeader(MSG_DATA_STDOUT, MAX_PAYLOAD + 1)]) },
  { name: 'length 4 GiB', why: 'len is read before anything is allocated; trusting it would let a qube exhaust isolad memory', bytes: Buffer.concat([hello, withHeader(MSG_DATA_STDOUT, 0xffffffff)]) },
  { name: 'truncated header', why: 'a frame cut short at EOF means the stream lost bytes; output must not be trusted as complete', bytes: Buffer.concat([hello, withHeader(MSG_DATA_STDOUT, 3).subarray(0, 5)]) },
  { name: 'truncated payload', why: 'same: a half frame at EOF is a broken peer, not a short write to pass on', bytes: Buffer.concat([hello, withHeader(MSG_DATA_STDOUT, 10, Buffer.from('abc'))]) },
  { name: 'wrong magic', why: 'anything that is not an Isola qrexec peer (another program on the socket) is refused at once', bytes: helloWith((p) => p.write('QUBESQRX', 0, 'latin1')) },
  { name: 'wrong version', why: 'a peer of another protocol version could mean other things by the same bytes', bytes: helloWith((p) => p.writeUInt32LE(PROTOCOL_VERSION + 1, 8)) },
  { name: 'short HELLO', why: 'magic, version and flags are all required; a guess at missing fields is a guess at trust', bytes: withHeader(MSG_HELLO, 8, Buffer.from('ISOLAQRX')) },
  { name: 'non-ASCII HELLO ident', why: 'the ident ends up in log lines; control characters from a qube must not reach a terminal', bytes: encodeFrame(MSG_HELLO, Buffer.concat([encodeHello(1), Buffer.from('\x1b[2J')])) },
  { name: 'unknown type', why: 'a type this state does not know cannot be handled safely, so it cannot be skipped either', bytes: Buffer.concat([hello, withHeader(0x1234, 0)]) },
  { name: 'control type on a data stream', why: 'an agent must not inject exec or shutdown requests into a client data stream', bytes: Buffer.concat([hello, encodeFrame(MSG_EXEC_CMDLINE, encodeExecParams({ connectDomain: 0, connectPort: 1, cmdline: 'root:id' }))]) },
  { name: 'data before hello', why: 'nothing is believed before magic and version have been checked', bytes: encodeFrame(MSG_DATA_STDOUT, Buffer.from('x')) },
  { name: 'second hello', why: 'HELLO is only legal as the first frame; a renegotiation would be a way to change flags mid-stream', bytes: Buffer.concat([hello, hello]) },
];

describe('qrexec bad input', () => {
  for (const bad of BAD_INPUT) {
    it(`rejects ${bad.name} with a ProtocolError (${bad.why})`, () => {
      assert.throws(() => consume([bad.bytes]), ProtocolError);
      assert.throws(() => consume(cut(bad.bytes, [1])), ProtocolError);
    });
  }
});

describe('qrexec payloads', () => {
  it('round-trips HELLO with its version, flags and ident', () => {
    assert.deepEqual(parseHello(encodeHello(HELLO_FLAG_CONTROL, 'isola-agent/0.1.0')), { version: PROTOCOL_VERSION, flags: 1, ident: 'isola-agent/0.1.0' });
  });

  it('round-trips exec_params with a UTF-8 command line', () => {
    const p = { connectDomain: 0, connectPort: 0xdeadbeef, cmdline: 'user:echo héllo' };
    assert.deepEqual(parseExecParams(encodeExecParams(p)), p);
  });

  it('rejects exec_params without a terminating NUL or with a NUL inside', () => {
    const p = encodeExecParams({ connectDomain: 0, connectPort: 1, cmdline: 'root:id' });
    assert.throws(() => parseExecParams(p.subarray(0, p.length - 1)), ProtocolError);
    const inner = Buffer.from(p);
    inner[10] = 0;
    assert.throws(() => parseExecParams(inner), ProtocolError);
    assert.throws(() => parseExecParams(Buffer.concat([p.subarray(0, 8), Buffer.from([0xc3, 0x28, 0])])), ProtocolError);
  });

  it('splits USER:COMMAND at the first colon and drops a nogui: prefix', () => {
    assert.deepEqual(parseCmdline('DEFAULT:echo a:b'), { user: 'DEFAULT', command: 'echo a:b' });
    assert.deepEqual(parseCmdline('user:nogui:id'), { user: 'user', command: 'id' });
    assert.throws(() => parseCmdline('no colon'), ProtocolError);
    assert.throws(() => parseCmdline('../etc:id'), ProtocolError);
    assert.throws(() => parseCmdline('root:'), ProtocolError);
  });

  it('accepts exit codes 0..255 only', () => {
    assert.equal(parseExitCode(encodeU32(255)), 255);
    assert.throws(() => parseExitCode(encodeU32(256)), ProtocolError);
  });

  it('round-trips MSG_TRIGGER_SERVICE3 and rejects a service name that is not one string', () => {
    const t = { targetDomain: 'vault', requestId: 'SOCKET7', serviceName: 'qubes.Filecopy+' };
    const enc = encodeTriggerService3(t);
    assert.deepEqual(parseTriggerService3(enc), t);
    assert.throws(() => parseTriggerService3(Buffer.concat([enc, Buffer.from('x\0')])), ProtocolError);
  });

  it('lets an agent receive exec and shutdown requests but no data-stream output on its control connection', () => {
    assert.ok(DAEMON_TO_AGENT_CONTROL.has(MSG_SHUTDOWN));
    assert.ok(!DAEMON_TO_AGENT_CONTROL.has(MSG_DATA_STDOUT));
  });
});
