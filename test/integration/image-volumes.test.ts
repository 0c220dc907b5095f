// The overlay pool's volumes in form `image` (for VMs), without a VM: the test plays the guest by mounting
// the disks it is given as the guest's init would, and writes what a hostile guest root could write.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { VolumeImage } from '../../src/core/backend';
import type { IdRange, QubeVolumes } from '../../src/core/volumes';
import { mountsUnder } from '../../src/storage/mounts';
import { OverlayPool } from '../../src/storage/overlay-pool';
import { canRunIntegration } from './harness';

const skip = canRunIntegration();
const sh = (cmd: string, args: string[]) => execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();

/** Mounts a volume as the guest's init does; returns the merged directory and an undo. */
function guestMount(img: VolumeImage, at: string): { dir: string; undo: () => void } {
  const disks = img.disks.map((d, i) => {
    const m = path.join(at, `disk${i}`);
    mkdirSync(m, { recursive: true });
    // This kernel has the read-only images mounted already (as the host keeps them): their mount stands in.
    if (d.readonly) sh('mount', ['--bind', '-o', 'ro', d.file.replace(/\.img$/, ''), m]);
    else sh('mount', ['-t', 'ext4', '-o', 'rw,loop', d.file, m]);
    return m;
  });
  const lower = img.lower.map((l) => path.join(disks[l.disk], l.dir)).join(':');
  const upper = path.join(disks[img.upper!.disk], img.upper!.dir);
  const dir = path.join(at, 'merged');
  mkdirSync(dir, { recursive: true });
  sh('mount', ['-t', 'overlay', 'guest', '-o', `lowerdir=${lower},upperdir=${upper},workdir=${path.dirname(upper)}/work,index=off,xino=off,redirect_dir=off,metacopy=off`, dir]);
  return {
    dir,
    undo: () => {
      sh('umount', [dir]);
      for (const m of disks.reverse()) sh('umount', [m]);
    },
  };
}

describe('image volumes (form for VMs)', { skip, concurrency: false }, () => {
  let home: string;
  let pool: OverlayPool;
  const warnings: string[] = [];
  const T: QubeVolumes = { uuid: '20000000-0000-4000-8000-000000000001', klass: 'TemplateVM' };
  const A: QubeVolumes = { uuid: '20000000-0000-4000-8000-000000000002', klass: 'AppVM', sourceUuid: T.uuid };
  const tIds: IdRange = { base: 60010 * 65536, count: 65536 };
  const aIds: IdRange = { base: 60011 * 65536, count: 65536 };
  const layerDir = (q: QubeVolumes, vol: string) => path.join(home, 'pool', q.uuid, vol, 'layers');

  before(async () => {
    home = mkdtempSync(path.join(os.tmpdir(), 'isola-imgvol-'));
    pool = new OverlayPool('default', path.join(home, 'pool'), path.join(home, 'run'), (l) => warnings.push(l));
    await pool.create(T, {});
    await pool.importRoot(T, async (dir) => {
      mkdirSync(path.join(dir, 'etc'));
      writeFileSync(path.join(dir, 'etc', 'os-release'), 'v1\n');
      writeFileSync(path.join(dir, 'etc', 'doomed'), 'delete me\n');
    });
    await pool.create(A, {});
  });
  after(async () => {
    for (const m of mountsUnder(path.join(home, 'guest'))) sh('umount', ['-l', m]);
    for (const q of [A, T]) await pool.remove(q.uuid).catch(() => undefined);
    rmSync(home, { recursive: true, force: true });
  });

  test("the guest gets its volumes' own images read-only and one fresh scratch disk per volume", async () => {
    const v = await pool.start(A, aIds, 'image');
    const root = v.root.image!;
    const priv = v.private.image!;
    assert.equal(root.disks[0].file, path.join(home, 'pool', T.uuid, 'root.img'), "an AppVM's root is its template's image, not a copy");
    assert.deepEqual(root.disks.map((d) => d.readonly), [true, false]);
    assert.deepEqual(priv.disks.map((d) => d.readonly), [true, false]);
    assert.deepEqual(root.lower.map((l) => l.dir), ['layers/S000001']);
    assert.ok(statSync(priv.disks[1].file).blocks * 512 < 8 << 20, 'the scratch disk is sparse');
    await pool.stop(A, aIds, true);
    assert.ok(!existsSync(priv.disks[1].file) && !existsSync(root.disks[1].file), 'stop deletes the scratch disks');
    assert.deepEqual(mountsUnder(path.join(home, 'run')), []);
  });

  test("a guest's private changes are committed as a layer, without the device nodes and overlay redirects it planted", async () => {
    const before = readdirSync(layerDir(A, 'private')).sort();
    const v = await pool.start(A, aIds, 'image');
    const g = guestMount(v.private.image!, path.join(home, 'guest', 'a1'));
    writeFileSync(path.join(g.dir, 'home', 'user', 'notes'), 'kept\n');
    sh('chown', ['1000:1000', path.join(g.dir, 'home', 'user', 'notes')]);
    sh('mknod', [path.join(g.dir, 'home', 'user', 'mem'), 'c', '1', '1']); // /dev/mem, were it honoured
    mkdirSync(path.join(g.dir, 'redir'));
    sh('setfattr', ['-n', 'trusted.overlay.redirect', '-v', '/etc', path.join(g.dir, 'redir')]);
    g.undo();
    await pool.stop(A, aIds, true);
    const after = readdirSync(layerDir(A, 'private')).sort();
    assert.equal(after.length, before.length + 1, 'one new revision');
    const layer = path.join(layerDir(A, 'private'), after.filter((l) => !before.includes(l))[0]);
    assert.equal(readFileSync(path.join(layer, 'home', 'user', 'notes'), 'utf8'), 'kept\n');
    assert.equal(lstatSync(path.join(layer, 'home', 'user', 'notes')).uid, 1000, "the guest's ids are the real ids");
    assert.ok(!existsSync(path.join(layer, 'home', 'user', 'mem')), 'the device node is left out');
    assert.equal(sh('getfattr', ['-m', '-', '--absolute-names', path.join(layer, 'redir')]).includes('redirect'), false, 'the redirect xattr is dropped');
    assert.ok(warnings.some((w) => w.includes('device node')), warnings.join('\n'));
    // And the sandbox form of the same qube sees the data.
    const s = await pool.start(A, aIds);
    assert.equal(readFileSync(path.join(s.private.tree!, 'home', 'user', 'notes'), 'utf8'), 'kept\n');
    await pool.stop(A, aIds, true);
  });

  test("a template's commit (deletions too) reaches AppVMs started after it, in either form", async () => {
    const v = await pool.start(T, tIds, 'image');
    const g = guestMount(v.root.image!, path.join(home, 'guest', 't1'));
    writeFileSync(path.join(g.dir, 'etc', 'os-release'), 'v2\n');
    rmSync(path.join(g.dir, 'etc', 'doomed'));
    g.undo();
    await pool.stop(T, tIds, true);
    assert.deepEqual(readdirSync(layerDir(T, 'root')).sort(), ['L000002', 'S000001']);
    const a = await pool.start(A, aIds, 'image');
    assert.deepEqual(a.root.image!.lower.map((l) => l.dir), ['layers/L000002', 'layers/S000001']);
    const ga = guestMount(a.root.image!, path.join(home, 'guest', 'a2'));
    assert.equal(readFileSync(path.join(ga.dir, 'etc', 'os-release'), 'utf8'), 'v2\n');
    assert.ok(!existsSync(path.join(ga.dir, 'etc', 'doomed')), 'the whiteout came through');
    writeFileSync(path.join(ga.dir, 'etc', 'app-change'), 'x');
    ga.undo();
    await pool.stop(A, aIds, true);
    assert.deepEqual(readdirSync(layerDir(T, 'root')).sort(), ['L000002', 'S000001'], "an AppVM's root changes are discarded");
    const s = await pool.start(A, aIds);
    assert.ok(!existsSync(path.join(s.root.tree!, 'etc', 'doomed')) && !existsSync(path.join(s.root.tree!, 'etc', 'app-change')));
    await pool.stop(A, aIds, true);
  });

  test('changes left on a scratch disk by a crash join the volume at the next start, whatever the form', async () => {
    const v = await pool.start(A, aIds, 'image');
    const g = guestMount(v.private.image!, path.join(home, 'guest', 'a3'));
    writeFileSync(path.join(g.dir, 'crash-survivor'), 'yes\n');
    g.undo();
    await pool.cleanupMounts(A.uuid); // isolad died here: no stop
    const s = await pool.start(A, aIds);
    assert.equal(readFileSync(path.join(s.private.tree!, 'crash-survivor'), 'utf8'), 'yes\n');
    await pool.stop(A, aIds, true);
  });
});
