// qvm-firewall: the calls it sends and what it prints, ported from Qubes' client tests
// (qubesadmin/tests/tools/qvm_firewall.py), and its refusals: one line, nothing changed.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { err, runCommand, VM_LIST } from './cli-fake-client';

const GET = 'action=accept dsthost=qubes-os.org\naction=drop proto=icmp\n';
const base = (get = GET) => ({ 'admin.vm.List dom0': VM_LIST, 'admin.vm.firewall.Get work': get, 'admin.vm.firewall.Status work': '' });
const stripped = (out: string) => out.split('\n').filter(Boolean).map((l) => l.trim());

describe("qvm-firewall list (Qubes' client tests)", () => {
  it('test_000_list: prints the table', async () => {
    const r = await runCommand('qvm-firewall', ['work', 'list'], base());
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(stripped(r.stdout), [
      'NO  ACTION  HOST          PROTOCOL  PORT(S)  SPECIAL TARGET  ICMP TYPE  EXPIRE  COMMENT',
      '0   accept  qubes-os.org  -         -        -               -          -       -',
      '1   drop    -             icmp      -        -               -          -       -',
    ]);
    assert.deepEqual(r.client.summary(), ['admin.vm.List dom0', 'admin.vm.firewall.Get work', 'admin.vm.firewall.Status work']);
  });

  it('test_001_list_default: list is the default command; ports, ICMP type, special target and comment', async () => {
    const r = await runCommand('qvm-firewall', ['work'], base(
      'action=accept dsthost=qubes-os.org proto=tcp dstports=443-443\naction=drop proto=icmp icmptype=8\naction=accept specialtarget=dns comment=Allow DNS\n'));
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(stripped(r.stdout), [
      'NO  ACTION  HOST          PROTOCOL  PORT(S)  SPECIAL TARGET  ICMP TYPE  EXPIRE  COMMENT',
      '0   accept  qubes-os.org  tcp       443      -               -          -       -',
      '1   drop    -             icmp      -        -               8          -       -',
      '2   accept  -             -         -        dns             -          -       Allow DNS',
    ]);
  });

  it('test_002_list_expire: shows the time left', async () => {
    const inOneHour = Math.floor(Date.now() / 1000) + 3600;
    const r = await runCommand('qvm-firewall', ['work'], base(`action=accept dsthost=qubes-os.org proto=tcp dstports=443-443 expire=${inOneHour}\n`));
    const m = /^0 {3}accept {2}qubes-os\.org {2}tcp {7}443 {6}- {15}- {10}\+(.{4})s {2}-$/.exec(stripped(r.stdout).at(-1)!);
    assert.ok(m, r.stdout);
    assert.ok(Number(m[1]) > 3590 && Number(m[1]) <= 3600);
  });

  it('test_002_list_raw and test_003_list_raw_reload: raw lines in the client order, then Reload', async () => {
    const raw = await runCommand('qvm-firewall', ['work', '--raw', 'list'], base());
    assert.equal(raw.stdout, 'action=accept dsthost=qubes-os.org\naction=drop proto=icmp\n');
    const reload = await runCommand('qvm-firewall', ['work', '--raw', '--reload', 'list'], { ...base(), 'admin.vm.firewall.Reload work': '' });
    assert.equal(reload.stdout, raw.stdout);
    assert.deepEqual(reload.client.summary(), ['admin.vm.List dom0', 'admin.vm.firewall.Get work', 'admin.vm.firewall.Reload work', 'admin.vm.firewall.Status work']);
    const after = await runCommand('qvm-firewall', ['work', 'list', '--raw'], base('action=accept expire=2583292452 dst4=10.0.0.0/8 proto=tcp dstports=22-22\n'));
    assert.equal(after.stdout, 'action=accept proto=tcp dst4=10.0.0.0/8 dstports=22-22 expire=2583292452\n', '--raw after the command works too');
  });

  it('says on stderr, in one line, when the running qube\'s traffic is all blocked (fail closed), with the reason', async () => {
    const reason = "host name 'nx.test' (rule 0) does not resolve";
    const r = await runCommand('qvm-firewall', ['work', 'add', 'accept', 'nx.test'], { ...base(), 'admin.vm.firewall.Set work': '', 'admin.vm.firewall.Status work': `${reason}\n` });
    assert.equal(r.code, 0, 'the rule is stored all the same');
    assert.equal(r.stderr, `qvm-firewall: warning: all network traffic of work is blocked: ${reason}\n`);
    const list = await runCommand('qvm-firewall', ['work'], { ...base(), 'admin.vm.firewall.Status work': `${reason}\n` });
    assert.match(list.stderr, /blocked: host name 'nx\.test'/);
  });

  it('never lists dom0: it has no firewall', async () => {
    const r = await runCommand('qvm-firewall', ['dom0'], base());
    assert.deepEqual([r.code, r.stderr], [1, 'qvm-firewall: error: dom0 has no firewall (the rules are for the traffic of qubes through their netvm)\n']);
    assert.deepEqual(r.client.summary(), ['admin.vm.List dom0']);
  });
});

describe("qvm-firewall add, del, reset (Qubes' client tests)", () => {
  const setLast = (payload: string) => ['admin.vm.List dom0', 'admin.vm.firewall.Get work', `admin.vm.firewall.Set work [${payload}]`, 'admin.vm.firewall.Status work'];

  it('test_010_add_after: appends the rule, sending every rule back', async () => {
    const r = await runCommand('qvm-firewall', ['work', 'add', 'accept', '192.168.0.0/24', 'comment=Allow LAN'], { ...base(), 'admin.vm.firewall.Set work': '' });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.client.summary(), setLast('action=accept dsthost=qubes-os.org\naction=drop proto=icmp\naction=accept dst4=192.168.0.0/24 comment=Allow LAN\n'));
  });

  it('test_011_add_before: inserts before rule N', async () => {
    const r = await runCommand('qvm-firewall', ['work', 'add', '--before', '1', 'accept', '192.168.0.0/24', 'comment=Allow LAN'], { ...base(), 'admin.vm.firewall.Set work': '' });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.client.summary(), setLast('action=accept dsthost=qubes-os.org\naction=accept dst4=192.168.0.0/24 comment=Allow LAN\naction=drop proto=icmp\n'));
  });

  it('test_020_del_number and test_021_del_rule: by number or by the rule itself', async () => {
    for (const argv of [['work', 'del', '--rule-no', '1'], ['work', 'del', 'drop', 'proto=icmp']]) {
      const r = await runCommand('qvm-firewall', argv, { ...base(), 'admin.vm.firewall.Set work': '' });
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(r.client.summary(), setLast('action=accept dsthost=qubes-os.org\n'), argv.join(' '));
    }
  });

  it('test_030_reset: one accept rule (Isola does not read the rules first)', async () => {
    const r = await runCommand('qvm-firewall', ['work', 'reset'], { 'admin.vm.List dom0': VM_LIST, 'admin.vm.firewall.Set work': '', 'admin.vm.firewall.Status work': '' });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.client.summary(), ['admin.vm.List dom0', 'admin.vm.firewall.Set work [action=accept\n]', 'admin.vm.firewall.Status work']);
  });

  it('sends expire=+N as the absolute time', async () => {
    const t0 = Math.floor(Date.now() / 1000);
    const r = await runCommand('qvm-firewall', ['work', 'add', 'accept', 'qubes-os.org', 'expire=+300'], { ...base(), 'admin.vm.firewall.Set work': '' });
    const line = r.client.calls.find((c) => c.method === 'admin.vm.firewall.Set')!.payload.split('\n').at(-2)!;
    const m = /^action=accept dsthost=qubes-os\.org expire=(\d+)$/.exec(line);
    assert.ok(m, line);
    assert.ok(Number(m[1]) >= t0 + 300 && Number(m[1]) <= t0 + 301);
  });

  it("reports isolad's refusal in one line, exit 1", async () => {
    const r = await runCommand('qvm-firewall', ['work', 'add', 'drop'], { ...base(), 'admin.vm.firewall.Set work': err('QubesValueError', "line 3: invalid firewall rule: action 'x': must be 'accept' or 'drop'") });
    assert.deepEqual([r.code, r.stderr], [1, "qvm-firewall: error: line 3: invalid firewall rule: action 'x': must be 'accept' or 'drop'\n"]);
  });
});

describe('qvm-firewall refusals: one line, and nothing is changed', () => {
  // Each: a command line refused before anything is asked of isolad (exit 2, no call at all).
  const usage: [string[], RegExp][] = [
    [[], /the following arguments are required: VMNAME/],
    [['--raw'], /the following arguments are required: VMNAME/],
    [['work', 'frob'], /argument command: invalid choice: 'frob' \(choose from 'add', 'del', 'list', 'reset'\)/],
    [['work', 'add'], /the following arguments are required: RULE/],
    [['work', 'add', 'allow'], /invalid firewall rule: action 'allow'/], // Qubes says accept
    [['work', 'add', 'accept', 'proto=tcp', 'dstports=99999'], /dstports '99999': ports out of range/],
    [['work', 'add', 'accept', 'tcp'], /dsthost 'tcp': a keyword/], // Qubes would make "tcp" the host name
    [['work', 'add', 'accept', 'action=drop'], /action: given twice/], // Qubes would keep the last
    [['work', 'add', '--before', '-1', 'accept'], /argument --before: invalid int value: '-1'/],
    [['work', 'add', '--before', 'x', 'accept'], /argument --before: invalid int value: 'x'/],
    [['work', 'del'], /give the rule to delete/],
    [['work', 'del', '--rule-no', '0', 'accept'], /either --rule-no or a rule, not both/],
    [['work', 'del', '--rule-no', 'one'], /argument --rule-no: invalid int value: 'one'/],
  ];
  for (const [argv, why] of usage) {
    it(`qvm-firewall ${argv.join(' ')}: exit 2, no call`, async () => {
      const r = await runCommand('qvm-firewall', argv, base());
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stdout, '');
      assert.equal(r.stderr.split('\n').filter(Boolean).length, 1, r.stderr);
      assert.match(r.stderr, /^qvm-firewall: error: /);
      assert.match(r.stderr, why);
      assert.deepEqual(r.client.calls, []);
    });
  }

  // Each: a command line that reads the rules, then refuses without writing them (exit 1).
  const runtime: [string[], RegExp][] = [
    [['work', 'add', '--before', '3', 'drop'], /work has no rule 3 to add before \(its rules are numbered 0 to 1; --before 2 adds at the end\)/],
    [['work', 'del', '--rule-no', '2'], /work has no rule 2 \(its rules are numbered 0 to 1\)/],
    [['work', 'del', 'accept', 'proto=udp'], /work has no rule action=accept proto=udp/],
  ];
  for (const [argv, why] of runtime) {
    it(`qvm-firewall ${argv.join(' ')}: exit 1, no Set`, async () => {
      const r = await runCommand('qvm-firewall', argv, base());
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, why);
      assert.deepEqual(r.client.summary(), ['admin.vm.List dom0', 'admin.vm.firewall.Get work']);
    });
  }

  it('cannot delete the last rule (the Admin API takes at least one)', async () => {
    const r = await runCommand('qvm-firewall', ['work', 'del', '--rule-no', '0'], base('action=accept\n'));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^qvm-firewall: error: cannot remove the last rule of work: .*add 'drop'/);
    assert.deepEqual(r.client.summary(), ['admin.vm.List dom0', 'admin.vm.firewall.Get work']);
  });

  it("an unknown qube is Qubes' usage error", async () => {
    const r = await runCommand('qvm-firewall', ['wrok', 'list'], base());
    assert.deepEqual([r.code, r.stderr], [2, "qvm-firewall: error: no such domain: 'wrok'\n"]);
  });
});

describe('qvm-firewall --help', () => {
  it('explains the rule syntax, and each command has its own help', async () => {
    const top = await runCommand('qvm-firewall', ['--help']);
    assert.equal(top.code, 0);
    assert.match(top.stdout, /^Usage: qvm-firewall \[options\] VMNAME \[\{add,del,list,reset\}\]/);
    assert.match(top.stdout, /--raw/);
    assert.match(top.stdout, /<action> \[<dsthost> \[<proto> \[<dstports>\|<icmptype>\]\]\]/);
    const vmHelp = await runCommand('qvm-firewall', ['work', '--help']);
    assert.equal(vmHelp.stdout, top.stdout);
    for (const [cmd, usage] of [['add', 'VMNAME add [--before N] RULE...'], ['del', 'VMNAME del [--rule-no N] [RULE...]'], ['list', 'VMNAME list'], ['reset', 'VMNAME reset']]) {
      const r = await runCommand('qvm-firewall', ['work', cmd, '--help']);
      assert.equal(r.code, 0, r.stderr);
      assert.ok(r.stdout.startsWith('Usage: qvm-firewall [options] '), r.stdout);
      assert.ok(r.stdout.includes(usage), `${cmd}: ${r.stdout}`);
      assert.deepEqual(r.client.calls, []);
    }
  });
});
