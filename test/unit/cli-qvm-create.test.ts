// qvm-create and qvm-clone, ported from Qubes' qubesadmin/tests/tools/qvm_create.py and
// qvm_clone.py: the create call and its payload, --help-classes, label and class refusals (exit 2,
// nothing created), and Isola's deliberate difference: properties travel in the create call.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { err, runCommand, VM_LIST } from './cli-fake-client';

const LABELS = { 'admin.label.List dom0': 'red\norange\nyellow\ngreen\ngray\nblue\npurple\nblack\n' };
const created = (calls: { method: string; payload: string }[]) => calls.filter((c) => c.method.startsWith('admin.vm.Create.') || c.method === 'admin.vm.Clone');

describe('qvm-create', () => {
  it('creates an AppVM with name and label in the payload (test_000)', async () => {
    const r = await runCommand('qvm-create', ['-l', 'red', 'new-vm'], { ...LABELS, 'admin.vm.Create.AppVM': '' });
    assert.deepEqual([r.code, r.stdout + r.stderr], [0, '']);
    assert.deepEqual(r.client.summary(), ['admin.label.List dom0', 'admin.vm.Create.AppVM dom0 [name=new-vm label=red]']);
  });

  it('passes the template as the argument (test_002) and leaves it empty for default_template', async () => {
    const t = await runCommand('qvm-create', ['-l', 'red', '-t', 'some-template', 'new-vm'], { ...LABELS, 'admin.vm.Create.AppVM': '' });
    assert.deepEqual(created(t.client.calls), [{ method: 'admin.vm.Create.AppVM', dest: 'dom0', arg: 'some-template', payload: 'name=new-vm label=red' }]);
  });

  it('--prop travels in the create call, so a refused property creates nothing (Isola; Qubes sets it afterwards)', async () => {
    const r = await runCommand('qvm-create', ['-l', 'blue', '--prop', 'netvm=sys-net', '--property', 'virt-mode=sandbox', 'work'], { ...LABELS, 'admin.vm.Create.AppVM': '' });
    assert.deepEqual(created(r.client.calls).map((c) => c.payload), ['name=work label=blue netvm=sys-net virt_mode=sandbox']);
    const bad = await runCommand('qvm-create', ['-l', 'blue', '--prop', 'memory=lots', 'work'], {
      ...LABELS,
      'admin.vm.Create.AppVM': err('QubesPropertyValueError', "work: property 'memory': invalid int value: 'lots'"),
    });
    assert.deepEqual([bad.code, bad.stderr], [1, "qvm-create: error: work: property 'memory': invalid int value: 'lots'\n"]);
    assert.equal(created(bad.client.calls).length, 1); // one call, refused whole: no qube, no property
  });

  it('--standalone, -C CLASS and --disp choose admin.vm.Create.<CLASS> (test_004, test_005)', async () => {
    const s = await runCommand('qvm-create', ['--standalone', '-l', 'green', 'vault'], { ...LABELS, 'admin.vm.Create.StandaloneVM': '' });
    assert.deepEqual(s.client.summary().slice(1), ['admin.vm.Create.StandaloneVM dom0 [name=vault label=green]']);
    const t = await runCommand('qvm-create', ['-C', 'TemplateVM', '-l', 'black', 'my-template'], { ...LABELS, 'admin.vm.Create.TemplateVM': '' });
    assert.deepEqual(t.client.summary().slice(1), ['admin.vm.Create.TemplateVM dom0 [name=my-template label=black]']);
    const d = await runCommand('qvm-create', ['--disp', 'new-vm'], LABELS); // DispVM, label red: not creatable in Isola yet
    assert.deepEqual([d.code, d.stderr], [2, "qvm-create: error: cannot create a qube of class 'DispVM' (choose from AppVM, StandaloneVM, TemplateVM)\n"]);
  });

  it('--help-classes lists the creatable classes sorted (test_009)', async () => {
    const r = await runCommand('qvm-create', ['--help-classes'], { 'admin.vmclass.List dom0': 'StandaloneVM\nAppVM\nTemplateVM\nDispVM\n' });
    assert.deepEqual([r.code, r.stdout], [0, 'AppVM\nStandaloneVM\nTemplateVM\n']);
  });

  it('refuses a label that does not exist as Qubes words it, listing the labels in their order (test_011)', async () => {
    const r = await runCommand('qvm-create', ['-l', 'invalid', 'name'], { 'admin.label.List dom0': 'red\nblue\n' });
    assert.deepEqual([r.code, r.stderr, r.stdout], [2, "qvm-create: error: no such label: 'invalid'; available: red, blue\n", '']);
    assert.equal(created(r.client.calls).length, 0);
  });

  it('refuses a missing label, a missing name, an unknown class, a bad name or property: exit 2, nothing sent (test_001)', async () => {
    const cases: [string[], string][] = [
      [['work'], '--label option is mandatory'],
      [['-l', 'red'], 'VMNAME is mandatory'],
      [['-l', 'red', '-C', 'FrobVM', 'work'], "no such domain class: 'FrobVM'"],
      [['-l', 'red', 'bad name'], "invalid qube name 'bad name'"],
      [['-l', 'red', '--property', 'memory', 'work'], "Invalid property token: 'memory'"],
      [['-l', 'red', '--prop', 'kernelopts=a b', 'work'], "invalid property token: 'kernelopts=a b' (a value cannot contain blanks)"],
      [['-l'], 'argument -l/--label: expected one argument'],
    ];
    for (const [argv, msg] of cases) {
      const r = await runCommand('qvm-create', argv, LABELS);
      assert.equal(r.code, 2, argv.join(' '));
      assert.ok(r.stderr.startsWith(`qvm-create: error: ${msg}`), r.stderr);
      assert.equal(r.stderr.split('\n').filter(Boolean).length, 1);
      assert.equal(created(r.client.calls).length, 0);
    }
  });

  it('prints the daemon refusal in one line, exit 1', async () => {
    const r = await runCommand('qvm-create', ['-l', 'blue', 'work'], { ...LABELS, 'admin.vm.Create.AppVM': err('QubesVMAlreadyExistsError', 'VM work already exists') });
    assert.deepEqual([r.code, r.stderr], [1, 'qvm-create: error: VM work already exists\n']);
  });
});

describe('qvm-clone', () => {
  const LIST = { 'admin.vm.List dom0': VM_LIST };

  it('sends admin.vm.Clone to the source with the new name (test_000) and -C/--class (test_004)', async () => {
    const r = await runCommand('qvm-clone', ['work', 'new-vm'], { ...LIST, 'admin.vm.Clone': '' });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(created(r.client.calls), [{ method: 'admin.vm.Clone', dest: 'work', arg: '', payload: 'name=new-vm' }]);
    for (const flag of ['-C', '--class']) {
      const c = await runCommand('qvm-clone', [flag, 'StandaloneVM', 'work', 'solo'], { ...LIST, 'admin.vm.Clone': '' });
      assert.deepEqual(created(c.client.calls), [{ method: 'admin.vm.Clone', dest: 'work', arg: '', payload: 'name=solo class=StandaloneVM' }]);
    }
  });

  it('refuses without NEWVM, with an unknown class or source: exit 2, nothing cloned (test_001)', async () => {
    const cases: [string[], string][] = [
      [['work'], 'qvm-clone: error: the following arguments are required: NEWVM\n'],
      [['-C', 'FrobVM', 'work', 'x'], "qvm-clone: error: no such domain class: 'FrobVM'\n"],
      [['wrok', 'x'], "qvm-clone: error: no such domain: 'wrok'\n"],
      [['work', 'bad name'], "qvm-clone: error: invalid qube name 'bad name': name must start with a letter and contain only letters, digits, _ . -\n"],
    ];
    for (const [argv, stderr] of cases) {
      const r = await runCommand('qvm-clone', argv, { ...LIST, 'admin.vm.Clone': '' });
      assert.deepEqual([r.code, r.stderr], [2, stderr], argv.join(' '));
      assert.equal(created(r.client.calls).length, 0);
    }
  });
});
