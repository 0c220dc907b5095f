// qvm-ls output, byte for byte: Qubes' default columns plus BACKEND, --raw-data, --raw-list,
// --fields, and the filters, all from canned admin.vm.List / property.GetAll replies.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { getAll, runCommand, VM_LIST } from './cli-fake-client';

const REPLIES = {
  'admin.vm.List dom0': VM_LIST,
  'admin.vm.property.GetAll dom0': getAll([['label', false, 'label', 'black'], ['qid', false, 'int', '0']]),
  'admin.vm.property.GetAll debian-12': getAll([
    ['label', false, 'label', 'black'], ['netvm', true, 'vm', ''], ['qid', false, 'int', '1'], ['virt_mode', true, 'str', 'sandbox'],
  ]),
  'admin.vm.property.GetAll sys-net': getAll([
    ['label', false, 'label', 'red'], ['netvm', true, 'vm', ''], ['provides_network', false, 'bool', 'True'], ['qid', false, 'int', '2'],
    ['virt_mode', false, 'str', 'hvm'],
  ]),
  'admin.vm.property.GetAll work': getAll([
    ['label', false, 'label', 'blue'], ['memory', true, 'int', '400'], ['netvm', true, 'vm', 'sys-net'], ['qid', false, 'int', '3'],
    ['template', false, 'vm', 'debian-12'], ['virt_mode', true, 'str', 'sandbox'],
  ]),
  'admin.vm.property.GetAll personal': getAll([
    ['label', false, 'label', 'yellow'], ['memory', false, 'int', '1000'], ['netvm', false, 'vm', ''], ['qid', false, 'int', '4'],
    ['template', false, 'vm', 'debian-12'], ['virt_mode', true, 'str', 'sandbox'],
  ]),
};

describe('qvm-ls', () => {
  it('prints the default table: dom0 first, then by name, `-` for empty cells, BACKEND last', async () => {
    const r = await runCommand('qvm-ls', [], REPLIES);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      [
        'NAME       STATE    CLASS         LABEL   TEMPLATE   NETVM    BACKEND',
        'dom0       Running  AdminVM       black   -          -        -',
        'debian-12  Halted   TemplateVM    black   -          -        sandbox',
        'personal   Running  AppVM         yellow  debian-12  -        sandbox',
        'sys-net    Running  StandaloneVM  red     -          -        vm',
        'work       Halted   AppVM         blue    debian-12  sys-net  sandbox',
        '',
      ].join('\n'),
    );
    assert.equal(r.stderr, '');
  });

  it('asks for the list once and for each listed qube\'s properties once', async () => {
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

  it('--raw-data prints no header and |-separated cells', async () => {
    const r = await runCommand('qvm-ls', ['--raw-data'], REPLIES);
    assert.equal(
      r.stdout,
      [
        'dom0|Running|AdminVM|black|-|-|-',
        'debian-12|Halted|TemplateVM|black|-|-|sandbox',
        'personal|Running|AppVM|yellow|debian-12|-|sandbox',
        'sys-net|Running|StandaloneVM|red|-|-|vm',
        'work|Halted|AppVM|blue|debian-12|sys-net|sandbox',
        '',
      ].join('\n'),
    );
  });

  it('--raw-list prints names only, from admin.vm.List alone', async () => {
    const r = await runCommand('qvm-ls', ['--raw-list'], REPLIES);
    assert.equal(r.stdout, 'dom0\ndebian-12\npersonal\nsys-net\nwork\n');
    assert.deepEqual(r.client.summary(), ['admin.vm.List dom0']);
  });

  it('--fields shows any property as a column, header upper-case with - for _', async () => {
    const r = await runCommand('qvm-ls', ['--fields', 'name,virt_mode,memory,provides-network,backend', 'work', 'sys-net'], REPLIES);
    assert.equal(
      r.stdout,
      [
        'NAME     VIRT-MODE  MEMORY  PROVIDES-NETWORK  BACKEND',
        'sys-net  hvm        -       True              vm',
        'work     sandbox    400     -                 sandbox',
        '',
      ].join('\n'),
    );
    assert.deepEqual(r.client.summary().sort(), ['admin.vm.List dom0', 'admin.vm.property.GetAll sys-net', 'admin.vm.property.GetAll work']);
  });

  it('-O with only list columns makes no property call', async () => {
    const r = await runCommand('qvm-ls', ['-O', 'NAME,STATE,CLASS', '--raw-data', '--running'], REPLIES);
    assert.equal(r.stdout, 'dom0|Running|AdminVM\npersonal|Running|AppVM\nsys-net|Running|StandaloneVM\n');
    assert.deepEqual(r.client.summary(), ['admin.vm.List dom0']);
  });

  it('filters by state, class, label and --exclude', async () => {
    const halted = await runCommand('qvm-ls', ['--raw-list', '--halted'], REPLIES);
    assert.equal(halted.stdout, 'debian-12\nwork\n');
    const appvms = await runCommand('qvm-ls', ['--raw-list', '--exclude', 'work', '--class', 'AppVM'], REPLIES);
    assert.equal(appvms.stdout, 'personal\n');
    const labels = await runCommand('qvm-ls', ['-O', 'name,label', '--raw-data', '--label', 'red', 'black'], REPLIES);
    assert.equal(labels.stdout, 'dom0|black\ndebian-12|black\nsys-net|red\n');
  });

  it('filters by tags with admin.vm.tag.List', async () => {
    const r = await runCommand('qvm-ls', ['--raw-list', '--tags', 'work-related'], {
      ...REPLIES,
      'admin.vm.tag.List': (c) => (c.dest === 'work' || c.dest === 'personal' ? 'created-by-dom0\nwork-related\n' : ''),
      'admin.vm.tag.List personal': 'created-by-dom0\n',
    });
    assert.equal(r.stdout, 'work\n');
  });

  it('fails in one line for a qube that does not exist', async () => {
    const r = await runCommand('qvm-ls', ['nosuch'], REPLIES);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, "qvm-ls: error: No such domain: 'nosuch'\n");
  });

  it('shows the full preset format', async () => {
    const r = await runCommand('qvm-ls', ['--format', 'full', 'work'], REPLIES);
    assert.equal(
      r.stdout,
      'NAME  STATE   CLASS  LABEL  QID  UUID                                  BACKEND\n' +
        'work  Halted  AppVM  blue   3    33333333-3333-3333-3333-333333333333  sandbox\n',
    );
  });
});
