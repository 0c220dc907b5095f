// qvm-ls output, byte for byte, against canned admin.vm.List / property.GetAll replies: Qubes'
// six default columns, --raw-data, --raw-list with filters, -O, formats, refusals, and the calls made.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { err, getAll, runCommand, VM_LIST } from './cli-fake-client';

const RUNNING = 'mem=0 mem_static_max=0 cputime=0 power_state=Running';
const REPLIES = {
  'admin.vm.List dom0': VM_LIST,
  // VIRT-MODE asks a running qube's state (a VM's accelerator); none of these is a VM with one.
  'admin.vm.CurrentState dom0': RUNNING,
  'admin.vm.CurrentState sys-net': RUNNING,
  'admin.vm.CurrentState personal': RUNNING,
  'admin.vm.property.GetAll dom0': getAll([['label', false, 'label', 'black'], ['qid', false, 'int', '0'], ['updateable', true, 'bool', 'True']]),
  'admin.vm.property.GetAll debian-12': getAll([
    ['label', false, 'label', 'black'], ['netvm', true, 'vm', ''], ['qid', false, 'int', '1'], ['virt_mode', true, 'str', 'sandbox'],
    ['updateable', true, 'bool', 'True'], ['maxmem', true, 'int', '4000'], ['vcpus', true, 'int', '2'], ['memory', true, 'int', '400'],
  ]),
  'admin.vm.property.GetAll sys-net': getAll([
    ['label', false, 'label', 'red'], ['netvm', true, 'vm', ''], ['provides_network', false, 'bool', 'True'], ['qid', false, 'int', '2'],
    ['virt_mode', false, 'str', 'hvm'], ['updateable', true, 'bool', 'True'], ['autostart', false, 'bool', 'True'],
  ]),
  'admin.vm.property.GetAll work': getAll([
    ['label', false, 'label', 'blue'], ['memory', true, 'int', '400'], ['netvm', true, 'vm', 'sys-net'], ['qid', false, 'int', '3'],
    ['template', false, 'vm', 'debian-12'], ['virt_mode', true, 'str', 'sandbox'], ['updateable', true, 'bool', 'False'],
    ['maxmem', true, 'int', '4000'], ['vcpus', false, 'int', '1'],
  ]),
  'admin.vm.property.GetAll personal': getAll([
    ['label', false, 'label', 'yellow'], ['memory', false, 'int', '1000'], ['netvm', false, 'vm', ''], ['qid', false, 'int', '4'],
    ['template', false, 'vm', 'debian-12'], ['virt_mode', true, 'str', 'sandbox'], ['updateable', true, 'bool', 'False'],
  ]),
};

describe('qvm-ls', () => {
  it("prints Qubes' six default columns, rows by name (dom0 not pinned), `-` for empty cells", async () => {
    const r = await runCommand('qvm-ls', [], REPLIES);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      [
        'NAME       STATE    CLASS         LABEL   TEMPLATE   NETVM',
        'debian-12  Halted   TemplateVM    black   -          -',
        'dom0       Running  AdminVM       black   -          -',
        'personal   Running  AppVM         yellow  debian-12  -',
        'sys-net    Running  StandaloneVM  red     -          -',
        'work       Halted   AppVM         blue    debian-12  sys-net',
        '',
      ].join('\n'),
    );
    assert.equal(r.stderr, '');
  });

  it("asks for the list once and for each listed qube's properties once, nothing else", async () => {
    const r = await runCommand('qvm-ls', [], REPLIES);
    assert.deepEqual(r.client.summary().sort(), [
      'admin.vm.List dom0',
      'admin.vm.property.GetAll debian-12',
      'admin.vm.property.GetAll dom0',
      'admin.vm.property.GetAll personal',
      'admin.vm.property.GetAll sys-net',
      'admin.vm.property.GetAll work',
    ]);
  });

  it('--raw-data prints no header and six |-separated fields per qube', async () => {
    const r = await runCommand('qvm-ls', ['--raw-data'], REPLIES);
    assert.equal(
      r.stdout,
      [
        'debian-12|Halted|TemplateVM|black|-|-',
        'dom0|Running|AdminVM|black|-|-',
        'personal|Running|AppVM|yellow|debian-12|-',
        'sys-net|Running|StandaloneVM|red|-|-',
        'work|Halted|AppVM|blue|debian-12|sys-net',
        '',
      ].join('\n'),
    );
    for (const line of r.stdout.trim().split('\n')) assert.equal(line.split('|').length, 6);
  });

  it('--raw-list prints names only, from admin.vm.List alone', async () => {
    const r = await runCommand('qvm-ls', ['--raw-list'], REPLIES);
    assert.equal(r.stdout, 'debian-12\ndom0\npersonal\nsys-net\nwork\n');
    assert.deepEqual(r.client.summary(), ['admin.vm.List dom0']);
  });

  it('--raw-list honours every filter (label, class, state, tags, prefs)', async () => {
    assert.equal((await runCommand('qvm-ls', ['--raw-list', '--label', 'black'], REPLIES)).stdout, 'debian-12\ndom0\n');
    assert.equal((await runCommand('qvm-ls', ['--raw-list', '--class', 'AppVM', '--running'], REPLIES)).stdout, 'personal\n');
    assert.equal((await runCommand('qvm-ls', ['--raw-list', '--prefs', 'netvm=sys-net'], REPLIES)).stdout, 'work\n');
    assert.equal((await runCommand('qvm-ls', ['--raw-list', '--netvm-is', 'sys-net'], REPLIES)).stdout, 'work\n');
    assert.equal((await runCommand('qvm-ls', ['--raw-list', '--template-source', 'debian-12'], REPLIES)).stdout, 'personal\nwork\n');
  });

  it('-O shows any property as a column, header upper-case with - for _', async () => {
    const r = await runCommand('qvm-ls', ['--fields', 'name,virt_mode,maxmem,provides-network', 'work', 'sys-net'], REPLIES);
    assert.equal(
      r.stdout,
      ['NAME     VIRT-MODE  MAXMEM  PROVIDES-NETWORK', 'sys-net  hvm        -       True', 'work     sandbox    4000    -', ''].join('\n'),
    );
    assert.deepEqual(r.client.summary().sort(), ['admin.vm.CurrentState sys-net', 'admin.vm.List dom0', 'admin.vm.property.GetAll sys-net', 'admin.vm.property.GetAll work']);
  });

  it('-O with only list columns makes no property call', async () => {
    const r = await runCommand('qvm-ls', ['-O', 'NAME,STATE,CLASS', '--raw-data', '--running'], REPLIES);
    assert.equal(r.stdout, 'dom0|Running|AdminVM\npersonal|Running|AppVM\nsys-net|Running|StandaloneVM\n');
    assert.deepEqual(r.client.summary(), ['admin.vm.List dom0']);
  });

  it('refuses an unknown column before any call, instead of a column of -', async () => {
    const r = await runCommand('qvm-ls', ['-O', 'name,bogus'], REPLIES);
    assert.equal(r.code, 2);
    assert.equal(r.stderr, "qvm-ls: error: unknown column: 'bogus' (see --help-columns)\n");
    assert.equal(r.stdout, '');
    assert.deepEqual(r.client.summary(), []);
  });

  it("accepts Qubes' properties Isola may lack (ip, mac, debug) and shows - where a qube has none", async () => {
    const r = await runCommand('qvm-ls', ['-O', 'name,ip,mac,debug', '--raw-data', 'work'], REPLIES);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'work|-|-|-\n');
  });

  it('filters by state, class, label and --all --exclude', async () => {
    const halted = await runCommand('qvm-ls', ['--raw-list', '--halted'], REPLIES);
    assert.equal(halted.stdout, 'debian-12\nwork\n');
    const appvms = await runCommand('qvm-ls', ['--raw-list', '--all', '--exclude', 'work', '--class', 'AppVM'], REPLIES);
    assert.equal(appvms.stdout, 'personal\n');
    const labels = await runCommand('qvm-ls', ['-O', 'name,label', '--raw-data', '--label', 'red', 'black'], REPLIES);
    assert.equal(labels.stdout, 'debian-12|black\ndom0|black\nsys-net|red\n');
  });

  it('--all lists dom0 too (qvm-ls does not leave AdminVMs out)', async () => {
    const r = await runCommand('qvm-ls', ['--raw-list', '--all'], REPLIES);
    assert.equal(r.stdout, 'debian-12\ndom0\npersonal\nsys-net\nwork\n');
  });

  it('refuses --exclude without --all, and VMNAME with --all, before any call', async () => {
    const ex = await runCommand('qvm-ls', ['--exclude', 'work'], REPLIES);
    assert.equal(ex.code, 2);
    assert.equal(ex.stderr, 'qvm-ls: error: --exclude can only be used with --all\n');
    const both = await runCommand('qvm-ls', ['--all', 'work'], REPLIES);
    assert.equal(both.code, 2);
    assert.equal(both.stderr, 'qvm-ls: error: argument VMNAME: not allowed with argument --all\n');
    assert.deepEqual([...ex.client.summary(), ...both.client.summary()], []);
  });

  it('filters by tags with admin.vm.tag.List', async () => {
    const r = await runCommand('qvm-ls', ['--raw-list', '--tags', 'work-related'], {
      ...REPLIES,
      'admin.vm.tag.List': (c) => (c.dest === 'work' ? 'created-by-dom0\nwork-related\n' : 'created-by-dom0\n'),
    });
    assert.equal(r.stdout, 'work\n');
  });

  it("an unknown qube is a usage error in Qubes' words (exit 2)", async () => {
    const r = await runCommand('qvm-ls', ['nosuch'], REPLIES);
    assert.equal(r.code, 2);
    assert.equal(r.stderr, "qvm-ls: error: no such domain: 'nosuch'\n");
    assert.equal(r.stdout, '');
  });

  it('VMNAME takes wildcards', async () => {
    const r = await runCommand('qvm-ls', ['--raw-list', '*e*'], REPLIES);
    assert.equal(r.stdout, 'debian-12\npersonal\nsys-net\n');
  });

  it('-o full has Qubes columns (XID is - where a qube has none)', async () => {
    const r = await runCommand('qvm-ls', ['--format', 'full', 'work'], REPLIES);
    assert.equal(
      r.stdout,
      'NAME  STATE   CLASS  LABEL  QID  XID  UUID\n' + 'work  Halted  AppVM  blue   3    -    33333333-3333-3333-3333-333333333333\n',
    );
  });

  it('-o prefs shows the backend as VIRT-MODE, and INITIALMEM as the memory property', async () => {
    const r = await runCommand('qvm-ls', ['-o', 'prefs', 'work', 'sys-net'], REPLIES);
    assert.equal(
      r.stdout,
      [
        'NAME     LABEL  TEMPLATE   NETVM    VCPUS  INITIALMEM  MAXMEM  VIRT-MODE',
        'sys-net  red    -          -        -      -           -       hvm',
        'work     blue   debian-12  sys-net  1      400         4000    sandbox',
        '',
      ].join('\n'),
    );
    assert.equal((await runCommand('qvm-ls', ['-O', 'name,virt_mode', '--raw-data', 'work'], REPLIES)).stdout, 'work|sandbox\n');
  });

  it('a daemon error is one line and exit 1', async () => {
    const r = await runCommand('qvm-ls', [], { 'admin.vm.List dom0': err('QubesException', 'boom') });
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'qvm-ls: error: boom\n');
  });

  it('shows why a halted qube last stopped, on stderr, not in --raw-data', async () => {
    const list = VM_LIST.replace('work class=AppVM state=Halted uuid=33333333-3333-3333-3333-333333333333', '$& last_error=killed%20by%20OOM');
    const r = await runCommand('qvm-ls', ['-O', 'name,state', 'work'], { ...REPLIES, 'admin.vm.List dom0': list });
    assert.equal(r.stdout, 'NAME  STATE\nwork  Halted\n');
    assert.equal(r.stderr, 'work: last run: killed by OOM\n');
    assert.equal((await runCommand('qvm-ls', ['-O', 'name,state', '--raw-data', 'work'], { ...REPLIES, 'admin.vm.List dom0': list })).stderr, '');
  });
});
