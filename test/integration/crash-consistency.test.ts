// isolad killed with SIGKILL at awkward moments, then restarted: the state must be consistent —
// running qubes usable, unfinished work rolled back, nothing orphaned.

import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { mountsUnder } from '../../src/storage/mounts';
import { canRunIntegration, Instance, sleep } from './harness';

const skip = canRunIntegration();

describe('crash consistency', { skip, concurrency: false }, () => {
  let inst: Instance;
  const runtimes = (): string[] => inst.containers().map((c) => c.id);
  const state = async (vm: string) => (await inst.ok('qvm-ls', '--raw-data', '--fields', 'name,state')).split('\n').find((l) => l.startsWith(`${vm}|`))?.split('|')[1];

  /** The invariants of point 3: every runtime belongs to a Running qube, Halted qubes hold no mounts, no stray volumes. */
  async function assertConsistent(): Promise<void> {
    const rows = (await inst.ok('qvm-ls', '--raw-data', '--fields', 'name,state,uuid,klass')).trim().split('\n').map((l) => l.split('|'));
    const running = rows.filter((r) => r[1] === 'Running' && r[3] !== 'AdminVM').map((r) => r[0]);
    for (const id of runtimes()) assert.ok(running.includes(id.split('.')[0]), `runtime ${id} belongs to no running qube`);
    for (const r of rows.filter((x) => x[1] === 'Halted' && x[3] !== 'AdminVM')) {
      assert.deepEqual(mountsUnder(`${inst.config.runDir}/${r[2]}`), [], `${r[0]} is halted but has mounts`);
    }
    for (const r of rows) assert.ok(r[1] === 'Running' || r[1] === 'Halted', `${r[0]} is ${r[1]}`);
    const uuids = new Set(rows.map((r) => r[2]));
    for (const dir of existsSync(inst.config.poolDir) ? readdirSync(inst.config.poolDir) : []) assert.ok(uuids.has(dir), `volumes ${dir} belong to no qube`);
    for (const vm of running) {
      const r = await inst.cli('qvm-run', ['-p', '--no-autostart', vm, 'echo alive']);
      assert.equal(r.stdout.trim(), 'alive', `${vm} is Running but not usable: ${r.stderr}`);
    }
  }

  before(async () => {
    inst = await Instance.withAppVMs([['c1', 'red']]);
  });
  after(async () => inst?.destroy());

  test('a running qube survives an isolad kill -9 and is usable after the restart', async () => {
    await inst.ok('qvm-run', '-p', 'c1', 'echo before > ~/before');
    await inst.kill9();
    await inst.start();
    assert.equal(await state('c1'), 'Running');
    await sleep(500); // the agent reconnects on its own
    assert.equal((await inst.ok('qvm-run', '-p', 'c1', 'cat ~/before')).trim(), 'before');
    await assertConsistent();
    await inst.ok('qvm-shutdown', '--wait', 'c1');
  });

  test('a qube that stopped while isolad was down is Halted after the restart, its data committed', async () => {
    await inst.ok('qvm-run', '-p', 'c1', 'echo kept > ~/while-down');
    await inst.kill9();
    inst.runc('kill', inst.runtimeId('c1'), 'KILL');
    await sleep(300);
    await inst.start();
    assert.equal(await state('c1'), 'Halted');
    await assertConsistent();
    assert.equal((await inst.ok('qvm-run', '-p', 'c1', 'cat ~/while-down')).trim(), 'kept');
    await inst.ok('qvm-shutdown', '--wait', 'c1');
  });

  test('isolad killed during starts: every qube ends Running and usable, or Halted and startable', async () => {
    for (const delay of [0, 20, 60, 120, 200]) {
      const start = inst.cli('qvm-start', ['c1']);
      await sleep(delay);
      await inst.kill9();
      await start;
      await inst.start();
      await assertConsistent();
      if ((await state('c1')) === 'Halted') await inst.ok('qvm-start', 'c1');
      await inst.ok('qvm-shutdown', '--wait', 'c1');
    }
  });

  test('isolad killed during a create: the qube exists whole or not at all', async () => {
    for (const delay of [50, 400, 1500]) {
      const name = `sa${delay}`;
      const create = inst.cli('qvm-create', ['--class', 'StandaloneVM', '--template', 'debian-12', '--label', 'gray', name]);
      await sleep(delay);
      await inst.kill9();
      await create;
      await inst.start();
      await assertConsistent();
      const exists = (await inst.cli('qvm-check', [name])).code === 0;
      if (exists) assert.equal((await inst.ok('qvm-run', '-p', name, 'echo ok')).trim(), 'ok');
      else await inst.ok('qvm-create', '--class', 'StandaloneVM', '--template', 'debian-12', '--label', 'gray', name);
      await inst.ok('qvm-shutdown', '--wait', name).catch(() => undefined);
      await inst.ok('qvm-remove', '-f', name);
    }
  });
});
