// The policy in force: loaded, reloaded on change, and never replaced by a policy that fails to
// load (fail closed); before any load, everything is denied.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { PolicyStore } from '../../src/daemon/policy-store';
import { evaluate } from '../../src/policy';

const quiet = { info: () => undefined, warn: () => undefined, error: () => undefined };
const system = {
  domains: {
    dom0: { type: 'AdminVM', tags: [], template_for_dispvms: false, power_state: 'Running' },
    work: { type: 'AppVM', tags: [], template_for_dispvms: false, power_state: 'Running' },
    vault: { type: 'AppVM', tags: [], template_for_dispvms: false, power_state: 'Running' },
  },
};
const decide = (s: PolicyStore) => evaluate(s.current, { service: 'test.Echo', argument: '+', source: 'work', target: 'vault' }, system).result;
const until = async (cond: () => boolean) => {
  for (let i = 0; i < 100 && !cond(); i++) await new Promise((r) => setTimeout(r, 20));
};

test('denies everything until a policy loads, and when the directory is missing', () => {
  const s = new PolicyStore('/nonexistent/policy.d', quiet);
  assert.equal(decide(s), 'deny');
  assert.equal(s.reload(), false);
  assert.match(s.lastError!, /no policy directory/);
  assert.equal(decide(s), 'deny');
});

test('reloads on change and keeps the previous policy when the new one does not load', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'isola-policy-store-'));
  try {
    writeFileSync(path.join(dir, '30-user.policy'), 'test.Echo * work vault allow\n');
    const s = new PolicyStore(dir, quiet);
    assert.equal(s.reload(), true);
    assert.equal(decide(s), 'allow');
    s.watch();
    const gen = s.generation;
    writeFileSync(path.join(dir, '20-broken.policy'), 'test.Echo * work vault allow # inline comment\n');
    await until(() => s.lastError !== null);
    assert.match(s.lastError!, /20-broken\.policy:1: /, 'FILE:LINE: reason');
    assert.equal(s.generation, gen, 'nothing new was put in force');
    assert.equal(decide(s), 'allow', 'the previous policy stays in force');
    writeFileSync(path.join(dir, '20-broken.policy'), 'test.Echo * work vault deny\n');
    await until(() => s.generation > gen);
    assert.equal(s.lastError, null);
    assert.equal(decide(s), 'deny', 'the fixed policy is in force');
    mkdirSync(path.join(dir, 'include'));
    writeFileSync(path.join(dir, 'include', 'extra'), 'test.Echo * work vault allow\n');
    writeFileSync(path.join(dir, '10-first.policy'), '!include include/extra\n');
    await until(() => decide(s) === 'allow');
    assert.equal(decide(s), 'allow', 'a new file and its include are picked up');
    s.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
