// qvm-template against the expectations of Qubes' client tests (qubesadmin/tests/tools/
// qvm_template.py, test_150-161): list and info of installed (feature-marked) and available
// templates, their machine-readable forms, plus install progress and remove.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compareVersion, matchesSpec, parseTemplateSearch, sizeToHuman } from '../../src/cli/template-query';
import type { QubesError } from '../../src/core/errors';
import { err, FakeClient, runCommand, VM_LIST } from './cli-fake-client';

/** Qubes' __test_list_templates_all_success: test-vm-2 installed, test-vm in the repository. */
function replies(): Record<string, string | QubesError> {
  const r: Record<string, string | QubesError> = {
    'admin.vm.List dom0': [
      'test-vm-2 class=TemplateVM state=Halted uuid=2',
      'by-hand class=TemplateVM state=Halted uuid=3',
      'cloned class=TemplateVM state=Halted uuid=4',
      'work class=AppVM state=Halted uuid=5',
      'dom0 class=AdminVM state=Running uuid=0',
    ].join('\n') + '\n',
    // The repository query, in qubes.TemplateSearch's format (buildtime to the minute).
    'admin.template.List dom0': 'test-vm|2|4.1|2020|qubes-templates-itl|1048576|2020-09-01 14:30|GPL|https://qubes-os.org|Qubes template for fedora-31|Qubes template\n for fedora-31\n|\n',
    'admin.vm.feature.Get': err('QubesFeatureNotFoundError', 'no such feature'),
    // A template created by hand has no marker; a clone carries its source's name: neither is listed.
    'admin.vm.feature.Get cloned template-name': 'test-vm-2',
    'admin.vm.volume.List test-vm-2': 'root\nprivate\nvolatile\n',
    'admin.vm.volume.Info test-vm-2 root': 'pool=default\nusage=1000000\n',
    'admin.vm.volume.Info test-vm-2 private': 'pool=default\nusage=234321\n',
    'admin.vm.volume.Info test-vm-2 volatile': 'pool=default\nusage=0\n',
  };
  const features: [string, string][] = [
    ['name', 'test-vm-2'], ['epoch', '1'], ['version', '4.0'], ['release', '2019'], ['reponame', '@commandline'],
    ['buildtime', '2020-09-02 14:30:00'], ['installtime', '2020-09-02 15:30:00'], ['license', 'GPL'],
    ['url', 'https://qubes-os.org'], ['summary', 'Summary'], ['description', 'Desc|desc'],
  ];
  for (const [k, v] of features) r[`admin.vm.feature.Get test-vm-2 template-${k}`] = v;
  return r;
}

describe('qvm-template list (Qubes test_150-161)', () => {
  it('shows Installed Templates, then Available Templates, as NAME EVR REPO rows', async () => {
    for (const argv of [['list'], ['list', '--all'], ['list', 'test-vm*']]) {
      const r = await runCommand('qvm-template', argv, replies());
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'Installed Templates\ntest-vm-2  1:4.0-2019  @commandline\nAvailable Templates\ntest-vm  2:4.1-2020  qubes-templates-itl\n', argv.join(' '));
    }
  });

  it('lists only templates qvm-template installed, and asks nothing of other classes', async () => {
    const r = await runCommand('qvm-template', ['list', '--installed'], replies());
    assert.equal(r.stdout, 'Installed Templates\ntest-vm-2  1:4.0-2019  @commandline\n');
    assert.ok(!r.client.summary().some((c) => / (work|dom0) /.test(c)), 'no feature asked of work or dom0');
    assert.ok(!r.client.summary().some((c) => c.startsWith('admin.template.List')), 'no repository query for --installed');
  });

  it('--available lists the repository; --machine-readable prints status|name|evr|reponame', async () => {
    assert.equal((await runCommand('qvm-template', ['list', '--available'], replies())).stdout, 'Available Templates\ntest-vm  2:4.1-2020  qubes-templates-itl\n');
    const r = await runCommand('qvm-template', ['list', '--machine-readable'], replies());
    assert.equal(r.stdout, 'installed|test-vm-2|1:4.0-2019|@commandline\navailable|test-vm|2:4.1-2020|qubes-templates-itl\n');
  });

  it('--machine-readable-json as Python json.dumps prints it', async () => {
    const r = await runCommand('qvm-template', ['list', '--machine-readable-json'], replies());
    assert.equal(r.stdout, '{"installed": [{"name": "test-vm-2", "evr": "1:4.0-2019", "reponame": "@commandline"}], "available": [{"name": "test-vm", "evr": "2:4.1-2020", "reponame": "qubes-templates-itl"}]}\n');
  });

  it('--extras and --upgrades compare the installed EVR with the repository', async () => {
    const extras = await runCommand('qvm-template', ['list', '--extras'], replies());
    assert.equal(extras.stdout, 'Extra Templates\ntest-vm-2  1:4.0-2019  @commandline\n');
    const up = { ...replies(), 'admin.template.List dom0': 'test-vm-2|2|4.1|2020|qubes-templates-itl|1|2020-09-01 14:30|GPL|u|s|d|\n' };
    assert.equal((await runCommand('qvm-template', ['list', '--upgrades'], up)).stdout, 'Available Upgrades\ntest-vm-2  2:4.1-2020  qubes-templates-itl\n');
  });

  it('nothing matching is a usage error: one line, exit 2', async () => {
    for (const argv of [['list', 'fedora*'], ['list', '--upgrades'], ['info', 'nope']]) {
      const r = await runCommand('qvm-template', argv, replies());
      assert.deepEqual([r.code, r.stderr], [2, 'qvm-template: error: No matching templates to list\n'], argv.join(' '));
    }
  });

  it('refuses both machine-readable forms at once', async () => {
    const r = await runCommand('qvm-template', ['list', '--machine-readable', '--machine-readable-json'], replies());
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^qvm-template: error: argument --machine-readable-json: not allowed with argument --machine-readable\n$/);
    assert.deepEqual(r.client.calls, []);
  });
});

describe('qvm-template info (Qubes test_156, 158, 160)', () => {
  it("shows Qubes' fields, Install time for installed ones, the description line by line", async () => {
    const r = await runCommand('qvm-template', ['info'], replies());
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      [
        'Installed Templates',
        'Name          :  test-vm-2',
        'Epoch         :  1',
        'Version       :  4.0',
        'Release       :  2019',
        'Size          :  1.2 MiB',
        'Repository    :  @commandline',
        'Buildtime     :  2020-09-02 14:30:00',
        'Install time  :  2020-09-02 15:30:00',
        'URL           :  https://qubes-os.org',
        'License       :  GPL',
        'Summary       :  Summary',
        'Description   :  Desc',
        '              :  desc',
        '',
        'Available Templates',
        'Name         :  test-vm',
        'Epoch        :  2',
        'Version      :  4.1',
        'Release      :  2020',
        'Size         :  1.0 MiB',
        'Repository   :  qubes-templates-itl',
        'Buildtime    :  2020-09-01 14:30:00',
        'URL          :  https://qubes-os.org',
        'License      :  GPL',
        'Summary      :  Qubes template for fedora-31',
        'Description  :  Qubes template',
        '             :   for fedora-31',
        '',
        '',
      ].join('\n'),
    );
  });

  it('--machine-readable: every field, description newlines as |', async () => {
    const r = await runCommand('qvm-template', ['info', '--machine-readable', 'test-vm*'], replies());
    assert.equal(
      r.stdout,
      'installed|test-vm-2|1|4.0|2019|@commandline|1234321|2020-09-02 14:30:00|2020-09-02 15:30:00|GPL|https://qubes-os.org|Summary|Desc|desc\n' +
        'available|test-vm|2|4.1|2020|qubes-templates-itl|1048576|2020-09-01 14:30:00||GPL|https://qubes-os.org|Qubes template for fedora-31|Qubes template| for fedora-31|\n',
    );
  });

  it('--machine-readable-json keeps the newlines', async () => {
    const r = await runCommand('qvm-template', ['info', '--machine-readable-json', '--installed'], replies());
    assert.equal(r.stdout, '{"installed": [{"name": "test-vm-2", "epoch": "1", "version": "4.0", "release": "2019", "reponame": "@commandline", "size": "1234321", "buildtime": "2020-09-02 14:30:00", "installtime": "2020-09-02 15:30:00", "license": "GPL", "url": "https://qubes-os.org", "summary": "Summary", "description": "Desc\\ndesc"}]}\n');
  });
});

describe('qvm-template helpers', () => {
  it("matches TEMPLATESPECs as Qubes' is_match_spec", () => {
    const t = { name: 'debian-12', epoch: '0', version: '20250301', release: '1' };
    for (const spec of ['debian-12', 'debian-*', 'debian-12-20250301-1', 'debian-12-0:20250301-1', 'debian-12-20250301', 'debian-12-0:20250301']) assert.ok(matchesSpec(t, spec), spec);
    for (const spec of ['debian', 'debian-12-1', 'fedora*']) assert.ok(!matchesSpec(t, spec), spec);
    // With a non-zero epoch, the forms without it no longer match.
    assert.ok(!matchesSpec({ ...t, epoch: '2' }, 'debian-12-20250301-1'));
  });

  it('compares versions as rpm does (numbers as numbers)', () => {
    assert.equal(compareVersion('4.10', '4.9'), 1);
    assert.equal(compareVersion('20250301', '20250301'), 0);
    assert.equal(compareVersion('1.0', '1.0.1'), -1);
  });

  it("sizes as Qubes' size_to_human", () => {
    assert.deepEqual([0, 1023, 1024, 1234321, 1048576, 3 * 1024 ** 3].map(sizeToHuman), ['0', '1023', '1.0 KiB', '1.2 MiB', '1.0 MiB', '3.0 GiB']);
  });

  it('skips a malformed repository entry', () => {
    assert.deepEqual(parseTemplateSearch('too|few|\nok|0|1|1|r|0||L|u|s|d|\n').map((t) => t.name), ['ok']);
  });
});

describe('qvm-template install', () => {
  const installReplies = (client: FakeClient) => (c: { arg: string }) => {
    for (const [fraction, stage] of [['0', 'download'], ['0.05', 'download'], ['0.12', 'download'], ['0.5', 'unpack'], ['0.55', 'unpack'], ['1', 'done']]) {
      client.emit('template-install-progress', { template: c.arg, fraction, stage });
    }
    client.emit('template-install-progress', { template: 'other', fraction: '0.9', stage: 'x' });
    return '';
  };

  it('subscribes to events, calls admin.template.Install and prints one line per 10% off a terminal', async () => {
    const client = new FakeClient();
    client.on('admin.template.Install', installReplies(client));
    const r = await runCommand('qvm-template', ['install', 'debian-12'], client);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(client.summary(), ['admin.template.Install dom0 debian-12']);
    assert.equal(client.subscriptions, 1);
    assert.equal(client.listening, 0, 'event stream closed');
    assert.equal(r.stderr, ['Installing debian-12: 0% (download)', 'Installing debian-12: 10% (download)', 'Installing debian-12: 50% (unpack)', 'Installing debian-12: 100% (done)', ''].join('\n'));
    assert.equal(r.stdout, 'Installed debian-12\n');
  });

  it('draws a bar on a terminal and nothing with -q', async () => {
    const client = new FakeClient();
    client.on('admin.template.Install', installReplies(client));
    const tty = await runCommand('qvm-template', ['install', 'debian-12'], client, { isTTY: true });
    assert.match(tty.stderr, /Installing debian-12 \[[^\]]*\] 100% done/);
    assert.equal(tty.stdout, 'Installed debian-12\n');
    const quiet = await runCommand('qvm-template', ['-q', 'install', 'debian-12'], client);
    assert.equal(quiet.stderr, '');
  });

  it('a failure closes the event stream and exits 1', async () => {
    const client = new FakeClient({ 'admin.template.Install': err('QubesException', "mmdebstrap failed for 'debian-12': network unreachable") });
    const r = await runCommand('qvm-template', ['install', 'debian-12'], client);
    assert.equal(r.code, 1);
    assert.equal(client.listening, 0);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /qvm-template: error: mmdebstrap failed for 'debian-12': network unreachable\n$/);
  });
});

describe('qvm-template remove', () => {
  it('checks that each name is a template, then uses admin.vm.Remove', async () => {
    const rs = { 'admin.vm.List dom0': VM_LIST, 'admin.vm.Remove': '' };
    const r = await runCommand('qvm-template', ['remove', '-y', 'debian-12'], rs);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.client.summary(), ['admin.vm.List dom0', 'admin.vm.Remove debian-12']);
    const notTemplate = await runCommand('qvm-template', ['--yes', 'remove', 'work'], rs);
    assert.deepEqual([notTemplate.code, notTemplate.stderr], [2, "qvm-template: error: 'work' is an AppVM, not a template; remove it with qvm-remove\n"]);
    assert.deepEqual(notTemplate.client.summary(), ['admin.vm.List dom0']);
    const missing = await runCommand('qvm-template', ['remove', '-y', 'fedora-41'], rs);
    assert.deepEqual([missing.code, missing.stderr], [2, "qvm-template: error: no such domain: 'fedora-41'\n"]);
    assert.deepEqual(missing.client.summary(), ['admin.vm.List dom0']);
  });

  it('asks on a terminal', async () => {
    const r = await runCommand('qvm-template', ['remove', 'debian-12'], { 'admin.vm.List dom0': VM_LIST, 'admin.vm.Remove': '' }, { isTTY: true, answers: ['y'] });
    assert.deepEqual(r.prompts, ['Are you sure? [y/N] ']);
    assert.deepEqual(r.client.summary(), ['admin.vm.List dom0', 'admin.vm.Remove debian-12']);
  });
});

describe('qvm-template --help', () => {
  it('every command has its own help, sent to no daemon', async () => {
    for (const c of ['install', 'list', 'info', 'remove']) {
      const r = await runCommand('qvm-template', [c, '--help'], {});
      assert.equal(r.code, 0, c);
      assert.match(r.stdout, new RegExp(`^Usage: qvm-template ${c}`), c);
      assert.deepEqual(r.client.calls, []);
    }
    const list = await runCommand('qvm-template', ['list', '--help'], {});
    for (const o of ['--installed', '--available', '--extras', '--upgrades', '--all-versions', '--machine-readable-json']) assert.ok(list.stdout.includes(o), o);
  });
});
