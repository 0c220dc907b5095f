// The CLI's shared contract, for every command: --help, usage errors (exit 2, one line, no call)
// and daemon errors (exit 1, one `COMMAND: error: MESSAGE` line, no stack trace).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { COMMANDS, main, registerCommand } from '../../src/cli/main';
import { err, FakeClient, runCommand, VM_LIST } from './cli-fake-client';

describe('qvm-* commands: help', () => {
  for (const name of Object.keys(COMMANDS)) {
    it(`${name} --help prints usage and flags on stdout and exits 0 without calling isolad`, async () => {
      const r = await runCommand(name, ['--help']);
      assert.equal(r.code, 0);
      assert.match(r.stdout, new RegExp(`^Usage: ${name} `));
      assert.match(r.stdout, /-h, --help/);
      assert.equal(r.stderr, '');
      assert.equal(r.client.calls.length, 0);
    });
  }

  it('lists Qubes flags: -q/-v everywhere, --all/--exclude on multi-qube tools', async () => {
    for (const name of ['qvm-start', 'qvm-shutdown', 'qvm-kill', 'qvm-remove', 'qvm-check']) {
      const { stdout } = await runCommand(name, ['--help']);
      for (const flag of ['--all', '--exclude <EXCLUDE>', '-q, --quiet', '-v, --verbose']) assert.ok(stdout.includes(flag), `${name}: ${flag}`);
    }
    const shutdown = (await runCommand('qvm-shutdown', ['-h'])).stdout;
    for (const flag of ['--wait', '--timeout <SECONDS>', '--force']) assert.ok(shutdown.includes(flag), flag);
    const ls = (await runCommand('qvm-ls', ['--help'])).stdout;
    for (const flag of ['--raw-data', '--raw-list', '-O, --fields', '--running', '--halted', '--class', '--label', '--tags']) assert.ok(ls.includes(flag), flag);
    const create = (await runCommand('qvm-create', ['--help'])).stdout;
    for (const flag of ['-C, --class', '--standalone', '-t, --template', '-l, --label', '--prop, --property']) assert.ok(create.includes(flag), flag);
  });

  it('shows subcommand help for qvm-volume and qvm-template', async () => {
    const r = await runCommand('qvm-volume', ['resize', '--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /Usage: qvm-volume resize\|extend \[options\] <VM:VOLUME> <SIZE>/);
    const t = await runCommand('qvm-template', ['--help']);
    assert.match(t.stdout, /install <TEMPLATE\.\.\.>/);
    assert.match(t.stdout, /list \[options\] \[TEMPLATESPEC\.\.\.\]/);
    assert.match(t.stdout, /-y, --yes/);
  });
});

describe('qvm-* commands: usage errors', () => {
  // Each line: a command line that must be refused before anything is sent to isolad.
  const cases: [string, string[], RegExp][] = [
    ['qvm-create', ['work'], /--label option is mandatory/], // Qubes requires a label
    ['qvm-create', ['-l', 'red'], /VMNAME is mandatory/],
    ['qvm-create', ['-l', 'red', '--property', 'memory', 'work'], /Invalid property token: 'memory'/], // no '='
    ['qvm-create', ['-l', 'red', '--prop', 'kernelopts=a b', 'work'], /cannot contain blanks/], // payload is space-separated
    ['qvm-create', ['-l', 'red', 'bad name'], /invalid qube name/],
    ['qvm-ls', ['--bogus'], /unrecognized arguments: --bogus/],
    ['qvm-ls', ['-o', 'simple', '-O', 'name'], /not allowed with argument/], // --format and --fields exclude each other
    ['qvm-ls', ['--format', 'nope'], /invalid choice: 'nope'/],
    ['qvm-start', [], /one of the arguments --all VMNAME is required/],
    ['qvm-start', ['--all', 'work'], /argument VMNAME: not allowed with argument --all/],
    ['qvm-kill', ['--exclude', 'work', 'personal'], /--exclude can only be used with --all/],
    ['qvm-shutdown', ['--wait', '--timeout', 'soon', 'work'], /--timeout.*invalid/],
    ['qvm-volume', ['info', 'work'], /expected a vm & volume combination like foo:bar/], // no ':'
    ['qvm-volume', ['revert', 'work:private:x'], /expected a vm & volume combination like foo:bar/],
    ['qvm-tags', ['work', 'frob'], /invalid choice: 'frob'/],
    ['qvm-tags', ['work', 'add'], /the following arguments are required: tag/],
    ['qvm-tags', ['work', 'del', 'a', 'b'], /unrecognized arguments: b/], // del takes one tag
    ['qvm-prefs', [], /the following arguments are required: VMNAME/],
    ['qvm-prefs', ['work', 'netvm', 'sys-net', '-D'], /cannot both set and reset/],
    ['qubes-prefs', ['-D'], /--default requires a property/],
    ['qvm-features', ['work', '-D'], /--unset requires a feature/],
    ['qvm-features', ['work', 'gui', '1', '--unset'], /cannot both set and unset/],
    ['qvm-clone', ['work'], /the following arguments are required: NEWVM/],
    ['qvm-check', [], /one of the arguments --all VMNAME is required/],
    ['qvm-template', ['frob'], /unknown command 'frob'/],
    ['qvm-template', ['remove', 'debian-12'], /not a terminal.*-y\/--yes/],
  ];
  for (const [cmd, argv, why] of cases) {
    it(`${cmd} ${argv.join(' ')} exits 2 with one error line and no call`, async () => {
      const r = await runCommand(cmd, argv);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.client.calls.length, 0, `calls: ${r.client.summary().join('; ')}`);
      assert.equal(r.stdout, '');
      const errLines = r.stderr.split('\n').filter(Boolean);
      assert.equal(errLines.length, 1, r.stderr);
      assert.ok(errLines[0].startsWith(`${cmd}: error: `), errLines[0]);
      assert.match(errLines[0], why);
    });
  }
});

describe('qvm-* commands: daemon errors', () => {
  it('prints a QubesError once as `qvm-prefs: error: MESSAGE` and exits 1', async () => {
    const r = await runCommand('qvm-prefs', ['work', 'netvm', 'work'], {
      'admin.vm.List dom0': VM_LIST,
      'admin.vm.property.Set work netvm': err('QubesPropertyValueError', "work: property 'netvm': a qube cannot be its own netvm"),
    });
    assert.equal(r.code, 1);
    assert.equal(r.stderr, "qvm-prefs: error: work: property 'netvm': a qube cannot be its own netvm\n");
    assert.equal(r.stdout, '');
  });

  it('reports an unreachable daemon in one line', async () => {
    const r = await runCommand('qvm-ls', [], {
      'admin.vm.List': err('QubesException', 'isolad is not running (start it with `npm start` or `isolad`)'),
    });
    assert.equal(r.code, 1);
    assert.equal(r.stderr.split('\n').filter(Boolean).length, 1);
    assert.match(r.stderr, /^qvm-ls: error: isolad is not running/);
  });

  it('keeps going after one qube fails and exits 1', async () => {
    const r = await runCommand('qvm-start', ['work', 'debian-12'], {
      'admin.vm.List dom0': VM_LIST,
      'admin.vm.Start work': err('QubesVMError', 'work: the template debian-12 has no root volume'),
      'admin.vm.Start debian-12': '',
    });
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'qvm-start: error: Starting qube failed: work: work: the template debian-12 has no root volume\n');
    assert.deepEqual(r.client.summary(), ['admin.vm.List dom0', 'admin.vm.Start work', 'admin.vm.Start debian-12']);
  });

  it('never prints a stack trace for an unexpected exception', async () => {
    const r = await runCommand('qvm-ls', [], { 'admin.vm.List': () => { throw new TypeError('boom\n    at somewhere (x.js:1:1)'); } });
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'qvm-ls: error: boom at somewhere (x.js:1:1)\n');
  });
});

describe('command registry', () => {
  it('rejects an unknown command with exit 2', async () => {
    const r = await runCommand('qvm-frobnicate', []);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown command 'qvm-frobnicate'/);
  });

  it('lets other modules register commands', async () => {
    registerCommand('qvm-hello', { run: async (argv, deps) => (deps.stdout(`hello ${argv.join(' ')}\n`), 0) });
    let out = '';
    const code = await main('qvm-hello', ['world'], { client: new FakeClient(), stdout: (s) => (out += s), stderr: () => undefined, isTTY: false });
    assert.equal(code, 0);
    assert.equal(out, 'hello world\n');
    delete COMMANDS['qvm-hello'];
  });
});
