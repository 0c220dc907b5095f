// qvm-clipboard: which Admin API call each action makes, what it prints, and its exit codes.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { err, runCommand, VM_LIST } from './cli-fake-client';

const LIST = { 'admin.vm.List dom0': VM_LIST + 'vault class=AppVM state=Running uuid=5\nuntrusted class=AppVM state=Running uuid=6\n' };

describe('qvm-clipboard', () => {
  it('copy-from and paste-to call the clipboard methods on the named qube', async () => {
    const c = await runCommand('qvm-clipboard', ['copy-from', 'work'], { ...LIST, 'admin.clipboard.CopyFrom work': 'source=work size=12 copied=2026-11-27T10:00:00.000Z' });
    assert.equal(c.code, 0, c.stderr);
    assert.deepEqual(c.client.summary(), ['admin.vm.List dom0', 'admin.clipboard.CopyFrom work']);
    assert.equal(c.stderr, 'copied 12 bytes from work to the global clipboard\n');
    const p = await runCommand('qvm-clipboard', ['paste-to', 'vault'], { ...LIST, 'admin.clipboard.PasteTo vault': 'source=work size=12' });
    assert.equal(p.code, 0, p.stderr);
    assert.equal(p.stderr, 'pasted 12 bytes from work into vault; the global clipboard is now empty\n');
  });

  it('show describes the clipboard, or says empty with exit 1', async () => {
    const full = await runCommand('qvm-clipboard', ['show'], { 'admin.clipboard.Get dom0': 'source=work size=12 copied=2026-11-27T10:00:00.000Z' });
    assert.deepEqual([full.code, full.stdout], [0, '12 bytes from work, copied 2026-11-27T10:00:00.000Z\n']);
    const empty = await runCommand('qvm-clipboard', ['show'], { 'admin.clipboard.Get dom0': '' });
    assert.deepEqual([empty.code, empty.stdout], [1, 'empty\n']);
  });

  it('a refused paste is one line and exit 1', async () => {
    const r = await runCommand('qvm-clipboard', ['paste-to', 'untrusted'], {
      ...LIST,
      'admin.clipboard.PasteTo untrusted': err('PermissionDenied', 'policy denies the paste from work into untrusted: denied by policy'),
    });
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'qvm-clipboard: error: policy denies the paste from work into untrusted: denied by policy\n');
  });

  it('usage errors exit 2 without calling isolad', async () => {
    for (const argv of [['copy-from'], ['paste-to'], ['show', 'work'], ['steal', 'work'], []]) {
      const r = await runCommand('qvm-clipboard', argv, {});
      assert.equal(r.code, 2, argv.join(' '));
      assert.deepEqual(r.client.calls, []);
    }
  });
});
