// The plumbing every qvm-* tool shares, as Qubes' qubesadmin/tools/__init__.py has it: fnmatch
// wildcards, VmNameAction (unknown names are usage errors), argparse's wording, --version, and the
// user wording of Node's and the Admin API's internal errors.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { argparseWording, expandVmNames, fnmatch, parseVmList, pyRepr, reportError, type CliDeps } from '../../src/cli/commands/common';
import { connectError } from '../../src/cli/admin-client';
import { errorText } from '../../src/core/error-text';
import { withArticle } from '../../src/core/grammar';
import { FakeClient, runCommand, VM_LIST } from './cli-fake-client';

describe('fnmatch (Python fnmatch.fnmatchcase)', () => {
  const cases: [string, string, boolean][] = [
    ['work', 'work', true],
    ['work', 'wor', false], // the whole name, not a prefix
    ['work-web', 'work*', true],
    ['personal', 'work*', false],
    ['work', 'w?rk', true],
    ['wrk', 'w?rk', false],
    ['sys-net', 'sys-[nf]*', true],
    ['sys-usb', 'sys-[nf]*', false],
    ['sys-usb', 'sys-[!nf]*', true],
    ['vm3', 'vm[0-4]', true],
    ['vm7', 'vm[0-4]', false],
    ['vm-', 'vm[a-]', true], // a trailing '-' is literal
    ['vm]', 'vm[]]', true], // ']' first in a set belongs to it
    ['vm!', 'vm[!]', false], // '[!]' has no closing bracket: literal
    ['vm[!]', 'vm[!]', true],
    ['a[b', 'a[b', true], // unclosed '[' is literal
    ['a.b', 'a.b', true],
    ['axb', 'a.b', false], // '.' is not a regex wildcard
    ['^x', '[^]x', true], // '^' in a set is literal in fnmatch
    ['a', '[^]', false],
    ['b', '[z-a]', false], // a reversed range matches nothing (Python), and does not throw
    ['b', '[!z-a]', true],
    ['Work', 'work*', false], // case-sensitive, as on Linux
    ['a\nb', 'a*b', true],
    ['a+b', 'a+b', true],
    ['a(b)', 'a(b)', true],
    ['a\\b', 'a\\b', true],
  ];
  for (const [name, pattern, want] of cases) {
    it(`${JSON.stringify(name)} ${want ? 'matches' : 'does not match'} ${JSON.stringify(pattern)}`, () => {
      assert.equal(fnmatch(name, pattern), want);
    });
  }
});

describe('expandVmNames (Qubes VmNameAction)', () => {
  const all = parseVmList(VM_LIST);
  const names = (args: string[]) => expandVmNames(all, args).map((q) => q.name);

  it('expands a pattern to the matching qubes sorted by name, and keeps plain names once in order', () => {
    assert.deepEqual(names(['*e*']), ['debian-12', 'personal', 'sys-net']);
    assert.deepEqual(names(['work', 'sys-*', 'work']), ['work', 'sys-net']);
    assert.deepEqual(names(['p*', 'personal']), ['personal']);
  });

  it('a pattern that matches nothing expands to nothing; an unknown plain name is a usage error', () => {
    assert.deepEqual(names(['zz*']), []);
    assert.throws(() => names(['work', 'wrok']), { message: "no such domain: 'wrok'" });
  });
});

describe('argparse wording', () => {
  const cases: [string, string][] = [
    ["error: missing required argument 'VMNAME'", 'the following arguments are required: VMNAME'],
    ["error: unknown option '--bogus'", 'unrecognized arguments: --bogus'],
    ["error: option '-l, --label <LABEL>' argument missing", 'argument -l/--label: expected one argument'],
    ["error: option '--format <FORMAT>' argument 'x' is invalid. Allowed choices are simple, full.", "argument --format: invalid choice: 'x' (choose from 'simple', 'full')"],
    ["error: option '--timeout <SECONDS>' argument 'soon' is invalid. invalid number of seconds: 'soon'", "argument --timeout: invalid number of seconds: 'soon'"],
    ["error: option '-o, --format <F>' cannot be used with option '-O, --fields <F>'", 'argument -o/--format: not allowed with argument -O/--fields'],
    ["error: required option '-l, --label <LABEL>' not specified", 'the following arguments are required: -l/--label'],
  ];
  for (const [commander, argparse] of cases) {
    it(argparse, () => assert.equal(argparseWording(commander), argparse));
  }

  it('names every missing positional and every extra word, as argparse', async () => {
    const missing = await runCommand('qvm-clone', []);
    assert.deepEqual([missing.code, missing.stderr], [2, 'qvm-clone: error: the following arguments are required: VMNAME, NEWVM\n']);
    const extra = await runCommand('qvm-features', ['work', 'a', 'b', 'c', 'd']);
    assert.deepEqual([extra.code, extra.stderr], [2, 'qvm-features: error: unrecognized arguments: c d\n']);
    assert.equal(missing.client.calls.length + extra.client.calls.length, 0);
  });

  it('pyRepr quotes as Python does', () => {
    assert.equal(pyRepr('x'), "'x'");
    assert.equal(pyRepr("it's"), '"it\'s"');
    assert.equal(pyRepr('a\nb'), "'a\\nb'");
  });
});

describe('--version, -q and -v on every tool', () => {
  for (const name of ['qvm-create', 'qvm-remove', 'qvm-clone', 'qvm-check', 'qvm-shutdown', 'qvm-start', 'qvm-kill', 'qvm-tags', 'qvm-features', 'qvm-clipboard']) {
    it(`${name} --version prints its name and version on stdout, exit 0, no call`, async () => {
      const r = await runCommand(name, ['--version']);
      assert.equal(r.code, 0);
      assert.match(r.stdout, new RegExp(`^${name} \\(Isola[^)]*\\) \\d+\\.\\d+`));
      assert.equal(r.client.calls.length, 0);
    });
    it(`${name} --help lists -q/--quiet and -v/--verbose`, async () => {
      const { stdout } = await runCommand(name, ['--help']);
      assert.ok(stdout.includes('-q, --quiet') && stdout.includes('-v, --verbose'), stdout);
    });
  }
});

describe('unknown qube: a usage error before any change', () => {
  const lines: [string, string[]][] = [
    ['qvm-start', ['work', 'wrok']],
    ['qvm-shutdown', ['wrok']],
    ['qvm-kill', ['wrok']],
    ['qvm-remove', ['-f', 'wrok']],
    ['qvm-clone', ['wrok', 'copy']],
    ['qvm-tags', ['wrok', 'add', 't']],
    ['qvm-features', ['wrok', 'f', 'v']],
    ['qvm-clipboard', ['paste-to', 'wrok']],
  ];
  for (const [cmd, argv] of lines) {
    it(`${cmd} ${argv.join(' ')}: "${cmd}: error: no such domain: 'wrok'", exit 2, only admin.vm.List`, async () => {
      const r = await runCommand(cmd, argv, { 'admin.vm.List dom0': VM_LIST });
      assert.deepEqual([r.code, r.stderr, r.stdout], [2, `${cmd}: error: no such domain: 'wrok'\n`, '']);
      assert.deepEqual(r.client.summary(), ['admin.vm.List dom0']);
    });
  }

  it("VMNAME accepts wildcards: qvm-start 'p*' 'sys-*' starts personal and sys-net... when halted", async () => {
    const list = VM_LIST.replace('personal class=AppVM state=Running', 'personal class=AppVM state=Halted').replace('sys-net class=StandaloneVM state=Running', 'sys-net class=StandaloneVM state=Halted');
    const r = await runCommand('qvm-start', ['p*', 'sys-*'], { 'admin.vm.List dom0': list, 'admin.vm.Start': '' });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.client.summary(), ['admin.vm.List dom0', 'admin.vm.Start personal', 'admin.vm.Start sys-net']);
  });

  it('a one-qube tool takes the first match of a pattern (Qubes nargs=1)', async () => {
    const r = await runCommand('qvm-tags', ['w*'], { 'admin.vm.List dom0': VM_LIST, 'admin.vm.tag.List work': 'a\n' });
    assert.deepEqual([r.code, r.stdout], [0, 'a\n']);
  });
});

describe('error wording: no Node or Admin API internals reach the user', () => {
  it('Node system errors become `PATH: description`', () => {
    const e = Object.assign(new Error("ENOENT: no such file or directory, lstat '/var/lib/isola/x'"), { code: 'ENOENT', syscall: 'lstat', path: '/var/lib/isola/x', errno: -2 });
    assert.equal(errorText(e), "'/var/lib/isola/x': no such file or directory");
    const eacces = Object.assign(new Error("EACCES: permission denied, open '/etc/qubes/x'"), { code: 'EACCES', syscall: 'open', path: '/etc/qubes/x' });
    assert.equal(errorText(eacces), "'/etc/qubes/x': permission denied");
    assert.equal(errorText(new Error("ENOSPC: no space left on device, write '/x'")), "'/x': no space left on device");
    assert.equal(errorText(new Error('plain message')), 'plain message');
  });

  it('isolad contract errors do not name the method', () => {
    assert.equal(errorText(new Error('admin.vm.feature.Set needs an argument')), 'a required name was empty');
    assert.equal(errorText(new Error('admin.vm.tag.List takes no argument')), 'this request takes no name');
  });

  it('reportError prints one line without errno codes and exits 1', () => {
    let err = '';
    const deps: CliDeps = { client: new FakeClient(), stdout: () => undefined, stderr: (s) => (err += s), isTTY: false };
    const e = Object.assign(new Error("ENOENT: no such file or directory, lstat '/x'"), { code: 'ENOENT', syscall: 'lstat', path: '/x' });
    assert.equal(reportError('qvm-ls', e, deps), 1);
    assert.equal(err, "qvm-ls: error: '/x': no such file or directory\n");
  });

  it('the socket errors say what to do', () => {
    const sock = '/run/isola/isolad.sock';
    const errno = (code: string) => Object.assign(new Error(`connect ${code} ${sock}`), { code, syscall: 'connect' });
    assert.equal(connectError(sock, errno('EACCES')).message, `cannot connect to isolad at ${sock}: permission denied (run as root)`);
    assert.equal(connectError(sock, errno('ENOENT')).message, 'isolad is not running (start it with `npm start` or `isolad`)');
    assert.equal(connectError(sock, errno('ECONNREFUSED')).message, 'isolad is not running (start it with `npm start` or `isolad`)');
    assert.doesNotMatch(connectError(sock, errno('EMFILE')).message, /EMFILE/);
  });

  it('"an AppVM", "a TemplateVM"', () => {
    assert.deepEqual(['AppVM', 'AdminVM', 'TemplateVM', 'StandaloneVM', 'unknown type 0x9'].map(withArticle), ['an AppVM', 'an AdminVM', 'a TemplateVM', 'a StandaloneVM', 'an unknown type 0x9']);
  });
});
