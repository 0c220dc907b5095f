// qvm-pause / qvm-unpause on in-memory drivers: the states and events a user sees, what a paused qube
// refuses (commands, a plain shutdown), and that a forced shutdown or a kill still ends it.

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

test('a paused qube shows Paused, refuses commands naming the way out, and runs them again once unpaused', () => withHarness(async (h) => {
  await h.templateAndApp('work');
  await h.lifecycle.start('work');
  await h.lifecycle.pause('work');
  assert.equal(h.collection.powerState(h.q('work')), 'Paused');
  assert.ok(h.sandbox.calls.some((c) => c.startsWith('pause ')), h.sandbox.calls.join(', '));
  await assert.rejects(runIn(h, 'work', 'echo hi'), /Domain 'work' is paused \(qvm-unpause work\)/);
  await h.lifecycle.unpause('work');
  assert.equal(h.collection.powerState(h.q('work')), 'Running');
  assert.deepEqual(await runIn(h, 'work', 'echo hi'), { stdout: 'hi\n', code: 0 });
  assert.deepEqual(h.eventsOf('work').map((e) => e.event).filter((e) => /paused/.test(e)), ['domain-pre-paused', 'domain-paused', 'domain-pre-unpaused', 'domain-unpaused']);
}));

test("pausing what does not run, or unpausing what is not paused, is refused with Qubes' errors", () => withHarness(async (h) => {
  await h.templateAndApp('work');
  await assert.rejects(h.lifecycle.pause('work'), (e: Error & { code?: string }) => e.code === 'QubesVMNotRunningError' && /either powered off or paused/.test(e.message));
  await h.lifecycle.start('work');
  await assert.rejects(h.lifecycle.unpause('work'), (e: Error & { code?: string }) => e.code === 'QubesVMNotPausedError' && /Domain is not paused: 'work'/.test(e.message));
  await h.lifecycle.pause('work');
  await assert.rejects(h.lifecycle.pause('work'), (e: Error & { code?: string }) => e.code === 'QubesVMNotRunningError');
  assert.equal(h.collection.powerState(h.q('work')), 'Paused', 'a refused second pause changes nothing');
}));

test('a paused qube is not shut down without --force (as Qubes); forced, or killed, it ends thawed first', () => withHarness(async (h) => {
  await h.templateAndApp('work');
  await h.lifecycle.start('work');
  await h.lifecycle.pause('work');
  await assert.rejects(h.lifecycle.shutdown('work', { wait: true, force: false }), (e: Error & { code?: string }) => e.code === 'QubesVMNotRunningError');
  assert.equal(h.collection.powerState(h.q('work')), 'Paused');
  await h.lifecycle.shutdown('work', { wait: true, force: true });
  assert.equal(h.collection.powerState(h.q('work')), 'Halted');
  const calls = h.sandbox.calls.join(', ');
  assert.ok(calls.indexOf('unpause ') < calls.indexOf('signal SIGKILL'), calls);
  await h.lifecycle.start('work');
  assert.equal(h.collection.powerState(h.q('work')), 'Running', 'a new run is not paused');
}));
