// The ask queue: the caller's own target is preselected when offered, and a deny nobody chose
// (timeout, caller gone) is told apart from the user's deny.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AskQueue } from '../../src/daemon/ask-queue';
import { EventBus } from '../../src/daemon/event-bus';
import { answerAsk, evaluate, loadPolicyDir, type SystemInfo } from '../../src/policy';
import { MemoryPolicyFs } from '../../src/policy/memory-fs';

const system: SystemInfo = {
  domains: {
    dom0: { type: 'AdminVM', tags: [], template_for_dispvms: false, power_state: 'Running' },
    work: { type: 'AppVM', tags: [], template_for_dispvms: false, power_state: 'Running' },
    vault: { type: 'AppVM', tags: [], template_for_dispvms: false, power_state: 'Running' },
    personal: { type: 'AppVM', tags: [], template_for_dispvms: false, power_state: 'Halted' },
  },
} as SystemInfo;

function askFor(target: string, rule = 'qubes.Filecopy * @anyvm @anyvm ask') {
  const policy = loadPolicyDir(new MemoryPolicyFs({ '/p/30-test.policy': rule + '\n' }), '/p');
  return evaluate(policy, { service: 'qubes.Filecopy', argument: '+', source: 'work', target }, system);
}

test("the caller's own target is preselected when it is offered; the policy's default_target wins", () => {
  const q = new AskQueue(new EventBus(), 60_000);
  q.ask('work', 'qubes.Filecopy', '+', askFor('vault'));
  q.ask('work', 'qubes.Filecopy', '+', askFor('@default'));
  q.ask('work', 'qubes.Filecopy', '+', askFor('vault', 'qubes.Filecopy * @anyvm @anyvm ask default_target=personal'));
  const [a, b, c] = q.list();
  assert.deepEqual([a.requested, a.defaultTarget], ['vault', 'vault']);
  assert.deepEqual([b.requested, b.defaultTarget], ['@default', null], 'nothing to preselect');
  assert.deepEqual([c.requested, c.defaultTarget], ['vault', 'personal']);
  q.answer(a.id, true);
  assert.throws(() => q.answer(b.id, true), /choose one with --target/);
  for (const e of q.list()) q.cancel(e.id);
});

test('a question nobody answers is denied as a timeout, not as the user\'s deny', async () => {
  const events = new EventBus();
  const seen: string[] = [];
  events.subscribe((e) => e.event === 'qrexec-ask-done' && seen.push(e.kwargs.answer));
  const q = new AskQueue(events, 30);
  const r = askFor('vault');
  const answer = await q.ask('work', 'qubes.Filecopy', '+', r).answer;
  assert.deepEqual(answer, { allow: false, unanswered: 'timeout' });
  assert.match(answerAsk(r, answer, system).reason, /^nobody answered in time/);
  const r2 = askFor('vault');
  const pending = q.ask('work', 'qubes.Filecopy', '+', r2);
  q.cancel(pending.id);
  assert.match(answerAsk(r2, await pending.answer, system).reason, /^the caller left before an answer/);
  assert.deepEqual(seen, ['timeout', 'withdrawn']);
  assert.equal(q.list().length, 0);
});
