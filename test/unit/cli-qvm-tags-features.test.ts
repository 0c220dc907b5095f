// qvm-tags and qvm-features, ported from Qubes' qubesadmin/tests/tools/qvm_tags.py and
// qvm_features.py: the calls, the output, the exit codes, and the refusals that change nothing.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { err, runCommand, VM_LIST } from './cli-fake-client';

const LIST = { 'admin.vm.List dom0': VM_LIST };
const WRITES = /\.(Set|Remove)$/;

describe('qvm-tags', () => {
  it('lists tags sorted, by default and with list/ls/l (Qubes test_000..002, test_005)', async () => {
    for (const argv of [['work'], ['work', 'list'], ['work', 'ls'], ['work', 'l']]) {
      const r = await runCommand('qvm-tags', argv, { ...LIST, 'admin.vm.tag.List work': 'tag2\ntag1\n' });
      assert.deepEqual([r.code, r.stdout], [0, 'tag1\ntag2\n'], argv.join(' '));
    }
    const empty = await runCommand('qvm-tags', ['work', 'list'], { ...LIST, 'admin.vm.tag.List work': '' });
    assert.deepEqual([empty.code, empty.stdout], [0, '']);
  });

  it('`list TAG` prints the tag and exits 0 if set, prints nothing and exits 1 if not (test_003, test_004)', async () => {
    const yes = await runCommand('qvm-tags', ['work', 'ls', 'tag1'], { ...LIST, 'admin.vm.tag.Get work tag1': '1' });
    assert.deepEqual([yes.code, yes.stdout], [0, 'tag1\n']);
    const no = await runCommand('qvm-tags', ['work', 'ls', 'tag1'], { ...LIST, 'admin.vm.tag.Get work tag1': '0' });
    assert.deepEqual([no.code, no.stdout, no.stderr], [1, '', '']);
  });

  it('add (a, set) sets each tag with admin.vm.tag.Set (test_010)', async () => {
    for (const cmd of ['add', 'a', 'set']) {
      const r = await runCommand('qvm-tags', ['work', cmd, 'tag3', 'tag4'], { ...LIST, 'admin.vm.tag.Set': '' });
      assert.equal(r.code, 0);
      assert.deepEqual(r.client.summary(), ['admin.vm.List dom0', 'admin.vm.tag.Set work tag3', 'admin.vm.tag.Set work tag4']);
    }
  });

  it('del (d, unset, u) removes one tag; a tag that is not set is not an error (test_020)', async () => {
    for (const cmd of ['del', 'd', 'unset', 'u']) {
      const r = await runCommand('qvm-tags', ['work', cmd, 'tag3'], { ...LIST, 'admin.vm.tag.Remove work tag3': err('QubesTagNotFoundError', "Tag not set: 'tag3'") });
      assert.deepEqual([r.code, r.stdout, r.stderr], [0, '', '']);
      assert.deepEqual(r.client.summary(), ['admin.vm.List dom0', 'admin.vm.tag.Remove work tag3']);
    }
  });

  it('refuses, exit 2 and nothing changed: two tags to del, no tag to add, an unknown command', async () => {
    const cases: [string[], string][] = [
      [['work', 'del', 'a', 'b'], 'qvm-tags: error: unrecognized arguments: b\n'],
      [['work', 'list', 'a', 'b'], 'qvm-tags: error: unrecognized arguments: b\n'],
      [['work', 'add'], 'qvm-tags: error: the following arguments are required: tag\n'],
      [['work', 'frob'], "qvm-tags: error: argument command: invalid choice: 'frob' (choose from 'list', 'ls', 'l', 'add', 'a', 'set', 'del', 'd', 'unset', 'u')\n"],
      [[], 'qvm-tags: error: the following arguments are required: VMNAME\n'],
    ];
    for (const [argv, stderr] of cases) {
      const r = await runCommand('qvm-tags', argv, { ...LIST, 'admin.vm.tag.Remove': '', 'admin.vm.tag.Set': '' });
      assert.deepEqual([r.code, r.stderr, r.stdout], [2, stderr, ''], argv.join(' '));
      assert.ok(!r.client.calls.some((c) => WRITES.test(c.method)), argv.join(' '));
    }
  });
});

describe('qvm-features', () => {
  it('lists features as an aligned table; values may have spaces (test_000)', async () => {
    const r = await runCommand('qvm-features', ['work'], {
      ...LIST,
      'admin.vm.feature.List work': 'feature1\nfeature2\n',
      'admin.vm.feature.Get work feature1': 'value1',
      'admin.vm.feature.Get work feature2': 'value2 with spaces',
    });
    assert.deepEqual([r.code, r.stdout], [0, 'feature1  value1\nfeature2  value2 with spaces\n']);
  });

  it('sets a value with spaces as the payload of admin.vm.feature.Set (test_001)', async () => {
    const r = await runCommand('qvm-features', ['work', 'feature3', 'value of feature'], { ...LIST, 'admin.vm.feature.Set': '' });
    assert.equal(r.code, 0);
    assert.deepEqual(r.client.calls.slice(1), [{ method: 'admin.vm.feature.Set', dest: 'work', arg: 'feature3', payload: 'value of feature' }]);
  });

  it('prints a value, or exits 1 silently when the feature is not set (test_002)', async () => {
    const set = await runCommand('qvm-features', ['work', 'feature3'], { ...LIST, 'admin.vm.feature.Get work feature3': 'value2 with spaces' });
    assert.deepEqual([set.code, set.stdout], [0, 'value2 with spaces\n']);
    const unset = await runCommand('qvm-features', ['work', 'os'], { ...LIST, 'admin.vm.feature.Get': err('QubesFeatureNotFoundError', "Feature not set: 'os'") });
    assert.deepEqual([unset.code, unset.stdout + unset.stderr], [1, '']);
  });

  it('--unset (--default, --delete, -D) before or after VMNAME removes the feature; missing is fine (test_003)', async () => {
    for (const argv of [['--unset', 'work', 'feature4'], ['work', 'feature4', '-D'], ['--default', 'work', 'feature4'], ['--delete', 'work', 'feature4']]) {
      const r = await runCommand('qvm-features', argv, { ...LIST, 'admin.vm.feature.Remove': err('QubesFeatureNotFoundError', 'x') });
      assert.deepEqual([r.code, r.stdout, r.stderr], [0, '', ''], argv.join(' '));
      assert.deepEqual(r.client.summary(), ['admin.vm.List dom0', 'admin.vm.feature.Remove work feature4']);
    }
  });

  it('refuses, exit 2 and nothing changed', async () => {
    const cases: [string[], string][] = [
      [['work', '-D'], 'qvm-features: error: --unset requires a feature\n'],
      [['work', 'gui', '1', '--unset'], 'qvm-features: error: cannot both set and unset a value\n'],
      [['work', '', 'x'], 'qvm-features: error: a feature name cannot be empty\n'], // not isolad's "admin.vm.feature.Set needs an argument"
    ];
    for (const [argv, stderr] of cases) {
      const r = await runCommand('qvm-features', argv, LIST);
      assert.deepEqual([r.code, r.stderr], [2, stderr], argv.join(' '));
      assert.equal(r.client.calls.length, 0);
    }
  });
});
