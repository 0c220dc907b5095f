// qvm-remove, ported from Qubes' qubesadmin/tests/tools/qvm_remove.py: the confirmation read from
// stdin (terminal or not), -f, dom0, --all's stronger question, and a qube still in use listed as
// Qubes lists it. A refusal makes no admin.vm.Remove call.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { err, getAll, runCommand, VM_LIST } from './cli-fake-client';

const LIST = { 'admin.vm.List dom0': VM_LIST, 'admin.vm.Remove': '' };
const removed = (calls: { method: string; dest: string }[]) => calls.filter((c) => c.method === 'admin.vm.Remove').map((c) => c.dest);

describe('qvm-remove', () => {
  it('-f/--force removes without asking (test_000)', async () => {
    for (const flag of ['-f', '--force']) {
      const r = await runCommand('qvm-remove', [flag, 'work', 'personal'], LIST);
      assert.deepEqual([r.code, r.stdout, r.stderr, r.prompts], [0, '', '', []]);
      assert.deepEqual(removed(r.client.calls), ['work', 'personal']);
    }
  });

  it('asks "Are you sure? [y/N]" even when stdin is not a terminal (`echo y | qvm-remove work`)', async () => {
    for (const isTTY of [false, true]) {
      const r = await runCommand('qvm-remove', ['work'], LIST, { isTTY, answers: ['y'] });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stderr, 'This will completely remove the selected VM(s)...\n');
      assert.equal(r.stdout, '  work\n');
      assert.deepEqual(r.prompts, ['Are you sure? [y/N] ']);
      assert.deepEqual(removed(r.client.calls), ['work']);
    }
  });

  it('anything but y/Y, or the end of input, cancels: exit 1, nothing removed', async () => {
    for (const answer of ['', 'n', 'yes', 'N']) {
      const r = await runCommand('qvm-remove', ['work'], LIST, { answers: [answer] });
      assert.equal(r.code, 1, answer);
      assert.match(r.stderr, /Remove cancelled\.\n$/);
      assert.deepEqual(removed(r.client.calls), []);
    }
    const upper = await runCommand('qvm-remove', ['work'], LIST, { answers: ['Y'] });
    assert.deepEqual(removed(upper.client.calls), ['work']);
  });

  it('--all asks for IKNOWWHATIAMDOING first; --all --exclude asks only the usual question', async () => {
    const no = await runCommand('qvm-remove', ['--all'], LIST, { answers: ['y'] });
    assert.equal(no.code, 1);
    assert.deepEqual(no.prompts, ['Are you certain? [N/IKNOWWHATIAMDOING]']);
    assert.equal(no.stderr, 'WARNING!!! Removing all domains may leave your system in an unrecoverable state!\nRemove cancelled.\n');
    assert.deepEqual(removed(no.client.calls), []);
    const yes = await runCommand('qvm-remove', ['--all'], LIST, { answers: ['IKNOWWHATIAMDOING', 'y'] });
    assert.deepEqual(removed(yes.client.calls), ['debian-12', 'sys-net', 'work', 'personal']);
    const ex = await runCommand('qvm-remove', ['--all', '--exclude', 'sys-net', '--exclude', 'debian-12'], LIST, { answers: ['y'] });
    assert.deepEqual(ex.prompts, ['Are you sure? [y/N] ']);
    assert.equal(ex.stdout, '  work\n  personal\n');
    assert.deepEqual(removed(ex.client.calls), ['work', 'personal']);
  });

  it('refuses dom0 (exit 1) and an unknown qube (exit 2) without removing anything', async () => {
    const d = await runCommand('qvm-remove', ['-f', 'work', 'dom0'], LIST);
    assert.deepEqual([d.code, d.stderr], [1, "qvm-remove: error: Domain 'dom0' cannot be removed.\n"]);
    assert.deepEqual(removed(d.client.calls), []);
    const u = await runCommand('qvm-remove', ['-f', 'work', 'wrok'], LIST);
    assert.deepEqual([u.code, u.stderr], [2, "qvm-remove: error: no such domain: 'wrok'\n"]);
    assert.deepEqual(removed(u.client.calls), []);
    const none = await runCommand('qvm-remove', [], LIST);
    assert.deepEqual([none.code, none.stderr], [2, 'qvm-remove: error: one of the arguments --all VMNAME is required\n']);
  });

  it('a qube in use: lists what uses it as Qubes does, then the refusal, exit 1 (test_100)', async () => {
    const r = await runCommand('qvm-remove', ['-f', 'debian-12'], {
      'admin.vm.List dom0': VM_LIST,
      'admin.vm.Remove debian-12': err('QubesVMInUseError', 'VM debian-12 is in use by: work (template), global default_template'),
      'admin.property.GetAll dom0': getAll([['default_template', false, 'vm', 'debian-12'], ['default_netvm', false, 'vm', 'sys-net']]),
      'admin.vm.property.GetAll sys-net': getAll([['template', true, 'vm', ''], ['netvm', false, 'vm', '']]),
      'admin.vm.property.GetAll work': getAll([['template', false, 'vm', 'debian-12'], ['netvm', true, 'vm', 'sys-net']]),
      'admin.vm.property.GetAll personal': getAll([['template', false, 'vm', 'debian-12']]),
    });
    assert.equal(r.code, 1);
    assert.equal(
      r.stderr,
      'VM debian-12 cannot be removed. It is in use as:\n - global property default_template\n - template for work\n - template for personal\n' +
        'qvm-remove: error: VM debian-12 is in use by: work (template), global default_template\n',
    );
  });

  it('stops at the first qube isolad refuses, as Qubes', async () => {
    const r = await runCommand('qvm-remove', ['-f', 'work', 'personal'], { 'admin.vm.List dom0': VM_LIST, 'admin.vm.Remove work': err('QubesVMNotHaltedError', 'Cannot remove a running qube: work; shut it down first') });
    assert.deepEqual([r.code, r.stderr], [1, 'qvm-remove: error: Cannot remove a running qube: work; shut it down first\n']);
    assert.deepEqual(removed(r.client.calls), ['work']);
  });
});
