// qvm-start and qvm-kill, ported from Qubes' qubesadmin/tests/tools/qvm_start.py and qvm_kill.py:
// the calls, "already running", the per-qube failure lines and the exit codes.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { err, runCommand, VM_LIST } from './cli-fake-client';

const LIST = { 'admin.vm.List dom0': VM_LIST }; // work and debian-12 halted, sys-net and personal running
const calls = (r: { client: { summary(): string[] } }) => r.client.summary().filter((s) => s !== 'admin.vm.List dom0');

describe('qvm-start', () => {
  it('starts the named qubes in order (test_000)', async () => {
    const r = await runCommand('qvm-start', ['work', 'debian-12'], { ...LIST, 'admin.vm.Start': '' });
    assert.deepEqual([r.code, r.stderr], [0, '']);
    assert.deepEqual(calls(r), ['admin.vm.Start work', 'admin.vm.Start debian-12']);
  });

  it('a running qube fails with Qubes\' line unless --skip-if-running (test_003)', async () => {
    const r = await runCommand('qvm-start', ['personal', 'work'], { ...LIST, 'admin.vm.Start': '' });
    assert.deepEqual([r.code, r.stderr], [1, 'qvm-start: error: Starting qube failed: personal: Domain is already running\n']);
    assert.deepEqual(calls(r), ['admin.vm.Start work']);
    const skip = await runCommand('qvm-start', ['--skip-if-running', 'personal', 'work'], { ...LIST, 'admin.vm.Start': '' });
    assert.deepEqual([skip.code, skip.stderr], [0, '']);
    // Started by someone else since the listing: isolad's answer counts the same.
    const race = await runCommand('qvm-start', ['--skip-if-running', 'work'], { ...LIST, 'admin.vm.Start': err('QubesVMNotHaltedError', 'Domain is not halted: work') });
    assert.equal(race.code, 0);
  });

  it('a failure names the qube, the others still start, exit 1', async () => {
    const r = await runCommand('qvm-start', ['work', 'debian-12'], { ...LIST, 'admin.vm.Start work': err('QubesException', 'An error occurred'), 'admin.vm.Start debian-12': '' });
    assert.deepEqual([r.code, r.stderr], [1, 'qvm-start: error: Starting qube failed: work: An error occurred\n']);
    assert.deepEqual(calls(r), ['admin.vm.Start work', 'admin.vm.Start debian-12']);
  });

  it('--all starts every halted qube but dom0, minus --exclude', async () => {
    const r = await runCommand('qvm-start', ['--all', '--skip-if-running', '--exclude', 'debian-12'], { ...LIST, 'admin.vm.Start': '' });
    assert.deepEqual(calls(r), ['admin.vm.Start work']);
  });

  it('usage errors: no qube (test_001), unknown qube (test_002), --exclude without --all; nothing started', async () => {
    const cases: [string[], string][] = [
      [[], 'qvm-start: error: one of the arguments --all VMNAME is required\n'],
      [['no-such-vm'], "qvm-start: error: no such domain: 'no-such-vm'\n"],
      [['--exclude', 'work', 'personal'], 'qvm-start: error: --exclude can only be used with --all\n'],
    ];
    for (const [argv, stderr] of cases) {
      const r = await runCommand('qvm-start', argv, { ...LIST, 'admin.vm.Start': '' });
      assert.deepEqual([r.code, r.stderr, calls(r)], [2, stderr, []], argv.join(' '));
    }
  });
});

describe('qvm-kill', () => {
  it('kills the named qubes (test_000); a halted qube is not an error (test_003)', async () => {
    const r = await runCommand('qvm-kill', ['work', 'personal'], { ...LIST, 'admin.vm.Kill work': err('QubesVMNotStartedError', 'Domain is powered off: work'), 'admin.vm.Kill personal': '' });
    assert.deepEqual([r.code, r.stderr], [0, '']);
    assert.deepEqual(calls(r).sort(), ['admin.vm.Kill personal', 'admin.vm.Kill work']);
  });

  it('another error: "Failed to kill: NAME: MESSAGE", exit = number of failures (test_004)', async () => {
    const r = await runCommand('qvm-kill', ['work', 'personal'], { ...LIST, 'admin.vm.Kill': err('QubesVMError', 'Error message') });
    assert.equal(r.code, 2);
    assert.equal(r.stderr, 'qvm-kill: error: Failed to kill: work: Error message\nqvm-kill: error: Failed to kill: personal: Error message\n');
  });

  it('usage errors: no qube (test_001), unknown qube (test_002); nothing killed', async () => {
    for (const [argv, stderr] of [[[], 'qvm-kill: error: one of the arguments --all VMNAME is required\n'], [['no-such-vm'], "qvm-kill: error: no such domain: 'no-such-vm'\n"]] as [string[], string][]) {
      const r = await runCommand('qvm-kill', argv, { ...LIST, 'admin.vm.Kill': '' });
      assert.deepEqual([r.code, r.stderr, calls(r)], [2, stderr, []]);
    }
  });
});

describe('qvm-pause / qvm-unpause (qubesadmin/tools/qvm_pause.py, qvm_unpause.py)', () => {
  it('pauses and unpauses the named qubes', async () => {
    const p = await runCommand('qvm-pause', ['personal', 'sys-net'], { ...LIST, 'admin.vm.Pause': '' });
    assert.deepEqual([p.code, p.stderr, calls(p).sort()], [0, '', ['admin.vm.Pause personal', 'admin.vm.Pause sys-net']]);
    const u = await runCommand('qvm-unpause', ['personal'], { ...LIST, 'admin.vm.Unpause': '' });
    assert.deepEqual([u.code, u.stderr, calls(u)], [0, '', ['admin.vm.Unpause personal']]);
  });

  it('a failure is "Failed to pause: NAME: MESSAGE", the others still go, exit 1', async () => {
    const r = await runCommand('qvm-pause', ['work', 'personal'], { ...LIST, 'admin.vm.Pause work': err('QubesVMNotRunningError', "Domain not running (either powered off or paused): 'work'"), 'admin.vm.Pause personal': '' });
    assert.deepEqual([r.code, r.stderr], [1, "qvm-pause: error: Failed to pause: work: Domain not running (either powered off or paused): 'work'\n"]);
    const u = await runCommand('qvm-unpause', ['work'], { ...LIST, 'admin.vm.Unpause work': err('QubesVMNotPausedError', "Domain is not paused: 'work'") });
    assert.deepEqual([u.code, u.stderr], [1, "qvm-unpause: error: Failed to unpause/resume: work: Domain is not paused: 'work'\n"]);
  });

  it('no qube named: a usage error, nothing paused; --help says what it does', async () => {
    const r = await runCommand('qvm-pause', [], { ...LIST, 'admin.vm.Pause': '' });
    assert.deepEqual([r.code, calls(r)], [2, []]);
    const h = await runCommand('qvm-pause', ['--help'], LIST);
    assert.match(h.stdout, /Pause qubes/);
  });
});
