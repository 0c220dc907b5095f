// The policy in force: loaded, reloaded on change, and never replaced by a policy that fails to
// load (fail closed); before any load, everything is denied.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { fingerprintOf, PolicyStore } from '../../src/daemon/policy-store';
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

test('a directory that appears, disappears or is replaced after the start is followed', async () => {
  const base = mkdtempSync(path.join(os.tmpdir(), 'isola-policy-appear-'));
  const dir = path.join(base, 'policy.d');
  const s = new PolicyStore(dir, quiet);
  try {
    s.reload();
    s.watch();
    assert.equal(s.status().state, 'missing');
    mkdirSync(dir);
    writeFileSync(path.join(dir, '30-user.policy'), 'test.Echo * work vault allow\n');
    await until(() => s.status().state === 'loaded');
    assert.equal(decide(s), 'allow', 'a directory created after the start is loaded');

    const other = path.join(base, 'other.d');
    mkdirSync(other);
    writeFileSync(path.join(other, '30-user.policy'), 'test.Echo * work vault deny\n');
    rmSync(dir, { recursive: true });
    await until(() => s.status().state === 'missing');
    assert.equal(decide(s), 'deny', 'no directory, no rules: every call is denied');
    renameSync(other, dir);
    await until(() => s.status().state === 'loaded');
    assert.equal(decide(s), 'deny', 'the replacement is in force');
  } finally {
    s.close();
    rmSync(base, { recursive: true, force: true });
  }
});

test('status keeps the load error, since when, and the time of the policy still in force', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'isola-policy-status-'));
  const changes: string[] = [];
  const s = new PolicyStore(dir, quiet, (st) => changes.push(st.state));
  try {
    writeFileSync(path.join(dir, '30-user.policy'), 'test.Echo * work vault allow\n');
    s.reload();
    const loadedAt = s.status().loadedAt;
    assert.ok(loadedAt);
    assert.deepEqual({ ...s.status(), loadedAt: 0 }, { dir, state: 'loaded', files: 1, rules: 1, loadedAt: 0, error: null, errorSince: null });
    writeFileSync(path.join(dir, '40-bad.policy'), 'test.Echo * work\n');
    s.reload();
    const st = s.status();
    assert.equal(st.state, 'error');
    assert.match(st.error!, /40-bad\.policy:1: /);
    assert.equal(st.loadedAt, loadedAt, 'the old policy stays, with its load time');
    const since = st.errorSince;
    s.reload();
    assert.equal(s.status().errorSince, since, 'the same error keeps its first time');
    rmSync(path.join(dir, '40-bad.policy'));
    s.reload();
    assert.equal(s.status().error, null);
    assert.equal(s.status().errorSince, null);
    assert.deepEqual(changes, ['loaded', 'error', 'error', 'loaded']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the fingerprint changes with any entry and not without one', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'isola-policy-fp-'));
  try {
    assert.equal(fingerprintOf(path.join(dir, 'nonexistent')), '');
    const a = fingerprintOf(dir);
    assert.equal(fingerprintOf(dir), a);
    mkdirSync(path.join(dir, 'include'));
    writeFileSync(path.join(dir, 'include', 'x'), 'one\n');
    const b = fingerprintOf(dir);
    assert.notEqual(b, a);
    writeFileSync(path.join(dir, 'include', 'x'), 'two, longer\n');
    assert.notEqual(fingerprintOf(dir), b, 'an edit in an include directory counts');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
