// qvm-prefs / qubes-prefs (qvm-features and qvm-tags: cli-qvm-tags-features): the calls they send and what they print,
// including the aligned `name  D|-|U  value` listing and the exit codes scripts rely on.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { err, runCommand, VM_LIST } from './cli-fake-client';

const WORK_PROPS =
  'autostart default=True type=bool False\n' +
  'kernelopts default=False type=str nopat  console=hvc0\n' + // values may contain spaces
  'label default=False type=label blue\n' +
  'maxmem default=True type=int \n' + // no value and no default: U
  'memory default=True type=int 400\n' +
  'name default=False type=str work\n' +
  'netvm default=False type=vm \n' + // set to "no qube"
  'notes default=False type=str line one\\nline two \\\\o/\n' + // GetAll escapes newline and backslash
  'start_time default=True type=str \n' + // a halted qube
  'klass default=True type=str AppVM\n' + // out of order: the listing sorts
  'template default=False type=vm debian-12\n';

const LIST = { 'admin.vm.List dom0': VM_LIST };

describe('qvm-prefs', () => {
  it('resolves VMNAME with admin.vm.List, then lists properties aligned to the longest name with D, - and U', async () => {
    const r = await runCommand('qvm-prefs', ['work'], { ...LIST, 'admin.vm.property.GetAll work': WORK_PROPS });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      [
        'autostart   D  False',
        'kernelopts  -  nopat  console=hvc0',
        'klass       D  AppVM',
        'label       -  blue',
        'maxmem      U',
        'memory      D  400',
        'name        -  work',
        'netvm       -  None',
        'notes       -  line one',
        'line two \\o/',
        'start_time  D  ', // an empty str value keeps Qubes' two spaces before it
        'template    -  debian-12',
        '',
      ].join('\n'),
    );
    assert.deepEqual(r.client.summary(), ['admin.vm.List dom0', 'admin.vm.property.GetAll work']);
  });

  it("prints Qubes' own test listing byte for byte (prop1 D value1, prop2 - value2)", async () => {
    const replies = { ...LIST, 'admin.vm.property.GetAll dom0': 'prop1 default=True type=str value1\nprop2 default=False type=str value2\n' };
    assert.equal((await runCommand('qvm-prefs', ['dom0'], replies)).stdout, 'prop1  D  value1\nprop2  -  value2\n');
    assert.equal((await runCommand('qvm-prefs', ['dom0', '--hide-default'], replies)).stdout, 'prop2  -  value2\n');
  });

  it('--hide-default leaves out properties at their default, but keeps U', async () => {
    const r = await runCommand('qvm-prefs', ['--hide-default', 'work'], { ...LIST, 'admin.vm.property.GetAll work': WORK_PROPS });
    assert.deepEqual(r.stdout.split('\n').map((l) => l.split(' ')[0]).filter(Boolean), ['kernelopts', 'label', 'maxmem', 'name', 'netvm', 'notes', 'line', 'template']);
  });

  it('an unknown qube is a usage error before any property call, with Qubes wording and exit 2', async () => {
    const r = await runCommand('qvm-prefs', ['wrok', 'memory', '800'], LIST);
    assert.equal(r.code, 2);
    assert.equal(r.stderr, "qvm-prefs: error: no such domain: 'wrok'\n");
    assert.deepEqual(r.client.summary(), ['admin.vm.List dom0']);
  });

  it('no VMNAME: argparse wording, exit 2, nothing sent', async () => {
    const r = await runCommand('qvm-prefs', [], LIST);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^qvm-prefs: error: the following arguments are required: VMNAME\n$/);
    assert.deepEqual(r.client.calls, []);
  });

  it('a wildcard VMNAME naming one qube is that qube; naming several is refused, nothing changed', async () => {
    const one = await runCommand('qvm-prefs', ['wo*', 'memory', '800'], { ...LIST, 'admin.vm.property.Set': '' });
    assert.equal(one.code, 0, one.stderr);
    assert.deepEqual(one.client.summary(), ['admin.vm.List dom0', 'admin.vm.property.Set work memory [800]']);
    const many = await runCommand('qvm-prefs', ['*', 'memory', '800'], LIST);
    assert.equal(many.code, 2);
    assert.match(many.stderr, /^qvm-prefs: error: argument VMNAME: '\*' matches 5 qubes/);
    assert.deepEqual(many.client.summary(), ['admin.vm.List dom0']);
  });

  it('prints one value; nothing for a qube-valued property set to none; an empty line for an empty string', async () => {
    const r = await runCommand('qvm-prefs', ['work', 'kernelopts'], { ...LIST, 'admin.vm.property.Get work kernelopts': 'default=False type=str nopat  console=hvc0' });
    assert.equal(r.stdout, 'nopat  console=hvc0\n');
    assert.deepEqual(r.client.calls.at(-1), { method: 'admin.vm.property.Get', dest: 'work', arg: 'kernelopts', payload: '' });
    const none = await runCommand('qvm-prefs', ['work', 'netvm'], { ...LIST, 'admin.vm.property.Get work netvm': 'default=False type=vm ' });
    assert.deepEqual([none.code, none.stdout], [0, '']);
    const vm = await runCommand('qvm-prefs', ['dom0', 'default_dispvm'], { ...LIST, 'admin.vm.property.Get dom0 default_dispvm': 'default=True type=vm work' });
    assert.equal(vm.stdout, 'work\n');
    const empty = await runCommand('qvm-prefs', ['work', 'start_time'], { ...LIST, 'admin.vm.property.Get work start_time': 'default=True type=str ' });
    assert.equal(empty.stdout, '\n');
  });

  it('Get with --hide-default prints nothing for a default value', async () => {
    const r = await runCommand('qvm-prefs', ['work', 'netvm', '--hide-default'], { ...LIST, 'admin.vm.property.Get work netvm': 'default=True type=vm sys-net' });
    assert.deepEqual([r.code, r.stdout], [0, '']);
  });

  it('sets a value as the payload of property.Set, with - in the name read as _', async () => {
    const r = await runCommand('qvm-prefs', ['work', 'default-user', 'alice'], { ...LIST, 'admin.vm.property.Set': '' });
    assert.equal(r.code, 0);
    assert.equal(r.stdout, '');
    assert.deepEqual(r.client.calls.at(-1), { method: 'admin.vm.property.Set', dest: 'work', arg: 'default_user', payload: 'alice' });
  });

  it('sends an empty value for `none` on qube-valued properties only', async () => {
    const cases: [string, string, string][] = [
      ['netvm', 'None', ''], ['default_dispvm', 'none', ''], ['guivm', 'none', ''], ['audiovm', 'NONE', ''], ['template', 'none', ''],
      ['user', 'none', 'none'], ['kernelopts', 'None', 'None'],
    ];
    for (const [prop, value, payload] of cases) {
      const r = await runCommand('qvm-prefs', ['dom0', prop, value], { ...LIST, 'admin.vm.property.Set': '' });
      assert.equal(r.client.calls.at(-1)?.payload, payload, `${prop} ${value}`);
    }
  });

  it('--default / -D resets with property.Reset', async () => {
    for (const flag of ['--default', '-D']) {
      const r = await runCommand('qvm-prefs', ['work', 'memory', flag], { ...LIST, 'admin.vm.property.Reset': '' });
      assert.equal(r.code, 0);
      assert.deepEqual(r.client.summary(), ['admin.vm.List dom0', 'admin.vm.property.Reset work memory']);
    }
  });

  it('refuses --default with a value or without a property before any call', async () => {
    for (const argv of [['work', 'memory', '400', '-D'], ['work', '-D']]) {
      const r = await runCommand('qvm-prefs', argv, LIST);
      assert.equal(r.code, 2, argv.join(' '));
      assert.match(r.stderr, /^qvm-prefs: error: /);
      assert.deepEqual(r.client.calls, []);
    }
  });

  it('reports an unknown property (get, set or reset) as a usage error, like Qubes', async () => {
    const nope = err('QubesNoSuchPropertyError', "Invalid property 'no_such_property' of dom0");
    for (const argv of [['dom0', 'no_such_property'], ['dom0', 'no_such_property', 'value'], ['dom0', 'no-such-property', '-D']]) {
      const r = await runCommand('qvm-prefs', argv, { ...LIST, 'admin.vm.property.Get': nope, 'admin.vm.property.Set': nope, 'admin.vm.property.Reset': nope });
      assert.equal(r.code, 2, argv.join(' '));
      assert.equal(r.stderr, "qvm-prefs: error: no such property: 'no_such_property'\n");
    }
  });

  it("a refused value is isolad's one-line message with exit 1", async () => {
    const r = await runCommand('qvm-prefs', ['work', 'maxmem', '100'], {
      ...LIST,
      'admin.vm.property.Set': err('QubesPropertyValueError', "work: property 'maxmem': maxmem (100) can not be less than memory (400); raise maxmem, or set it to 0 to make memory the limit"),
    });
    assert.equal(r.code, 1);
    assert.equal(r.stderr, "qvm-prefs: error: work: property 'maxmem': maxmem (100) can not be less than memory (400); raise maxmem, or set it to 0 to make memory the limit\n");
  });

  it('--help-properties lists names with their help, wrapped', async () => {
    const r = await runCommand('qvm-prefs', ['work', '--help-properties'], {
      ...LIST,
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
    assert.deepEqual(r.client.summary(), ['admin.property.GetAll dom0']);
  });

  it("prints Qubes' own test listing, and --hide-default", async () => {
    const replies = { 'admin.property.GetAll dom0': 'prop1 default=True type=str value1\nprop2 default=False type=str value2\n' };
    assert.equal((await runCommand('qubes-prefs', [], replies)).stdout, 'prop1  D  value1\nprop2  -  value2\n');
    assert.equal((await runCommand('qubes-prefs', ['--hide-default'], replies)).stdout, 'prop2  -  value2\n');
  });

  it('sets, gets and resets through admin.property.* with destination dom0', async () => {
    const replies = { 'admin.property.Set': '', 'admin.property.Reset': '', 'admin.property.Get dom0 default_netvm': 'default=False type=vm sys-firewall' };
    assert.deepEqual((await runCommand('qubes-prefs', ['default_netvm', 'sys-firewall'], replies)).client.calls, [
      { method: 'admin.property.Set', dest: 'dom0', arg: 'default_netvm', payload: 'sys-firewall' },
    ]);
    assert.equal((await runCommand('qubes-prefs', ['default_netvm'], replies)).stdout, 'sys-firewall\n');
    assert.deepEqual((await runCommand('qubes-prefs', ['-D', 'default_netvm'], replies)).client.summary(), ['admin.property.Reset dom0 default_netvm']);
    assert.deepEqual((await runCommand('qubes-prefs', ['default-guivm', 'none'], replies)).client.calls.at(-1), {
      method: 'admin.property.Set', dest: 'dom0', arg: 'default_guivm', payload: 'none',
    });
  });

  it('reports an unknown global property as a usage error (get and set)', async () => {
    const nope = err('QubesNoSuchPropertyError', "Invalid property 'no_such_property' of dom0");
    for (const argv of [['no_such_property'], ['no_such_property', 'value']]) {
      const r = await runCommand('qubes-prefs', argv, { 'admin.property.Get': nope, 'admin.property.Set': nope });
      assert.equal(r.code, 2);
      assert.equal(r.stderr, "qubes-prefs: error: no such property: 'no_such_property'\n");
    }
  });
});
