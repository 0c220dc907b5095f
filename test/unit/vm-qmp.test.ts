// The QMP client against a hostile QEMU (a fake server in-process): whatever it sends, isolad gets one
// clear line and keeps running; nothing hangs.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { QmpClient, QmpCommandError } from '../../src/backends/vm/qmp';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'isola-qmp-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));
let n = 0;

const GREETING = '{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, "capabilities": []}}\n';

/** A fake QEMU: `onConn` scripts what it does; it answers qmp_capabilities unless told not to. */
async function fakeQemu(onConn: (sock: net.Socket, lines: AsyncIterable<Record<string, unknown>>) => void): Promise<{ path: string; server: net.Server }> {
  const file = path.join(tmp, `q${n++}.sock`);
  const server = net.createServer((sock) => {
    sock.on('error', () => undefined);
    async function* lines(): AsyncIterable<Record<string, unknown>> {
      let buf = '';
      for await (const chunk of sock) {
        buf += chunk.toString();
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          yield JSON.parse(buf.slice(0, i)) as Record<string, unknown>;
          buf = buf.slice(i + 1);
        }
      }
    }
    onConn(sock, lines());
  });
  await new Promise<void>((r) => server.listen(file, r));
  after(() => server.close());
  return { path: file, server };
}

/** A well-behaved QEMU up to the point `then` takes over (after capabilities). */
function polite(then: (sock: net.Socket, cmd: Record<string, unknown>) => void) {
  return (sock: net.Socket, lines: AsyncIterable<Record<string, unknown>>) => {
    sock.write(GREETING);
    void (async () => {
      for await (const cmd of lines) {
        if (cmd.execute === 'qmp_capabilities') sock.write(JSON.stringify({ return: {}, id: cmd.id }) + '\n');
        else then(sock, cmd);
      }
    })().catch(() => undefined);
  };
}

test('commands get their replies by id, errors as QmpCommandError, events arrive', async () => {
  const q = await fakeQemu(polite((sock, cmd) => {
    if (cmd.execute === 'query-status') {
      sock.write('{"event": "STOP", "data": {}, "timestamp": {"seconds": 1, "microseconds": 2}}\n');
      sock.write(JSON.stringify({ return: { status: 'paused', running: false }, id: cmd.id }) + '\n');
    } else sock.write(JSON.stringify({ error: { class: 'CommandNotFound', desc: `The command ${cmd.execute} has not been found` }, id: cmd.id }) + '\n');
  }));
  const c = await QmpClient.connect(q.path);
  const events: string[] = [];
  c.on('event', (e: { event: string }) => events.push(e.event));
  assert.deepEqual(await c.execute('query-status'), { status: 'paused', running: false });
  await assert.rejects(c.execute('nonsense'), (e: Error) => e instanceof QmpCommandError && /CommandNotFound/.test(e.message));
  assert.deepEqual(events, ['STOP']);
  assert.equal(c.closed, false);
  c.close();
});

test('a QEMU whose greeting never comes is given up on after the timeout', async () => {
  const q = await fakeQemu(() => undefined);
  const t0 = Date.now();
  await assert.rejects(QmpClient.connect(q.path, { greetingTimeoutMs: 200 }), /QMP greeting not received within 200 ms/);
  assert.ok(Date.now() - t0 < 2000);
});

test('a QEMU that sends garbage instead of JSON is dropped with one line', async () => {
  const q = await fakeQemu((sock) => sock.write('\xff\xfe not json {{{\n'));
  await assert.rejects(QmpClient.connect(q.path), (e: Error) => /QMP protocol error: unparseable line/.test(e.message) && !e.message.includes('\n'));
});

test('a QEMU that floods one endless line is dropped at the bound, not buffered forever', async () => {
  const q = await fakeQemu(polite((sock) => {
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    const pump = () => {
      while (!sock.destroyed && sock.write(chunk));
      if (!sock.destroyed) sock.once('drain', pump);
    };
    pump();
  }));
  const c = await QmpClient.connect(q.path, { maxLineBytes: 256 * 1024 });
  const closed = new Promise<string>((r) => c.once('close', r));
  await assert.rejects(c.execute('query-status'), /a line longer than 262144 bytes/);
  assert.match(await closed, /line longer/);
});

test('a QEMU that replies with an id nobody asked for is dropped; pending commands fail', async () => {
  const q = await fakeQemu(polite((sock) => sock.write('{"return": {}, "id": "forged-7"}\n')));
  const c = await QmpClient.connect(q.path);
  await assert.rejects(c.execute('query-status'), /reply with unknown id forged-7/);
  assert.equal(c.closed, true);
  await assert.rejects(c.execute('cont'), /QMP cont: QMP protocol error/);
});

test('a QEMU that closes mid-reply fails the pending command and reports the close', async () => {
  const q = await fakeQemu(polite((sock) => sock.end('{"return": {"status": "runn')));
  const c = await QmpClient.connect(q.path);
  const closed = new Promise<string>((r) => c.once('close', r));
  await assert.rejects(c.execute('query-status'), /QMP query-status: QMP connection closed by QEMU/);
  assert.equal(await closed, 'QMP connection closed by QEMU');
});

test('a QEMU that never answers a command times it out; its late reply is not an error', async () => {
  let held: { sock: net.Socket; id: unknown } | undefined;
  const q = await fakeQemu(polite((sock, cmd) => {
    if (!held) held = { sock, id: cmd.id };
    else sock.write(JSON.stringify({ return: 'second', id: cmd.id }) + '\n');
  }));
  const c = await QmpClient.connect(q.path);
  await assert.rejects(c.execute('query-status', undefined, 100), /no reply within 100 ms/);
  held!.sock.write(JSON.stringify({ return: 'late', id: held!.id }) + '\n');
  assert.equal(await c.execute('query-status'), 'second');
  c.close();
});

test('non-object messages, a reply before the greeting and neither-reply-nor-event lines are protocol errors', async () => {
  for (const bad of ['[1,2]\n', '{"return": {}}\n', 'null\n']) {
    const q = await fakeQemu((sock) => sock.write(bad));
    await assert.rejects(QmpClient.connect(q.path), /QMP protocol error/);
  }
  const q = await fakeQemu(polite((sock) => sock.write('{"hello": 1}\n')));
  const c = await QmpClient.connect(q.path);
  await assert.rejects(c.execute('x'), /neither reply nor event/);
});

test('a socket that does not exist is a one-line error', async () => {
  await assert.rejects(QmpClient.connect(path.join(tmp, 'absent.sock')), /QMP socket error: connect ENOENT/);
});
