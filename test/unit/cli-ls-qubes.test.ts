// Qubes' own expectations for qvm-ls (qubesadmin/tests/tools/qvm_ls.py), ported: listing, wildcards,
// the network tree, FLAGS, --raw-data, tags, power-state filters, sorting and the filter options.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { err, runCommand } from './cli-fake-client';
import { world, type Def } from './cli-ls-world';

const ls = (args: string[], replies: Record<string, string>) => runCommand('qvm-ls', args, replies);
const table = (...rows: string[]) => rows.map((r) => r + '\n').join('');

describe("qvm-ls: Qubes' expected outputs", () => {
  const basic = world([
    ['vm1', 'AppVM', 'Running', { label: 'green', template: 'template1', netvm: 'sys-net' }],
    ['template1', 'TemplateVM', 'Halted', { label: 'black', netvm: 'sys-net' }],
    ['sys-net', 'AppVM', 'Running', { label: 'red', template: 'template1', netvm: 'sys-net' }],
  ]);

  it('lists every qube with its state, class, label, template and netvm', async () => {
    const r = await ls([], basic);
    assert.equal(r.stdout, table(
      'NAME       STATE    CLASS       LABEL  TEMPLATE   NETVM',
      'sys-net    Running  AppVM       red    template1  sys-net',
      'template1  Halted   TemplateVM  black  -          sys-net',
      'vm1        Running  AppVM       green  template1  sys-net',
    ));
  });

  it('lists only the qubes named', async () => {
    const r = await ls(['vm1', 'sys-net'], basic);
    assert.equal(r.stdout, table(
      'NAME     STATE    CLASS  LABEL  TEMPLATE   NETVM',
      'sys-net  Running  AppVM  red    template1  sys-net',
      'vm1      Running  AppVM  green  template1  sys-net',
    ));
  });

  it('filters by class, label, template and netvm', async () => {
    assert.equal((await ls(['--class', 'TemplateVM'], basic)).stdout, table(
      'NAME       STATE   CLASS       LABEL  TEMPLATE  NETVM',
      'template1  Halted  TemplateVM  black  -         sys-net',
    ));
    assert.equal((await ls(['--label', 'black'], basic)).stdout, table(
      'NAME       STATE   CLASS       LABEL  TEMPLATE  NETVM',
      'template1  Halted  TemplateVM  black  -         sys-net',
    ));
    assert.equal((await ls(['--template-source', 'template1'], basic)).stdout, table(
      'NAME     STATE    CLASS  LABEL  TEMPLATE   NETVM',
      'sys-net  Running  AppVM  red    template1  sys-net',
      'vm1      Running  AppVM  green  template1  sys-net',
    ));
    assert.equal((await ls(['--netvm-is', 'sys-net', '--exclude-tags', 'x'], { ...basic, 'admin.vm.tag.List': '' })).stdout.split('\n').length, 5);
  });

  it('-O name,virt_mode,class: underscores become dashes in the header', async () => {
    const r = await ls(['-O', 'name,virt_mode,class'], world([['dom0', 'AdminVM', 'Running', {}], ['test-vm', 'AppVM', 'Running', { virt_mode: 'pv' }]]));
    assert.equal(r.stdout, table('NAME     VIRT-MODE  CLASS', 'dom0     -          AdminVM', 'test-vm  pv         AppVM'));
  });

  it('expands wildcards in VMNAME as fnmatch does', async () => {
    const names = ['dom0', 'debian-13', 'debian-13-minimal', 'debian-13-xfce', 'debian-sid', 'fedora-41', 'fedora-41-minimal', 'fedora-41-xfce', 'fedora-rawhide'];
    const w = world(names.map((n) => [n, 'AppVM', 'Running', {}] as Def));
    const raw = async (pattern: string) => (await ls(['--raw-list', pattern], w)).stdout;
    assert.equal(await raw('fedora*'), 'fedora-41\nfedora-41-minimal\nfedora-41-xfce\nfedora-rawhide\n');
    assert.equal(await raw('*minimal'), 'debian-13-minimal\nfedora-41-minimal\n');
    assert.equal(await raw('????'), 'dom0\n');
    assert.equal(await raw('??????-[rs]*'), 'debian-sid\nfedora-rawhide\n');
    assert.equal(await raw('??????-[!14s]*'), 'fedora-rawhide\n');
  });

  it('--tree shows qubes under the netvm they connect through', async () => {
    const w = world([
      ['dom0', 'AdminVM', 'Running', { label: 'black' }],
      ['test-vm-temp', 'AppVM', 'Running', { template: 'template', netvm: '' }],
      ['test-vm-proxy', 'AppVM', 'Running', { netvm: 'test-vm-net-2', provides_network: 'True' }],
      ['test-vm-1', 'AppVM', 'Running', { netvm: 'test-vm-net-1' }],
      ['test-vm-2', 'AppVM', 'Running', { netvm: 'test-vm-proxy' }],
      ['test-vm-3', 'AppVM', 'Running', { netvm: 'test-vm-proxy' }],
      ['test-vm-4', 'AppVM', 'Running', { netvm: 'test-vm-net-2' }],
      ['test-vm-net-1', 'AppVM', 'Running', { netvm: '', provides_network: 'True' }],
      ['test-vm-net-2', 'AppVM', 'Running', { netvm: '', provides_network: 'True' }],
    ]);
    // Connected qubes come by name, as Qubes' connected_vms walks app.domains in name order (Qubes'
    // own test hands its fake an explicit order, proxy before test-vm-4).
    const r = await ls(['--tree'], w);
    assert.equal(r.stdout, table(
      'NAME             STATE    CLASS    LABEL  TEMPLATE  NETVM',
      'dom0             Running  AdminVM  black  -         -',
      'test-vm-temp     Running  AppVM    -      template  -',
      'test-vm-net-1    Running  AppVM    -      -         -',
      '└─test-vm-1      Running  AppVM    -      -         test-vm-net-1',
      'test-vm-net-2    Running  AppVM    -      -         -',
      '└─test-vm-4      Running  AppVM    -      -         test-vm-net-2',
      '└─test-vm-proxy  Running  AppVM    -      -         test-vm-net-2',
      '  └─test-vm-2    Running  AppVM    -      -         test-vm-proxy',
      '  └─test-vm-3    Running  AppVM    -      -         test-vm-proxy',
    ));
    // Isola difference: a qube whose netvm is not listed stays in the tree, at the top.
    assert.equal((await ls(['--tree', '-O', 'name', 'test-vm-2'], w)).stdout, 'NAME\ntest-vm-2\n');
  });

  it('FLAGS: type, power state, then updateable, provides_network, installed_by_rpm, internal, debug, autostart', async () => {
    const w = world([
      ['test-vm', 'AppVM', 'Running', { updateable: 'True', provides_network: 'False', installed_by_rpm: 'False', debug: 'True', autostart: 'False' }],
      ['halted', 'AppVM', 'Halted', { updateable: 'False' }],
      ['tpl', 'TemplateVM', 'Transient', { updateable: 'True', installed_by_rpm: 'True', virt_mode: 'hvm' }],
      ['net', 'StandaloneVM', 'Halting', { provides_network: 'True', internal: 'True', autostart: 'True' }],
      ['dom0', 'AdminVM', 'Running', { updateable: 'True' }],
    ]);
    assert.equal((await ls(['--fields', 'name,flags', 'test-vm'], w)).stdout, table('NAME     FLAGS', 'test-vm  arU---D-'));
    assert.equal((await ls(['--raw-data', '-O', 'name,flags'], w)).stdout, table(
      'dom0|0rU-----', 'halted|a-------', 'net|sh-N-i-A', 'test-vm|arU---D-', 'tpl|TtU-R---',
    ));
  });

  it('VIRT-MODE of a running hvm qube names its accelerator; a halted one shows the property alone', async () => {
    const w = world([
      ['vault', 'AppVM', 'Running', { virt_mode: 'hvm', accel: 'tcg' }],
      ['fast', 'AppVM', 'Running', { virt_mode: 'hvm', accel: 'kvm' }],
      ['off', 'AppVM', 'Halted', { virt_mode: 'hvm' }],
      ['work', 'AppVM', 'Running', { virt_mode: 'sandbox' }],
      ['evil', 'AppVM', 'Running', { virt_mode: 'hvm', accel: 'tcg\x1b[31m' }],
    ]);
    assert.equal((await ls(['--raw-data', '-O', 'name,virt_mode'], w)).stdout, table('evil|hvm', 'fast|hvm/kvm', 'off|hvm', 'vault|hvm/tcg', 'work|sandbox'));
  });

  it('--raw-data prints |-separated values without a header', async () => {
    const w = world([['dom0', 'AdminVM', 'Running', {}], ['test-vm', 'AppVM', 'Running', {}]]);
    assert.equal((await ls(['--raw-data', '--fields=name,class', 'dom0', 'test-vm'], w)).stdout, 'dom0|AdminVM\ntest-vm|AppVM\n');
  });

  describe('tags', () => {
    const w = world(
      [['dom0', 'AdminVM', 'Running', { label: 'black' }], ['test-vm', 'AppVM', 'Running', { label: 'red', netvm: 'sys-firewall', template: 'template' }]],
      { 'admin.vm.tag.List dom0': 'my\n', 'admin.vm.tag.List test-vm': 'not-my\nother\n' },
    );
    const empty = 'NAME  STATE  CLASS  LABEL  TEMPLATE  NETVM\n';
    it('--tags: qubes with at least one of the tags', async () => {
      assert.equal((await ls(['--tags', 'my'], w)).stdout, table('NAME  STATE    CLASS    LABEL  TEMPLATE  NETVM', 'dom0  Running  AdminVM  black  -         -'));
      assert.equal((await ls(['--tags', 'nx'], w)).stdout, empty);
      assert.equal((await ls(['--tags', 'my', 'other'], w)).stdout, table(
        'NAME     STATE    CLASS    LABEL  TEMPLATE  NETVM',
        'dom0     Running  AdminVM  black  -         -',
        'test-vm  Running  AppVM    red    template  sys-firewall',
      ));
      assert.equal((await ls(['--tags', 'nx1', 'nx2'], w)).stdout, empty);
    });
    it('--exclude-tags: qubes with none of the tags', async () => {
      assert.equal((await ls(['--exclude-tags', 'not-my'], w)).stdout, table('NAME  STATE    CLASS    LABEL  TEMPLATE  NETVM', 'dom0  Running  AdminVM  black  -         -'));
    });
  });

  it('--running, --halted: one state or several; Transient counts as neither', async () => {
    const w = world([['a', 'AppVM', 'Halted', {}], ['b', 'AppVM', 'Transient', {}], ['c', 'AppVM', 'Running', {}]]);
    assert.equal((await ls([], w)).stdout, table(
      'NAME  STATE      CLASS  LABEL  TEMPLATE  NETVM', 'a     Halted     AppVM  -      -         -', 'b     Transient  AppVM  -      -         -', 'c     Running    AppVM  -      -         -',
    ));
    assert.equal((await ls(['--running'], w)).stdout, table('NAME  STATE    CLASS  LABEL  TEMPLATE  NETVM', 'c     Running  AppVM  -      -         -'));
    assert.equal((await ls(['--running', '--halted'], w)).stdout, table(
      'NAME  STATE    CLASS  LABEL  TEMPLATE  NETVM', 'a     Halted   AppVM  -      -         -', 'c     Running  AppVM  -      -         -',
    ));
  });

  describe('sorting', () => {
    const w = world([
      ['a', 'AppVM', 'Running', { label: 'red', maxmem: '100' }],
      ['B', 'AppVM', 'Running', { label: 'green', maxmem: '1000' }],
      ['c', 'AppVM', 'Running', { label: 'blue', maxmem: '300' }],
      ['dom0', 'AdminVM', 'Running', { label: 'black' }],
    ]);
    it('--sort NAME --reverse --ignore-case', async () => {
      assert.equal((await ls(['--sort', 'NAME', '--reverse', '--ignore-case'], w)).stdout, table(
        'NAME  STATE    CLASS    LABEL  TEMPLATE  NETVM',
        'dom0  Running  AdminVM  black  -         -',
        'c     Running  AppVM    blue   -         -',
        'B     Running  AppVM    green  -         -',
        'a     Running  AppVM    red    -         -',
      ));
    });
    it('numeric columns sort by value', async () => {
      assert.equal((await ls(['--fields', 'NAME,MAXMEM', '--sort', 'MAXMEM'], w)).stdout, table('NAME  MAXMEM', 'dom0  -', 'a     100', 'c     300', 'B     1000'));
    });
    it('a sort column that is not shown leaves the order by name (code points: B before a)', async () => {
      assert.equal((await ls(['--fields', 'NAME,CLASS', '--sort', 'STATE'], w)).stdout, table('NAME  CLASS', 'B     AppVM', 'a     AppVM', 'c     AppVM', 'dom0  AdminVM'));
    });
  });

  describe('features and prefs filters', () => {
    const w = world([['internalvm', 'AppVM', 'Running', { label: 'red' }], ['service-vm', 'AppVM', 'Running', { label: 'red' }]]);
    const features: Record<string, string> = {
      'internalvm internal': 'true', 'internalvm updates-available': 'true', 'internalvm cool-feature': 'yes',
      'service-vm servicevm': 'true', 'service-vm cool-feature': '',
    };
    const withFeatures = {
      ...w,
      'admin.vm.feature.Get': (c: { dest: string; arg: string }) => {
        const v = features[`${c.dest} ${c.arg}`];
        if (v === undefined) throw err('QubesFeatureNotFoundError', `Feature not set: ${c.dest}: ${c.arg}`);
        return v;
      },
    };
    const run = (args: string[]) => runCommand('qvm-ls', ['--raw-list', ...args], withFeatures);
    it('--internal, --servicevm and --pending-update read the features', async () => {
      assert.equal((await run(['--internal', 'y'])).stdout, 'internalvm\n');
      assert.equal((await run(['--internal', 'n'])).stdout, 'service-vm\n');
      assert.equal((await run(['--servicevm', 'y'])).stdout, 'service-vm\n');
      assert.equal((await run(['--servicevm', 'no'])).stdout, 'internalvm\n');
      assert.equal((await run(['--pending-update'])).stdout, 'internalvm\n');
    });
    it('--features KEY=VALUE; an empty VALUE means unset, "" the empty string', async () => {
      assert.equal((await run(['--features', 'cool-feature=yes'])).stdout, 'internalvm\n');
      assert.equal((await run(['--features', 'cool-feature='])).stdout, '');
      assert.equal((await run(['--features', 'cool-feature=""'])).stdout, 'service-vm\n');
      assert.equal((await run(['--features', 'other='])).stdout, 'internalvm\nservice-vm\n');
    });
    it('a --features or --prefs argument without KEY= is a usage error, before any call', async () => {
      for (const bad of [['--features', 'cool-feature:yes'], ['--features', '=yes'], ['--prefs', 'maxmem:100'], ['--prefs', ':100']]) {
        const r = await run(bad);
        assert.equal(r.code, 2, bad.join(' '));
        assert.equal(r.stderr, `qvm-ls: error: Invalid argument: ${bad[0]} ${bad[1]}\n`);
        assert.deepEqual(r.client.summary(), []);
      }
    });
    it('--prefs KEY=VALUE compares the property as text', async () => {
      const p = world([['a', 'AppVM', 'Running', { label: 'red', maxmem: '100' }], ['b', 'AppVM', 'Running', { label: 'green', kernelopts: '' }]]);
      const pr = async (arg: string) => (await ls(['--raw-list', '--prefs', arg], p)).stdout;
      assert.equal(await pr('maxmem=100'), 'a\n');
      assert.equal(await pr('kernelopts=""'), 'b\n');
      assert.equal(await pr('non-existent='), '');
      assert.equal(await pr('label=green'), 'b\n');
    });
  });
});
