// The qvm-* commands and `isola setup` against a real isolad, as a user types them.

import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AdminClient } from '../../src/cli/admin-client';
import type { AdminEvent } from '../../src/core/admin-wire';
import { canRunIntegration, Instance } from './harness';

const skip = canRunIntegration();

describe('qvm-* commands against isolad', { skip, concurrency: false }, () => {
  let inst: Instance;
  let policyDir: string;
  before(async () => {
    policyDir = mkdtempSync(path.join(os.tmpdir(), 'isola-policy-'));
    inst = new Instance({ env: { ISOLA_POLICY_DIR: policyDir } });
    await inst.start();
  });
  after(async () => {
    await inst?.destroy();
    rmSync(policyDir, { recursive: true, force: true });
  });

  test('isola setup installs debian-12 and creates the default qubes, and is idempotent', async () => {
    await inst.ok('isola', 'setup');
    const again = await inst.cli('isola', ['setup']);
    assert.equal(again.code, 0, again.stderr);
    const rows = (await inst.ok('qvm-ls', '--raw-data', '--fields', 'name,klass,label,template,netvm')).trim().split('\n');
    // Qubes' installer: sys-net holds the uplink, sys-firewall is every new qube's netvm, vault has none.
    for (const [name, label, netvm] of [['sys-net', 'red', '-'], ['sys-firewall', 'green', 'sys-net'], ['work', 'blue', 'sys-firewall'],
      ['personal', 'yellow', 'sys-firewall'], ['untrusted', 'red', 'sys-firewall'], ['vault', 'black', '-']]) {
      assert.ok(rows.includes(`${name}|AppVM|${label}|debian-12|${netvm}`), `${name} (${label}) in ${rows.join(', ')}`);
    }
    for (const [pref, value] of [['default_netvm', 'sys-firewall'], ['updatevm', 'sys-net']]) {
      assert.equal((await inst.ok('qubes-prefs', pref)).trim(), value);
    }
    assert.equal((await inst.ok('qvm-prefs', 'sys-firewall', 'provides_network')).trim(), 'True');
    assert.ok(rows.some((r) => r.startsWith('debian-12|TemplateVM|black')));
    assert.equal((await inst.ok('qvm-prefs', 'vault', 'netvm')).trim(), '', 'no netvm prints as empty, as in Qubes');
    assert.match(await inst.ok('qvm-prefs', 'vault'), /^netvm\s+-\s+None$/m, 'vault has no network, explicitly');
    assert.deepEqual(readdirSync(policyDir).sort(), ['90-admin-default.policy', '90-default-gui-daemon.policy', '90-default-linux.policy', '90-default.policy', 'include']);
    assert.deepEqual(readdirSync(path.join(policyDir, 'include')).sort(), ['admin-global-ro', 'admin-global-rwx', 'admin-local-ro', 'admin-local-rwx']);
    assert.match(await inst.ok('isola', 'policy', 'check'), /OK \(35 rules from 8 files\)/, 'the admin includes are empty: no rule grants anything');
  });

  test('isola policy eval decides against the live qubes of isolad', async () => {
    const ask = JSON.parse(await inst.ok('isola', 'policy', 'eval', 'work', 'vault', 'qubes.Filecopy'));
    assert.equal(ask.result, 'ask');
    assert.ok(ask.targets_for_ask.includes('vault') && !ask.targets_for_ask.includes('work'), JSON.stringify(ask));
    assert.equal(ask.rule.file, path.join(policyDir, '90-default.policy'));
    const deny = JSON.parse(await inst.ok('isola', 'policy', 'eval', 'work', 'vault', 'qubes.VMShell'));
    assert.equal(deny.result, 'deny');
  });

  test("qvm-ls shows Qubes' default columns, and the backend as VIRT-MODE", async () => {
    const out = await inst.ok('qvm-ls');
    assert.match(out.split('\n')[0], /^NAME\s+STATE\s+CLASS\s+LABEL\s+TEMPLATE\s+NETVM$/);
    assert.match(out, /^work\s+Halted\s+AppVM\s+blue\s+debian-12\s+sys-firewall$/m);
    assert.match(out, /^dom0\s+Running\s+AdminVM\s+black/m);
    assert.match(await inst.ok('qvm-ls', '-O', 'name,virt_mode', 'work'), /^work\s+sandbox$/m);
  });

  test('qvm-prefs gets, sets and resets with Qubes defaults derived from the template', async () => {
    assert.match(await inst.ok('qvm-prefs', 'work'), /^memory\s+D\s+400$/m);
    await inst.ok('qvm-prefs', 'debian-12', 'memory', '600');
    assert.equal((await inst.ok('qvm-prefs', 'work', 'memory')).trim(), '600', 'AppVM memory defaults to its template');
    await inst.ok('qvm-prefs', 'work', 'memory', '800');
    assert.match(await inst.ok('qvm-prefs', 'work'), /^memory\s+-\s+800$/m);
    await inst.ok('qvm-prefs', 'work', 'memory', '--default');
    assert.equal((await inst.ok('qvm-prefs', 'work', 'memory')).trim(), '600');
    await inst.ok('qvm-prefs', 'debian-12', '--default', 'memory');
    assert.equal((await inst.ok('qubes-prefs', 'default_template')).trim(), 'debian-12');
  });

  test('memory and vcpus become the qube\'s cgroup limits', async () => {
    await inst.ok('qvm-prefs', 'work', 'maxmem', '512');
    await inst.ok('qvm-prefs', 'work', 'vcpus', '1');
    const out = await inst.ok('qvm-run', '-p', '-u', 'root', 'work', 'cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.max');
    assert.match(out, new RegExp(`^${512 * 1024 * 1024}$`, 'm'));
    assert.match(out, /^100000$|^100000 100000$/m);
    await inst.ok('qvm-shutdown', '--wait', 'work');
  });

  test('qvm-run streams stdin and stdout intact, returns the exit code, and honours -u and --no-autostart', async () => {
    const data = randomBytes(3 * 1024 * 1024).toString('base64');
    const r = await inst.cli('qvm-run', ['-p', 'work', 'sha256sum'], data);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.split(' ')[0], createHash('sha256').update(data).digest('hex'));
    assert.equal((await inst.cli('qvm-run', ['-p', 'work', 'echo oops >&2; exit 42'])).code, 42);
    assert.equal((await inst.ok('qvm-run', '-p', '-u', 'root', 'work', 'id -un')).trim(), 'root');
    assert.equal((await inst.ok('qvm-run', '-p', 'work', 'id -un')).trim(), 'user');
    assert.equal((await inst.ok('qvm-run', '-p', 'work', 'id')).trim(), 'uid=1000(user) gid=1000(user) groups=1000(user),27(sudo)', "the user's supplementary groups, as a login would have them");
    await inst.ok('qvm-run', '-p', '-u', 'root', 'work', 'groupadd -g 2345 late && usermod -aG late user');
    assert.match(await inst.ok('qvm-run', '-p', 'work', 'id -G'), /\b2345\b/, 'a group added while the qube runs counts at once');
    await inst.ok('qvm-shutdown', '--wait', 'work');
    const noStart = await inst.cli('qvm-run', ['-p', '--no-autostart', 'work', 'true']);
    assert.notEqual(noStart.code, 0);
    assert.equal(noStart.code, 1);
    assert.equal(noStart.stderr, '', "with -p, Qubes' `Qube 'work' not started` needs -v");
    assert.match(await inst.ok('qvm-ls', 'work'), /Halted/);
  });

  test('qvm-features and qvm-tags set, list and remove', async () => {
    await inst.ok('qvm-features', 'work', 'my-feature', 'yes');
    assert.equal((await inst.ok('qvm-features', 'work', 'my-feature')).trim(), 'yes');
    assert.match(await inst.ok('qvm-features', 'work'), /^my-feature\s+yes$/m);
    await inst.ok('qvm-features', '--unset', 'work', 'my-feature');
    assert.equal((await inst.cli('qvm-features', ['work', 'my-feature'])).code, 1);
    await inst.ok('qvm-tags', 'work', 'add', 'project-x');
    assert.equal((await inst.cli('qvm-tags', ['work', 'list', 'project-x'])).code, 0);
    await inst.ok('qvm-tags', 'work', 'del', 'project-x');
    assert.equal((await inst.cli('qvm-tags', ['work', 'list', 'project-x'])).code, 1);
  });

  test('qvm-clone copies private data, properties and tags; qvm-remove deletes the clone', async () => {
    await inst.ok('qvm-run', '-p', 'personal', 'echo cloned-data > ~/c.txt');
    await inst.ok('qvm-shutdown', '--wait', 'personal');
    await inst.ok('qvm-clone', 'personal', 'personal2');
    assert.equal((await inst.ok('qvm-prefs', 'personal2', 'label')).trim(), 'yellow');
    assert.equal((await inst.ok('qvm-run', '-p', 'personal2', 'cat ~/c.txt')).trim(), 'cloned-data');
    await inst.ok('qvm-shutdown', '--wait', 'personal2');
    await inst.ok('qvm-remove', '-f', 'personal2');
    assert.equal((await inst.cli('qvm-check', ['personal2'])).code, 1);
  });

  test('admin.Events announces domain-start and domain-shutdown', async () => {
    const client = new AdminClient(inst.env.ISOLA_SOCKET);
    const seen: AdminEvent[] = [];
    const close = await client.events((e) => seen.push(e));
    try {
      await inst.ok('qvm-start', 'untrusted');
      await inst.ok('qvm-shutdown', '--wait', 'untrusted');
      await new Promise((r) => setTimeout(r, 200));
    } finally {
      close();
    }
    const names = seen.filter((e) => e.subject === 'untrusted').map((e) => e.event);
    for (const ev of ['domain-pre-start', 'domain-start', 'domain-shutdown']) assert.ok(names.includes(ev), `${ev} in ${names.join(', ')}`);
  });

  test('qvm-check tells existing, running and missing qubes apart by exit code', async () => {
    assert.equal((await inst.cli('qvm-check', ['work'])).code, 0);
    assert.equal((await inst.cli('qvm-check', ['nosuch'])).code, 1);
    await inst.ok('qvm-start', 'work');
    assert.equal((await inst.cli('qvm-check', ['--running', 'work', 'vault'])).code, 3);
    await inst.ok('qvm-shutdown', '--wait', 'work');
  });
});
