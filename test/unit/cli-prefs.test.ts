// qvm-prefs / qubes-prefs (qvm-features and qvm-tags: cli-qvm-tags-features): the calls they send and what they print,
// including the aligned `name  D|-|U  value` listing and the exit codes scripts rely on.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { err, runCommand } from './cli-fake-client';

const WORK_PROPS =
  'autostart default=True type=bool False\n' +
  'kernelopts default=False type=str nopat  console=hvc0\n' + // values may contain spaces
  'label default=False type=label blue\n' +
  'maxmem default=True type=int \n' + // no value and no default: U
  'memory default=True type=int 400\n' +
  'name default=False type=str work\n' +
  'netvm default=False type=vm \n' + // set to "no qube"
  'notes default=False type=str line one\\nline two \\\\o/\n' + // GetAll escapes newline and backslash
  'template default=False type=vm debian-12\n';

describe('qvm-prefs', () => {
  it('lists properties aligned to the longest name with D for default and - for set', async () => {
    const r = await runCommand('qvm-prefs', ['work'], { 'admin.vm.property.GetAll work': WORK_PROPS });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      [
        'autostart   D  False',
        'kernelopts  -  nopat  console=hvc0',
        'label       -  blue',
        'maxmem      U',
        'memory      D  400',
        'name        -  work',
        'netvm       -  None',
        'notes       -  line one',
        'line two \\o/',
        'template    -  debian-12',
        '',
      ].join('\n'),
    );
    assert.deepEqual(r.client.summary(), ['admin.vm.property.GetAll work']);
  });

  it('--hide-default leaves out properties at their default', async () => {
    const r = await runCommand('qvm-prefs', ['--hide-default', 'work'], { 'admin.vm.property.GetAll work': WORK_PROPS });
    assert.deepEqual(r.stdout.split('\n').map((l) => l.split(' ')[0]).filter(Boolean), ['kernelopts', 'label', 'maxmem', 'name', 'netvm', 'notes', 'line', 'template']);
  });

  it('prints one value; nothing for a qube-valued property set to none', async () => {
    const r = await runCommand('qvm-prefs', ['work', 'kernelopts'], { 'admin.vm.property.Get work kernelopts': 'default=False type=str nopat  console=hvc0' });
    assert.equal(r.stdout, 'nopat  console=hvc0\n');
    assert.deepEqual(r.client.calls, [{ method: 'admin.vm.property.Get', dest: 'work', arg: 'kernelopts', payload: '' }]);
    const none = await runCommand('qvm-prefs', ['work', 'netvm'], { 'admin.vm.property.Get work netvm': 'default=False type=vm ' });
    assert.equal(none.stdout, '');
    assert.equal(none.code, 0);
  });

  it('sets a value as the payload of property.Set, with - in the name read as _', async () => {
    const r = await runCommand('qvm-prefs', ['work', 'default-user', 'alice'], { 'admin.vm.property.Set': '' });
    assert.equal(r.code, 0);
    assert.equal(r.stdout, '');
    assert.deepEqual(r.client.calls, [{ method: 'admin.vm.property.Set', dest: 'work', arg: 'default_user', payload: 'alice' }]);
  });

  it('sends an empty value for `none` on qube-valued properties only', async () => {
    const r = await runCommand('qvm-prefs', ['work', 'netvm', 'None'], { 'admin.vm.property.Set': '' });
    assert.deepEqual(r.client.calls[0], { method: 'admin.vm.property.Set', dest: 'work', arg: 'netvm', payload: '' });
    const s = await runCommand('qvm-prefs', ['work', 'kernelopts', 'none'], { 'admin.vm.property.Set': '' });
    assert.equal(s.client.calls[0].payload, 'none');
  });

  it('--default / -D resets with property.Reset', async () => {
    for (const flag of ['--default', '-D']) {
      const r = await runCommand('qvm-prefs', ['work', 'memory', flag], { 'admin.vm.property.Reset': '' });
      assert.equal(r.code, 0);
      assert.deepEqual(r.client.summary(), ['admin.vm.property.Reset work memory']);
    }
  });

  it('reports an unknown property as a usage error, like Qubes', async () => {
    const r = await runCommand('qvm-prefs', ['work', 'colour'], { 'admin.vm.property.Get': err('QubesNoSuchPropertyError', "Invalid property 'colour' of work") });
    assert.equal(r.code, 2);
    assert.equal(r.stderr, "qvm-prefs: error: no such property: 'colour'\n");
  });

  it('--help-properties lists names with their help, wrapped', async () => {
    const r = await runCommand('qvm-prefs', ['work', '--help-properties'], {
      'admin.vm.property.List work': 'netvm\nlabel\n',
      'admin.vm.property.Help work label': 'Colourful label assigned to the qube.',
      'admin.vm.property.Help work netvm': 'Qube that provides network to this qube, or none for an offline qube. Changing it while running reconnects the qube.',
    });
    assert.equal(
      r.stdout,
      '  label  Colourful label assigned to the qube.\n' +
        '  netvm  Qube that provides network to this qube, or none for an offline qube.\n' +
        '         Changing it while running reconnects the qube.\n',
    );
  });
});

describe('qubes-prefs', () => {
  it('lists global properties from admin.property.GetAll on dom0', async () => {
    const r = await runCommand('qubes-prefs', [], {
      'admin.property.GetAll dom0':
        'default_netvm default=False type=vm sys-net\ndefault_template default=False type=vm debian-12\ndefault_qrexec_timeout default=True type=int 60\n',
    });
    assert.equal(
      r.stdout,
      'default_netvm           -  sys-net\ndefault_qrexec_timeout  D  60\ndefault_template        -  debian-12\n',
    );
  });

  it('sets, gets and resets through admin.property.* with destination dom0', async () => {
    const replies = { 'admin.property.Set': '', 'admin.property.Reset': '', 'admin.property.Get dom0 default_netvm': 'default=False type=vm sys-firewall' };
    assert.deepEqual((await runCommand('qubes-prefs', ['default_netvm', 'sys-firewall'], replies)).client.calls, [
      { method: 'admin.property.Set', dest: 'dom0', arg: 'default_netvm', payload: 'sys-firewall' },
    ]);
    assert.equal((await runCommand('qubes-prefs', ['default_netvm'], replies)).stdout, 'sys-firewall\n');
    assert.deepEqual((await runCommand('qubes-prefs', ['-D', 'default_netvm'], replies)).client.summary(), ['admin.property.Reset dom0 default_netvm']);
  });
});
