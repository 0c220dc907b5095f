// qubes-vm-update's decisions, pure: which qubes to update (Qubes 4.3 vmupdate's targeting and
// selection), what one update's output says (updated / no updates / failed, and the line that says
// why), and which running qubes must restart to see their template's new root.

export interface UpdateCandidate {
  name: string;
  klass: string;
  state: string;
  /** Features `updates-available`, `last-updates-check` (Qubes' 'YYYY-MM-DD HH:MM:SS', UTC), `skip-update`. */
  features: Map<string, string>;
}

export interface Targeting {
  targets: string[];
  skip: string[];
  templates: boolean;
  standalones: boolean;
  apps: boolean;
  all: boolean;
}

export type Selection = { kind: 'stale'; days: number } | { kind: 'available' } | { kind: 'force' };

export const UPDATABLE = new Set(['TemplateVM', 'StandaloneVM']);

/**
 * Qubes' rule: --targets names qubes whatever their state of updates; -T, -S, -A (running AppVMs,
 * updated in place) and --all (the default when nothing is named: templates and standalones) are
 * filtered by the selection. --skip removes names from both. Unknown names are the caller's error.
 */
export function selectTargets(all: readonly UpdateCandidate[], t: Targeting, sel: Selection, now: Date): { chosen: UpdateCandidate[]; unknown: string[] } {
  const byName = new Map(all.map((q) => [q.name, q]));
  const unknown = [...t.targets, ...t.skip].filter((n) => !byName.has(n));
  const skip = new Set(t.skip);
  const chosen = new Map<string, UpdateCandidate>();
  for (const n of t.targets) if (byName.has(n) && !skip.has(n)) chosen.set(n, byName.get(n)!);
  const everything = t.all || (t.targets.length === 0 && !t.templates && !t.standalones && !t.apps);
  for (const q of all) {
    if (skip.has(q.name) || chosen.has(q.name) || q.features.get('skip-update')) continue;
    const wanted =
      ((everything || t.templates) && q.klass === 'TemplateVM') ||
      ((everything || t.standalones) && q.klass === 'StandaloneVM') ||
      (t.apps && q.klass === 'AppVM' && q.state === 'Running');
    if (wanted && isSelected(q, sel, now)) chosen.set(q.name, q);
  }
  return { chosen: [...chosen.values()], unknown };
}

/** Qubes' --update-if-stale N (default): updates known, or no successful check within N days. */
export function isSelected(q: UpdateCandidate, sel: Selection, now: Date): boolean {
  if (sel.kind === 'force') return true;
  const available = Boolean(q.features.get('updates-available'));
  if (sel.kind === 'available') return available;
  if (available) return true;
  const last = parseQubesTime(q.features.get('last-updates-check') ?? '');
  return last === undefined || now.getTime() - last.getTime() >= sel.days * 86_400_000;
}

export function parseQubesTime(s: string): Date | undefined {
  const m = /^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})$/.exec(s);
  if (!m) return undefined;
  const d = new Date(Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6]));
  return Number.isNaN(d.getTime()) ? undefined : d;
}

export function qubesTime(d: Date): string {
  return d.toISOString().slice(0, 19).replace('T', ' ');
}

/** What runs in the qube, as root: Qubes' apt updater, non-interactive, keeping changed config files. */
export const UPDATE_SCRIPT = [
  'export DEBIAN_FRONTEND=noninteractive',
  // --error-on=any: a mirror that could not be reached fails the update (apt's default is a warning).
  'apt-get -q update --error-on=any || exit $?',
  'apt-get -q -y -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold dist-upgrade',
].join('\n');

export type Outcome = { status: 'updated'; detail: string } | { status: 'no updates' } | { status: 'failed'; detail: string };

/** Keeps only printable ASCII of a qube's line (it goes to a terminal), at most 200 characters. */
export function printable(untrusted: string): string {
  const s = untrusted.replace(/[^\x20-\x7e]+/g, ' ').trim();
  return s.length > 200 ? `${s.slice(0, 197)}...` : s;
}

/**
 * Reads apt's output (qube-controlled bytes, decoded by the caller) and exit code. apt's summary line
 * `N upgraded, M newly installed, K to remove` says whether anything changed; a failure's reason is
 * apt's first `E:` line (the cause; later ones sum up), else its last `W:` line, else the last line.
 */
export function readOutcome(untrustedOutput: string, code: number): Outcome {
  const lines = untrustedOutput.split(/\r?\n/).map(printable).filter(Boolean);
  if (code !== 0) {
    const why = lines.find((l) => l.startsWith('E:')) ?? [...lines].reverse().find((l) => l.startsWith('W:')) ?? lines.at(-1);
    return { status: 'failed', detail: `exit code ${code}${why ? `: ${why}` : ''}` };
  }
  const summary = [...lines].reverse().find((l) => /^\d+ upgraded, \d+ newly installed, \d+ to remove/.test(l));
  if (!summary) return { status: 'failed', detail: 'apt printed no summary of the upgrade' };
  const [up, inst, rm] = (summary.match(/\d+/g) ?? []).map(Number);
  return up + inst + rm === 0 ? { status: 'no updates' } : { status: 'updated', detail: summary };
}

export interface DerivedQube {
  name: string;
  klass: string;
  state: string;
  /** Its template (an AppVM's; a DispVM's template is an AppVM, whose own template counts too). */
  templates: string[];
  servicevm: boolean;
}

/** Running qubes based on a template that was updated: they see the change only after a restart. */
export function toRestart(derived: readonly DerivedQube[], updated: ReadonlySet<string>): DerivedQube[] {
  return derived.filter((q) => q.state === 'Running' && !updated.has(q.name) && q.templates.some((t) => updated.has(t)));
}
