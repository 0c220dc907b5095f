// qvm-ls against a real isolad: MEMORY comes from the running qube's cgroup and is `-` once it
// halts, FLAGS follow the power state, and the disk columns come from the pool's usage.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { canRunIntegration, Instance } from './harness';

const skip = canRunIntegration();

describe('qvm-ls against isolad', { skip, concurrency: false }, () => {
  let inst: Instance;
  const row = async (...args: string[]) => (await inst.ok('qvm-ls', '--raw-data', ...args)).trim().split('\n').map((l) => l.split('|'));

  before(async () => {
    inst = await Instance.withAppVMs([['work', 'blue']]);
  });
  after(async () => inst?.destroy());

  test('a halted AppVM: FLAGS a------- and MEMORY -; the default table has six columns', async () => {
    assert.deepEqual(await row('-O', 'name,state,flags,memory', 'work'), [['work', 'Halted', 'a-------', '-']]);
    assert.deepEqual(await row('debian-12', 'work'), [['debian-12', 'Halted', 'TemplateVM', 'black', '-', '-'], ['work', 'Halted', 'AppVM', 'blue', 'debian-12', '-']]);
    assert.match((await inst.ok('qvm-ls', '-o', 'prefs', 'work')).split('\n')[1], /^work\s+blue\s+debian-12\s+-\s+2\s+400\s+\d+\s+sandbox$/);
  });

  test("a running AppVM: FLAGS ar------ and MEMORY in MiB from its cgroup, - again once halted", async () => {
    await inst.ok('qvm-start', 'work');
    const [[name, flags, mem]] = await row('-O', 'name,flags,memory', 'work');
    const idle = Number(mem);
    assert.equal(name, 'work');
    assert.equal(flags, 'ar------');
    // A number, not '-': an idle qube (its compiled agent alone) may use under 1 MiB, shown as 0.
    assert.ok(/^\d+$/.test(mem) && Number(mem) < 400, `MEMORY ${mem} MiB`);
    // 48 MiB in the qube's tmpfs are charged to its cgroup, so MEMORY must grow by about that much.
    await inst.ok('qvm-run', '-p', 'work', 'head -c 50331648 /dev/zero > /dev/shm/fill');
    const filled = Number((await row('-O', 'name,memory', 'work'))[0][1]);
    assert.ok(filled >= idle + 32, `MEMORY grows with the qube's use: ${idle} -> ${filled} MiB`);
    const dom0 = Number((await row('-O', 'name,memory', 'dom0'))[0][1]);
    assert.ok(dom0 > filled, `dom0 shows the host's memory in use (${dom0} MiB)`);
    await inst.ok('qvm-shutdown', '--wait', 'work');
    assert.deepEqual(await row('-O', 'name,flags,memory', 'work'), [['work', 'a-------', '-']]);
  });

  test('the disk columns come from the pool (MiB); the root of debian-12 is not empty', async () => {
    const [[name, , disk, , privMax, , rootCurr, rootMax, rootUsed]] = await row('-d', 'debian-12');
    assert.equal(name, 'debian-12');
    assert.ok(Number(disk) >= Number(rootCurr) && Number(rootCurr) > 50, `DISK ${disk}, ROOT-CURR ${rootCurr}`);
    assert.equal(privMax, '2048');
    assert.equal(rootMax, '10240');
    assert.match(rootUsed, /^\d+%$/);
  });
});
