// qvm-shutdown, ported from Qubes' qubesadmin/tests/tools/qvm_shutdown.py: the Shutdown argument
// (force/wait), --all forcing, --dry-run, --timeout implying --wait, retries of qubes in use,
// killing qubes that timed out, and the exit code (the number of qubes not shut down).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { QubesError } from '../../src/core/errors';
import { err, runCommand, VM_LIST } from './cli-fake-client';

const LIST = { 'admin.vm.List dom0': VM_LIST };
const inUse = () => err('QubesVMInUseError', 'Denied as qube is in use');
/** A reply that answers each call with the next item (the last one repeats). */
function sequence(...replies: (string | QubesError)[]) {
  let i = 0;
  return () => {
    const r = replies[Math.min(i++, replies.length - 1)];
    if (typeof r !== 'string') throw r;
    return r;
  };
}
const shutdowns = (calls: { method: string; dest: string; arg: string }[]) => calls.filter((c) => c.method === 'admin.vm.Shutdown').map((c) => `${c.dest} ${c.arg}`.trim());

describe('qvm-shutdown', () => {
  it('sends admin.vm.Shutdown with "", force, wait or force+wait (test_000, test_005, test_010)', async () => {
    const cases: [string[], string][] = [[[], ''], [['--force'], 'force'], [['--wait'], 'wait'], [['--wait', '--force'], 'force+wait']];
    for (const [flags, arg] of cases) {
      const r = await runCommand('qvm-shutdown', [...flags, 'work'], { ...LIST, 'admin.vm.Shutdown': '' });
      assert.deepEqual([r.code, r.stderr], [0, ''], flags.join(' '));
      assert.deepEqual(shutdowns(r.client.calls), [`work ${arg}`.trim()], flags.join(' '));
    }
  });

  it('several qubes (test_004); an already halted qube is done (test_003)', async () => {
    const r = await runCommand('qvm-shutdown', ['work', 'personal'], { ...LIST, 'admin.vm.Shutdown work': err('QubesVMNotStartedError', 'Domain is powered off: work'), 'admin.vm.Shutdown personal': '' });
    assert.deepEqual([r.code, r.stderr], [0, '']);
    assert.deepEqual(shutdowns(r.client.calls), ['work', 'personal']);
  });

  it('--all forces and skips dom0 (test_012); --all --exclude does not force unless --force (test_016, test_017)', async () => {
    const all = await runCommand('qvm-shutdown', ['--wait', '--all'], { ...LIST, 'admin.vm.Shutdown': '' });
    assert.deepEqual(shutdowns(all.client.calls), ['debian-12', 'sys-net', 'work', 'personal'].map((n) => `${n} force+wait`));
    const ex = await runCommand('qvm-shutdown', ['--all', '--exclude', 'sys-net', '--exclude', 'debian-12', '--exclude', 'personal'], { ...LIST, 'admin.vm.Shutdown': '' });
    assert.deepEqual(shutdowns(ex.client.calls), ['work']);
    const exf = await runCommand('qvm-shutdown', ['--all', '--exclude', 'sys-net', '--exclude', 'debian-12', '--exclude', 'personal', '--force'], { ...LIST, 'admin.vm.Shutdown': '' });
    assert.deepEqual(shutdowns(exf.client.calls), ['work force']);
  });

  it('--dry-run checks the names and shuts nothing down (test_006)', async () => {
    const r = await runCommand('qvm-shutdown', ['--dry-run', 'work'], LIST);
    assert.deepEqual([r.code, r.client.summary()], [0, ['admin.vm.List dom0']]);
    const bad = await runCommand('qvm-shutdown', ['--dry-run', 'wrok'], LIST);
    assert.deepEqual([bad.code, bad.stderr], [2, "qvm-shutdown: error: no such domain: 'wrok'\n"]);
  });

  it('--timeout implies --wait (test_014) and kills a qube not down in time', async () => {
    const r = await runCommand('qvm-shutdown', ['--timeout', '0.05', 'work'], {
      ...LIST,
      'admin.vm.Shutdown work': () => new Promise<string>((resolve) => setTimeout(() => resolve(''), 2000).unref()),
      'admin.vm.Kill work': '',
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, 'qvm-shutdown: killing timed out qubes: work\n');
    assert.deepEqual(r.client.summary().slice(1), ['admin.vm.Shutdown work wait', 'admin.vm.Kill work']);
  });

  it('--wait: a qube the daemon reports as timed out is asked once more, then killed (test_015)', async () => {
    const r = await runCommand('qvm-shutdown', ['--wait', '--all'], {
      ...LIST,
      'admin.vm.Shutdown work': err('QubesVMShutdownTimeoutError', 'Shutdown timed out'),
      'admin.vm.Shutdown personal': err('QubesVMShutdownTimeoutError', 'Shutdown timed out'),
      'admin.vm.Shutdown': '',
      'admin.vm.Kill work': err('QubesVMNotStartedError', 'Domain is powered off'),
      'admin.vm.Kill personal': '',
    });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.client.summary().filter((s) => /work|personal/.test(s)), [
      'admin.vm.Shutdown work force+wait', 'admin.vm.Shutdown personal force+wait',
      'admin.vm.Shutdown work force+wait', 'admin.vm.Shutdown personal force+wait',
      'admin.vm.Kill work', 'admin.vm.Kill personal',
    ]);
    assert.equal(r.stderr, 'qvm-shutdown: retrying shutdown of qubes that timed out: work, personal\nqvm-shutdown: killing timed out qubes: work, personal\n');
  });

  it('retries qubes that were in use, as many rounds as there were, stopping when nothing changes (test_011_*)', async () => {
    const simple = await runCommand('qvm-shutdown', ['-q', '--wait', 'work', 'personal'], { ...LIST, 'admin.vm.Shutdown work': '', 'admin.vm.Shutdown personal': sequence(inUse(), '') });
    assert.equal(simple.code, 0);
    assert.deepEqual(shutdowns(simple.client.calls), ['work wait', 'personal wait', 'personal wait']);

    const many = await runCommand('qvm-shutdown', ['-q', '--wait', 'work', 'personal'], { ...LIST, 'admin.vm.Shutdown work': sequence(inUse(), ''), 'admin.vm.Shutdown personal': sequence(inUse(), inUse(), '') });
    assert.equal(many.code, 0);
    assert.deepEqual(shutdowns(many.client.calls), ['work wait', 'personal wait', 'work wait', 'personal wait', 'personal wait']);

    const stuck = await runCommand('qvm-shutdown', ['--wait', 'work', 'personal', 'sys-net'], { ...LIST, 'admin.vm.Shutdown': () => { throw inUse(); } });
    assert.equal(stuck.code, 3); // the number of qubes not shut down
    assert.equal(shutdowns(stuck.client.calls).length, 6); // one retry round: it changed nothing
    assert.equal(
      stuck.stderr,
      'qvm-shutdown: retrying shutdown of qubes that were in use: work, personal, sys-net\n' +
        ['work', 'personal', 'sys-net'].map((n) => `qvm-shutdown: error: Failed to shut down: ${n}: Denied as qube is in use\n`).join(''),
    );
  });

  it('another failure is reported per qube and counted in the exit code (test_013)', async () => {
    const r = await runCommand('qvm-shutdown', ['--wait', 'work', 'personal'], { ...LIST, 'admin.vm.Shutdown work': err('QubesException', 'Shutdown refused'), 'admin.vm.Shutdown personal': '' });
    assert.deepEqual([r.code, r.stderr], [1, 'qvm-shutdown: error: Failed to shut down: work: Shutdown refused\n']);
  });

  it('usage errors: no qube (test_001), unknown qube (test_002), a bad --timeout; nothing shut down', async () => {
    const cases: [string[], string][] = [
      [[], 'qvm-shutdown: error: one of the arguments --all VMNAME is required\n'],
      [['no-such-vm'], "qvm-shutdown: error: no such domain: 'no-such-vm'\n"],
      [['--timeout', 'soon', 'work'], "qvm-shutdown: error: argument --timeout: invalid number of seconds: 'soon'\n"],
      [['--all', 'work'], 'qvm-shutdown: error: argument VMNAME: not allowed with argument --all\n'],
    ];
    for (const [argv, stderr] of cases) {
      const r = await runCommand('qvm-shutdown', argv, { ...LIST, 'admin.vm.Shutdown': '' });
      assert.deepEqual([r.code, r.stderr], [2, stderr], argv.join(' '));
      assert.deepEqual(shutdowns(r.client.calls), []);
    }
  });
});
