// qrexec calls between real qubes under a real policy: allow, deny (target untouched), autostart,
// services' environment and exit codes, a caller that cannot choose its source, malformed frames,
// many concurrent calls, and the decision log.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { canRunIntegration, Instance } from './harness';
import { RAW_QREXEC_SCRIPT } from './raw-qrexec-script';

const skip = canRunIntegration();

const POLICY = [
  'test.Echo     +viaask work vault ask',
  'test.Echo     * work  vault allow',
  'test.Env      * work  vault allow',
  'test.Exit     * work  vault allow',
  'test.Missing  * work  vault allow',
  'test.Halted   * work  vault allow autostart=no',
  'test.Echo     * @anyvm @anyvm deny',
  'admin.vm.property.Get +label work vault allow target=dom0',
  '* * @anyvm @anyvm deny',
].join('\n') + '\n';

const SERVICES: Record<string, string> = {
  'test.Echo': 'cat',
  'test.Env': 'echo "$QREXEC_REMOTE_DOMAIN|$QREXEC_SERVICE_ARGUMENT|$QREXEC_SERVICE_FULL_NAME|$1|$(id -un)"',
  'test.Exit': 'exit 5',
  'test.Halted': 'echo should-not-run',
};

describe('qrexec between qubes', { skip, concurrency: false }, () => {
  let inst: Instance;
  let policyDir: string;
  const inQube = (vm: string, cmd: string, input?: string) => inst.cli('qvm-run', ['-p', vm, cmd], input);
  const state = async (vm: string) => (await inst.ok('qvm-ls', '--raw-data', '--fields', 'name,state')).split('\n').find((l) => l.startsWith(`${vm}|`))?.split('|')[1];

  before(async () => {
    policyDir = mkdtempSync(path.join(os.tmpdir(), 'isola-qrexec-policy-'));
    writeFileSync(path.join(policyDir, '30-test.policy'), POLICY);
    inst = new Instance({ env: { ISOLA_POLICY_DIR: policyDir } });
    await inst.start();
    await inst.installTemplate();
    const install = Object.entries(SERVICES)
      .map(([name, body]) => `printf '%s\\n' '#!/bin/sh' '${body.replace(/'/g, `'\\''`)}' > /etc/qubes-rpc/${name} && chmod 755 /etc/qubes-rpc/${name}`)
      .join(' && ');
    await inst.ok('qvm-run', '-p', '-u', 'root', 'debian-12', `mkdir -p /etc/qubes-rpc && ${install}`);
    await inst.ok('qvm-shutdown', '--wait', 'debian-12');
    for (const [name, label] of [['work', 'blue'], ['vault', 'black'], ['other', 'red']]) await inst.ok('qvm-create', '--label', label, name);
    await inst.ok('qvm-start', 'work');
  });
  after(async () => {
    await inst?.destroy();
    rmSync(policyDir, { recursive: true, force: true });
  });

  test('an allowed call autostarts the halted target and streams stdin and stdout', async () => {
    assert.equal(await state('vault'), 'Halted');
    const r = await inQube('work', 'printf "hello qrexec" | qrexec-client-vm vault test.Echo');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'hello qrexec');
    assert.equal(await state('vault'), 'Running');
  });

  test("the service sees Qubes' environment, its argument, and the caller as isolad knows it", async () => {
    const r = await inQube('work', 'qrexec-client-vm vault test.Env+my-arg');
    assert.equal(r.stdout.trim(), 'work|my-arg|test.Env+my-arg|my-arg|user');
  });

  test('exit codes come back: the service\'s own, 127 for a missing service', async () => {
    assert.equal((await inQube('work', 'qrexec-client-vm vault test.Exit')).code, 5);
    assert.equal((await inQube('work', 'qrexec-client-vm vault test.Missing')).code, 127);
  });

  test('qrexec-spoofed-source: a caller that names another qube in every field it writes is judged as itself', async () => {
    await inst.ok('qvm-shutdown', '--wait', 'vault');
    await inQube('other', 'cat > /tmp/rq.js', RAW_QREXEC_SCRIPT);
    const allowedRows = async () => (await inst.ok('isola', 'policy', 'log', '--since', '10m')).split('\n').filter((l) => /\bwork vault test\.Echo\+ allow /.test(l)).length;
    const otherRows = async () => (await inst.ok('isola', 'policy', 'log', '--since', '10m')).split('\n').filter((l) => /\bother vault test\.Echo\S* deny /.test(l)).length;
    const [allowed0, other0] = [await allowedRows(), await otherRows()];
    // Only `work` may call test.Echo on vault. `other` says it is `work` in its HELLO ident and its
    // request id, and tries to smuggle the name into the service argument and the QUBESRPC line.
    for (const call of ['test.Echo', 'test.Echo+work', 'test.Echo work']) {
      const r = await inQube('other', `node /tmp/rq.js spoof vault '${call}' work`);
      assert.equal(r.stdout.trim(), 'refused', `${call}: ${r.stderr}`);
    }
    const plain = await inQube('other', 'echo x | qrexec-client-vm vault test.Echo');
    assert.equal(plain.code, 126);
    assert.match(plain.stderr, /Request refused/);
    assert.equal(await state('vault'), 'Halted', 'a denied call does not start the target');
    assert.equal(await allowedRows(), allowed0, 'no call was judged as coming from work');
    assert.ok(await otherRows() >= other0 + 3, 'the policy log names the real caller, other');
    // Nor can `other` reach work's own sockets (where isolad would take it for work).
    const uuid = (await inst.ok('qvm-prefs', 'work', 'uuid')).trim();
    const paths = [path.join(inst.config.agentDir, uuid, 'agent.sock'), path.join(inst.config.agentDir, `${uuid}.qrexec`, 'qrexec-client.sock')];
    const tried = await inQube('other', `node /tmp/rq.js connect ${paths.join(' ')}`);
    assert.equal(tried.stdout, paths.map((p) => `${p} ENOENT\n`).join(''), 'work\'s sockets do not exist inside other');
  });

  test('autostart=no refuses a halted target', async () => {
    assert.equal((await inQube('work', 'qrexec-client-vm vault test.Halted')).code, 126);
    assert.equal(await state('vault'), 'Halted');
  });

  test("an 'ask' waits for isola ask: allowed to an offered target, denied, or refused for a target not offered", async () => {
    const pendingIds = async (): Promise<string[]> => {
      for (let i = 0; i < 100; i++) {
        const rows = (await inst.ok('isola', 'ask', 'list')).trim().split('\n').slice(1);
        if (rows.length) return rows.map((r) => r.split(/\s+/)[0]);
        await new Promise((r) => setTimeout(r, 100));
      }
      throw new Error('no pending question appeared');
    };
    const allowed = inQube('work', 'echo asked | qrexec-client-vm vault test.Echo+viaask');
    let [id] = await pendingIds();
    assert.match(await inst.ok('isola', 'ask', 'list'), new RegExp(`^${id}\\s+work\\s+test\\.Echo\\+viaask\\s+vault`, 'm'));
    const wrong = await inst.cli('isola', ['ask', 'allow', id, '--target', 'other']);
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /'other' is not offered/);
    await inst.ok('isola', 'ask', 'allow', id, '--target', 'vault');
    const r = await allowed;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'asked\n');
    const denied = inQube('work', 'echo no | qrexec-client-vm vault test.Echo+viaask');
    [id] = await pendingIds();
    await inst.ok('isola', 'ask', 'deny', id);
    assert.equal((await denied).code, 126);
    assert.equal((await inst.cli('isola', ['ask', 'deny', id])).code, 1, 'an answered question is gone');
  });

  test('malformed frames on the client socket drop that connection only', async () => {
    const junk = "const s=require('net').createConnection('/run/qubes/qrexec-client.sock');s.on('error',()=>{});s.write(Buffer.from([0,3,0,0,255,255,255,255]));setTimeout(()=>process.exit(0),300)";
    await inQube('work', `node -e "${junk}"`);
    const r = await inQube('work', 'echo still | qrexec-client-vm vault test.Echo');
    assert.equal(r.stdout, 'still\n');
  });

  test('100 concurrent calls all complete', async () => {
    const r = await inQube('work', 'for i in $(seq 100); do (echo $i | qrexec-client-vm vault test.Echo) & done; wait');
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout.trim().split('\n').map(Number).sort((a, b) => a - b), Array.from({ length: 100 }, (_, i) => i + 1));
  });

  test('every decision is in the log with its rule', async () => {
    const log = await inst.ok('isola', 'policy', 'log', '--since', '10m');
    assert.match(log, /work vault test\.Echo\+ allow \S+30-test\.policy:2 /);
    assert.match(log, /other vault test\.Echo\+ deny \S+30-test\.policy:7 /);
    assert.match(log, /work vault test\.Halted\+ deny \S+30-test\.policy:6 .*autostart/);
    assert.equal((await inst.cli('isola', ['policy', 'log', '--since', 'yesterday'])).code, 1);
  });

  test('admin calls from a qube go through the policy: a narrow grant works, everything else is denied', async () => {
    const got = await inQube('work', 'qrexec-client-vm vault admin.vm.property.Get+label');
    assert.equal(got.code, 0, got.stderr);
    assert.equal(got.stdout, '0\0default=False type=label black', "Qubes' reply bytes, about the qube the caller named");
    const other = await inQube('work', 'qrexec-client-vm work admin.vm.property.Get+label');
    assert.equal(other.code, 126, 'the grant is for vault only');
    const set = await inQube('work', 'printf red | qrexec-client-vm vault admin.vm.property.Set+label');
    assert.equal(set.code, 126);
    assert.equal((await inst.ok('qvm-prefs', 'vault', 'label')).trim(), 'black', 'nothing changed');
    assert.equal((await inQube('work', 'qrexec-client-vm dom0 admin.vm.List')).code, 126);
  });
});
