// Attacks on the host's disk from inside a qube: writing past a volume's size, creating more
// files than a volume of that size may hold, filling the root. Each must fail inside the qube
// (ENOSPC) while isolad and the other qubes keep working. Sizes are small (ISOLA_VOLUME_SIZES)
// so the tests stay fast.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { canRunIntegration, Instance } from './harness';

const skip = canRunIntegration();
const MiB = 1024 * 1024;
const PRIVATE = 64 * MiB;
const ROOT = 1024 * MiB;

/** Bytes the instance's home takes on the host filesystem (its own files; mounts not crossed). */
function hostBytes(home: string): number {
  // Written data may still sit in page caches (of the volume and of the pool image) unallocated.
  execFileSync('sync');
  return Number(execFileSync('du', ['-s', '-x', '-B1', home]).toString().split('\t')[0]);
}

describe('disk and inode bounds against a hostile qube', { skip, concurrency: false }, () => {
  let inst: Instance;
  const run = (vm: string, cmd: string, user = 'root') => inst.cli('qvm-run', ['-p', '-u', user, vm, cmd]);
  const stillServed = async (vm: string) => {
    assert.match(await inst.ok('qvm-ls', '--raw-list'), new RegExp(`^${vm}$`, 'm'));
    const r = await run(vm, 'echo still-here > ~/alive && cat ~/alive', 'user');
    assert.equal(r.stdout.trim(), 'still-here', `${vm} cannot write a small file: ${r.stderr}`);
  };

  before(async () => {
    inst = await Instance.withAppVMs([['work', 'red'], ['other', 'green'], ['files', 'orange']], {
      env: { ISOLA_POOL_SIZE: '6G', ISOLA_VOLUME_SIZES: `root=${ROOT},private=${PRIVATE}` },
    });
  });
  after(async () => {
    await inst?.destroy();
  });

  test('disk-quota-private: writing past the private size fails inside, the host keeps its space, resize grows the bound', async () => {
    const before = hostBytes(inst.home);
    const w = await run('work', 'head -c 1G /dev/zero > ~/big; echo "rc=$?"; sync', 'user');
    assert.match(w.stdout + w.stderr, /No space left on device|Disk quota exceeded/, `the write went through: ${w.stdout} ${w.stderr}`);
    assert.doesNotMatch(w.stdout, /rc=0/);
    assert.equal(Number((await inst.ok('qvm-volume', 'info', 'work:private', 'size')).trim()), PRIVATE);
    const grown = hostBytes(inst.home) - before;
    assert.ok(grown < PRIVATE + 32 * MiB, `the host filesystem lost ${Math.round(grown / MiB)} MiB for a ${PRIVATE / MiB} MiB volume`);
    const usage = Number((await inst.ok('qvm-volume', 'info', 'work:private', 'usage')).trim());
    assert.ok(usage > PRIVATE * 0.7 && usage <= PRIVATE, `usage ${usage} is not near the size ${PRIVATE}`);
    // Nothing else stopped: isolad answers, another qube writes, this one too once space is freed.
    await stillServed('other');
    // Qubes refuses to shrink; growing takes effect at once, the qube still running.
    const shrink = await inst.cli('qvm-volume', ['resize', 'work:private', String(PRIVATE / 2)]);
    assert.notEqual(shrink.code, 0);
    assert.match(shrink.stderr, /Refusing to shrink volume work:private/);
    const forced = await inst.cli('qvm-volume', ['resize', '--force', 'work:private', String(PRIVATE / 2)]);
    assert.notEqual(forced.code, 0);
    assert.match(forced.stderr, /For your own safety, shrinking of private is disabled/);
    // Resized while running: recorded at once, the volume grows at the next start (in use now).
    await inst.ok('qvm-volume', 'resize', 'work:private', String(4 * PRIVATE));
    assert.equal(Number((await inst.ok('qvm-volume', 'info', 'work:private', 'size')).trim()), 4 * PRIVATE);
    // The full volume's run is committed at shutdown, its data kept.
    await inst.ok('qvm-shutdown', '--wait', 'work');
    const w2 = await run('work', 'stat -c %s ~/big && head -c 64M /dev/zero > ~/more && echo wrote', 'user');
    assert.match(w2.stdout.trim(), /^[0-9]+\nwrote$/, `after resize the write still fails: ${w2.stdout} ${w2.stderr}`);
    assert.ok(Number(w2.stdout.split('\n')[0]) > PRIVATE / 2, 'the data written before the resize is gone');
    // Inside, df on the home shows the volume's bound, not the host's disk.
    const df = Number((await run('work', 'df -B1 --output=size ~ | tail -1', 'user')).stdout.trim());
    assert.ok(df <= 4 * PRIVATE && df > 3 * PRIVATE, `df ~ shows ${df}`);
    // And a halted qube's volume grows at once.
    await inst.ok('qvm-shutdown', '--wait', 'work');
    await inst.ok('qvm-volume', 'resize', 'work:private', String(8 * PRIVATE));
    const df2 = Number((await run('work', 'df -B1 --output=size ~ | tail -1', 'user')).stdout.trim());
    assert.ok(df2 <= 8 * PRIVATE && df2 > 7 * PRIVATE, `df ~ shows ${df2} after a resize while halted`);
  });

  test('inode-quota: creating more files than the volume may hold fails inside, isolad keeps working', async () => {
    const bound = PRIVATE / (16 * 1024);
    const r = await run('files', `mkdir -p ~/many && cd ~/many && seq 1 ${bound + 2000} | xargs touch 2>&1 | sort -u | head -3; ls | wc -l`, 'user');
    assert.match(r.stdout, /No space left on device|Disk quota exceeded/, `all files were created: ${r.stdout}`);
    const made = Number(r.stdout.trim().split('\n').pop());
    assert.ok(made <= bound, `${made} files made, bound ${bound}`);
    assert.match(await inst.ok('qvm-ls', '--raw-list'), /^files$/m);
    await stillServed('other');
  });

  test('disk-quota-root: fallocate past the root size in an AppVM fails inside', async () => {
    const r = await run('other', `fallocate -l ${ROOT + 512 * MiB} /var/tmp/huge; echo "rc=$?"; rm -f /var/tmp/huge`);
    assert.match(r.stdout + r.stderr, /No space left on device|Disk quota exceeded/, `fallocate succeeded: ${r.stdout} ${r.stderr}`);
    assert.doesNotMatch(r.stdout, /rc=0/);
    await stillServed('other');
  });

  test('legacy-pool: a plain pool directory of an older isolad keeps working, with a warning', async () => {
    const old = new Instance();
    try {
      mkdirSync(path.join(old.config.poolDir, 'leftover'), { recursive: true });
      await old.start();
      assert.match(old.daemonLog, /is a plain directory/);
      assert.match(await old.ok('qvm-ls', '--raw-list'), /^dom0$/m);
      assert.ok(!existsSync(`${old.config.poolDir}.img`), 'no pool image made over a legacy pool');
    } finally {
      await old.destroy();
    }
  });

  test('volume-cleanup: destroying the instance leaves no loop device or mount behind', async () => {
    await inst.destroy();
    const loops = execFileSync('losetup', ['-a']).toString();
    assert.ok(!loops.includes(inst.home), `loop devices left: ${loops}`);
    const mounts = execFileSync('cat', ['/proc/self/mountinfo']).toString();
    assert.ok(!mounts.includes(inst.home), 'mounts left');
  });
});
