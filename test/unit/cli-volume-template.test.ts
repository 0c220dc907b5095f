// qvm-volume (list, info, resize, revert, config) and qvm-template (install with progress, list,
// remove), plus the output helpers they share with the other commands.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseSize } from '../../src/cli/commands/qvm-volume';
import { formatTable, helpLine, prefsLine } from '../../src/cli/output';
import { err, FakeClient, runCommand, VM_LIST } from './cli-fake-client';

const info = (pool: string, vid: string, size = 2147483648) =>
  [`pool=${pool}`, `vid=${vid}`, `size=${size}`, 'usage=1048576', 'rw=True', 'source=', 'save_on_stop=True', 'snap_on_start=False',
    'revisions_to_keep=1', 'is_outdated=False', 'path=/var/lib/isola/x'].join('\n') + '\n';

const VOLUMES = {
  'admin.vm.volume.List work': 'root\nprivate\n',
  'admin.vm.volume.Info work root': info('default', 'appvms/work/root'),
  'admin.vm.volume.Info work private': info('default', 'appvms/work/private'),
  'admin.vm.volume.ListSnapshots work root': '',
  'admin.vm.volume.ListSnapshots work private': '1700000000-back\n1700000100-back\n',
  'admin.vm.volume.List debian-12': 'root\n',
  'admin.vm.volume.Info debian-12 root': info('default', 'vm-templates/debian-12/root'),
  'admin.vm.volume.ListSnapshots debian-12 root': '1700000000-back\n',
};

describe('qvm-volume', () => {
  it('lists volumes of the named qubes as POOL:VOLUME VMNAME VOLUME_NAME REVERT_POSSIBLE', async () => {
    for (const argv of [['work', 'debian-12'], ['list', 'work', 'debian-12'], ['ls', 'work', 'debian-12']]) {
      const r = await runCommand('qvm-volume', argv, VOLUMES);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(
        r.stdout,
        [
          'POOL:VOLUME                          VMNAME     VOLUME_NAME  REVERT_POSSIBLE',
          'default:appvms/work/private          work       private      Yes',
          'default:appvms/work/root             work       root         No',
          'default:vm-templates/debian-12/root  debian-12  root         Yes',
          '',
        ].join('\n'),
      );
    }
  });

  it('lists every qube but dom0 without names', async () => {
    const r = await runCommand('qvm-volume', [], { ...VOLUMES, 'admin.vm.List dom0': 'debian-12 class=TemplateVM state=Halted uuid=1\ndom0 class=AdminVM state=Running uuid=0\n' });
    assert.equal(r.stdout.split('\n').filter(Boolean).length, 2);
    assert.ok(!r.client.summary().some((c) => c.includes('volume.List dom0')));
  });

  it('info shows the properties in Qubes order and the revisions', async () => {
    const r = await runCommand('qvm-volume', ['info', 'work:private'], VOLUMES);
    assert.equal(
      r.stdout,
      [
        'pool               default',
        'vid                appvms/work/private',
        'rw                 True',
        'source',
        'save_on_stop       True',
        'snap_on_start      False',
        'size               2147483648',
        'usage              1048576',
        'revisions_to_keep  1',
        'is_outdated        False',
        'Available revisions (for revert):',
        '  1700000000-back',
        '  1700000100-back',
        '',
      ].join('\n'),
    );
  });

  it('info PROP prints one value; `revisions` lists them', async () => {
    assert.equal((await runCommand('qvm-volume', ['info', 'work:private', 'size'], VOLUMES)).stdout, '2147483648\n');
    assert.equal((await runCommand('qvm-volume', ['i', 'work:root', 'revisions'], VOLUMES)).stdout, '');
    const bad = await runCommand('qvm-volume', ['info', 'work:private', 'colour'], VOLUMES);
    assert.deepEqual([bad.code, bad.stderr], [1, 'qvm-volume: error: No such property: colour\n']);
  });

  it('resize parses suffixes and sends bytes; shrinking needs -f', async () => {
    const replies = { ...VOLUMES, 'admin.vm.volume.Resize': '' };
    const r = await runCommand('qvm-volume', ['resize', 'work:private', '4GiB'], replies);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.client.calls.at(-1), { method: 'admin.vm.volume.Resize', dest: 'work', arg: 'private', payload: String(4 * 1024 ** 3) });
    const shrink = await runCommand('qvm-volume', ['extend', 'work:private', '1G'], replies);
    assert.equal(shrink.code, 1);
    assert.match(shrink.stderr, /^qvm-volume: error: For your own safety, shrinking of work:private is disabled/);
    assert.ok(!shrink.client.summary().some((c) => c.startsWith('admin.vm.volume.Resize')));
    const forced = await runCommand('qvm-volume', ['resize', '-f', 'work:private', '1G'], replies);
    assert.equal(forced.client.calls.at(-1)?.payload, '1000000000');
  });

  it('revert sends the revision, or an empty payload for the latest', async () => {
    const r = await runCommand('qvm-volume', ['revert', 'work:private', '1700000000-back'], { 'admin.vm.volume.Revert': '' });
    assert.deepEqual(r.client.calls, [{ method: 'admin.vm.volume.Revert', dest: 'work', arg: 'private', payload: '1700000000-back' }]);
    const latest = await runCommand('qvm-volume', ['rv', 'work:private'], { 'admin.vm.volume.Revert': '' });
    assert.equal(latest.client.calls[0].payload, '');
  });

  it('config sets revisions_to_keep', async () => {
    const r = await runCommand('qvm-volume', ['config', 'work:private', 'revisions_to_keep', '3'], { 'admin.vm.volume.Set.revisions_to_keep': '' });
    assert.deepEqual(r.client.calls, [{ method: 'admin.vm.volume.Set.revisions_to_keep', dest: 'work', arg: 'private', payload: '3' }]);
  });

  it('parseSize follows Qubes: K/M/G/T are powers of 1000, Ki…/KiB… of 1024', () => {
    const cases: [string, number][] = [['123', 123], ['1K', 1000], ['1KB', 1000], ['2Ki', 2048], ['2KiB', 2048], ['3M', 3e6], ['1MiB', 1048576], ['10G', 1e10], ['1GiB', 1073741824], ['1T', 1e12], ['1TiB', 1024 ** 4], ['5 gib', 5 * 1024 ** 3]];
    for (const [text, bytes] of cases) assert.equal(parseSize(text), bytes, text);
    // Each must fail: a fraction, a negative number, an unknown unit, nothing at all.
    for (const bad of ['1.5G', '-1', '1P', '', 'G']) assert.throws(() => parseSize(bad), /invalid size/, bad);
  });
});

describe('qvm-template', () => {
  const installReplies = (client: FakeClient) => (c: { arg: string }) => {
    for (const [fraction, stage] of [['0', 'download'], ['0.05', 'download'], ['0.12', 'download'], ['0.5', 'unpack'], ['0.55', 'unpack'], ['1', 'done']]) {
      client.emit('template-install-progress', { template: c.arg, fraction, stage });
    }
    client.emit('template-install-progress', { template: 'other', fraction: '0.9', stage: 'x' });
    return '';
  };

  it('install subscribes to events, calls admin.template.Install and prints one line per 10% off a terminal', async () => {
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

  it('install draws a bar on a terminal and nothing with -q', async () => {
    const client = new FakeClient();
    client.on('admin.template.Install', installReplies(client));
    const tty = await runCommand('qvm-template', ['install', 'debian-12'], client, { isTTY: true });
    assert.match(tty.stderr, /Installing debian-12 \[[^\]]*\] 100% done/);
    assert.equal(tty.stdout, 'Installed debian-12\n');
    const quiet = await runCommand('qvm-template', ['-q', 'install', 'debian-12'], client);
    assert.equal(quiet.stderr, '');
  });

  it('install failure closes the event stream and exits 1', async () => {
    const client = new FakeClient({ 'admin.template.Install': err('QubesException', "mmdebstrap failed for 'debian-12': network unreachable") });
    const r = await runCommand('qvm-template', ['install', 'debian-12'], client);
    assert.equal(r.code, 1);
    assert.equal(client.listening, 0);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /qvm-template: error: mmdebstrap failed for 'debian-12': network unreachable\n$/);
  });

  it('list prints installed and available sections; filters and machine-readable form', async () => {
    const replies = { 'admin.template.List dom0': 'debian-12 installed rev 3, 2025-01-01\ndebian-12-minimal available Debian 12 minimal\nfedora-41 available Fedora 41\n' };
    const r = await runCommand('qvm-template', ['list'], replies);
    assert.equal(r.stdout, 'Installed Templates\ndebian-12  rev 3, 2025-01-01\nAvailable Templates\ndebian-12-minimal  Debian 12 minimal\nfedora-41          Fedora 41\n');
    assert.equal((await runCommand('qvm-template', ['list', '--installed'], replies)).stdout, 'Installed Templates\ndebian-12  rev 3, 2025-01-01\n');
    assert.equal(
      (await runCommand('qvm-template', ['list', '--available', '--machine-readable'], replies)).stdout,
      'available|debian-12-minimal|Debian 12 minimal\navailable|fedora-41|Fedora 41\n',
    );
  });

  it('remove checks that each name is a template, then uses admin.vm.Remove', async () => {
    const replies = { 'admin.vm.List dom0': VM_LIST, 'admin.vm.Remove': '' };
    const r = await runCommand('qvm-template', ['remove', '-y', 'debian-12'], replies);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.client.summary(), ['admin.vm.List dom0', 'admin.vm.Remove debian-12']);
    const notTemplate = await runCommand('qvm-template', ['--yes', 'remove', 'work'], replies);
    assert.deepEqual([notTemplate.code, notTemplate.stderr], [2, "qvm-template: error: 'work' is an AppVM, not a template; remove it with qvm-remove\n"]);
    assert.deepEqual(notTemplate.client.summary(), ['admin.vm.List dom0']);
    const missing = await runCommand('qvm-template', ['remove', '-y', 'fedora-41'], replies);
    assert.match(missing.stderr, /'fedora-41' is not an installed template/);
  });

  it('remove asks on a terminal', async () => {
    const r = await runCommand('qvm-template', ['remove', 'debian-12'], { 'admin.vm.List dom0': VM_LIST, 'admin.vm.Remove': '' }, { isTTY: true, answers: ['y'] });
    assert.deepEqual(r.prompts, ['Are you sure? [y/N] ']);
    assert.deepEqual(r.client.summary(), ['admin.vm.List dom0', 'admin.vm.Remove debian-12']);
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
