// Qubes' volume layout per class (root, private, volatile) with Qubes' flags, and the storage
// pool contract that drivers implement. Pure: no I/O.

import type { VolumeForm, VolumeHandle } from './backend';
import type { QubeClass } from './qube';

export type VolumeName = 'root' | 'private' | 'volatile';

export interface VolumeKind {
  name: VolumeName;
  /** Fresh copy-on-write view of the source's last committed state at every start. */
  snapOnStart: boolean;
  /** Changes are committed as a new revision at stop (else discarded). */
  saveOnStop: boolean;
  rw: boolean;
  defaultSize: number;
}

const GiB = 1024 ** 3;

export function volumeLayout(klass: QubeClass): VolumeKind[] {
  if (klass === 'AdminVM') return [];
  const templateBased = klass === 'AppVM' || klass === 'DispVM';
  return [
    { name: 'root', snapOnStart: templateBased, saveOnStop: !templateBased, rw: true, defaultSize: 10 * GiB },
    { name: 'private', snapOnStart: klass === 'DispVM', saveOnStop: klass !== 'DispVM', rw: true, defaultSize: 2 * GiB },
    { name: 'volatile', snapOnStart: false, saveOnStop: false, rw: true, defaultSize: 10 * GiB },
  ];
}

export interface IdRange {
  base: number;
  count: number;
}

/** What a pool needs to know of a qube. */
export interface QubeVolumes {
  uuid: string;
  klass: QubeClass;
  /** For snapshot volumes: the uuid of the qube whose committed root this one starts from. */
  sourceUuid?: string;
  /** Volume sizes in bytes (the bounds of their filesystems); a missing one takes the default. */
  sizes?: Partial<Record<VolumeName, number>>;
}

export interface StartedVolumes {
  /** The qube's root filesystem (copy-on-write over its template's for an AppVM). */
  root: VolumeHandle;
  /** Its private volume (/rw in the qube, /home from /rw/home). */
  private: VolumeHandle;
  /** The revision of the source root this start sees (for `is_outdated`). */
  rootRevision: string;
  /** What went wrong without stopping the start (an earlier run's changes not yet committed). */
  warnings?: string[];
}

export interface Revision {
  name: string;
  /** ISO time it was committed. */
  committed: string;
}

export interface VolumeUsage {
  usage: number;
  revisions: Revision[];
  /** Newest committed revision (the one the next start uses). */
  current: string;
  path: string;
}

export interface StoragePool {
  readonly name: string;
  readonly driver: string;
  /** Creates the volumes of a new qube. copyRootFrom: standalone copies of a template's root. */
  create(q: QubeVolumes, opts: { copyRootFrom?: QubeVolumes }): Promise<void>;
  /** Fills a new template's root from a directory-producing step (e.g. tar extraction). */
  importRoot(q: QubeVolumes, fill: (dir: string) => Promise<void>): Promise<void>;
  /** Volumes ready for a start, in the form the backend takes; a form the pool cannot give is refused. */
  start(q: QubeVolumes, ids: IdRange, form?: VolumeForm): Promise<StartedVolumes>;
  /** Unmounts; with commit, save_on_stop volumes become a new revision, others are discarded. */
  stop(q: QubeVolumes, ids: IdRange, commit: boolean): Promise<void>;
  remove(uuid: string): Promise<void>;
  clone(src: QubeVolumes, dst: QubeVolumes): Promise<void>;
  /** Grows the bound of a volume to size bytes (never shrinks); false: in use, it grows at the next start. */
  resize(q: QubeVolumes, volume: VolumeName, size: number): Promise<boolean>;
  usage(q: QubeVolumes, volume: VolumeName): Promise<VolumeUsage>;
  /** Reverts to a kept revision (default: the previous one). Qube must be halted. */
  revert(q: QubeVolumes, volume: VolumeName, revision: string | undefined, keep: number): Promise<void>;
  /** Empties a volume (Qubes' admin.vm.volume.Clear); the qube must be halted. */
  clear(q: QubeVolumes, volume: VolumeName): Promise<void>;
  /** Uuids that have volumes in this pool (for garbage collection after a crash). */
  list(): Promise<string[]>;
  /** Unmounts anything left mounted for a qube (after a crash). */
  cleanupMounts(uuid: string): Promise<void>;
  /** Deletes leftovers of operations interrupted by a crash (half-deleted directories). */
  collectTrash(): Promise<void>;
}
