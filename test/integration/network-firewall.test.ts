// qvm-firewall enforced by a real isolad in sys-firewall's namespace, against the tests' own hosts:
// rules in order, DNS through specialtarget, rejects that fail fast, host names that do not resolve
// (fail closed), expiry, live netvm changes, rules surviving an isolad restart, and bad rules that
// change neither the stored list nor the live ruleset.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { canRunIntegration, Instance } from './harness';
import { networkedInstance, TestInternet } from './net-world';

const skip = canRunIntegration();

const httpGet = (url: string, timeoutMs = 4000) =>
  `node -e "const t=Date.now();const r=require('http').get('${url}',{timeout:${timeoutMs}},(s)=>s.pipe(process.stdout));` +
  `r.on('timeout',()=>{console.log('ERR timeout');process.exit(3)});r.on('error',(e)=>{console.log('ERR',e.code,Date.now()-t);process.exit(3)})"`;

describe('qvm-firewall enforced in the netvm', { skip, concurrency: false }, () => {
  let inst: Instance;
  let inet: TestInternet;
  before(async () => {
    inet = await TestInternet.create({ 'deb.test': '198.51.100.10', 'far.test': '203.0.113.20' });
    inst = await networkedInstance();
    await inst.ok('qvm-create', '--label', 'blue', 'work');
    await inst.ok('qvm-create', '--label', 'yellow', 'personal');
    await inst.ok('qvm-start', 'work');
    await inst.ok('qvm-start', 'personal');
  });
  after(async () => {
    await inst?.destroy();
    inet?.destroy();
  });

  const run = (vm: string, cmd: string) => inst.cli('qvm-run', ['-p', vm, cmd]);
  const get = async (vm: string, host: string, ms?: number) => (await run(vm, httpGet(`http://${host}/`, ms))).stdout;
  /** A relink runs just after the property call returns: the answer it should give, within 3 s. */
  const eventually = async (fn: () => Promise<string>) => {
    let last = '';
    for (const until = Date.now() + 3000; Date.now() < until; await new Promise((r) => setTimeout(r, 200))) {
      last = await fn();
      if (!last.startsWith('ERR')) break;
    }
    return last;
  };
  /** The live ruleset of this instance in sys-firewall's namespace. */
  const liveRules = () => {
    const pid = inst.containers().find((c) => c.id.startsWith('sys-firewall.'))!.pid;
    return execFileSync('nsenter', [`--net=/proc/${pid}/ns/net`, 'nft', '-s', 'list', 'table', 'inet', `isola-${inst.config.instance}`]).toString();
  };

  test("Qubes' usual rules: the allowed host and DNS pass, the rest is rejected at once, first match wins", async () => {
    await inst.ok('qvm-firewall', 'work', 'add', 'action=accept', 'dsthost=198.51.100.10', 'proto=tcp', 'dstports=80');
    await inst.ok('qvm-firewall', 'work', 'add', 'action=accept', 'specialtarget=dns');
    await inst.ok('qvm-firewall', 'work', 'add', 'action=drop');
    await inst.ok('qvm-firewall', 'work', 'del', '--rule-no', '0');
    const list = await inst.ok('qvm-firewall', 'work', 'list');
    assert.match(list, /^NO\s+ACTION\s+HOST/m);
    assert.equal(list.trim().split('\n').length, 4, list);
    await new Promise((r) => setTimeout(r, 1000)); // "within a second"
    assert.equal(await get('work', '198.51.100.10'), 'hello from 198.51.100.10\n');
    const denied = await get('work', '198.51.100.20');
    const m = /^ERR (\w+) (\d+)/.exec(denied);
    assert.ok(m, denied);
    assert.equal(m[1], 'EHOSTUNREACH', 'rejected with admin-prohibited, not dropped');
    assert.ok(Number(m[2]) < 1000, `the client learnt it in ${m[2]} ms`);
    assert.match((await run('work', 'getent hosts far.test')).stdout, /203\.0\.113\.20/, 'DNS through specialtarget=dns');
    assert.equal(await get('personal', '198.51.100.20'), 'hello from 198.51.100.20\n', "personal's firewall is its own");
  });

  test('a rule before the drop opens a port range; deleting it closes it again', async () => {
    await inst.ok('qvm-firewall', 'work', 'add', '--before', '2', 'action=accept', 'dsthost=203.0.113.0/24', 'proto=tcp', 'dstports=70-90');
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(await get('work', '203.0.113.10'), 'hello from 203.0.113.10\n');
    await inst.ok('qvm-firewall', 'work', 'del', '--rule-no', '2');
    await new Promise((r) => setTimeout(r, 1000));
    assert.match(await get('work', '203.0.113.10'), /^ERR EHOSTUNREACH/);
  });

  test('a rule that expires stops applying', async () => {
    await inst.ok('qvm-firewall', 'work', 'add', '--before', '0', 'action=accept', 'dsthost=198.51.100.20', 'expire=+3');
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(await get('work', '198.51.100.20'), 'hello from 198.51.100.20\n');
    await new Promise((r) => setTimeout(r, 3500));
    assert.match(await get('work', '198.51.100.20'), /^ERR EHOSTUNREACH/);
    assert.doesNotMatch(await inst.ok('qvm-firewall', 'work', '--raw', 'list'), /198\.51\.100\.20/);
  });

  test('a host name is resolved when the netvm applies the rules; one that does not resolve blocks everything, and says why', async () => {
    await inst.ok('qvm-firewall', 'personal', 'add', '--before', '0', 'action=accept', 'dsthost=deb.test');
    await inst.ok('qvm-firewall', 'personal', 'add', 'action=drop');
    await inst.ok('qvm-firewall', 'personal', 'del', '--rule-no', '1');
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(await get('personal', '198.51.100.10'), 'hello from 198.51.100.10\n', 'deb.test resolved to 198.51.100.10');
    assert.match(await get('personal', '198.51.100.20'), /^ERR EHOSTUNREACH/);
    const added = await inst.cli('qvm-firewall', ['personal', 'add', '--before', '0', 'action=accept', 'dsthost=missing.test', 'proto=tcp']);
    assert.equal(added.code, 0, 'the rule is stored');
    assert.match(added.stderr, /^qvm-firewall: warning: all network traffic of personal is blocked: missing\.test does not resolve \(\w+\)\n$/, 'the user is told at once');
    assert.match(await get('personal', '198.51.100.10'), /^ERR EHOSTUNREACH/, 'fail closed: the resolvable host is blocked too');
    assert.match(inst.daemonLog, /personal: all its network traffic is blocked: missing\.test does not resolve/);
    assert.match((await inst.cli('qvm-firewall', ['personal', 'list'])).stderr, /blocked: missing\.test does not resolve/, 'and by list, while it lasts');
    const fixed = await inst.cli('qvm-firewall', ['personal', 'del', '--rule-no', '0']);
    assert.equal(fixed.stderr, '', 'no warning once the rules apply as written');
    assert.equal(await get('personal', '198.51.100.10'), 'hello from 198.51.100.10\n');
  });

  test('malformed rules are refused and change neither the stored rules nor the live ruleset', async () => {
    const rulesBefore = await inst.ok('qvm-firewall', 'work', '--raw', 'list');
    const liveBefore = liveRules();
    for (const bad of [['dsthost=300.1.1.1'], ['dsthost=10.0.0.0/33'], ['proto=tcp', 'dstports=70000'], ['dstports=80'],
      ['proto=tcp', 'icmptype=8'], ['specialtarget=ntp'], ['expire=soon'], ['proto=sctp']]) {
      const r = await inst.cli('qvm-firewall', ['work', 'add', 'action=accept', ...bad]);
      assert.notEqual(r.code, 0, bad.join(' '));
      assert.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr}`);
    }
    assert.equal(await inst.ok('qvm-firewall', 'work', '--raw', 'list'), rulesBefore);
    assert.equal(liveRules(), liveBefore);
  });

  test('changing the netvm of a running qube relinks it at once; none takes it offline', async () => {
    await inst.ok('qvm-prefs', 'personal', 'netvm', '');
    await new Promise((r) => setTimeout(r, 500));
    const off = await run('personal', 'ip -o link');
    assert.deepEqual(off.stdout.trim().split('\n').map((l) => l.split(':')[1].trim()), ['lo']);
    await inst.ok('qvm-create', '--label', 'green', '--prop', 'provides_network=True', 'sys-firewall2');
    const stopped = await inst.cli('qvm-prefs', ['work', 'netvm', 'sys-firewall2']);
    assert.notEqual(stopped.code, 0);
    assert.match(stopped.stderr, /Cannot dynamically attach to stopped NetVM: 'sys-firewall2'/);
    assert.equal((await inst.ok('qvm-prefs', 'work', 'netvm')).trim(), 'sys-firewall', 'unchanged');
    await inst.ok('qvm-prefs', 'personal', 'netvm', 'sys-net');
    // Its own firewall (deb.test only) goes with it to its new netvm.
    assert.equal(await eventually(() => get('personal', '198.51.100.10')), 'hello from 198.51.100.10\n', 'online again, straight through sys-net');
    assert.match(await get('personal', '203.0.113.20'), /^ERR EHOSTUNREACH/);
    await inst.ok('qvm-prefs', 'personal', 'netvm', 'sys-firewall');
    assert.equal(await eventually(() => get('personal', '198.51.100.10')), 'hello from 198.51.100.10\n');
  });

  test('the rules survive an isolad restart, and the running qubes keep their network meanwhile', async () => {
    const rules = await inst.ok('qvm-firewall', 'work', '--raw', 'list');
    const personalChain = `qbs-${(await inst.ok('qvm-prefs', 'personal', 'ip')).trim().replace(/\./g, '-')}`;
    assert.match(liveRules(), new RegExp(personalChain));
    await inst.kill9();
    // While isolad is away, personal dies: the next isolad removes what it left in sys-firewall.
    inst.runc('kill', inst.runtimeId('personal'), 'KILL');
    await new Promise((r) => setTimeout(r, 300));
    await inst.start();
    assert.doesNotMatch(liveRules(), new RegExp(personalChain));
    assert.equal(await inst.ok('qvm-firewall', 'work', '--raw', 'list'), rules);
    assert.equal(await get('work', '198.51.100.10'), 'hello from 198.51.100.10\n');
    assert.match(await get('work', '198.51.100.20'), /^ERR EHOSTUNREACH/);
    await inst.ok('qvm-firewall', 'work', 'reset');
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(await get('work', '198.51.100.20'), 'hello from 198.51.100.20\n', 'reset: a single accept');
  });
});
