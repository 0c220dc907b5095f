// qvm-create, qvm-clone, qvm-start, qvm-shutdown, qvm-kill, qvm-remove and qvm-check: the exact
// Admin API calls, --all/--exclude resolution, confirmations and exit codes.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { err, runCommand, VM_LIST } from './cli-fake-client';

describe('qvm-create', () => {
  it('creates an AppVM from a template with label and properties in the payload', async () => {
    const r = await runCommand('qvm-create', ['-t', 'debian-12', '-l', 'blue', '--property', 'memory=800', '--prop', 'virt-mode=sandbox', 'work'], {
      'admin.vm.Create.AppVM': '',
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout + r.stderr, '');
    assert.deepEqual(r.client.calls, [
      { method: 'admin.vm.Create.AppVM', dest: 'dom0', arg: 'debian-12', payload: 'name=work label=blue memory=800 virt_mode=sandbox' },
    ]);
  });

  it('leaves the template argument empty so that the daemon uses default_template', async () => {
    const r = await runCommand('qvm-create', ['--label', 'red', 'untrusted'], { 'admin.vm.Create.AppVM': '' });
    assert.deepEqual(r.client.calls, [{ method: 'admin.vm.Create.AppVM', dest: 'dom0', arg: '', payload: 'name=untrusted label=red' }]);
  });

  it('maps --standalone and --class to admin.vm.Create.<CLASS>', async () => {
    const s = await runCommand('qvm-create', ['--standalone', '-t', 'debian-12', '-l', 'green', 'vault'], { 'admin.vm.Create.StandaloneVM': '' });
    assert.deepEqual(s.client.summary(), ['admin.vm.Create.StandaloneVM dom0 debian-12 [name=vault label=green]']);
    const t = await runCommand('qvm-create', ['-C', 'TemplateVM', '-l', 'black', 'my-template'], { 'admin.vm.Create.TemplateVM': '' });
    assert.deepEqual(t.client.summary(), ['admin.vm.Create.TemplateVM dom0 [name=my-template label=black]']);
  });

  it('prints the daemon refusal in one line', async () => {
    const r = await runCommand('qvm-create', ['-l', 'blue', 'work'], { 'admin.vm.Create.AppVM': err('QubesVMAlreadyExistsError', "VM work already exists") });
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'qvm-create: error: VM work already exists\n');
  });

  it('--help-classes lists the creatable classes', async () => {
    const r = await runCommand('qvm-create', ['--help-classes'], { 'admin.vmclass.List dom0': 'AdminVM\nAppVM\nDispVM\nStandaloneVM\nTemplateVM\n' });
    assert.equal(r.stdout, 'AppVM\nStandaloneVM\nTemplateVM\n');
  });
});

describe('qvm-clone', () => {
  it('sends admin.vm.Clone to the source with the new name and optional class', async () => {
    const r = await runCommand('qvm-clone', ['work', 'work2'], { 'admin.vm.Clone': '' });
    assert.deepEqual(r.client.calls, [{ method: 'admin.vm.Clone', dest: 'work', arg: '', payload: 'name=work2' }]);
    const c = await runCommand('qvm-clone', ['-C', 'StandaloneVM', 'work', 'solo'], { 'admin.vm.Clone': '' });
    assert.deepEqual(c.client.calls, [{ method: 'admin.vm.Clone', dest: 'work', arg: '', payload: 'name=solo class=StandaloneVM' }]);
  });
});

describe('qvm-start / qvm-kill', () => {
  it('starts named qubes in order', async () => {
    const r = await runCommand('qvm-start', ['work', 'personal'], { 'admin.vm.Start': '' });
    assert.equal(r.code, 0);
    assert.deepEqual(r.client.summary(), ['admin.vm.Start work', 'admin.vm.Start personal']);
  });

  it('--skip-if-running turns "already running" into success; without it the error is shown', async () => {
    const replies = { 'admin.vm.Start': err('QubesVMNotHaltedError', 'Domain is not halted: work') };
    assert.equal((await runCommand('qvm-start', ['--skip-if-running', 'work'], replies)).code, 0);
    const r = await runCommand('qvm-start', ['work'], replies);
    assert.deepEqual([r.code, r.stderr], [1, 'qvm-start: error: Domain is not halted: work\n']);
  });

  it('--all starts every qube but dom0, minus --exclude', async () => {
    const r = await runCommand('qvm-start', ['--all', '--exclude', 'sys-net', '--exclude', 'debian-12'], { 'admin.vm.List dom0': VM_LIST, 'admin.vm.Start': '' });
    assert.deepEqual(r.client.summary(), ['admin.vm.List dom0', 'admin.vm.Start work', 'admin.vm.Start personal']);
  });

  it('qvm-kill ignores qubes that are not running', async () => {
    const r = await runCommand('qvm-kill', ['work', 'personal'], {
      'admin.vm.Kill work': err('QubesVMNotStartedError', 'Domain is powered off: work'),
      'admin.vm.Kill personal': '',
    });
    assert.equal(r.code, 0);
    assert.equal(r.stderr, '');
    assert.deepEqual(r.client.summary(), ['admin.vm.Kill work', 'admin.vm.Kill personal']);
  });
});

describe('qvm-shutdown', () => {
  it('sends admin.vm.Shutdown with arg "", force, wait or force+wait', async () => {
    const cases: [string[], string][] = [[[], ''], [['--force'], 'force'], [['--wait'], 'wait'], [['--wait', '--force'], 'force+wait']];
    for (const [flags, arg] of cases) {
      const r = await runCommand('qvm-shutdown', [...flags, 'work'], { 'admin.vm.Shutdown': '' });
      assert.equal(r.code, 0);
      assert.deepEqual(r.client.calls, [{ method: 'admin.vm.Shutdown', dest: 'work', arg, payload: '' }], flags.join(' '));
    }
  });

  it('--all forces (everything goes down) and skips dom0', async () => {
    const r = await runCommand('qvm-shutdown', ['--all'], { 'admin.vm.List dom0': VM_LIST, 'admin.vm.Shutdown': '' });
    assert.deepEqual(r.client.summary().slice(1), ['debian-12', 'sys-net', 'work', 'personal'].map((n) => `admin.vm.Shutdown ${n} force`));
  });

  it('treats an already halted qube as done', async () => {
    const r = await runCommand('qvm-shutdown', ['work'], { 'admin.vm.Shutdown': err('QubesVMNotStartedError', 'Domain is powered off: work') });
    assert.deepEqual([r.code, r.stderr], [0, '']);
  });

  it('--wait kills a qube the daemon reports as timed out', async () => {
    const r = await runCommand('qvm-shutdown', ['--wait', 'work', 'personal'], {
      'admin.vm.Shutdown work': err('QubesVMShutdownTimeoutError', 'Domain shutdown timed out: work'),
      'admin.vm.Shutdown personal': '',
      'admin.vm.Kill work': '',
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, 'qvm-shutdown: killing remaining qubes: work\n');
    assert.deepEqual(r.client.summary(), ['admin.vm.Shutdown work wait', 'admin.vm.Shutdown personal wait', 'admin.vm.Kill work']);
  });

  it('--wait --timeout kills a qube that is not down in time', async () => {
    const r = await runCommand('qvm-shutdown', ['-q', '--wait', '--timeout', '0.05', 'work'], {
      'admin.vm.Shutdown work': () => new Promise<string>((resolve) => setTimeout(() => resolve(''), 2000).unref()),
      'admin.vm.Kill work': '',
    });
    assert.equal(r.code, 0);
    assert.equal(r.stderr, '');
    assert.deepEqual(r.client.summary(), ['admin.vm.Shutdown work wait', 'admin.vm.Kill work']);
  });

  it('reports other failures per qube and exits 1', async () => {
    const r = await runCommand('qvm-shutdown', ['sys-net', 'work'], {
      'admin.vm.Shutdown sys-net': err('QubesVMError', 'sys-net provides network to running qubes: work; use --force'),
      'admin.vm.Shutdown work': '',
    });
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'qvm-shutdown: error: sys-net provides network to running qubes: work; use --force\n');
  });
});

describe('qvm-remove', () => {
  it('removes without asking with -f', async () => {
    const r = await runCommand('qvm-remove', ['-f', 'work', 'personal'], { 'admin.vm.Remove': '' });
    assert.equal(r.code, 0);
    assert.deepEqual(r.client.summary(), ['admin.vm.Remove work', 'admin.vm.Remove personal']);
  });

  it('asks on a terminal and removes on y', async () => {
    const r = await runCommand('qvm-remove', ['work'], { 'admin.vm.Remove': '' }, { isTTY: true, answers: ['y'] });
    assert.equal(r.stderr, 'This will completely remove the selected VM(s)...\n  work\n');
    assert.deepEqual(r.prompts, ['Are you sure? [y/N] ']);
    assert.deepEqual(r.client.summary(), ['admin.vm.Remove work']);
  });

  it('cancels on anything but y and exits 1 without a call', async () => {
    const r = await runCommand('qvm-remove', ['work'], {}, { isTTY: true, answers: [''] });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /Remove cancelled\.\n$/);
    assert.equal(r.client.calls.length, 0);
  });

  it('refuses dom0', async () => {
    const r = await runCommand('qvm-remove', ['-f', 'dom0']);
    assert.deepEqual([r.code, r.stderr, r.client.calls.length], [1, "qvm-remove: error: Domain 'dom0' cannot be removed.\n", 0]);
  });

  it('shows the daemon reason when a qube is still in use', async () => {
    const r = await runCommand('qvm-remove', ['-f', 'debian-12'], {
      'admin.vm.Remove': err('QubesVMInUseError', 'debian-12 is in use: template of work, personal'),
    });
    assert.deepEqual([r.code, r.stderr], [1, 'qvm-remove: error: debian-12 is in use: template of work, personal\n']);
  });
});

describe('qvm-check', () => {
  const replies = { 'admin.vm.List dom0': VM_LIST };

  it('exits 0 when all qubes exist, 1 when one does not', async () => {
    const ok = await runCommand('qvm-check', ['work', 'personal'], replies);
    assert.deepEqual([ok.code, ok.stderr], [0, 'qvm-check: personal: exists\nqvm-check: work: exists\n']);
    const missing = await runCommand('qvm-check', ['work', 'nosuch'], replies);
    assert.deepEqual([missing.code, missing.stderr], [1, 'qvm-check: work: exists\nqvm-check: nosuch: non-existent!\n']);
    assert.deepEqual(missing.client.summary(), ['admin.vm.List dom0']);
  });

  it('--running exits 0 all, 3 some, 1 none', async () => {
    const all = await runCommand('qvm-check', ['--running', 'personal', 'sys-net'], replies);
    assert.equal(all.code, 0);
    const some = await runCommand('qvm-check', ['--running', 'personal', 'work'], replies);
    assert.deepEqual([some.code, some.stderr], [3, 'qvm-check: personal: running\nqvm-check: work: not running\n']);
    const none = await runCommand('qvm-check', ['--running', '-q', 'work'], replies);
    assert.deepEqual([none.code, none.stderr], [1, '']);
  });

  it('--template and --all', async () => {
    assert.equal((await runCommand('qvm-check', ['--template', 'debian-12'], replies)).code, 0);
    assert.equal((await runCommand('qvm-check', ['--template', '--all'], replies)).code, 3);
    assert.equal((await runCommand('qvm-check', ['--all', '--exclude', 'work'], replies)).code, 0);
  });
});
