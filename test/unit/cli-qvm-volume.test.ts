// qvm-volume against the expectations of Qubes' own client tests (qubesadmin/tests/tools/
// qvm_volume.py): list, info, extend/resize, revert, set/config, clear, and VMVolumeAction's errors.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseSize } from '../../src/cli/commands/qvm-volume';
import { formatTable, helpLine, prefsLine } from '../../src/cli/output';
import type { QubesError } from '../../src/core/errors';
import { err, runCommand } from './cli-fake-client';

const listVms = (names: string[]) => names.map((n, i) => `${n} class=AppVM state=Running uuid=${i}`).join('\n') + '\n';

/** Qubes' setup_expected_calls_for_list: root in pool-file, private (one snapshot) in other-pool. */
function forList(vms: string[], listed = ['vm1', 'sys-net']): Record<string, string> {
  const r: Record<string, string> = { 'admin.vm.List dom0': listVms(listed) };
  for (const vm of vms) {
    r[`admin.vm.volume.List ${vm}`] = 'root\nprivate\n';
    for (const vol of ['root', 'private']) {
      r[`admin.vm.volume.Info ${vm} ${vol}`] = `pool=${vol === 'root' ? 'pool-file' : 'other-pool'}\nvid=${vm}-${vol}\nsize=10737418240\n`;
      r[`admin.vm.volume.ListSnapshots ${vm} ${vol}`] = vol === 'private' ? 'snap1\n' : '';
    }
  }
  return r;
}

const TESTVM_PRIVATE = [
  'pool=lvm', 'vid=qubes_dom0/vm-testvm-private', 'size=2147483648', 'usage=10000000', 'rw=True', 'source=',
  'save_on_stop=True', 'snap_on_start=False', 'revisions_to_keep=3', 'is_outdated=False',
].join('\n') + '\n';

/** A running `testvm` with root and private, as in Qubes' tests from test_010 on. */
const testvm = (extra: Record<string, string | QubesError> = {}) => ({
  'admin.vm.List dom0': 'testvm class=AppVM state=Running uuid=1\ndom0 class=AdminVM state=Running uuid=0\n',
  'admin.vm.volume.List testvm': 'root\nprivate\n',
  'admin.vm.volume.Info testvm private': TESTVM_PRIVATE,
  ...extra,
});

const SNAPSHOTS = '200101010000\n200201010000\n200301010000\n';

describe('qvm-volume list (Qubes test_000-005)', () => {
  const ALL = [
    'POOL:VOLUME                 VMNAME   VOLUME_NAME  REVERT_POSSIBLE',
    'other-pool:sys-net-private  sys-net  private      Yes',
    'other-pool:vm1-private      vm1      private      Yes',
    'pool-file:sys-net-root      sys-net  root         No',
    'pool-file:vm1-root          vm1      root         No',
    '',
  ].join('\n');

  it('lists every volume sorted by pool:vid, with ls, l, list or no command at all', async () => {
    for (const argv of [['ls'], ['l'], ['list'], []]) {
      const r = await runCommand('qvm-volume', argv, forList(['vm1', 'sys-net']));
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, ALL, argv.join(' '));
    }
  });

  it('lists only the named qubes, several of them, and accepts wildcards', async () => {
    const one = await runCommand('qvm-volume', ['ls', 'vm1'], forList(['vm1']));
    assert.equal(one.stdout, 'POOL:VOLUME             VMNAME  VOLUME_NAME  REVERT_POSSIBLE\nother-pool:vm1-private  vm1     private      Yes\npool-file:vm1-root      vm1     root         No\n');
    const two = await runCommand('qvm-volume', ['ls', 'vm1', 'vm2'], forList(['vm1', 'vm2'], ['vm1', 'vm2', 'vm3']));
    assert.equal(two.stdout.split('\n').filter(Boolean).length, 5);
    assert.ok(!two.client.summary().some((c) => c.includes('vm3')), 'vm3 not asked');
    const glob = await runCommand('qvm-volume', ['ls', 'vm[12]'], forList(['vm1', 'vm2'], ['vm1', 'vm2', 'vm3']));
    assert.equal(glob.stdout, two.stdout);
  });

  it('-p POOL shows only that pool and asks no revisions of the other volumes', async () => {
    const replies = { ...forList(['vm1', 'sys-net']), 'admin.pool.List dom0': 'pool-file\nother-pool\n' };
    const r = await runCommand('qvm-volume', ['ls', '-p', 'pool-file'], replies);
    assert.equal(r.stdout, 'POOL:VOLUME             VMNAME   VOLUME_NAME  REVERT_POSSIBLE\npool-file:sys-net-root  sys-net  root         No\npool-file:vm1-root      vm1      root         No\n');
    assert.ok(!r.client.summary().some((c) => c.startsWith('admin.vm.volume.ListSnapshots') && c.endsWith('private')));
    const one = await runCommand('qvm-volume', ['ls', '-p', 'pool-file', 'vm1'], replies);
    assert.equal(one.stdout, 'POOL:VOLUME         VMNAME  VOLUME_NAME  REVERT_POSSIBLE\npool-file:vm1-root  vm1     root         No\n');
  });

  it('--full is accepted and prints every line', async () => {
    const r = await runCommand('qvm-volume', ['ls', '--full'], forList(['vm1', 'sys-net']), { isTTY: true });
    assert.equal(r.stdout, ALL);
  });

  it('refuses an unknown pool or qube as a usage error, before listing any volume', async () => {
    const pool = await runCommand('qvm-volume', ['ls', '-p', 'nope'], { ...forList(['vm1']), 'admin.pool.List dom0': 'pool-file\n' });
    assert.deepEqual([pool.code, pool.stderr], [2, "qvm-volume: error: No such pools: ['nope']\n"]);
    const vm = await runCommand('qvm-volume', ['ls', 'vm9'], forList(['vm1']));
    assert.deepEqual([vm.code, vm.stderr], [2, "qvm-volume: error: no such domain: 'vm9'\n"]);
    for (const r of [pool, vm]) assert.ok(!r.client.summary().some((c) => c.startsWith('admin.vm.volume')));
  });
});

describe('qvm-volume info (Qubes test_040-044)', () => {
  it('shows Qubes keys in Qubes order, the disabled-snapshot note and the revisions, oldest first', async () => {
    const info = TESTVM_PRIVATE.replace('revisions_to_keep=3', 'revisions_to_keep=-1').replace('is_outdated', 'ephemeral=False\nis_outdated') + 'path=/x\nrevision=L1\n';
    const r = await runCommand('qvm-volume', ['info', 'testvm:private'], testvm({ 'admin.vm.volume.Info testvm private': info, 'admin.vm.volume.ListSnapshots testvm private': SNAPSHOTS }));
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      [
        'pool               lvm',
        'vid                qubes_dom0/vm-testvm-private',
        'rw                 True',
        'source',
        'save_on_stop       True',
        'snap_on_start      False',
        'size               2147483648',
        'usage              10000000',
        'revisions_to_keep  -1 (snapshot disabled)',
        'ephemeral          False',
        'is_outdated        False',
        'List of available revisions (for revert):',
        '  200101010000',
        '  200201010000',
        '  200301010000',
        '',
      ].join('\n'),
    );
  });

  it('says `none` when there is no revision, and shows ephemeral empty when the daemon omits it', async () => {
    const root = TESTVM_PRIVATE.replace('private', 'root').replace('source=', 'source=qubes_dom0/vm-fedora-26-root').replace('revisions_to_keep=3', 'revisions_to_keep=0');
    const r = await runCommand('qvm-volume', ['i', 'testvm:root'], testvm({ 'admin.vm.volume.Info testvm root': root, 'admin.vm.volume.ListSnapshots testvm root': '' }));
    const out = r.stdout.split('\n');
    assert.equal(out[3], 'source             qubes_dom0/vm-fedora-26-root');
    assert.equal(out[8], 'revisions_to_keep  0');
    assert.equal(out[9], 'ephemeral');
    assert.equal(out.at(-2), 'List of available revisions (for revert): none');
  });

  it('PROPERTY prints the raw value; `revisions` one per line; `is_outdated` too', async () => {
    const replies = testvm({ 'admin.vm.volume.ListSnapshots testvm private': SNAPSHOTS });
    assert.equal((await runCommand('qvm-volume', ['info', 'testvm:private', 'usage'], replies)).stdout, '10000000\n');
    assert.equal((await runCommand('qvm-volume', ['info', 'testvm:private', 'revisions_to_keep'], replies)).stdout, '3\n');
    assert.equal((await runCommand('qvm-volume', ['info', 'testvm:private', 'is_outdated'], replies)).stdout, 'False\n');
    const revs = await runCommand('qvm-volume', ['info', 'testvm:private', 'revisions'], replies);
    assert.equal(revs.stdout, SNAPSHOTS);
    assert.ok(!revs.client.summary().some((c) => c.startsWith('admin.vm.volume.Info')), 'revisions need no Info');
  });

  it('an unknown PROPERTY is an error (exit 1) and asks nothing of the volume', async () => {
    const r = await runCommand('qvm-volume', ['info', 'testvm:private', 'colour'], testvm());
    assert.deepEqual([r.code, r.stderr], [1, 'qvm-volume: error: No such property: colour\n']);
    assert.ok(!r.client.summary().some((c) => c.startsWith('admin.vm.volume.Info')));
  });
});

describe('qvm-volume VM:VOLUME (Qubes VMVolumeAction)', () => {
  const cases: [string, number, string][] = [
    // No colon, or two: the argument itself is malformed (parser.error, exit 2).
    ['testvm', 2, 'expected a vm & volume combination like foo:bar'],
    ['testvm:private:x', 2, 'expected a vm & volume combination like foo:bar'],
    // Well-formed, but the qube or its volume does not exist (error_runtime, exit 1).
    ['nope:private', 1, "no vm 'nope'"],
    ['testvm:swap', 1, "vm 'testvm' has no volume 'swap'"],
    ['dom0:root', 1, "vm 'dom0' has no volume 'root'"],
  ];
  for (const [spec, code, message] of cases) {
    it(`refuses ${spec} with one line and exit ${code}, changing nothing`, async () => {
      for (const argv of [['info', spec], ['resize', spec, '10GiB'], ['revert', spec], ['set', spec, 'revisions_to_keep', '2'], ['clear', '-f', spec]]) {
        const r = await runCommand('qvm-volume', argv, testvm());
        assert.deepEqual([r.code, r.stderr], [code, `qvm-volume: error: ${message}\n`], argv.join(' '));
        assert.ok(r.client.summary().every((c) => /^admin\.vm\.(List|volume\.List) /.test(c)), r.client.summary().join(', '));
      }
    });
  }
});

describe('qvm-volume resize/extend (Qubes test_010-013)', () => {
  it('extend sends the size in bytes', async () => {
    const r = await runCommand('qvm-volume', ['extend', 'testvm:private', '10GiB'], testvm({ 'admin.vm.volume.Resize': '' }));
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.client.summary().at(-1), 'admin.vm.volume.Resize testvm private [10737418240]');
  });

  it("passes isolad's refusal on as one line, exit 1", async () => {
    const r = await runCommand('qvm-volume', ['extend', 'testvm:private', '10GiB'], testvm({ 'admin.vm.volume.Resize': err('StoragePoolException', 'Failed to resize volume: error: success') }));
    assert.deepEqual([r.code, r.stderr], [1, 'qvm-volume: error: Failed to resize volume: error: success\n']);
  });

  it('refuses to shrink without --force, in Qubes words, and sends no Resize', async () => {
    const r = await runCommand('qvm-volume', ['resize', 'testvm:private', '1GiB'], testvm({ 'admin.vm.volume.Resize': '' }));
    assert.equal(r.code, 1);
    assert.equal(r.stderr.split('\n').length, 2, 'one line');
    assert.match(r.stderr, /^qvm-volume: error: Refusing to shrink volume testvm:private from 2147483648 to 1073741824 bytes\./);
    assert.match(r.stderr, /'qvm-volume resize --force testvm:private 1073741824'\n$/);
    assert.ok(!r.client.summary().some((c) => c.startsWith('admin.vm.volume.Resize')));
  });

  it('-f/--force shrinks without asking the current size', async () => {
    for (const f of ['-f', '--force']) {
      const r = await runCommand('qvm-volume', ['resize', f, 'testvm:private', '1GiB'], testvm({ 'admin.vm.volume.Resize': '' }));
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(r.client.summary(), ['admin.vm.List dom0', 'admin.vm.volume.List testvm', 'admin.vm.volume.Resize testvm private [1073741824]']);
    }
  });

  it('an invalid size is refused (exit 1, as Qubes) before any resize', async () => {
    const r = await runCommand('qvm-volume', ['resize', 'testvm:private', '1.5G'], testvm({ 'admin.vm.volume.Resize': '' }));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^qvm-volume: error: Invalid size: 1\.5G/);
    assert.ok(!r.client.summary().some((c) => c.startsWith('admin.vm.volume.Resize')));
  });

  it('parseSize follows Qubes: K/M/G/T are powers of 1000, Ki…/KiB… of 1024', () => {
    const cases: [string, number][] = [['123', 123], ['1K', 1000], ['1KB', 1000], ['2Ki', 2048], ['2KiB', 2048], ['3M', 3e6], ['1MiB', 1048576], ['10G', 1e10], ['1GiB', 1073741824], ['1T', 1e12], ['1TiB', 1024 ** 4], ['5 gib', 5 * 1024 ** 3]];
    for (const [text, bytes] of cases) assert.equal(parseSize(text), bytes, text);
    // Each must fail: a fraction, a negative number, an unknown unit, nothing at all.
    for (const bad of ['1.5G', '-1', '1P', '', 'G']) assert.throws(() => parseSize(bad), /Invalid size/, bad);
  });
});

describe('qvm-volume revert (Qubes test_020-023)', () => {
  it('without REVISION reverts to the latest (the last one listed)', async () => {
    const r = await runCommand('qvm-volume', ['revert', 'testvm:private'], testvm({ 'admin.vm.volume.ListSnapshots testvm private': SNAPSHOTS, 'admin.vm.volume.Revert': '' }));
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.client.summary().at(-1), 'admin.vm.volume.Revert testvm private [200301010000]');
  });

  it("passes isolad's refusal on, exit 1", async () => {
    const r = await runCommand('qvm-volume', ['rv', 'testvm:private'], testvm({ 'admin.vm.volume.ListSnapshots testvm private': SNAPSHOTS, 'admin.vm.volume.Revert': err('StoragePoolException', 'Failed to revert volume: some error') }));
    assert.deepEqual([r.code, r.stderr], [1, 'qvm-volume: error: Failed to revert volume: some error\n']);
  });

  it('with no snapshot says so and sends no Revert', async () => {
    const r = await runCommand('qvm-volume', ['r', 'testvm:private'], testvm({ 'admin.vm.volume.ListSnapshots testvm private': '', 'admin.vm.volume.Revert': '' }));
    assert.deepEqual([r.code, r.stderr], [1, 'qvm-volume: error: No snapshots available\n']);
    assert.ok(!r.client.summary().some((c) => c.startsWith('admin.vm.volume.Revert')));
  });

  it('with REVISION sends it without listing', async () => {
    const r = await runCommand('qvm-volume', ['revert', 'testvm:private', '20050101'], testvm({ 'admin.vm.volume.Revert': '' }));
    assert.deepEqual(r.client.summary(), ['admin.vm.List dom0', 'admin.vm.volume.List testvm', 'admin.vm.volume.Revert testvm private [20050101]']);
  });
});

describe('qvm-volume set/config (Qubes test_030-033)', () => {
  it('sets revisions_to_keep, rw and ephemeral through admin.vm.volume.Set.<property>, under every alias', async () => {
    const cases: [string, string, string][] = [['set', 'revisions_to_keep', '3'], ['config', 'rw', 'True'], ['c', 'ephemeral', 'True'], ['s', 'revisions_to_keep', '0']];
    for (const [cmd, prop, value] of cases) {
      const r = await runCommand('qvm-volume', [cmd, 'testvm:private', prop, value], testvm({ [`admin.vm.volume.Set.${prop}`]: '' }));
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.client.summary().at(-1), `admin.vm.volume.Set.${prop} testvm private [${value}]`);
    }
  });

  it('refuses another property with one line, exit 1, and sets nothing', async () => {
    const r = await runCommand('qvm-volume', ['set', 'testvm:private', 'invalid', 'True'], testvm());
    assert.deepEqual([r.code, r.stderr], [1, 'qvm-volume: error: Invalid property: invalid\n']);
    assert.ok(!r.client.summary().some((c) => c.includes('Set')));
  });
});

describe('qvm-volume clear', () => {
  it('-f clears without asking', async () => {
    const r = await runCommand('qvm-volume', ['clear', '-f', 'testvm:private'], testvm({ 'admin.vm.volume.Clear': '' }));
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.client.summary().at(-1), 'admin.vm.volume.Clear testvm private');
    assert.deepEqual(r.stdout, '');
  });

  it('asks first; anything but y cancels with exit 0 and clears nothing', async () => {
    const yes = await runCommand('qvm-volume', ['clear', 'testvm:private'], testvm({ 'admin.vm.volume.Clear': '' }), { answers: ['y'] });
    assert.deepEqual(yes.prompts, ['Are you sure? [y/N] ']);
    assert.equal(yes.stdout, 'This will empty the volume!\n(Data may be preserved in a revision.)\n');
    assert.equal(yes.client.summary().at(-1), 'admin.vm.volume.Clear testvm private');
    const no = await runCommand('qvm-volume', ['clear', 'testvm:private'], testvm({ 'admin.vm.volume.Clear': '' }), { answers: ['n'] });
    assert.equal(no.code, 0);
    assert.match(no.stdout, /Clear cancelled\.\n$/);
    assert.ok(!no.client.summary().some((c) => c.includes('Clear')));
  });

  it("passes isolad's refusal for a running qube on as one line, exit 1", async () => {
    const r = await runCommand('qvm-volume', ['clear', '-f', 'testvm:private'], testvm({ 'admin.vm.volume.Clear': err('QubesVMNotHaltedError', 'Cannot clear a volume while testvm is running') }));
    assert.deepEqual([r.code, r.stderr], [1, 'qvm-volume: error: Cannot clear a volume while testvm is running\n']);
  });
});

describe('qvm-volume --help', () => {
  it('names every command with its aliases, and each command has its own help', async () => {
    const top = await runCommand('qvm-volume', ['--help'], {});
    assert.equal(top.code, 0);
    for (const c of ['info|i', 'config|c', 'resize|extend', 'list|ls', 'revert|rv', 'clear']) assert.ok(top.stdout.includes(c), c);
    for (const c of ['info', 'config', 'resize', 'list', 'revert', 'clear']) {
      const r = await runCommand('qvm-volume', [c, '--help'], {});
      assert.equal(r.code, 0, c);
      assert.match(r.stdout, new RegExp(`^Usage: qvm-volume ${c}`), c);
      assert.deepEqual(r.client.calls, []);
    }
  });
});

describe('output helpers', () => {
  it('formatTable pads all but the last column and leaves no trailing blanks', () => {
    assert.equal(formatTable([['a', 'bb', 'c'], ['ddd', '', '']]), 'a    bb  c\nddd\n');
    assert.equal(formatTable([]), '');
  });

  it('prefsLine marks D, - and U', () => {
    assert.equal(prefsLine('memory', 8, 'D', '400'), 'memory    D  400\n');
    assert.equal(prefsLine('label', 8, '-', 'red'), 'label     -  red\n');
    assert.equal(prefsLine('maxmem', 8, 'U'), 'maxmem    U\n');
  });

  it('helpLine wraps under the help text', () => {
    assert.equal(helpLine('x', 1, 'aaa bbb', 10), '  x  aaa\n     bbb\n');
  });
});
