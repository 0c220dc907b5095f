// Bad input through the real CLI and daemon: a clear one-line error, a non-zero exit, and the
// state database exactly as it was before.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { AdminClient } from '../../src/cli/admin-client';
import type { QubesError } from '../../src/core/errors';
import { canRunIntegration, Instance, sleep } from './harness';

const skip = canRunIntegration();

describe('bad input changes nothing', { skip, concurrency: false }, () => {
  let inst: Instance;

  /** Runs a command that must fail with one line on stderr and leave the store unchanged. */
  async function refused(cmd: string, args: string[], pattern: RegExp): Promise<void> {
    const before = await inst.stateDump();
    const r = await inst.cli(cmd, args);
    assert.notEqual(r.code, 0, `${cmd} ${args.join(' ')} must fail`);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, `one line expected, got: ${r.stderr}`);
    assert.match(lines[0], pattern);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
    assert.equal(await inst.stateDump(), before, `${cmd} ${args.join(' ')} changed the state`);
  }

  before(async () => {
    inst = new Instance();
    await inst.start();
    await inst.installTemplate();
    await inst.ok('qvm-create', '--label', 'blue', 'work');
    await inst.ok('qvm-create', '--label', 'green', 'other');
  });
  after(async () => inst?.destroy());

  const badNames: [string, string][] = [
    ['1work', 'must start with a letter'],
    ['wo rk', 'spaces are not allowed'],
    ['a'.repeat(32), 'longer than 31 characters'],
    ['default', 'reserved word'],
    ['none', 'reserved word'],
    ['x/../y', 'path characters'],
    ['work', 'already exists'],
  ];
  for (const [name, why] of badNames) {
    test(`qvm-create refuses the name '${name.slice(0, 12)}' (${why})`, async () => {
      await refused('qvm-create', ['--label', 'red', name], /qvm-create: error: .*(name|exists)/i);
    });
  }

  test('qvm-create refuses an unknown label', () => refused('qvm-create', ['--label', 'pink', 'newq'], /^qvm-create: error: no such label: 'pink'; available: red, orange, yellow, green, gray, blue, purple, black$/));
  test('qvm-create refuses an AppVM as template', () => refused('qvm-create', ['--template', 'work', '--label', 'red', 'newq'], /'work' is an AppVM, not a TemplateVM/));
  test('qvm-create refuses a missing template', () => refused('qvm-create', ['--template', 'nosuch', '--label', 'red', 'newq'], /No such domain: 'nosuch'/));
  test('qvm-prefs refuses an unknown property', () => refused('qvm-prefs', ['work', 'colour', 'red'], /property.*'colour'/i));
  test('qvm-prefs refuses memory abc', () => refused('qvm-prefs', ['work', 'memory', 'abc'], /memory.*not an integer/));
  test('qvm-prefs refuses negative vcpus', () => refused('qvm-prefs', ['work', 'vcpus', '-2'], /vcpus.*positive/));
  test('qvm-prefs refuses a bool that is not one', () => refused('qvm-prefs', ['work', 'autostart', 'maybe'], /not a boolean/));
  test('qvm-prefs refuses a netvm that provides no network', () => refused('qvm-prefs', ['work', 'netvm', 'other'], /does not provide network/));
  test('qvm-prefs refuses a qube as its own netvm', () => refused('qvm-prefs', ['work', 'netvm', 'work'], /netvm/));
  test('qvm-prefs refuses an AppVM as template', () => refused('qvm-prefs', ['work', 'template', 'other'], /not a TemplateVM/));
  test('qvm-prefs refuses writing a read-only property', () => refused('qvm-prefs', ['work', 'uuid', '1234'], /read-only/));
  test('qvm-prefs refuses an unknown qube', () => refused('qvm-prefs', ['nosuch', 'memory', '400'], /^qvm-prefs: error: no such domain: 'nosuch'$/));
  test('qubes-prefs refuses an AppVM as default_template', () => refused('qubes-prefs', ['default_template', 'work'], /TemplateVM/));
  test('qvm-features refuses a bad feature name', () => refused('qvm-features', ['work', 'bad name!', '1'], /Invalid name 'bad name!'/));
  test('qvm-tags refuses a bad tag name', () => refused('qvm-tags', ['work', 'add', 'bad/tag'], /Invalid name 'bad\/tag'/));
  test('qvm-volume refuses a volume that does not exist', () => refused('qvm-volume', ['info', 'work:swap'], /no volume 'swap'/));
  test('qvm-template refuses an unknown template', () => refused('qvm-template', ['install', 'windows-11'], /not known/));

  test('qvm-remove refuses a template that qubes are based on, and lists them as Qubes does', async () => {
    const before = await inst.stateDump();
    const r = await inst.cli('qvm-remove', ['-f', 'debian-12']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^VM debian-12 cannot be removed\. It is in use as:\n( - .*\n)*/);
    assert.match(r.stderr, /\n - template for work\n/);
    assert.match(r.stderr, /\n - template for other\n/);
    assert.match(r.stderr, /\nqvm-remove: error: .*in use by: .*work \(template\)/);
    assert.equal(await inst.stateDump(), before);
  });

  test('an unknown qube is a usage error (exit 2) for every tool, and `echo y | qvm-remove` reads the answer', async () => {
    for (const [cmd, args] of [['qvm-start', ['wrok']], ['qvm-remove', ['-f', 'wrok']], ['qvm-tags', ['wrok', 'add', 't']], ['qvm-features', ['wrok', 'f', '1']]] as [string, string[]][]) {
      const r = await inst.cli(cmd, args);
      assert.deepEqual([r.code, r.stderr], [2, `${cmd}: error: no such domain: 'wrok'\n`]);
    }
    await inst.ok('qvm-create', '--label', 'red', 'doomed');
    const no = await inst.cli('qvm-remove', ['doomed'], 'n\n');
    assert.equal(no.code, 1);
    assert.equal((await inst.cli('qvm-check', ['doomed'])).code, 0);
    const yes = await inst.cli('qvm-remove', ['doomed'], 'y\n');
    assert.equal(yes.code, 0, yes.stderr);
    assert.equal(yes.stdout, '  doomed\n');
    assert.equal((await inst.cli('qvm-check', ['doomed'])).code, 1);
  });

  test('qvm-start of a running qube says it is already running', async () => {
    await inst.ok('qvm-start', 'work');
    await refused('qvm-start', ['work'], /Domain is running: work|already running/);
  });

  test('qvm-remove and qvm-clone refuse a running qube', async () => {
    await refused('qvm-remove', ['-f', 'work'], /running/);
    await refused('qvm-clone', ['work', 'work2'], /running/);
    await inst.ok('qvm-shutdown', '--wait', 'work');
  });

  test('qvm-shutdown of a halted qube: isolad refuses it (Domain is powered off), nothing changes, and the tool counts it as done', async () => {
    const before = await inst.stateDump();
    await assert.rejects(new AdminClient(inst.env.ISOLA_SOCKET).call('admin.vm.Shutdown', 'other'), (e: QubesError) => {
      assert.equal(e.code, 'QubesVMNotStartedError');
      assert.equal(e.message, 'Domain is powered off: other');
      return true;
    });
    // Qubes' qvm-shutdown skips a qube that is already halted (its test_003): exit 0, nothing printed.
    const r = await inst.cli('qvm-shutdown', ['other']);
    assert.deepEqual([r.code, r.stderr], [0, '']);
    assert.equal(await inst.stateDump(), before);
  });

  test('a qube whose runtime dies becomes Halted, and qvm-ls, qvm-check and the log say why', async () => {
    await inst.ok('qvm-start', 'other');
    inst.runc('kill', inst.runtimeId('other'), 'KILL');
    let ls = await inst.cli('qvm-ls', ['other']);
    for (let i = 0; i < 100 && !/Halted/.test(ls.stdout); i++) {
      await sleep(100);
      ls = await inst.cli('qvm-ls', ['other']);
    }
    assert.match(ls.stdout, /other\s+Halted/);
    assert.match(ls.stderr, /other: last run: runtime died/);
    const check = await inst.cli('qvm-check', ['-v', '--running', 'other']);
    assert.equal(check.code, 1);
    assert.match(check.stderr, /^qvm-check: None of qubes: running\n/);
    assert.match(check.stderr, /other: last run: runtime died/);
    assert.match(inst.daemonLog, /other: runtime died/);
    await inst.ok('qvm-start', 'other');
    assert.doesNotMatch((await inst.cli('qvm-ls', ['other'])).stderr, /last run/, 'a good start clears the reason');
    await inst.ok('qvm-shutdown', '--wait', 'other');
  });

  // 'A qube whose agent cannot start fails fast' needed a qube able to break its own init (it removed
  // /usr/bin/node under tini). The init is now the static agent bound read-only from the host, which the
  // qube cannot touch (hostile-host.test.ts); the fast failure is a unit test on the in-memory drivers
  // (lifecycle-start.test.ts: init exits before hello).
});
