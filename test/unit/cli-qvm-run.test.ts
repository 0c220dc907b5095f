// qvm-run's client side: what it sends (admin.vm.Run header, one exec frame), how it relays
// DATA frames and exit codes, and its usage errors. isolad is a small fake socket server here.

import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { test } from 'node:test';
import { run, shellJoin } from '../../src/cli/commands/qvm-run';
import { encodeException } from '../../src/core/admin-wire';
import { encodeFrame, encodeU32, MSG_DATA_EXIT_CODE, MSG_DATA_STDERR, MSG_DATA_STDOUT, parseExecParams } from '../../src/qrexec/protocol';
import { FakeClient } from './cli-fake-client';

interface Seen {
  header: string;
  frameType: number;
  cmdline: string;
  stdin: Buffer;
}

/** A fake isolad: records the request, answers with `reply` (or an exception) and the frames. */
async function fakeIsolad(answer: (seen: Seen, sock: net.Socket) => void): Promise<{ path: string; seen: Promise<Seen>; close: () => void }> {
  const p = path.join(mkdtempSync(path.join(os.tmpdir(), 'qvm-run-')), 's.sock');
  let resolveSeen!: (s: Seen) => void;
  const seen = new Promise<Seen>((r) => (resolveSeen = r));
  const server = net.createServer((sock) => {
    let buf = Buffer.alloc(0);
    let done = false;
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      const nul = buf.indexOf(0);
      if (done || nul < 0 || buf.length < nul + 1 + 8) return;
      const type = buf.readUInt32LE(nul + 1);
      const len = buf.readUInt32LE(nul + 5);
      if (buf.length < nul + 9 + len) return;
      done = true;
      const s = { header: buf.subarray(0, nul).toString(), frameType: type, cmdline: parseExecParams(buf.subarray(nul + 9, nul + 9 + len)).cmdline, stdin: buf.subarray(nul + 9 + len) };
      resolveSeen(s);
      answer(s, sock);
    });
  });
  await new Promise<void>((r) => server.listen(p, r));
  return { path: p, seen, close: () => server.close() };
}

function deps(sockPath: string) {
  const out = new PassThrough();
  const err = new PassThrough();
  let stdout = '';
  let stderr = '';
  out.on('data', (d) => (stdout += d));
  err.on('data', (d) => (stderr += d));
  let printed = '';
  return {
    d: {
      client: new FakeClient(),
      stdout: (s: string) => void (printed += s),
      stderr: (s: string) => void (printed += s),
      isTTY: false,
      connect: () => new Promise<net.Socket>((res) => { const s = net.createConnection(sockPath, () => res(s)); }),
      stdin: Readable.from([Buffer.from('input')]),
      out,
      err,
    },
    result: () => ({ stdout, stderr, printed }),
  };
}

test('qvm-run -p sends one exec request and relays output and the exit code', async () => {
  const srv = await fakeIsolad((_s, sock) => {
    sock.write(Buffer.from([0x30, 0]));
    sock.write(encodeFrame(MSG_DATA_STDOUT, Buffer.from('hello\n')));
    sock.write(encodeFrame(MSG_DATA_STDERR, Buffer.from('warn\n')));
    sock.write(encodeFrame(MSG_DATA_STDOUT, Buffer.alloc(0)));
    sock.end(encodeFrame(MSG_DATA_EXIT_CODE, encodeU32(3)));
  });
  const { d, result } = deps(srv.path);
  const code = await run(['-p', '-u', 'root', 'work', 'echo hello'], d);
  const seen = await srv.seen;
  srv.close();
  assert.equal(code, 3);
  assert.equal(seen.header, 'admin.vm.Run+autostart dom0 name work');
  assert.equal(seen.frameType, 0x200, 'MSG_EXEC_CMDLINE');
  assert.equal(seen.cmdline, 'root:echo hello');
  assert.equal(result().stdout, 'hello\n');
  assert.equal(result().stderr, 'warn\n');
});

test('qvm-run without -p sends MSG_JUST_EXEC for the default user and returns 0', async () => {
  const srv = await fakeIsolad((_s, sock) => sock.end(Buffer.from([0x30, 0])));
  const { d } = deps(srv.path);
  assert.equal(await run(['--no-autostart', 'work', 'ls', '-la', "it's"], d), 0);
  const seen = await srv.seen;
  srv.close();
  assert.equal(seen.header, 'admin.vm.Run+noautostart dom0 name work');
  assert.equal(seen.frameType, 0x201, 'MSG_JUST_EXEC');
  assert.equal(seen.cmdline, `DEFAULT:ls -la 'it'\\''s'`);
});

test("qvm-run prints isolad's refusal on one line and returns 1", async () => {
  const srv = await fakeIsolad((_s, sock) => sock.end(encodeException('QubesVMNotRunningError', 'Domain is not running: work')));
  const { d, result } = deps(srv.path);
  assert.equal(await run(['-p', '-n', 'work', 'true'], d), 1);
  srv.close();
  assert.equal(result().printed, 'qvm-run: error: Domain is not running: work\n');
});

test('qvm-run returns 125 when the stream breaks before an exit code', async () => {
  const srv = await fakeIsolad((_s, sock) => {
    sock.write(Buffer.from([0x30, 0]));
    sock.end(encodeFrame(MSG_DATA_STDOUT, Buffer.from('partial')));
  });
  const { d } = deps(srv.path);
  const code = await run(['-p', 'work', 'true'], d);
  srv.close();
  assert.equal(code, 125, "Qubes' exit code for a qrexec problem");
});

test('qvm-run usage errors make no call', async () => {
  for (const argv of [['work'], []]) {
    const { d } = deps('/nonexistent');
    let connected = false;
    d.connect = async () => {
      connected = true;
      throw new Error('no');
    };
    await assert.rejects(run(argv, d));
    assert.equal(connected, false);
  }
});

test('shellJoin quotes words for /bin/sh', () => {
  assert.equal(shellJoin(['echo', 'a b', "it's", '$HOME', 'plain-word']), `echo 'a b' 'it'\\''s' '$HOME' plain-word`);
});
