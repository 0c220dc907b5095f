// Qubes' "outdated" state (is_outdated of a snapshot volume): a qube whose root is a snapshot of its
// template's (an AppVM, a DispVM) runs on the revision it started from; once the template commits a
// newer one (its shutdown after an update), the running qube is outdated until it restarts.

export interface OutdatedInput {
  /** The volume is a snapshot of the template's (snap_on_start). */
  snapOnStart: boolean;
  /** The revision the running qube started from ('' or undefined: not running, or not known). */
  startedFrom: string | undefined;
  /** The template's last committed revision of the volume now. */
  templateCurrent: string;
}

export function isOutdated(v: OutdatedInput): boolean {
  return v.snapOnStart && !!v.startedFrom && v.startedFrom !== v.templateCurrent;
}
