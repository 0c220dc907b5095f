// qvm-check, ported from Qubes' qubesadmin/tests/tools/qvm_check.py: exit codes 0 (all), 3 (some),
// 1 (none or unknown), and messages naming only the matching qubes (`None of qubes: running`).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { runCommand } from './cli-fake-client';

const LIST = {
  'admin.vm.List dom0': [
    'dom0 class=AdminVM state=Running uuid=0',
    'some-vm class=AppVM state=Running uuid=1',
    'some-vm2 class=AppVM state=Paused uuid=2',
    'some-vm3 class=TemplateVM state=Halted uuid=3 last_error=out%20of%20memory',
    'other-vm class=AppVM state=Running uuid=4',
  ].join('\n') + '\n',
};
const check = async (argv: string[], extra = {}) => {
  const r = await runCommand('qvm-check', argv, { ...LIST, ...extra });
  return [r.code, r.stderr];
};

describe('qvm-check', () => {
  it('exists: exit 0 and one line per qube, sorted (test_000..003)', async () => {
    assert.deepEqual(await check(['some-vm']), [0, 'qvm-check: some-vm: exists\n']);
    assert.deepEqual(await check(['some-vm', 'other-vm']), [0, 'qvm-check: other-vm: exists\nqvm-check: some-vm: exists\n']);
  });

  it('--running: only the running qubes are named; 3 when some match, 1 with "None of qubes" (test_004..007)', async () => {
    assert.deepEqual(await check(['--running', 'some-vm']), [0, 'qvm-check: some-vm: running\n']);
    assert.deepEqual(await check(['--running', 'some-vm', 'other-vm']), [0, 'qvm-check: other-vm: running\nqvm-check: some-vm: running\n']);
    assert.deepEqual(await check(['--running', '--all']), [3, 'qvm-check: other-vm: running\nqvm-check: some-vm: running\n']);
    assert.deepEqual(await check(['--running', 'some-vm3']), [1, 'qvm-check: None of qubes: running\n']);
  });

  it('--paused and --template (test_008..011)', async () => {
    assert.deepEqual(await check(['--paused', 'some-vm2']), [0, 'qvm-check: some-vm2: paused\n']);
    assert.deepEqual(await check(['--paused', 'some-vm2', 'some-vm']), [3, 'qvm-check: some-vm2: paused\n']);
    assert.deepEqual(await check(['--template', 'some-vm3']), [0, 'qvm-check: some-vm3: template\n']);
    assert.deepEqual(await check(['--template', 'some-vm2', 'some-vm3']), [3, 'qvm-check: some-vm3: template\n']);
  });

  it('--networked: provides_network, else a netvm that is not none (test_012, test_013)', async () => {
    const replies = {
      'admin.vm.property.Get some-vm2 provides_network': 'default=True type=bool False',
      'admin.vm.property.Get some-vm3 provides_network': 'default=True type=bool False',
      'admin.vm.property.Get some-vm provides_network': 'default=False type=bool True',
      'admin.vm.property.Get some-vm2 netvm': 'default=False type=vm some-vm',
      'admin.vm.property.Get some-vm3 netvm': 'default=False type=vm ',
    };
    assert.deepEqual(await check(['--networked', 'some-vm2'], replies), [0, 'qvm-check: some-vm2: networked\n']);
    assert.deepEqual(await check(['--networked', 'some-vm2', 'some-vm3'], replies), [3, 'qvm-check: some-vm2: networked\n']);
    assert.deepEqual(await check(['--networked', 'some-vm'], replies), [0, 'qvm-check: some-vm: networked\n']);
  });

  it('several filters are joined: `some-vm: running, networked`', async () => {
    const replies = { 'admin.vm.property.Get some-vm provides_network': 'default=False type=bool True' };
    assert.deepEqual(await check(['--running', '--networked', 'some-vm'], replies), [0, 'qvm-check: some-vm: running, networked\n']);
  });

  it('an unknown qube is an answer, not a usage error: warning and exit 1 (test_014)', async () => {
    assert.deepEqual(await check(['invalid-vm']), [1, 'qvm-check: invalid-vm: non-existent!\n']);
    assert.deepEqual(await check(['some-vm', 'invalid-vm']), [1, 'qvm-check: some-vm: exists\nqvm-check: invalid-vm: non-existent!\n']);
    assert.deepEqual(await check(['--running', 'invalid-vm']), [1, 'qvm-check: None of qubes: running\nqvm-check: invalid-vm: non-existent!\n']);
  });

  it('-q prints nothing, exit codes unchanged; -v adds why a qube is not running (Isola)', async () => {
    assert.deepEqual(await check(['-q', '--running', 'some-vm3', 'invalid-vm']), [1, '']);
    assert.deepEqual(await check(['-v', '--running', 'some-vm3']), [1, 'qvm-check: None of qubes: running\nqvm-check: some-vm3: last run: out of memory\n']);
  });

  it('wildcards; --all --exclude; usage errors exit 2 (test_15)', async () => {
    assert.deepEqual(await check(['--running', 'some-vm*']), [3, 'qvm-check: some-vm: running\n']);
    assert.deepEqual(await check(['--all', '--exclude', 'some-vm3', '--template']), [1, 'qvm-check: None of qubes: template\n']);
    for (const argv of [['--invalid-option'], [], ['--exclude', 'x', 'some-vm']]) {
      const r = await runCommand('qvm-check', argv, LIST);
      assert.equal(r.code, 2, argv.join(' '));
      assert.match(r.stderr, /^qvm-check: error: /);
    }
  });
});
