// qvm-ls' computed columns (MEMORY from CurrentState, DISK and PRIV-*/ROOT-* from volume.Info,
// GATEWAY), the calls each needs and no more, the format shortcuts and the help listings.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { err, runCommand } from './cli-fake-client';
import { world } from './cli-ls-world';

const MiB = 1024 * 1024;
const info = (size: number, usage: number, pool = 'default') => `pool=${pool}\nvid=x\nsize=${size * MiB}\nusage=${usage * MiB}\nrw=True\n`;

const W = world(
  [
    ['dom0', 'AdminVM', 'Running', { label: 'black' }],
    ['work', 'AppVM', 'Running', { label: 'blue', netvm: 'sys-net' }],
    ['vault', 'AppVM', 'Halted', { label: 'black', netvm: '' }],
  ],
  {
    'admin.vm.CurrentState dom0': 'mem=4194304 mem_static_max=8388608 cputime=0 power_state=Running',
    'admin.vm.CurrentState work': 'mem=307200 mem_static_max=4096000 cputime=0 power_state=Running',
    'admin.vm.volume.List work': 'root\nprivate\nvolatile\n',
    'admin.vm.volume.List vault': 'root\nprivate\nvolatile\n',
    'admin.vm.volume.Info work root': `${info(10240, 0)}is_outdated=True\n`,
    'admin.vm.volume.Info work private': info(2048, 512),
    'admin.vm.volume.Info work volatile': info(10240, 20),
    'admin.vm.volume.Info vault root': `${info(10240, 0)}is_outdated=False\n`,
    'admin.vm.volume.Info vault private': info(2048, 2047, 'fast'),
    'admin.vm.volume.Info vault volatile': info(10240, 0),
    'admin.vm.property.GetAll sys-net': 'gateway default=True type=str 10.137.0.1\n',
  },
);

const ls = (args: string[], replies: Parameters<typeof runCommand>[2] = W) => runCommand('qvm-ls', args, replies);

describe('qvm-ls computed columns', () => {
  it('MEMORY is the MiB in use from CurrentState, - for a halted qube (which is not asked)', async () => {
    const r = await ls(['-O', 'name,state,memory']);
    assert.equal(r.stdout, 'NAME   STATE    MEMORY\ndom0   Running  4096\nvault  Halted   -\nwork   Running  300\n');
    assert.deepEqual(r.client.summary().sort(), ['admin.vm.CurrentState dom0', 'admin.vm.CurrentState work', 'admin.vm.List dom0']);
  });

  it('-d (the disk format): DISK sums every volume, PRIV-*/ROOT-* size, usage and percent; dom0 has no volumes', async () => {
    const r = await ls(['-d']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      [
        'NAME   STATE    DISK  PRIV-CURR  PRIV-MAX  PRIV-USED  ROOT-CURR  ROOT-MAX  ROOT-USED',
        'dom0   Running  0     0          0         0          0          0         0',
        'vault  Halted   2047  2047       2048      99%        0          10240     0%',
        'work   Running  532   512        2048      25%        0          10240     0%',
        '',
      ].join('\n'),
    );
    assert.ok(!r.client.summary().some((c) => c.includes('GetAll') || c.includes('CurrentState')), 'no property or state call for disk columns');
  });

  it('PRIV-* alone asks only for the private volume, without listing volumes', async () => {
    const r = await ls(['-O', 'name,priv-max,priv-pool', '--raw-data', 'vault']);
    assert.equal(r.stdout, 'vault|2048|fast\n');
    assert.deepEqual(r.client.summary(), ['admin.vm.List dom0', 'admin.vm.volume.Info vault private']);
  });

  it('a volume the qube does not have counts as 0 (Qubes: KeyError)', async () => {
    const r = await ls(['-O', 'name,root-max,root-used', '--raw-data', 'work'], {
      ...W, 'admin.vm.volume.Info work root': err('QubesValueError', "work has no volume 'root'"),
    });
    assert.equal(r.stdout, 'work|0|0\n');
  });

  it("GATEWAY is the netvm's gateway, asked of the netvm even when it is not listed", async () => {
    const r = await ls(['-O', 'name,gateway', '--raw-data']);
    assert.equal(r.stdout, 'dom0|-\nvault|-\nwork|10.137.0.1\n');
  });

  it('-n and -k are the network and kernel formats; the format options exclude each other', async () => {
    assert.equal((await ls(['-n', 'work'])).stdout.split('\n')[0], 'NAME  STATE    NETVM    IP  IPBACK  GATEWAY');
    assert.equal((await ls(['-k', 'work'])).stdout.split('\n')[0], 'NAME  STATE    CLASS  TEMPLATE  KERNEL  KERNELOPTS');
    for (const args of [['-d', '-n'], ['-o', 'full', '-O', 'name'], ['-k', '-O', 'name']]) {
      const r = await ls(args);
      assert.equal(r.code, 2, args.join(' '));
      assert.match(r.stderr, /^qvm-ls: error: argument .*: not allowed with argument /);
      assert.deepEqual(r.client.summary(), []);
    }
    const bad = await ls(['-o', 'nosuch']);
    assert.equal(bad.code, 2);
    assert.equal(bad.stderr, "qvm-ls: error: argument -o/--format: invalid choice: 'nosuch' (choose from 'simple', 'network', 'kernel', 'full', 'prefs', 'disk')\n");
  });

  it('--help-formats lists each format with its columns, sorted', async () => {
    const r = await ls(['--help-formats']);
    assert.equal(r.code, 0);
    assert.equal(
      r.stdout,
      [
        'Available formats:',
        '  disk     NAME,STATE,DISK,PRIV-CURR,PRIV-MAX,PRIV-USED,ROOT-CURR,ROOT-MAX,ROOT-USED',
        '  full     NAME,STATE,CLASS,LABEL,QID,XID,UUID',
        '  kernel   NAME,STATE,CLASS,TEMPLATE,KERNEL,KERNELOPTS',
        '  network  NAME,STATE,NETVM,IP,IPBACK,GATEWAY',
        '  prefs    NAME,LABEL,TEMPLATE,NETVM,VCPUS,INITIALMEM,MAXMEM,VIRT_MODE',
        '  simple   NAME,STATE,CLASS,LABEL,TEMPLATE,NETVM',
        '',
        '',
      ].join('\n'),
    );
    assert.deepEqual(r.client.summary(), []);
  });

  it("--help-columns lists Qubes' computed columns by name, wrapped at 80 columns", async () => {
    const r = await ls(['--help-columns']);
    assert.equal(r.code, 0);
    const heads = r.stdout.split('\n').filter((l) => /^ {2}\S/.test(l)).map((l) => l.trim().split(/\s+/)[0]);
    assert.deepEqual(heads, ['CLASS', 'DISK', 'FLAGS', 'GATEWAY', 'MEMORY', 'OUTDATED', 'PRIV-CURR', 'PRIV-MAX', 'PRIV-POOL', 'PRIV-USED', 'ROOT-CURR', 'ROOT-MAX', 'ROOT-POOL', 'ROOT-USED', 'STATE']);
    assert.ok(r.stdout.startsWith('Available columns:\n  CLASS      '));
    for (const l of r.stdout.split('\n')) assert.ok(l.length <= 80, l);
    assert.match(r.stdout, /\n {15}\S/, 'continuation lines are indented by the widest head + 6');
  });

  it("OUTDATED: `outdated` where the root volume says is_outdated=True; FLAGS keeps Qubes' 8 letters", async () => {
    const r = await ls(['-O', 'name,outdated,flags', '--raw-data']);
    assert.equal(r.code, 0, r.stderr);
    const rows = new Map(r.stdout.trim().split('\n').map((l) => [l.split('|')[0], l.split('|').slice(1)]));
    assert.equal(rows.get('work')?.[0], 'outdated');
    assert.equal(rows.get('vault')?.[0], '-');
    assert.equal(rows.get('dom0')?.[0], '-', 'dom0 has no volumes');
    for (const [, [, flags]] of rows) assert.equal(flags.length, 8, flags);
  });

  it('--spinner and --no-spinner are accepted', async () => {
    assert.equal((await ls(['--raw-list', '--no-spinner'])).code, 0);
    assert.equal((await ls(['--raw-list', '--spinner'])).code, 0);
  });

  it('--sort MEMORY sorts numerically, - counting as 0, --reverse keeps ties in name order', async () => {
    const r = await ls(['-O', 'name,memory', '--raw-data', '--sort', 'memory', '--reverse']);
    assert.equal(r.stdout, 'dom0|4096\nwork|300\nvault|-\n');
  });
});
