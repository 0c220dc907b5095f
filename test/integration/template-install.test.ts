// qvm-template install through isolad: the real build (cached), and the failures a user meets —
// mmdebstrap failing, the disk filling — after which nothing half-installed is listed.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { canRunIntegration, Instance } from './harness';

const skip = canRunIntegration();

describe('qvm-template', { skip, concurrency: false }, () => {
  const instances: Instance[] = [];
  const mounts: string[] = [];
  after(async () => {
    for (const i of instances) await i.destroy();
    for (const m of mounts) {
      // Instance.destroy() may already have unmounted it.
      try {
        execFileSync('umount', ['-l', m], { stdio: 'ignore' });
      } catch {
        // already unmounted
      }
      rmSync(m, { recursive: true, force: true });
    }
  });

  async function nothingInstalled(inst: Instance, before: string): Promise<void> {
    assert.doesNotMatch(await inst.ok('qvm-ls', '--raw-list'), /debian-12/);
    assert.match(await inst.ok('qvm-template', 'list'), /debian-12/, 'still offered as available');
    // As in Qubes, an empty selection is a usage error.
    const installed = await inst.cli('qvm-template', ['list', '--installed']);
    assert.deepEqual([installed.code, installed.stderr], [2, 'qvm-template: error: No matching templates to list\n']);
    assert.equal(await inst.stateDump(), before);
    assert.deepEqual(readdirSync(inst.config.poolDir), [], 'no volumes left behind');
  }

  test('installs debian-12, lists it, makes it the default template and removes it', async () => {
    const inst = new Instance();
    instances.push(inst);
    await inst.start();
    const r = await inst.cli('qvm-template', ['install', 'debian-12']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout + r.stderr, /100%/);
    assert.match(await inst.ok('qvm-template', 'list', '--installed'), /debian-12/);
    assert.equal((await inst.ok('qubes-prefs', 'default_template')).trim(), 'debian-12');
    assert.match(await inst.ok('qvm-run', '-p', '-u', 'root', 'debian-12', 'cat /etc/debian_version; for c in node sudo; do command -v $c; done'), /^12\.[\s\S]*node[\s\S]*sudo/);
    await inst.ok('qvm-shutdown', '--wait', 'debian-12');
    await inst.ok('qubes-prefs', '--default', 'default_template');
    await inst.ok('qvm-template', 'remove', '-y', 'debian-12');
    assert.doesNotMatch(await inst.ok('qvm-ls', '--raw-list'), /debian-12/);
  });

  test('a failing mmdebstrap leaves nothing half-installed', async () => {
    const cache = mkdtempSync(path.join(os.tmpdir(), 'isola-cache-'));
    // Port 9 on loopback: nothing listens, so the build fails at its first download.
    const inst = new Instance({ env: { ISOLA_DEBIAN_MIRROR: 'http://127.0.0.1:9/debian', ISOLA_CACHE: cache } });
    instances.push(inst);
    await inst.start();
    const before = await inst.stateDump();
    const r = await inst.cli('qvm-template', ['install', 'debian-12']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /qvm-template: error: .*(mmdebstrap|failed)/);
    await nothingInstalled(inst, before);
    assert.deepEqual(readdirSync(path.join(cache, 'templates')).filter((f) => f.endsWith('.tar')), []);
    rmSync(cache, { recursive: true, force: true });
  });

  test('a disk that fills during the install leaves nothing half-installed', async () => {
    const home = mkdtempSync(path.join(os.tmpdir(), 'isola-small-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=120m', 'tmpfs', home]);
    mounts.push(home);
    const inst = new Instance({ home });
    instances.push(inst);
    await inst.start();
    const before = await inst.stateDump();
    const r = await inst.cli('qvm-template', ['install', 'debian-12']);
    assert.notEqual(r.code, 0);
    const errors = r.stderr.split('\n').filter((l) => l.startsWith('qvm-template: error'));
    assert.equal(errors.length, 1, r.stderr);
    assert.match(errors[0], /No space left on device/);
    await nothingInstalled(inst, before);
  });
});
