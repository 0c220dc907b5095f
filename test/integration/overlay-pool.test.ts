// The overlay pool on its own (real mounts, idmapped layers, no runtime): commits, discards,
// ownership shifting, deletions that survive squashing, reverts and clean unmounting.

import assert from 'node:assert/strict';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, promises as fs, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { mountsUnder } from '../../src/storage/mounts';
import { OverlayPool } from '../../src/storage/overlay-pool';
import type { IdRange, QubeVolumes } from '../../src/core/volumes';
import { canRunIntegration } from './harness';

const skip = canRunIntegration();

describe('overlay pool', { skip, concurrency: false }, () => {
  let home: string;
  let pool: OverlayPool;
  const T: QubeVolumes = { uuid: '10000000-0000-4000-8000-000000000001', klass: 'TemplateVM' };
  const A: QubeVolumes = { uuid: '10000000-0000-4000-8000-000000000002', klass: 'AppVM', sourceUuid: T.uuid };
  const tIds: IdRange = { base: 60000 * 65536, count: 65536 };
  const aIds: IdRange = { base: 60001 * 65536, count: 65536 };
  const layers = (q: QubeVolumes, vol: string) => readdirSync(path.join(home, 'pool', q.uuid, vol, 'layers')).sort();

  before(async () => {
    home = mkdtempSync(path.join(os.tmpdir(), 'isola-pool-'));
    pool = new OverlayPool('default', path.join(home, 'pool'), path.join(home, 'run'));
    await pool.create(T, {});
    await pool.importRoot(T, async (dir) => {
      mkdirSync(path.join(dir, 'etc'));
      writeFileSync(path.join(dir, 'etc', 'os-release'), 'v1\n');
      writeFileSync(path.join(dir, 'etc', 'doomed'), 'delete me\n');
    });
    await pool.create(A, {});
  });
  after(async () => {
    for (const q of [A, T]) await pool.remove(q.uuid).catch(() => undefined);
    rmSync(home, { recursive: true, force: true });
  });

  test('a qube sees committed files as owned by its own root, stored with real ids', async () => {
    const v = await pool.start(A, aIds);
    assert.equal(lstatSync(path.join(v.root.tree!, 'etc', 'os-release')).uid, aIds.base);
    assert.equal(lstatSync(path.join(home, 'pool', T.uuid, 'root', 'layers', 'S000001', 'etc', 'os-release')).uid, 0);
    await pool.stop(A, aIds, true);
    assert.deepEqual(mountsUnder(path.join(home, 'run')), [], 'stop unmounts everything');
  });

  test('a template commit is shifted back to real ids, keeps deletions, and AppVMs see it on their next start', async () => {
    const v = await pool.start(T, tIds);
    writeFileSync(path.join(v.root.tree!, 'etc', 'os-release'), 'v2\n');
    await fs.lchown(path.join(v.root.tree!, 'etc', 'os-release'), tIds.base + 1000, tIds.base + 1000);
    await fs.unlink(path.join(v.root.tree!, 'etc', 'doomed'));
    await pool.stop(T, tIds, true);
    assert.deepEqual(layers(T, 'root'), ['L000002', 'S000001']);
    const committed = path.join(home, 'pool', T.uuid, 'root', 'layers', 'L000002', 'etc', 'os-release');
    assert.equal(lstatSync(committed).uid, 1000, 'owner unshifted to the real id');
    const a = await pool.start(A, aIds);
    assert.equal(readFileSync(path.join(a.root.tree!, 'etc', 'os-release'), 'utf8'), 'v2\n');
    assert.equal(lstatSync(path.join(a.root.tree!, 'etc', 'os-release')).uid, aIds.base + 1000);
    assert.ok(!existsSync(path.join(a.root.tree!, 'etc', 'doomed')));
    assert.equal(a.rootRevision, 'L000002');
    await pool.stop(A, aIds, true);
  });

  test('a run that changes nothing adds no revision; an AppVM root is never committed', async () => {
    const before = layers(A, 'private');
    await pool.start(A, aIds);
    await pool.stop(A, aIds, true);
    assert.deepEqual(layers(A, 'private'), before);
    const v = await pool.start(A, aIds);
    writeFileSync(path.join(v.root.tree!, 'etc', 'app-change'), 'x');
    await pool.stop(A, aIds, true);
    assert.deepEqual(layers(T, 'root'), ['L000002', 'S000001']);
  });

  test('squashing a deep stack keeps content and deletions, and leaves one full layer', async () => {
    for (let i = 0; i < 26; i++) {
      const v = await pool.start(A, aIds);
      writeFileSync(path.join(v.private.tree!, `f${i}`), String(i));
      if (i > 0) await fs.unlink(path.join(v.private.tree!, `f${i - 1}`));
      await pool.stop(A, aIds, true);
    }
    assert.ok(layers(A, 'private').length > 24);
    assert.equal(await pool.squashIfDeep(A.uuid, 'private'), true);
    const after = layers(A, 'private');
    assert.equal(after.length, 1);
    assert.match(after[0], /^S/);
    const v = await pool.start(A, aIds);
    assert.deepEqual(readdirSync(v.private.tree!).filter((n) => n.startsWith('f')), ['f25']);
    assert.ok(existsSync(path.join(v.private.tree!, 'home', 'user')));
    await pool.stop(A, aIds, true);
  });

  test('revert drops the newest revision; with nothing kept it is refused', async () => {
    let v = await pool.start(A, aIds);
    writeFileSync(path.join(v.private.tree!, 'rev'), 'one');
    await pool.stop(A, aIds, true);
    v = await pool.start(A, aIds);
    writeFileSync(path.join(v.private.tree!, 'rev'), 'two');
    await pool.stop(A, aIds, true);
    await assert.rejects(pool.revert(A, 'private', undefined, 0), /no revision/);
    await pool.revert(A, 'private', undefined, 1);
    v = await pool.start(A, aIds);
    assert.equal(readFileSync(path.join(v.private.tree!, 'rev'), 'utf8'), 'one');
    await pool.stop(A, aIds, true);
    await assert.rejects(pool.revert(A, 'private', 'S999999', 5), /no revision 'S999999'/);
  });

  test('an interrupted commit is finished at the next start instead of losing the data', async () => {
    const v = await pool.start(A, aIds);
    writeFileSync(path.join(v.private.tree!, 'crash'), 'kept');
    // What a kill -9 between unmount and commit leaves: mounts gone, the run's upper still there.
    await pool.cleanupMounts(A.uuid);
    const w = await pool.start(A, aIds);
    assert.equal(readFileSync(path.join(w.private.tree!, 'crash'), 'utf8'), 'kept');
    await pool.stop(A, aIds, true);
  });
});
