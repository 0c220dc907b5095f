// An isolad restart on in-memory drivers (a new Lifecycle on the same store, pool and runtimes):
// running qubes are reattached and usable, an unfinished start is rolled back, a qube that died
// while isolad was away is Halted with its changes kept, and leftovers are removed.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import { Harness, runIn } from './fakes/harness';

async function withHarness(fn: (h: Harness) => Promise<void>, opts: { hvm?: boolean } = {}): Promise<void> {
  const h = new Harness(opts);
  try {
    await fn(h);
  } finally {
    await h.close();
  }
}

test('a qube running across an isolad restart is reattached: its agent reconnects and qvm-run works', () => withHarness(async (h) => {
  const { app } = await h.templateAndApp('work');
  await h.lifecycle.start('work');
  const id = h.runtimeRow('work')!.runtimeId;
  await h.restart();
  assert.equal(h.collection.powerState(h.q('work')), 'Running');
  assert.ok(h.lines.some((l) => l === 'info: work: still running, reattached'), h.lines.join('\n'));
  await h.until(() => h.lifecycle.agents.get(app.uuid)?.connected === true, 'the agent to reconnect');
  assert.deepEqual(await runIn(h, 'work', 'echo after restart'), { stdout: 'after restart\n', code: 0 });
  assert.deepEqual(h.sandbox.agentLog.get('work')?.filter((l) => l === 'hello'), ['hello', 'hello'], 'one hello per isolad');
  assert.ok(!h.sandbox.calls.includes(`destroy ${id}`), 'the runtime was left alone');
  assert.equal(h.pool.isStarted(app.uuid), true, 'its volumes stay in use');
  assert.ok(!h.pool.cleanedUp.includes(app.uuid));
  // And it is still watched: a death after the restart is noticed.
  h.sandbox.crash('work');
  await h.until(() => h.collection.powerState(h.q('work')) === 'Halted', 'work to be Halted after its death');
}));

test("an unfinished start ('starting' row) is rolled back at restart, nothing committed, with the reason", () => withHarness(async (h) => {
  const { app } = await h.templateAndApp('work');
  await h.lifecycle.start('work');
  h.pool.write(app.uuid, 'private', 'half', 'written during a start that never finished');
  // isolad was killed between the runtime's start and the row's 'running'.
  const row = h.runtimeRow('work')!;
  h.store.putRuntime({ ...row, state: 'starting' });
  await h.restart();
  assert.equal(h.collection.powerState(h.q('work')), 'Halted');
  assert.equal(h.runtimeRow('work'), undefined);
  assert.deepEqual(h.pool.stops.at(-1), { uuid: app.uuid, commit: false });
  assert.deepEqual(h.pool.committed(app.uuid, 'private'), {}, 'nothing of it was committed');
  assert.match(h.lastError('work') ?? '', /start interrupted \(isolad restarted\)/);
  assert.ok(h.sandbox.calls.includes(`destroy ${row.runtimeId}`));
  assert.deepEqual(await h.sandbox.list(), []);
  await h.lifecycle.start('work');
  assert.equal(h.collection.powerState(h.q('work')), 'Running', 'and it starts again');
}));

for (const how of ['stopped', 'unknown to its backend'] as const) {
  test(`a qube whose runtime is ${how} after the restart is Halted, its changes committed, the reason shown`, () => withHarness(async (h) => {
    const { app } = await h.templateAndApp('work');
    await h.lifecycle.start('work');
    h.pool.write(app.uuid, 'private', 'notes', 'written before the crash');
    const id = h.runtimeRow('work')!.runtimeId;
    await h.restart({
      whileAway: async () => {
        h.sandbox.crash('work');
        if (how === 'unknown to its backend') await h.sandbox.destroy(id);
      },
    });
    assert.equal(h.collection.powerState(h.q('work')), 'Halted');
    assert.deepEqual(h.pool.stops.at(-1), { uuid: app.uuid, commit: true });
    assert.deepEqual(h.pool.committed(app.uuid, 'private'), { notes: 'written before the crash' });
    assert.match(h.lastError('work') ?? '', /stopped while isolad was not running/);
    assert.ok(h.lines.some((l) => /work: found stopped; now Halted/.test(l)), h.lines.join('\n'));
    assert.deepEqual(await h.sandbox.list(), []);
  }));
}

test('a qube of a backend this isolad lacks is left as it is, never started twice, and forgotten by qvm-kill; the rest is reconciled', () => withHarness(async (h) => {
  const { app: vm } = await h.templateAndApp('vm1');
  const { app: work } = await h.templateAndApp('work');
  h.collection.write(() => h.store.setProp(vm.qid, 'virt_mode', 'hvm'));
  await h.lifecycle.start('vm1');
  await h.lifecycle.start('work');
  const hvm = h.hvm;
  await h.restart({ backends: [h.sandbox] });
  assert.equal(h.collection.powerState(h.q('work')), 'Running', 'the sandbox qube is reattached');
  assert.equal(h.collection.powerState(h.q('vm1')), 'Running', 'it may still run: not shown as Halted');
  assert.ok(h.lines.some((l) => /^error: vm1: runs under virt_mode hvm, which this isolad has no backend for; left as it is/.test(l)), h.lines.join('\n'));
  await assert.rejects(h.lifecycle.start('vm1'), /Domain is running: vm1/);
  assert.equal(h.pool.isStarted(vm.uuid), true, 'as said: its volumes stay as they were');
  assert.ok(!h.pool.cleanedUp.includes(vm.uuid), 'nothing is unmounted under a VM that may still run');
  assert.ok(!h.sandbox.calls.some((c) => c.startsWith('destroy vm1.')), 'the sandbox backend is not asked about it');
  assert.equal((await hvm.list()).length, 1, "the VM's runtime is not touched");
  await h.until(() => h.lifecycle.agents.get(work.uuid)?.connected === true, 'the sandbox agent to reconnect');
  assert.equal((await runIn(h, 'work', 'echo fine')).stdout, 'fine\n');
  await h.lifecycle.kill('vm1');
  assert.equal(h.collection.powerState(h.q('vm1')), 'Halted');
  assert.match(h.lastError('vm1') ?? '', /its backend \(virt_mode hvm\) is not available in this isolad; its volumes stay as they were/);
  assert.equal(h.pool.isStarted(vm.uuid), true, 'its volumes are not touched by forgetting it');
}, { hvm: true }));

test("orphaned runtimes are destroyed by the backend that has them; other backends' qubes are untouched", () => withHarness(async (h) => {
  await h.templateAndApp('work');
  await h.lifecycle.start('work');
  const hvm = h.hvm;
  await h.restart({
    whileAway: () => {
      h.sandbox.addOrphan('ghost.99');
      hvm.addOrphan('phantom.98');
    },
  });
  assert.ok(h.sandbox.calls.includes('destroy ghost.99'));
  assert.ok(hvm.calls.includes('destroy phantom.98'));
  assert.ok(!h.sandbox.calls.includes('destroy phantom.98') && !hvm.calls.includes('destroy ghost.99'));
  assert.deepEqual((await h.sandbox.list()).map((i) => i.id), [h.runtimeRow('work')!.runtimeId], 'the known qube keeps running');
  assert.deepEqual(await hvm.list(), []);
  assert.ok(h.lines.some((l) => l === 'warning: removing orphaned runtime ghost.99 (sandbox)'), h.lines.join('\n'));
}, { hvm: true }));

test('volumes of a qube that was never saved are removed; a halted qube only has its mounts cleaned up', () => withHarness(async (h) => {
  const { app } = await h.templateAndApp('work');
  const stray = randomUUID();
  await h.restart({ whileAway: () => h.pool.create({ uuid: stray, klass: 'AppVM' }, {}) });
  assert.deepEqual(h.pool.removed, [stray]);
  assert.ok(!(await h.pool.list()).includes(stray));
  assert.ok(h.pool.cleanedUp.includes(app.uuid));
  assert.ok((await h.pool.list()).includes(app.uuid), "a real qube's volumes are kept");
  assert.ok(h.lines.some((l) => l === `warning: removing volumes of a qube that was never saved: ${stray}`));
}));

test('a restart with nothing to do changes nothing and logs no error', () => withHarness(async (h) => {
  await h.templateAndApp('work');
  await h.restart();
  await h.restart();
  assert.deepEqual(h.lines.filter((l) => l.startsWith('error:')), []);
  assert.deepEqual(h.pool.removed, []);
  assert.equal(h.collection.powerState(h.q('work')), 'Halted');
}));
