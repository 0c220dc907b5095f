// qvm-prefs / qubes-prefs against the real daemon: Qubes' full property list with its markers,
// computed properties from the runtime row (xid, start_time), and refusals that change nothing
// (the settings trap: maxmem below memory is refused, not silently replaced).

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { canRunIntegration, Instance } from './harness';

const skip = canRunIntegration();

describe('qvm-prefs and qubes-prefs on a real isolad', { skip, concurrency: false }, () => {
  let inst: Instance;

  /** A command that must fail with one line, the given exit code, and the store byte for byte as before. */
  async function refused(cmd: string, args: string[], code: number, pattern: RegExp): Promise<void> {
    const before = await inst.stateDump();
    const r = await inst.cli(cmd, args);
    assert.equal(r.code, code, `${cmd} ${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.stderr.trim().split('\n').length, 1, `one line expected, got: ${r.stderr}`);
    assert.match(r.stderr, pattern);
    assert.equal(await inst.stateDump(), before, `${cmd} ${args.join(' ')} changed the state`);
  }

  const listing = async (...args: string[]) => {
    const out = await inst.ok(...(args as [string, ...string[]]));
    return new Map(out.split('\n').filter(Boolean).map((l) => {
      const m = /^(\S+) +([D\-U])(?:  (.*))?$/.exec(l);
      assert.ok(m, `listing line: ${JSON.stringify(l)}`);
      return [m[1], { marker: m[2], value: m[3] ?? '' }] as const;
    }));
  };

  before(async () => {
    inst = await Instance.withAppVMs([['work', 'blue']]);
  });
  after(async () => inst?.destroy());

  test("lists Qubes' properties with Qubes' markers: klass D, name -, backup_timestamp U, xid -1", async () => {
    const props = await listing('qvm-prefs', 'work');
    for (const name of ['debug', 'kernelopts', 'mac', 'ip', 'ip6', 'visible_ip', 'xid', 'start_time', 'management_dispvm', 'guivm', 'audiovm', 'keyboard_layout', 'backup_timestamp', 'installed_by_rpm', 'bootmode', 'dns', 'stubdom_xid']) {
      assert.ok(props.has(name), `missing ${name}`);
    }
    assert.deepEqual(props.get('klass'), { marker: 'D', value: 'AppVM' });
    assert.deepEqual(props.get('name'), { marker: '-', value: 'work' });
    assert.deepEqual(props.get('backup_timestamp'), { marker: 'U', value: '' });
    assert.deepEqual(props.get('xid'), { marker: 'D', value: '-1' });
    assert.deepEqual(props.get('guivm'), { marker: 'D', value: 'dom0' });
    assert.deepEqual(props.get('mac'), { marker: 'D', value: '00:16:3e:5e:6c:00' });
    assert.equal((await inst.ok('qvm-prefs', 'work', 'start_time')), '\n', 'empty when halted');
    assert.equal((await inst.ok('qvm-prefs', 'work', 'virt_mode')), 'sandbox\n');
    const globals = await listing('qubes-prefs');
    assert.deepEqual(globals.get('default_guivm'), { marker: 'D', value: 'dom0' });
    assert.deepEqual(globals.get('stats_interval'), { marker: 'D', value: '3' });
    assert.deepEqual(globals.get('check_updates_vm'), { marker: 'D', value: 'True' });
  });

  test('a setting with no effect yet is still stored and validated, and -D resets it', async () => {
    await inst.ok('qvm-prefs', 'work', 'keyboard_layout', 'de+nodeadkeys+');
    assert.equal(await inst.ok('qvm-prefs', 'work', 'keyboard_layout'), 'de+nodeadkeys+\n');
    await inst.ok('qvm-prefs', 'work', 'keyboard_layout', '-D');
    assert.equal(await inst.ok('qvm-prefs', 'work', 'keyboard_layout'), 'us++\n');
    await inst.ok('qubes-prefs', 'default_pool', 'default');
    assert.equal(await inst.ok('qubes-prefs', 'default_pool_root'), 'default\n');
  });

  test('maxmem below memory is refused and nothing is saved (not silently raised to memory)', async () => {
    await inst.ok('qvm-prefs', 'work', 'memory', '400');
    await refused('qvm-prefs', ['work', 'maxmem', '300'], 1, /^qvm-prefs: error: work: property 'maxmem': maxmem \(300\) can not be less than memory \(400\)/);
    await inst.ok('qvm-prefs', 'work', 'maxmem', '500');
    await refused('qvm-prefs', ['work', 'memory', '600'], 1, /maxmem \(500\) can not be less than memory \(600\)/);
    await inst.ok('qvm-prefs', 'work', 'maxmem', '0'); // 0: memory is the limit
    await inst.ok('qvm-prefs', 'work', 'memory', '600');
  });

  const badSets: [string[], number, RegExp, string][] = [
    [['qvm-prefs', 'work', 'virt_mode', 'pvh'], 1, /virt_mode 'pvh' needs Xen; Isola offers 'sandbox' and 'hvm'/, 'Xen mode'],
    [['qvm-prefs', 'work', 'virt_mode', 'hmv'], 1, /Invalid virtualization mode, supported values: sandbox, hvm/, 'a typo'],
    [['qvm-prefs', 'work', 'kernel', '1.2.3-nope'], 1, /Kernel '1\.2\.3-nope' not installed/, 'kernel not installed'],
    [['qvm-prefs', 'work', 'mac', 'nope'], 1, /Invalid MAC address value/, 'not a MAC'],
    [['qvm-prefs', 'work', 'ip', '10.137.0.999'], 1, /does not appear to be an IPv4 address/, 'not an address'],
    [['qvm-prefs', 'work', 'keyboard_layout', 'us'], 1, /invalid number of keyboard layout parameters/, 'layout needs three parts'],
    [['qvm-prefs', 'work', 'xid', '5'], 1, /read-only/, 'computed'],
    [['qvm-prefs', 'work', 'klass', 'TemplateVM'], 1, /read-only/, 'computed'],
    [['qvm-prefs', 'work', 'guivm', 'nosuch'], 1, /no such qube 'nosuch'/, 'missing qube'],
    [['qvm-prefs', 'work', 'no_such_property'], 2, /^qvm-prefs: error: no such property: 'no_such_property'$/m, 'unknown property'],
    [['qvm-prefs', 'wrok', 'memory', '400'], 2, /^qvm-prefs: error: no such domain: 'wrok'$/m, 'unknown qube'],
    [['qubes-prefs', 'maxmem', '1'], 1, /read-only/, 'host fact'],
    [['qubes-prefs', 'check_updates_vm', 'perhaps'], 1, /not a boolean/, 'not a bool'],
    [['qubes-prefs', 'default_pool_root', 'nosuch'], 1, /no such pool 'nosuch'/, 'missing pool'],
    [['qubes-prefs', 'no_such_property', 'x'], 2, /^qubes-prefs: error: no such property: 'no_such_property'$/m, 'unknown global'],
  ];
  for (const [[cmd, ...args], code, pattern, why] of badSets) {
    test(`${cmd} ${args.join(' ')} is refused (${why}) and changes nothing`, () => refused(cmd, args, code, pattern));
  }

  test('a running qube has an xid and a start time; maxmem cannot change until it halts', async () => {
    const t0 = Date.now() / 1000;
    await inst.ok('qvm-start', 'work');
    try {
      const start = Number((await inst.ok('qvm-prefs', 'work', 'start_time')).trim());
      assert.ok(start >= Math.floor(t0) - 1 && start <= Date.now() / 1000 + 1, `start_time ${start}`);
      const qid = (await inst.ok('qvm-prefs', 'work', 'qid')).trim();
      assert.equal((await inst.ok('qvm-prefs', 'work', 'xid')).trim(), qid);
      await refused('qvm-prefs', ['work', 'maxmem', '4000'], 1, /Can't change maxmem of VM work, because it isn't Halted/);
    } finally {
      await inst.ok('qvm-shutdown', '--wait', 'work');
    }
    assert.equal((await inst.ok('qvm-prefs', 'work', 'xid')).trim(), '-1');
  });
});
