// The policy in force is never a surprise: isolad started before its policy directory exists picks
// up what `isola setup` installs, follows the directory being removed and recreated, keeps the old
// policy when an edit breaks it and says so through every channel, and clears that when fixed.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AdminClient } from '../../src/cli/admin-client';
import type { AdminEvent } from '../../src/core/admin-wire';
import { BIN, canRunIntegration, Instance, sleep } from './harness';

const skip = canRunIntegration();

describe('the policy in force', { skip, concurrency: false }, () => {
  let inst: Instance;
  let base: string;
  let policyDir: string;
  const status = async () => (await new AdminClient(inst.env.ISOLA_SOCKET).call('admin.policy.Status', 'dom0'));
  const until = async (what: string, cond: () => Promise<boolean>, ms = 1500) => {
    const end = Date.now() + ms;
    while (!(await cond())) {
      if (Date.now() > end) assert.fail(`not within ${ms} ms: ${what}\n${await status()}`);
      await sleep(50);
    }
  };

  /** A copy from work to vault, made in the background; resolves with the caller's result. */
  const copyInBackground = () => new Promise<{ code: number; stderr: string }>((resolve) => {
    const child = spawn(path.join(BIN, 'qvm-run'), ['-p', 'work', 'echo report > ~/r.txt; qvm-copy-to-vm vault ~/r.txt'], { env: inst.env });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code: code ?? -1, stderr }));
  });
  const pendingAsk = async () => {
    const end = Date.now() + 30_000;
    for (;;) {
      const rows = (await inst.ok('isola', 'ask', 'list')).trim().split('\n').slice(1);
      if (rows.length) return rows[0].split(/\s+/);
      if (Date.now() > end) assert.fail('no question appeared');
      await sleep(100);
    }
  };

  before(async () => {
    base = mkdtempSync(path.join(os.tmpdir(), 'isola-policy-reload-'));
    policyDir = path.join(base, 'policy.d'); // does not exist when isolad starts
    inst = new Instance({ env: { ISOLA_POLICY_DIR: policyDir } });
    await inst.start();
  });
  after(async () => {
    await inst?.destroy();
    rmSync(base, { recursive: true, force: true });
  });

  test('isolad started before setup enforces the policy setup installs: an ask answered on the host goes through', async () => {
    assert.match(await status(), /^state=missing$/m);
    const check = await inst.cli('isola', ['policy', 'check']);
    assert.equal(check.code, 2);
    assert.match(check.stderr, /no policy directory/);

    const setup = await inst.cli('isola', ['setup']);
    assert.equal(setup.code, 0, setup.stderr);
    assert.match(setup.stdout, /Policy in force: \d+ rules from \d+ files/);
    assert.match(await status(), /^state=loaded$/m);

    const copy = copyInBackground();
    const [id, source, service, requested, targets, preselected] = await pendingAsk();
    assert.deepEqual([source, service, requested], ['work', 'qubes.Filecopy+', 'vault']);
    assert.ok(targets.split(',').includes('vault'));
    assert.equal(preselected, 'vault', "the caller's own target is preselected");
    await inst.ok('isola', 'ask', 'allow', id);
    const r = await copy;
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`waiting for the host to allow qubes\\.Filecopy \\(question ${id}\\); on the host: isola ask allow ${id} --target vault`));
    assert.equal((await inst.ok('qvm-run', '-p', 'vault', 'cat ~/QubesIncoming/work/r.txt')), 'report\n');
    const log = await inst.ok('isola', 'policy', 'log');
    assert.match(log, / work vault qubes\.Filecopy\+ allow \S+90-default\.policy:\d+ allowed by the user/);
  });

  test('a question nobody answers times out, and caller and log say so', async () => {
    // This instance's isolad waits ISOLA_ASK_TIMEOUT=3 s (set below by restarting it).
    await inst.stopDaemon();
    inst.env.ISOLA_ASK_TIMEOUT = '3';
    await inst.start();
    const r = await copyInBackground();
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /nobody answered on the host within 3 s: the call is refused/);
    assert.match(await inst.ok('isola', 'policy', 'log', '--since', '1m'), / work vault qubes\.Filecopy\+ deny \S+:\d+ nobody answered in time/);
    assert.doesNotMatch(await inst.ok('isola', 'policy', 'log', '--since', '1m'), /denied by the user/);
  });

  test('a directory removed and recreated is followed without a restart', async () => {
    const saved = path.join(base, 'saved');
    cpSync(policyDir, saved, { recursive: true });
    rmSync(policyDir, { recursive: true });
    await until('the removal is noticed', async () => /^state=missing$/m.test(await status()));
    const denied = await inst.cli('isola', ['policy', 'eval', '--in-force', 'work', 'vault', 'qubes.Filecopy']);
    assert.equal(JSON.parse(denied.stdout).result, 'deny', 'no directory: every call is denied');
    cpSync(saved, policyDir, { recursive: true });
    await until('the new directory is in force', async () => /^state=loaded$/m.test(await status()));
    const ask = JSON.parse(await inst.ok('isola', 'policy', 'eval', '--in-force', 'work', 'vault', 'qubes.Filecopy'));
    assert.equal(ask.result, 'ask');
    assert.match(ask.policy, /^in force in isolad/);
  });

  test('a broken edit keeps the old policy in force and is visible everywhere until fixed', async () => {
    const client = new AdminClient(inst.env.ISOLA_SOCKET);
    const seen: AdminEvent[] = [];
    const close = await client.events((e) => seen.push(e));
    try {
      writeFileSync(path.join(policyDir, '30-user.policy'), 'qubes.Filecopy * work vault allow\nqubes.Filecopy * work vault allow nonsense=1\n');
      await until('the error is kept', async () => /^state=error$/m.test(await status()));
      const st = await status();
      assert.match(st, /^error=\S+30-user\.policy:2: /m, 'FILE:LINE: reason');
      assert.match(st, /^error_since=\d{4}-\d\d-\d\dT/m);
      assert.match(st, /^loaded_at=\d{4}-/m, 'the old policy stays, with its time');
      assert.ok(seen.some((e) => e.event === 'policy-load-failed' && /30-user\.policy:2/.test(e.kwargs.error)), 'an event announces it');
      assert.match(inst.daemonLog, /policy not loaded, the previous one stays in force: \S+30-user\.policy:2/);

      const check = await inst.cli('isola', ['policy', 'check']);
      assert.equal(check.code, 2);
      assert.match(check.stderr, /30-user\.policy:2: /);
      assert.match(check.stderr, /isolad: \S+30-user\.policy:2: .*; since \S+ \(\d+ s\) the policy loaded \S+ \(\d+ rules\) stays in force/);
      const doctor = await inst.cli('isola', ['doctor']);
      assert.match(doctor.stdout, /qrexec policy\s+MISSING\s+\S+30-user\.policy:2/);

      const inForce = JSON.parse(await inst.ok('isola', 'policy', 'eval', '--in-force', 'work', 'vault', 'qubes.Filecopy'));
      assert.equal(inForce.result, 'ask', 'isolad still enforces the old policy');
      const onDisk = await inst.cli('isola', ['policy', 'eval', 'work', 'vault', 'qubes.Filecopy']);
      assert.equal(onDisk.code, 2, 'the files on disk do not load');

      writeFileSync(path.join(policyDir, '30-user.policy'), 'qubes.Filecopy * work vault allow\n');
      await until('the fix is in force', async () => /^state=loaded$/m.test(await status()));
      assert.match(await status(), /^error=$/m);
      const fixed = await inst.cli('isola', ['policy', 'eval', 'work', 'vault', 'qubes.Filecopy']);
      assert.equal(JSON.parse(fixed.stdout).result, 'allow');
      assert.equal(JSON.parse(fixed.stdout).policy, `files in ${policyDir}`, 'the answer says where it comes from');
      assert.ok(seen.some((e) => e.event === 'policy-loaded'));
    } finally {
      close();
    }
  });

  test('isola policy eval refuses a calling qube that does not exist', async () => {
    const r = await inst.cli('isola', ['policy', 'eval', 'wrok', 'vault', 'qubes.Filecopy']);
    assert.equal(r.code, 2);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^isola policy: error: no such qube: 'wrok'/);
    const t = await inst.cli('isola', ['policy', 'eval', 'work', 'valut', 'qubes.Filecopy']);
    assert.equal(t.code, 0);
    assert.match(t.stderr, /warning: no such qube: 'valut'/);
  });

  test('a second isolad for the same home or socket is refused, and the first keeps serving', async () => {
    const second = await new Promise<{ code: number; stderr: string }>((resolve) => {
      const child = spawn(path.join(BIN, 'isolad'), [], { env: inst.env });
      let stderr = '';
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('close', (code) => resolve({ code: code ?? -1, stderr }));
    });
    assert.notEqual(second.code, 0);
    assert.match(second.stderr, /another isolad \(pid \d+\) already runs for ISOLA_HOME=/);
    assert.equal(second.stderr.trim().split('\n').length, 1, 'one line');
    const otherHome = mkdtempSync(path.join(os.tmpdir(), 'isola-second-'));
    try {
      const viaSocket = await new Promise<{ code: number; stderr: string }>((resolve) => {
        const child = spawn(path.join(BIN, 'isolad'), [], { env: { ...inst.env, ISOLA_HOME: otherHome } });
        let stderr = '';
        child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        child.on('close', (code) => resolve({ code: code ?? -1, stderr }));
      });
      assert.notEqual(viaSocket.code, 0);
      assert.match(viaSocket.stderr, /another isolad \(pid \d+\) already runs for its socket /);
    } finally {
      rmSync(otherHome, { recursive: true, force: true });
    }
    assert.equal((await inst.cli('qvm-ls', ['--raw-list'])).code, 0, 'the first isolad still answers on its socket');
  });
});
