// The default storage pool: volumes as directories of overlay layers. Committed layers keep real
// ownership and are mapped into each qube through idmapped mounts; a run's changes live in an
// upper directory that is committed (unshifted, renamed in) or discarded at stop.

import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import type { VolumeForm } from '../core/backend';
import type { IdRange, QubeVolumes, Revision, StartedVolumes, StoragePool, VolumeName, VolumeUsage } from '../core/volumes';
import { volumeLayout } from '../core/volumes';
import { unshiftTree } from './id-shift';
import { collectGarbage, discard, dropAbove, lowerList, pushLayer, readStack, type Layer } from './layer-stack';
import { mountIdmapped, mountOverlay, unmount, unmountAllUnder } from './mounts';
import { applyBound, boundOf, emptyDir, makeVolumes, sizeOfDir, volumeDirs, withSquashRoom } from './volume-bounds';
import { explainFull, growVolumeFs, hasImage, imageOf, syncVolume, unmountVolumes, volumeFsUsage } from './volume-fs';
import { changesFile, importChanges, layeredImage, makeChangesDisk, roomIn, settleForReaders } from './image-volumes';
import { copyTree, removeTree } from './tree-tool';

const run = promisify(execFile);
/** Above this many layers a volume is squashed into one full layer at commit time. */
const MAX_LAYERS = 24;
/** The default user's home is created in every new private volume (uid/gid of Debian's first user). */
const USER_ID = 1000;
/** In a volume's `dirty` dir: its upper holds an earlier run's changes whose commit failed. */
const KEEP_MARK = 'uncommitted';

export class OverlayPool implements StoragePool {
  readonly driver = 'overlay-dir';

  constructor(
    readonly name: string,
    private readonly dir: string,
    private readonly runRoot: string,
    /** Where warnings of a walk go (a capability that could not be restored, say): isolad's log. */
    private readonly warn: (line: string) => void = () => undefined,
  ) {}

  private volDir(uuid: string, vol: VolumeName): string {
    return path.join(this.dir, uuid, vol);
  }
  private layers(uuid: string, vol: VolumeName): string {
    return path.join(this.volDir(uuid, vol), 'layers');
  }
  private runDir(uuid: string): string {
    return path.join(this.runRoot, uuid);
  }

  async create(q: QubeVolumes, opts: { copyRootFrom?: QubeVolumes }): Promise<void> {
    const kinds = volumeLayout(q.klass);
    try {
      await makeVolumes(q, kinds, (v) => this.volDir(q.uuid, v));
      await this.newPrivate(q.uuid);
      if (opts.copyRootFrom) await this.copyMerged(opts.copyRootFrom.uuid, 'root', q.uuid, 'root');
    } catch (e) {
      await unmountVolumes(path.join(this.dir, q.uuid)).catch(() => undefined);
      await removeTree(path.join(this.dir, q.uuid));
      throw e;
    }
  }

  private async newPrivate(uuid: string): Promise<void> {
    await this.pushEmpty(uuid, 'private');
  }

  /** A new full layer holding nothing (a private one: the empty home of `user`, as at creation). */
  private async pushEmpty(uuid: string, vol: VolumeName): Promise<void> {
    const tmp = path.join(this.volDir(uuid, vol), 'new');
    await removeTree(tmp);
    await fs.mkdir(tmp, { recursive: true, mode: 0o755 });
    if (vol === 'private') {
      await fs.mkdir(path.join(tmp, 'home', 'user'), { recursive: true, mode: 0o755 });
      await fs.chown(path.join(tmp, 'home', 'user'), USER_ID, USER_ID);
    }
    await fs.chmod(tmp, 0o755);
    await pushLayer(this.layers(uuid, vol), tmp, true);
  }

  /**
   * Empties a volume of a halted qube (admin.vm.volume.Clear): a new empty full layer hides the
   * stack, whose layers are then freed. A snapshot volume has nothing of its own to empty.
   */
  async clear(q: QubeVolumes, volume: VolumeName): Promise<void> {
    const kind = volumeLayout(q.klass).find((k) => k.name === volume);
    if (!kind) throw new Error(`no volume '${volume}'`);
    if (kind.snapOnStart) throw new Error(`volume ${volume} is a snapshot of its source's; it is reset at every start`);
    if (volume === 'volatile') return emptyDir(this.volDir(q.uuid, 'volatile'));
    // An interrupted run's changes would be committed over the empty layer at the next start.
    await discard(path.join(this.volDir(q.uuid, volume), 'dirty'));
    await this.pushEmpty(q.uuid, volume);
    await collectGarbage(this.layers(q.uuid, volume));
  }

  async importRoot(q: QubeVolumes, fill: (dir: string) => Promise<void>): Promise<void> {
    const tmp = path.join(this.volDir(q.uuid, 'root'), 'import');
    await removeTree(tmp);
    await fs.mkdir(tmp, { recursive: true });
    try {
      await fill(tmp);
      // Written through to the pool: a full pool shows here, not later as a corrupt template.
      await syncVolume(this.volDir(q.uuid, 'root'), this.dir);
      await pushLayer(this.layers(q.uuid, 'root'), tmp, true);
    } catch (e) {
      await removeTree(tmp).catch(() => undefined);
      throw await explainFull(e as Error, this.dir);
    }
  }

  /** Copies the merged view of a volume's stack into a new full layer of another volume. */
  private async copyMerged(srcUuid: string, srcVol: VolumeName, dstUuid: string, dstVol: VolumeName): Promise<void> {
    const srcLayers = this.layers(srcUuid, srcVol);
    const stack = await readStack(srcLayers);
    if (stack.length === 0) throw new Error(`volume ${srcUuid}:${srcVol} has no committed revision`);
    const dstDir = this.volDir(dstUuid, dstVol);
    // Under the run dir, so that the restart cleanup unmounts it if isolad dies mid-copy.
    const mnt = path.join(this.runDir(dstUuid), 'merge-src');
    const tmp = path.join(dstDir, 'merge-new');
    await removeTree(tmp);
    await fs.mkdir(tmp, { recursive: true });
    if (stack.length === 1) {
      // One full layer is already the merged view (and overlay needs two lowers without an upper).
      await copyTree(path.join(srcLayers, stack[0].name), tmp);
    } else {
      await fs.mkdir(mnt, { recursive: true, mode: 0o700 });
      try {
        await mountOverlay(mnt, srcLayers, lowerList(stack));
        await copyTree(mnt, tmp);
      } finally {
        await unmount(mnt).catch(() => undefined);
        await fs.rmdir(mnt).catch(() => undefined);
      }
    }
    await pushLayer(this.layers(dstUuid, dstVol), tmp, true);
    await collectGarbage(this.layers(dstUuid, dstVol));
  }

  async start(q: QubeVolumes, ids: IdRange, form: VolumeForm = 'tree'): Promise<StartedVolumes> {
    if (form === 'image') return this.startImage(q, ids);
    const rd = this.runDir(q.uuid);
    await this.cleanupMounts(q.uuid);
    await fs.mkdir(rd, { recursive: true, mode: 0o700 });
    await fs.chown(rd, ids.base, ids.base);
    await fs.chmod(rd, 0o700);
    const volatile = this.volDir(q.uuid, 'volatile');
    // Emptied, not replaced: it may be the mount point of the volume's own filesystem.
    for (const v of volumeDirs(q)) await applyBound(this.volDir(q.uuid, v), boundOf(q, v));
    await emptyDir(volatile);
    try {
      const kinds = volumeLayout(q.klass);
      const rootKind = kinds.find((k) => k.name === 'root')!;
      if (rootKind.snapOnStart && !q.sourceUuid) throw new Error(`qube ${q.uuid}: snapshot root without a source`);
      // Independent mounts: done side by side, they cost one mount's latency instead of two.
      const warnings: string[] = [];
      const [rootRevision] = await Promise.all([
        rootKind.snapOnStart
          ? this.mountSnapshot(q.sourceUuid!, 'root', path.join(volatile, 'root'), rd, 'root', ids)
          : this.mountOrigin(q.uuid, 'root', rd, 'root', ids, warnings),
        this.mountOrigin(q.uuid, 'private', rd, 'private', ids, warnings),
      ]);
      return {
        root: { name: 'root', readonly: false, tree: path.join(rd, 'root') },
        private: { name: 'private', readonly: false, tree: path.join(rd, 'private') },
        rootRevision,
        ...(warnings.length ? { warnings } : {}),
      };
    } catch (e) {
      await this.cleanupMounts(q.uuid);
      throw e;
    }
  }

  /**
   * Form `image` (a VM): each volume is its image read-only, layers listed for the guest to stack, and a
   * scratch disk for the run's changes, sized so that importing them at stop fits in the volume.
   */
  private async startImage(q: QubeVolumes, ids: IdRange): Promise<StartedVolumes> {
    const rd = this.runDir(q.uuid);
    await this.cleanupMounts(q.uuid);
    await fs.mkdir(rd, { recursive: true, mode: 0o700 });
    for (const v of volumeDirs(q)) await applyBound(this.volDir(q.uuid, v), boundOf(q, v));
    await emptyDir(this.volDir(q.uuid, 'volatile'));
    try {
      const rootKind = volumeLayout(q.klass).find((k) => k.name === 'root')!;
      if (rootKind.snapOnStart && !q.sourceUuid) throw new Error(`qube ${q.uuid}: snapshot root without a source`);
      const root = rootKind.snapOnStart
        ? await this.imageOfStack(q.sourceUuid!, 'root', changesFile(this.volDir(q.uuid, 'volatile')), boundOf(q, 'volatile'), rd)
        : await this.imageOfOrigin(q.uuid, 'root', ids, rd);
      const priv = await this.imageOfOrigin(q.uuid, 'private', ids, rd);
      return {
        root: { name: 'root', readonly: false, image: root.image },
        private: { name: 'private', readonly: false, image: priv.image },
        rootRevision: root.revision,
      };
    } catch (e) {
      await this.stopImage(q, false).catch(() => undefined);
      throw e;
    }
  }

  private async imageOfOrigin(uuid: string, vol: VolumeName, ids: IdRange, rd: string) {
    const dirty = path.join(this.volDir(uuid, vol), 'dirty');
    await this.importLeftover(uuid, vol);
    if (await exists(path.join(dirty, 'upper'))) {
      // The guest cannot see an uncommitted upper: it is committed now, or the start fails with the data kept.
      await this.commit(uuid, vol, ids).catch((e: Error) => {
        throw new Error(`volume ${vol}: the last run's changes are not committed yet (${e.message}); start it as a sandbox or free space`);
      });
    }
    await collectGarbage(this.layers(uuid, vol));
    const volDir = this.volDir(uuid, vol);
    return this.imageOfStack(uuid, vol, changesFile(volDir), await roomIn(volDir), rd);
  }

  private async imageOfStack(srcUuid: string, vol: VolumeName, changes: string, room: number, rd: string) {
    const volDir = this.volDir(srcUuid, vol);
    if (!(await hasImage(volDir))) throw new Error(`volume ${srcUuid}:${vol} has no image of its own (made by an older isolad): a VM cannot use it`);
    const layersDir = this.layers(srcUuid, vol);
    const stack = await readStack(layersDir);
    if (stack.length === 0) throw new Error(`volume ${srcUuid}:${vol} has no committed revision`);
    const top = await fs.stat(path.join(layersDir, stack[stack.length - 1].name));
    await makeChangesDisk(changes, room, { uid: top.uid, gid: top.gid, mode: top.mode }, rd);
    await settleForReaders(volDir);
    return { image: layeredImage(imageOf(volDir), lowerList(stack), changes), revision: stack[stack.length - 1].name };
  }

  /** A VM's changes that a crash left on their scratch disk join the volume before anything else runs on it. */
  private async importLeftover(uuid: string, vol: VolumeName): Promise<void> {
    const volDir = this.volDir(uuid, vol);
    if (!(await exists(changesFile(volDir)))) return;
    if (await exists(path.join(volDir, 'dirty', 'upper'))) throw new Error(`volume ${vol}: changes of two runs are pending (${changesFile(volDir)} and dirty/upper); nothing was touched`);
    await importChanges(changesFile(volDir), volDir, path.join(this.runDir(uuid), `import-${vol}`), this.warn);
  }

  /** After a VM: the changes of volumes that keep them become their dirty upper; every scratch disk goes. */
  private async stopImage(q: QubeVolumes, commit: boolean): Promise<void> {
    await fs.rm(changesFile(this.volDir(q.uuid, 'volatile')), { force: true });
    for (const k of volumeLayout(q.klass)) {
      if (k.name === 'volatile' || k.snapOnStart) continue;
      const volDir = this.volDir(q.uuid, k.name);
      if (commit && k.saveOnStop) await importChanges(changesFile(volDir), volDir, path.join(this.runDir(q.uuid), `import-${k.name}`), this.warn);
      else await fs.rm(changesFile(volDir), { force: true });
    }
  }

  /** Writable view of another volume's committed state; changes go to scratch (discarded). */
  private async mountSnapshot(srcUuid: string, vol: VolumeName, scratch: string, rd: string, as: string, ids: IdRange): Promise<string> {
    const stack = await readStack(this.layers(srcUuid, vol));
    if (stack.length === 0) throw new Error(`volume ${srcUuid}:${vol} has no committed revision`);
    await this.mountStack(this.layers(srcUuid, vol), stack, scratch, rd, as, ids);
    return stack[stack.length - 1].name;
  }

  private async mountOrigin(uuid: string, vol: VolumeName, rd: string, as: string, ids: IdRange, warnings: string[]): Promise<string> {
    await this.importLeftover(uuid, vol);
    const layersDir = this.layers(uuid, vol);
    const dirty = path.join(this.volDir(uuid, vol), 'dirty');
    // A run whose commit was interrupted or failed still holds the qube's data: commit it first.
    // Should that fail again, the uncommitted changes stay this run's upper (still in the qube's
    // ids): the data is kept and the qube starts, instead of failing on the same tree forever.
    if (await exists(path.join(dirty, 'upper'))) {
      await this.commit(uuid, vol, ids).catch(async (e: Error) => {
        warnings.push(`volume ${vol}: the last run's changes are not committed yet (${e.message}); they stay in use`);
        // Marks them as data to keep: a stop without commit (a failed start) must not discard them.
        await fs.writeFile(path.join(dirty, KEEP_MARK), '');
      });
    }
    await collectGarbage(layersDir);
    const stack = await readStack(layersDir);
    if (stack.length === 0) throw new Error(`volume ${uuid}:${vol} has no committed revision`);
    await this.mountStack(layersDir, stack, dirty, rd, as, ids);
    return stack[stack.length - 1].name;
  }

  private async mountStack(layersDir: string, stack: Layer[], scratch: string, rd: string, as: string, ids: IdRange): Promise<void> {
    const lower = path.join(rd, `lower-${as}`);
    const target = path.join(rd, as);
    const upper = path.join(scratch, 'upper');
    const work = path.join(scratch, 'work');
    await fs.mkdir(lower, { recursive: true });
    await fs.mkdir(target, { recursive: true });
    await fs.mkdir(upper, { recursive: true, mode: 0o755 });
    await fs.mkdir(work, { recursive: true, mode: 0o700 });
    // The merged root directory takes the upper's owner and mode: the qube's root, like the layers'.
    const top = await fs.stat(path.join(layersDir, stack[stack.length - 1].name));
    await fs.chown(upper, ids.base + top.uid, ids.base + top.gid);
    await fs.chmod(upper, top.mode & 0o7777);
    await mountIdmapped(layersDir, lower, ids.base, ids.count);
    await mountOverlay(target, lower, lowerList(stack), upper, work);
  }

  /**
   * A failed commit of one volume does not stop the others nor the cleanup; its changes stay in
   * `dirty` (the qube's data is never dropped) and are committed at the next start. Throws then.
   */
  async stop(q: QubeVolumes, ids: IdRange, commit: boolean): Promise<void> {
    await this.cleanupMounts(q.uuid);
    const failed: string[] = [];
    await this.stopImage(q, commit).catch((e: Error) => failed.push(`changes of the VM: ${e.message}`));
    for (const k of volumeLayout(q.klass)) {
      if (k.name === 'volatile' || k.snapOnStart) continue;
      try {
        const dirty = path.join(this.volDir(q.uuid, k.name), 'dirty');
        if (commit && k.saveOnStop) await this.commit(q.uuid, k.name, ids);
        else if (!(await exists(path.join(dirty, KEEP_MARK)))) await discard(dirty);
      } catch (e) {
        failed.push(`volume ${k.name}: ${(e as Error).message}`);
      }
    }
    await emptyDir(this.volDir(q.uuid, 'volatile'));
    await removeTree(this.runDir(q.uuid));
    if (failed.length) throw new Error(`${commit ? 'commit' : 'discard'} failed (the changes are kept): ${failed.join('; ')}`);
  }

  private async commit(uuid: string, vol: VolumeName, ids: IdRange): Promise<void> {
    const dirty = path.join(this.volDir(uuid, vol), 'dirty');
    const upper = path.join(dirty, 'upper');
    if (!(await exists(upper))) return;
    // A run that changed nothing adds no revision. (Buffers: the names are the qube's bytes.)
    if ((await fs.readdir(upper, { encoding: 'buffer' })).length === 0) return discard(dirty);
    const warnings = await unshiftTree(upper, ids.base, ids.count);
    if (warnings) this.warn(`commit of ${uuid}:${vol}: ${warnings}`);
    const layersDir = this.layers(uuid, vol);
    await pushLayer(layersDir, upper, false);
    await discard(dirty);
  }

  /** Squashes a long stack into one full layer; only when no running qube uses its layers. */
  async squashIfDeep(uuid: string, vol: VolumeName): Promise<boolean> {
    const stack = await readStack(this.layers(uuid, vol));
    if (stack.length <= MAX_LAYERS) return false;
    await withSquashRoom(this.volDir(uuid, vol), () => this.copyMerged(uuid, vol, uuid, vol));
    return true;
  }

  async remove(uuid: string): Promise<void> {
    await this.cleanupMounts(uuid);
    await unmountVolumes(path.join(this.dir, uuid));
    await discard(path.join(this.dir, uuid));
    await removeTree(this.runDir(uuid));
  }

  async clone(src: QubeVolumes, dst: QubeVolumes): Promise<void> {
    try {
      await makeVolumes(dst, volumeLayout(dst.klass), (v) => this.volDir(dst.uuid, v));
      for (const k of volumeLayout(dst.klass)) {
        const srcKind = volumeLayout(src.klass).find((s) => s.name === k.name);
        if (k.name === 'volatile' || k.snapOnStart) continue;
        if (srcKind?.snapOnStart) await this.copyMerged(src.sourceUuid!, k.name, dst.uuid, k.name);
        else await this.copyMerged(src.uuid, k.name, dst.uuid, k.name);
      }
    } catch (e) {
      await unmountVolumes(path.join(this.dir, dst.uuid)).catch(() => undefined);
      await removeTree(path.join(this.dir, dst.uuid));
      throw e;
    }
  }

  async usage(q: QubeVolumes, volume: VolumeName): Promise<VolumeUsage> {
    const kind = volumeLayout(q.klass).find((k) => k.name === volume);
    if (!kind) throw new Error(`no volume '${volume}'`);
    const owner = kind.snapOnStart ? q.sourceUuid! : q.uuid;
    const layersDir = this.layers(owner, volume);
    const stack = volume === 'volatile' ? [] : await readStack(layersDir);
    // A snapshot root's changes live in volatile; a volume with its own filesystem answers statfs.
    const dir = this.volDir(q.uuid, kind.snapOnStart && volume === 'root' ? 'volatile' : volume);
    const fsUsage = await volumeFsUsage(dir);
    const du = fsUsage ? fsUsage.bytes : await run('du', ['-sb', dir]).then((r) => Number(r.stdout.split('\t')[0]) || 0, () => 0);
    const revisions: Revision[] = kind.saveOnStop
      ? stack.slice(0, -1).reverse().map((l) => ({ name: l.name, committed: new Date(l.mtimeMs).toISOString() }))
      : [];
    return { usage: du, revisions, current: stack.length ? stack[stack.length - 1].name : '', path: layersDir };
  }

  /**
   * Grows the filesystem holding a volume's data (a snapshot root's: volatile); never shrinks.
   * A volume in use grows at its qube's next start (false).
   */
  async resize(q: QubeVolumes, volume: VolumeName, size: number): Promise<boolean> {
    const kind = volumeLayout(q.klass).find((k) => k.name === volume);
    if (!kind) throw new Error(`no volume '${volume}'`);
    const dir = this.volDir(q.uuid, kind.snapOnStart && volume === 'root' ? 'volatile' : volume);
    return (await hasImage(dir)) ? growVolumeFs(dir, size) : true;
  }

  /** The size a volume's filesystem has now (undefined: a legacy volume without one). */
  async boundOf(q: QubeVolumes, volume: VolumeName): Promise<number | undefined> {
    return sizeOfDir(this.volDir(q.uuid, volume));
  }

  async revert(q: QubeVolumes, volume: VolumeName, revision: string | undefined, keep: number): Promise<void> {
    const { revisions } = await this.usage(q, volume);
    const kept = revisions.slice(0, keep);
    if (kept.length === 0) throw new Error(`volume ${volume} has no revision to revert to`);
    const target = revision ?? kept[0].name;
    if (!kept.some((r) => r.name === target)) throw new Error(`no revision '${target}' of volume ${volume} (kept: ${kept.map((r) => r.name).join(', ')})`);
    await dropAbove(this.layers(q.uuid, volume), target);
  }

  async list(): Promise<string[]> {
    return (await fs.readdir(this.dir).catch(() => [] as string[])).filter((n) => /^[0-9a-f-]{36}$/.test(n));
  }

  async collectTrash(): Promise<void> {
    for (const name of await fs.readdir(this.dir).catch(() => [] as string[])) {
      if (name.includes('.trash-')) await removeTree(path.join(this.dir, name));
    }
  }

  async cleanupMounts(uuid: string): Promise<void> {
    await unmountAllUnder(this.runDir(uuid));
  }
}

async function exists(p: string): Promise<boolean> {
  return fs.access(p).then(() => true, () => false);
}
