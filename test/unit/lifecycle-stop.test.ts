// qvm-shutdown, qvm-kill and a qube that dies by itself, on in-memory drivers: what a stop keeps
// (private committed, an AppVM's root and volatile discarded), the events and reasons a user sees,
// the kill after shutdown_timeout, and a netvm that stays up while qubes use it.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Harness, runIn } from './fakes/harness';

async function withHarness(fn: (h: Harness) => Promise<void>): Promise<void> {
  const h = new Harness();
  try {
    await fn(h);
  } finally {
    await h.close();
  }
}

test('qvm-shutdown asks the agent, waits, and keeps private while discarding the root and volatile of an AppVM', () => withHarness(async (h) => {
  const { tpl, app } = await h.templateAndApp('work');
  await h.lifecycle.start('work');
  h.pool.write(app.uuid, 'private', 'home/user/notes', 'kept');
  h.pool.write(app.uuid, 'root', 'usr/bin/implant', 'gone at stop');
  h.pool.write(app.uuid, 'volatile', 'swap', 'gone at stop');
  await h.lifecycle.shutdown('work', { wait: true, force: false });
  assert.equal(h.collection.powerState(h.q('work')), 'Halted');
  assert.deepEqual(h.sandbox.agentLog.get('work'), ['hello', 'shutdown'], 'the agent was asked');
  assert.ok(!h.sandbox.calls.some((c) => c.startsWith('signal')), `no signal was needed: ${h.sandbox.calls.join(', ')}`);
  assert.deepEqual(h.pool.stops.at(-1), { uuid: app.uuid, commit: true });
  assert.deepEqual(h.pool.committed(app.uuid, 'private'), { 'home/user/notes': 'kept' });
  assert.deepEqual(h.pool.committed(tpl.uuid, 'root'), {}, "the template's root is untouched");
  assert.deepEqual(h.eventsOf('work').map((e) => e.event).slice(-2), ['domain-pre-shutdown', 'domain-shutdown']);
  assert.deepEqual(h.eventsOf('work', 'domain-shutdown')[0].kwargs, {}, 'a clean stop has no reason');
  assert.equal(h.lastError('work'), undefined);
  await h.lifecycle.start('work');
  assert.deepEqual(h.pool.working(app.uuid, 'root'), {}, 'the next start sees the template root again');
  assert.deepEqual(h.pool.working(app.uuid, 'private'), { 'home/user/notes': 'kept' });
}));

test("a template's root is committed at its shutdown, and AppVMs started later see the new revision", () => withHarness(async (h) => {
  const { tpl, app } = await h.templateAndApp('work');
  await h.lifecycle.start('debian-12');
  h.pool.write(tpl.uuid, 'root', 'usr/bin/newtool', 'v2');
  await h.lifecycle.start('work');
  assert.deepEqual(h.pool.working(app.uuid, 'root'), {}, 'a running template\'s changes are not seen before its commit');
  await h.lifecycle.shutdown('debian-12', { wait: true, force: false });
  await h.lifecycle.shutdown('work', { wait: true, force: false });
  await h.lifecycle.start('work');
  assert.deepEqual(h.pool.working(app.uuid, 'root'), { 'usr/bin/newtool': 'v2' });
  assert.equal(h.runtimeRow('work')!.rootRevision, `${tpl.uuid}@2`);
}));

test('an agent that dies while the qube runs makes it Halted, its changes committed and the reason shown', () => withHarness(async (h) => {
  const { app } = await h.templateAndApp('work');
  await h.lifecycle.start('work');
  h.pool.write(app.uuid, 'private', 'draft', 'saved');
  h.sandbox.crash('work');
  await h.until(() => h.collection.powerState(h.q('work')) === 'Halted', 'work to be Halted');
  await h.until(() => h.eventsOf('work', 'domain-shutdown').length > 0, 'domain-shutdown');
  assert.deepEqual(h.pool.stops.at(-1), { uuid: app.uuid, commit: true });
  assert.deepEqual(h.pool.committed(app.uuid, 'private'), { draft: 'saved' });
  const reason = h.eventsOf('work', 'domain-shutdown')[0].kwargs.reason;
  assert.match(reason, /runtime died/);
  assert.match(h.lastError('work') ?? '', /runtime died/);
  assert.equal(h.lifecycle.agents.size, 0);
  assert.deepEqual(await h.sandbox.list(), [], 'the dead runtime is destroyed');
  await assert.rejects(runIn(h, 'work', 'echo x'), /Domain is not running: work/);
}));

test('qvm-shutdown kills a qube that ignores it once shutdown_timeout has passed', () => withHarness(async (h) => {
  await h.templateAndApp('work', { shutdown_timeout: 1 });
  await h.lifecycle.start('work');
  h.sandbox.fault('work', { ignoreSigterm: true });
  const began = Date.now();
  await h.lifecycle.shutdown('work', { wait: true, force: false });
  const took = Date.now() - began;
  assert.equal(h.collection.powerState(h.q('work')), 'Halted');
  assert.ok(h.sandbox.calls.some((c) => c.startsWith('signal SIGKILL')), h.sandbox.calls.join(', '));
  assert.ok(took >= 1000, `waited shutdown_timeout before killing (${took} ms)`);
  assert.ok(took < 2500, `killed soon after shutdown_timeout (1 s), not later (${took} ms)`);
  assert.ok(h.lines.some((l) => /work: did not stop within 1 s, killing it/.test(l)), h.lines.join('\n'));
}));

test('qvm-shutdown without --wait returns at once; the qube halts behind it', () => withHarness(async (h) => {
  await h.templateAndApp('work');
  await h.lifecycle.start('work');
  await h.lifecycle.shutdown('work', { wait: false, force: false });
  await h.until(() => h.collection.powerState(h.q('work')) === 'Halted', 'work to halt');
  await assert.rejects(h.lifecycle.shutdown('work', { wait: true, force: false }), /Domain is powered off: work/);
}));

test('qvm-kill stops at once with SIGKILL; the runtime is removed and the qube can start again', () => withHarness(async (h) => {
  const { app } = await h.templateAndApp('work');
  await h.lifecycle.start('work');
  await h.lifecycle.kill('work');
  assert.equal(h.collection.powerState(h.q('work')), 'Halted');
  const id = `work.${app.qid}`;
  assert.deepEqual(h.sandbox.calls.slice(-2), [`signal SIGKILL ${id}`, `destroy ${id}`]);
  assert.deepEqual(h.sandbox.agentLog.get('work'), ['hello'], 'the agent was not asked');
  assert.equal(h.eventsOf('work', 'domain-shutdown').length, 1);
  await assert.rejects(h.lifecycle.kill('work'), /Domain is powered off: work/);
  await h.lifecycle.start('work');
  assert.equal((await runIn(h, 'work', 'echo again')).stdout, 'again\n');
}));

test('qvm-start of a running qube is refused and changes nothing', () => withHarness(async (h) => {
  await h.templateAndApp('work');
  await h.lifecycle.start('work');
  const calls = h.journal.length;
  await assert.rejects(h.lifecycle.start('work'), (e: Error & { code?: string }) => e.code === 'QubesVMNotHaltedError' && /Domain is running: work/.test(e.message));
  assert.equal(h.journal.length, calls);
  assert.equal(h.collection.powerState(h.q('work')), 'Running');
}));

test('qvm-shutdown of a netvm with running qubes behind it is refused unless forced', () => withHarness(async (h) => {
  await h.templateAndApp('work');
  await h.create('sys-net', 'AppVM', { template: 'debian-12', provides_network: true, netvm: null });
  await h.create('mail', 'AppVM', { template: 'debian-12', netvm: 'sys-net' });
  await h.create('web', 'AppVM', { template: 'debian-12', netvm: 'sys-net' });
  await h.lifecycle.start('sys-net');
  await h.lifecycle.start('mail');
  await h.lifecycle.start('web');
  await h.lifecycle.shutdown('web', { wait: true, force: false });
  await assert.rejects(h.lifecycle.shutdown('sys-net', { wait: true, force: false }), (e: Error & { code?: string }) => {
    assert.equal(e.code, 'QubesVMInUseError');
    assert.equal(e.message, 'There are other VMs connected to this VM: mail', 'halted users do not count');
    return true;
  });
  assert.equal(h.collection.powerState(h.q('sys-net')), 'Running');
  assert.deepEqual(h.sandbox.agentLog.get('sys-net'), ['hello'], 'it was not even asked to stop');
  await h.lifecycle.shutdown('sys-net', { wait: true, force: true });
  assert.equal(h.collection.powerState(h.q('sys-net')), 'Halted');
  assert.equal(h.collection.powerState(h.q('mail')), 'Running', 'forced: its users lose the network but keep running');
}));

test('dom0 cannot be shut down or killed', () => withHarness(async (h) => {
  await assert.rejects(h.lifecycle.shutdown('dom0', { wait: true, force: true }), /dom0 cannot be shut down/);
  await assert.rejects(h.lifecycle.kill('dom0'), /dom0 cannot be killed/);
  assert.deepEqual(h.journal, []);
}));

test('a death the agent channel does not report is noticed by the sweep', () => withHarness(async (h) => {
  await h.templateAndApp('work');
  await h.lifecycle.start('work');
  h.lifecycle.startSweep(20);
  h.sandbox.vanish('work');
  await h.until(() => h.collection.powerState(h.q('work')) === 'Halted', 'the sweep to notice');
  assert.match(h.eventsOf('work', 'domain-shutdown')[0]?.kwargs.reason ?? '', /runtime died/);
}));

test('two qvm-start at once start the qube once; the second is told it is running', () => withHarness(async (h) => {
  await h.templateAndApp('work');
  const results = await Promise.allSettled([h.lifecycle.start('work'), h.lifecycle.start('work')]);
  assert.deepEqual(results.map((r) => r.status).sort(), ['fulfilled', 'rejected']);
  const refused = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
  assert.match(String(refused.reason), /Domain is running: work/);
  assert.equal(h.sandbox.calls.filter((c) => c.startsWith('create')).length, 1);
  assert.equal((await runIn(h, 'work', 'echo once')).stdout, 'once\n');
}));

test('an agent sending garbage loses its connection, not its qube: it reconnects and qvm-run works (agent-frame-garbage)', () => withHarness(async (h) => {
  const { app } = await h.templateAndApp('work');
  await h.lifecycle.start('work');
  const header = Buffer.alloc(8);
  header.writeUInt32LE(0x7777, 0); // no such message type
  header.writeUInt32LE(0xffffffff, 4); // and a length no frame may have
  h.sandbox.agentSendsRaw('work', header);
  await h.until(() => (h.sandbox.agentLog.get('work') ?? []).filter((l) => l === 'hello').length === 2, 'the agent to reconnect');
  await h.until(() => h.lifecycle.agents.get(app.uuid)?.connected === true, 'the new control connection');
  assert.equal(h.collection.powerState(h.q('work')), 'Running', 'a bad frame is not a death');
  assert.ok(h.lines.some((l) => /qube work: agent connection: protocol error/.test(l)), h.lines.join('\n'));
  assert.equal((await runIn(h, 'work', 'echo still here')).stdout, 'still here\n');
}));
