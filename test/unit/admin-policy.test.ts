// The generated Admin API policy (Qubes' first gate): every method routed to its include file,
// nothing granted by default, an rwx grant implying ro, and the installer never clobbering edits.

import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { ADMIN_METHODS } from '../../src/core/admin-methods';
import { ADMIN_POLICY_FILE, adminDefaultPolicy } from '../../src/daemon/admin-policy';
import { installDefaultPolicy } from '../../src/daemon/setup';
import { evaluate, loadPolicyDir } from '../../src/policy';
import { nodePolicyFs } from '../../src/daemon/policy-fs';

const dir = mkdtempSync(path.join(os.tmpdir(), 'isola-admin-policy-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const system = {
  domains: {
    dom0: { type: 'AdminVM', tags: [] },
    mgmt: { type: 'AppVM', tags: [] },
    work: { type: 'AppVM', tags: ['managed'] },
    vault: { type: 'AppVM', tags: [] },
  },
};
const decide = (source: string, target: string, service: string, argument = '') =>
  evaluate(loadPolicyDir(nodePolicyFs, dir), { source, target, service, argument }, system as never).result;

test('one include-service line per method, by scope and access', () => {
  const text = adminDefaultPolicy();
  for (const [method, c] of Object.entries(ADMIN_METHODS)) {
    if (method.startsWith('internal.')) assert.doesNotMatch(text, new RegExp(`${method.replace(/\./g, '\\.')} `));
    else assert.match(text, new RegExp(`^!include-service ${method.replace(/\./g, '\\.')} \\* include/admin-${c.scope}-${c.access}$`, 'm'));
  }
});

test('installed, nothing is granted; a local rwx grant also grants local reads, not global calls', () => {
  installDefaultPolicy(dir);
  assert.equal(decide('mgmt', 'work', 'admin.vm.property.Get', '+label'), 'deny');
  appendFileSync(path.join(dir, 'include', 'admin-local-rwx'), 'mgmt @tag:managed allow target=dom0\n');
  assert.equal(decide('mgmt', 'work', 'admin.vm.Start'), 'allow');
  assert.equal(decide('mgmt', 'work', 'admin.vm.property.Get', '+label'), 'allow', 'rwx implies ro');
  assert.equal(decide('mgmt', 'vault', 'admin.vm.Start'), 'deny', 'only the tagged qube');
  assert.equal(decide('mgmt', 'dom0', 'admin.vm.Create.AppVM'), 'deny', 'a global call needs a global grant');
});

test('the installer refreshes its generated file but never an edited one or the includes', () => {
  const gen = path.join(dir, ADMIN_POLICY_FILE);
  writeFileSync(gen, readFileSync(gen, 'utf8').replace(/^!include-service admin\.vm\.Start .*$/m, ''));
  installDefaultPolicy(dir);
  assert.equal(readFileSync(gen, 'utf8'), adminDefaultPolicy(), 'an outdated generated file is rewritten');
  writeFileSync(gen, '## mine\n');
  installDefaultPolicy(dir);
  assert.equal(readFileSync(gen, 'utf8'), '## mine\n');
  assert.match(readFileSync(path.join(dir, 'include', 'admin-local-rwx'), 'utf8'), /mgmt @tag:managed/);
});
