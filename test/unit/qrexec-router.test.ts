// The qrexec router on in-memory drivers: a service call from one qube's client endpoint to another
// qube through the fake agents, decided by a real policy directory: allow, deny, ask, a halted target
// started, an unknown target, and hostile callers that must not harm other calls.

import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { AskQueue } from '../../src/daemon/ask-queue';
import type { HandlerDeps } from '../../src/daemon/handlers/context';
import { PolicyStore } from '../../src/daemon/policy-store';
import { QrexecRouter } from '../../src/daemon/qrexec-router';
import { HEADER_SIZE, HELLO_FLAG_CLIENT, MSG_HELLO, MSG_TRIGGER_SERVICE3, encodeFrame, encodeHello } from '../../src/qrexec/protocol';
import { Harness } from './fakes/harness';
import { callService, rawConnect } from './fakes/qube-client';

const POLICY = [
  'test.Echo * work vault allow',
  'test.Source * work vault allow',
  'test.Echo * work personal ask',
  'test.Echo * work sleeper allow',
  'test.Echo * work @anyvm deny',
  'test.Open * work @anyvm allow',
  '',
].join('\n');

interface RouterRig {
  h: Harness;
  router: QrexecRouter;
  asks: AskQueue;
  /** The client endpoint of a running qube: where its own programs call services. */
  client(qube: string): string;
}

async function withRouter(fn: (r: RouterRig) => Promise<void>): Promise<void> {
  const h = new Harness();
  const dir = path.join(h.home, 'policy.d');
  mkdirSync(dir);
  writeFileSync(path.join(dir, '30-test.policy'), POLICY);
  const policy = new PolicyStore(dir, h.log);
  const asks = new AskQueue(h.events, 5000);
  const deps: HandlerDeps = { config: h.config, collection: h.collection, lifecycle: h.lifecycle, pool: h.pool, events: h.events, log: h.log, policy, asks };
  const router = new QrexecRouter(deps, async () => {
    throw new Error('no Admin API in this test');
  });
  try {
    assert.equal(policy.reload(), true, policy.lastError ?? '');
    h.lifecycle.onServiceCall = (source, untrusted, conn) => void router.handle(source, untrusted, conn);
    await h.templateAndApp('work');
    await h.templateAndApp('vault');
    await h.lifecycle.start('work');
    await h.lifecycle.start('vault');
    await fn({ h, router, asks, client: (q) => h.sandbox.clientSocket(q) });
  } finally {
    for (const a of asks.list()) asks.cancel(a.id);
    router.close();
    policy.close();
    await h.close();
  }
}

function decisions(h: Harness) {
  return h.store.decisions(0).map((d) => `${d.source} -> ${d.target} ${d.service}${d.argument}: ${d.result}`);
}

function execs(h: Harness, qube: string): string[] {
  return (h.sandbox.agentLog.get(qube) ?? []).filter((l) => l.startsWith('exec '));
}

test('an allowed call runs the service in the target, with the caller named by its endpoint', () => withRouter(async ({ h, client }) => {
  const echo = await callService(client('work'), 'vault', 'test.Echo', { input: 'secret report' });
  assert.deepEqual(echo, { refused: false, notices: [], stdout: 'secret report', stderr: '', code: 0 });
  const source = await callService(client('work'), 'vault', 'test.Source+');
  assert.equal(source.stdout, 'work -> vault\n', 'the service was told the real source');
  assert.deepEqual(execs(h, 'vault'), ['exec QUBESRPC test.Echo+ work', 'exec QUBESRPC test.Source+ work']);
  assert.deepEqual(decisions(h), ['work -> vault test.Echo+: allow', 'work -> vault test.Source+: allow']);
  assert.match(h.store.decisions(0)[0].rule, /30-test\.policy:1$/);
}));

test('a denied call is refused, logged with its rule, and never reaches the target', () => withRouter(async ({ h, client }) => {
  const r = await callService(client('work'), 'vault', 'test.Forbidden');
  assert.equal(r.refused, true);
  assert.equal(r.code, null);
  assert.deepEqual(execs(h, 'vault'), []);
  assert.deepEqual(decisions(h), ['work -> vault test.Forbidden+: deny']);
}));

test("a call on vault's endpoint is vault's, whatever it asks for (qrexec-spoofed-source)", () => withRouter(async ({ h, client }) => {
  const r = await callService(client('vault'), 'vault', 'test.Echo', { input: 'x' });
  assert.equal(r.refused, true, 'only work may call test.Echo in vault');
  assert.deepEqual(decisions(h), ['vault -> vault test.Echo+: deny']);
}));

for (const allow of [true, false]) {
  test(`an ask waits for the host's answer, tells the caller how, and is then ${allow ? 'run' : 'refused'}`, () => withRouter(async ({ h, asks, client }) => {
    await h.templateAndApp('personal');
    await h.lifecycle.start('personal');
    const call = callService(client('work'), 'personal', 'test.Echo', {
      input: 'hi',
      onNotice: () => {
        const [q] = asks.list();
        asks.answer(q.id, allow);
      },
    });
    const r = await call;
    assert.equal(r.notices.length, 1);
    assert.match(r.notices[0], /^waiting for the host to allow test\.Echo \(question \d+\); on the host: isola ask allow \d+ --target personal/);
    if (allow) {
      assert.deepEqual([r.refused, r.stdout, r.code], [false, 'hi', 0]);
      assert.deepEqual(execs(h, 'personal'), ['exec QUBESRPC test.Echo+ work']);
    } else {
      assert.equal(r.refused, true);
      assert.deepEqual(execs(h, 'personal'), []);
    }
    assert.equal(decisions(h)[0], 'work -> personal test.Echo+: ask');
    assert.equal(decisions(h).length, 2, 'the answer is logged too');
    assert.equal(asks.list().length, 0);
  }));
}

test('a caller that leaves while its call waits for an answer withdraws the question, and nothing runs', () => withRouter(async ({ h, asks, client }) => {
  await h.templateAndApp('personal');
  await h.lifecycle.start('personal');
  const r = await callService(client('work'), 'personal', 'test.Echo', { onNotice: (_text, sock) => sock.destroy() });
  assert.equal(r.code, null);
  await h.until(() => asks.list().length === 0, 'the question to be withdrawn');
  assert.deepEqual(execs(h, 'personal'), []);
}));

test('a halted target is started for the call, as Qubes autostarts it', () => withRouter(async ({ h, client }) => {
  await h.templateAndApp('sleeper');
  assert.equal(h.collection.powerState(h.q('sleeper')), 'Halted');
  const r = await callService(client('work'), 'sleeper', 'test.Echo', { input: 'wake up' });
  assert.deepEqual([r.refused, r.stdout, r.code], [false, 'wake up', 0]);
  assert.equal(h.collection.powerState(h.q('sleeper')), 'Running');
  assert.deepEqual(h.eventsOf('sleeper').map((e) => e.event), ['domain-pre-start', 'domain-start']);
}));

test('a target that fails to start refuses the call and says why in its qvm-ls reason', () => withRouter(async ({ h, client }) => {
  await h.templateAndApp('sleeper');
  h.sandbox.fault('sleeper', { create: 'bundle refused' });
  const r = await callService(client('work'), 'sleeper', 'test.Echo', { input: 'x' });
  assert.equal(r.refused, true);
  assert.equal(h.collection.powerState(h.q('sleeper')), 'Halted');
  assert.match(h.lastError('sleeper') ?? '', /bundle refused/);
  assert.ok(h.lines.some((l) => /qrexec call from work refused: Failed to start sleeper: .*bundle refused/.test(l)), h.lines.join('\n'));
}));

test('a call to a qube that does not exist is refused and starts nothing, even where @anyvm is allowed', () => withRouter(async ({ h, client }) => {
  const before = h.journal.length;
  for (const service of ['test.Echo', 'test.Open']) {
    const r = await callService(client('work'), 'nosuch', service, { input: 'x' });
    assert.equal(r.refused, true, service);
  }
  assert.equal(h.journal.length, before, 'no pool or backend call');
  const [echo, open] = h.store.decisions(0);
  assert.deepEqual([echo.target, echo.result, open.target, open.result], ['nosuch', 'deny', 'nosuch', 'deny']);
  // As Qubes does, an unknown name is no target at all: the caller learns nothing of which qubes exist.
  assert.match(open.reason, /no target is specified by caller or policy/);
}));

/** A client HELLO, then a MSG_TRIGGER_SERVICE3 frame with this payload, on a raw connection; resolves when isolad drops it. */
async function hostileCall(socketPath: string, payload: Buffer, claimedLength = payload.length): Promise<void> {
  const s = await rawConnect(socketPath);
  s.on('error', () => undefined);
  s.on('data', () => undefined);
  const closed = new Promise<void>((r) => s.once('close', () => r()));
  const frame = encodeFrame(MSG_TRIGGER_SERVICE3, payload);
  frame.writeUInt32LE(claimedLength, 4);
  s.write(Buffer.concat([encodeFrame(MSG_HELLO, encodeHello(HELLO_FLAG_CLIENT, 'evil')), frame.subarray(0, HEADER_SIZE + Math.min(payload.length, claimedLength)), frame.subarray(HEADER_SIZE + claimedLength)]));
  await closed;
}

test('malformed MSG_TRIGGER_SERVICE3 calls are dropped without harming other calls (qrexec-malformed-trigger)', () => withRouter(async ({ h, client }) => {
  const honest = callService(client('work'), 'vault', 'test.Echo', { input: 'still works' });
  const noNul = Buffer.alloc(64 + 32 + 5, 0x41); // target_domain and request_id fill their fields: no NUL anywhere
  const twoNames = Buffer.concat([Buffer.alloc(96), Buffer.from('test.Echo\0extra\0')]);
  const badUtf8 = Buffer.concat([Buffer.from('vault'), Buffer.alloc(59), Buffer.from('id'), Buffer.alloc(30), Buffer.from([0xff, 0xfe, 0])]);
  const tooShort = Buffer.alloc(20);
  await Promise.all([
    hostileCall(client('work'), noNul),
    hostileCall(client('work'), twoNames),
    hostileCall(client('work'), badUtf8),
    hostileCall(client('work'), tooShort),
    hostileCall(client('work'), Buffer.alloc(0), 0x7fffffff), // claims 2 GiB: refused from its header
  ]);
  const r = await honest;
  assert.deepEqual([r.refused, r.stdout, r.code], [false, 'still works', 0]);
  assert.deepEqual(decisions(h), ['work -> vault test.Echo+: allow'], 'nothing was decided for the malformed calls');
  assert.equal(h.collection.powerState(h.q('work')), 'Running');
  assert.ok(h.lines.some((l) => /protocol error/.test(l)), 'the drops are logged');
  const again = await callService(client('work'), 'vault', 'test.Source+');
  assert.equal(again.stdout, 'work -> vault\n');
}));

test('a well-framed call with an invalid service name is refused and logged, not run (qrexec-bad-service-name)', () => withRouter(async ({ h, client }) => {
  const r = await callService(client('work'), 'vault', 'test.Echo/../../bin/sh');
  assert.equal(r.refused, true);
  assert.deepEqual(execs(h, 'vault'), []);
  assert.equal(h.store.decisions(0).at(-1)?.result, 'deny');
  assert.match(h.store.decisions(0).at(-1)?.reason ?? '', /may contain only A-Z a-z 0-9/);
}));
