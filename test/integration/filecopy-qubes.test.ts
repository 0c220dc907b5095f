// qvm-copy and friends between real qubes: files land in ~/QubesIncoming/SOURCE/ of the target with
// names, modes and content intact, a move removes the source only after success, policy decides.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { canRunIntegration, Instance } from './harness';

const skip = canRunIntegration();

describe('qvm-copy between qubes', { skip, concurrency: false }, () => {
  let inst: Instance;
  let policyDir: string;
  const inQube = (vm: string, cmd: string) => inst.cli('qvm-run', ['-p', vm, cmd]);
  const ok = async (vm: string, cmd: string) => {
    const r = await inQube(vm, cmd);
    assert.equal(r.code, 0, `${vm}: ${cmd}: ${r.stderr}`);
    return r.stdout;
  };

  before(async () => {
    policyDir = mkdtempSync(path.join(os.tmpdir(), 'isola-filecopy-policy-'));
    writeFileSync(path.join(policyDir, '30-test.policy'), [
      'qubes.Filecopy * work vault allow',
      'qubes.Filecopy * work @default ask default_target=vault',
      'qubes.Filecopy * @anyvm @anyvm deny',
    ].join('\n') + '\n');
    inst = new Instance({ env: { ISOLA_POLICY_DIR: policyDir } });
    await inst.start();
    await inst.installTemplate();
    for (const [name, label] of [['work', 'blue'], ['vault', 'black'], ['other', 'red']]) await inst.ok('qvm-create', '--label', label, name);
  });
  after(async () => {
    await inst?.destroy();
    rmSync(policyDir, { recursive: true, force: true });
  });

  const TREE = "mkdir -p ~/t/sub/'deep dir' && printf one > ~/t/'a b.txt' && printf two > ~/t/sub/ünï && printf three > ~/t/sub/'deep dir'/-dash && chmod 0640 ~/t/sub/ünï && ln -s ../a\\ b.txt ~/t/sub/link && : > ~/t/empty";
  const LIST = 'find . -printf "%p %m %s %y\\n" | sort; cat ./*.txt ./sub/ünï ./sub/"deep dir"/-dash; readlink ./sub/link';

  test('qvm-copy-to-vm copies a tree with odd names, modes and a symlink', async () => {
    await ok('work', TREE);
    await ok('work', 'qvm-copy-to-vm vault ~/t');
    const sent = await ok('work', `cd ~/t && ${LIST}`);
    const got = await ok('vault', `cd ~/QubesIncoming/work/t && ${LIST}`);
    assert.equal(got, sent);
  });

  test('a name clash is refused, not overwritten', async () => {
    const r = await inQube('work', 'qvm-copy-to-vm vault ~/t');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /exists/i);
    assert.equal((await ok('vault', "cat ~/QubesIncoming/work/t/'a b.txt'")), 'one');
  });

  test('qvm-move-to-vm removes the source only after success', async () => {
    await ok('work', 'printf moved > ~/m.txt');
    await ok('work', 'qvm-move-to-vm vault ~/m.txt');
    assert.equal((await inQube('work', 'test -e ~/m.txt')).code, 1, 'source removed');
    assert.equal(await ok('vault', 'cat ~/QubesIncoming/work/m.txt'), 'moved');
    await ok('work', 'printf again > ~/m.txt');
    const clash = await inQube('work', 'qvm-move-to-vm vault ~/m.txt');
    assert.equal(clash.code, 1);
    assert.equal(await ok('work', 'cat ~/m.txt'), 'again', 'a failed move keeps the source');
  });

  test('a copy the policy denies lands nothing and does not start the target', async () => {
    await ok('work', 'printf secret > ~/s.txt');
    const r = await inQube('work', 'qvm-copy-to-vm other ~/s.txt');
    assert.equal(r.code, 126);
    assert.match((await inst.ok('qvm-ls', 'other')), /Halted/);
  });

  test('qvm-copy asks; the answer chooses the target', async () => {
    await ok('work', 'printf asked > ~/q.txt');
    const copy = inQube('work', 'qvm-copy ~/q.txt');
    let id = '';
    for (let i = 0; i < 100 && !id; i++) {
      id = (await inst.ok('isola', 'ask', 'list')).trim().split('\n').slice(1).map((l) => l.split(/\s+/)[0])[0] ?? '';
      if (!id) await new Promise((res) => setTimeout(res, 100));
    }
    await inst.ok('isola', 'ask', 'allow', id);
    assert.equal((await copy).code, 0);
    assert.equal(await ok('vault', 'cat ~/QubesIncoming/work/q.txt'), 'asked');
  });

  test('a 1 GiB file arrives intact (sha256)', async () => {
    await ok('work', 'head -c 1073741824 /dev/urandom > ~/big.bin');
    const sum = (await ok('work', 'sha256sum < ~/big.bin')).split(' ')[0];
    await ok('work', 'qvm-copy-to-vm vault ~/big.bin');
    assert.equal((await ok('vault', 'sha256sum < ~/QubesIncoming/work/big.bin')).split(' ')[0], sum);
    await ok('work', 'rm ~/big.bin');
    await ok('vault', 'rm ~/QubesIncoming/work/big.bin');
  });
});
