// What qvm-template list/info show, gathered as Qubes' client does: installed templates from the
// `template-*` features of the TemplateVMs that qvm-template installed, available ones from the
// repository query (admin.template.List, in the format of Qubes' qubes.TemplateSearch).

import { isQubesError } from '../core/errors';
import type { TemplateMeta } from '../core/template-meta';
import type { AdminClientLike } from './commands/common';
import { fnmatch, lines, listQubes } from './commands/common';

/** Qubes' Template tuple: the repository's metadata, and for installed ones the install time. */
export interface Template extends TemplateMeta {
  /** `YYYY-MM-DD HH:MM:SS` ('' if unknown). */
  installtime: string;
}

export type TemplateState = 'installed' | 'available' | 'extra' | 'upgradable';

export const STATE_TITLE: Record<TemplateState, string> = {
  installed: 'Installed Templates',
  available: 'Available Templates',
  extra: 'Extra Templates',
  upgradable: 'Available Upgrades',
};

export const evrString = (t: Pick<Template, 'epoch' | 'version' | 'release'>): string => `${t.epoch}:${t.version}-${t.release}`;

/** Qubes' NEVRA matching of a TEMPLATESPEC (fnmatch against name, name-version-release, …). */
export function matchesSpec(t: Pick<Template, 'name' | 'epoch' | 'version' | 'release'>, spec: string): boolean {
  const { name, epoch, version, release } = t;
  const targets =
    epoch !== '0'
      ? [`${name}-${epoch}:${version}-${release}`, name, `${name}-${epoch}:${version}`]
      : [`${name}-${epoch}:${version}-${release}`, `${name}-${version}-${release}`, name, `${name}-${epoch}:${version}`, `${name}-${version}`];
  return targets.some((target) => fnmatch(target, spec));
}

/** rpmvercmp, enough for EVRs: digit runs compare as numbers, letter runs as strings. */
export function compareVersion(a: string, b: string): number {
  const seg = (s: string) => s.match(/[0-9]+|[A-Za-z]+/g) ?? [];
  const x = seg(a);
  const y = seg(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const [p, q] = [x[i], y[i]];
    const pn = /^[0-9]/.test(p);
    const qn = /^[0-9]/.test(q);
    if (pn !== qn) return pn ? 1 : -1;
    const c = pn ? Math.sign(Number(p) - Number(q)) : p < q ? -1 : p > q ? 1 : 0;
    if (c !== 0) return c;
  }
  return Math.sign(x.length - y.length);
}

export function compareEvr(a: Template, b: Template): number {
  return compareVersion(a.epoch || '0', b.epoch || '0') || compareVersion(a.version, b.version) || compareVersion(a.release, b.release);
}

async function feature(client: AdminClientLike, vm: string, name: string): Promise<string | undefined> {
  try {
    return await client.call('admin.vm.feature.Get', vm, { arg: name });
  } catch (e) {
    if (isQubesError(e) && e.code === 'QubesFeatureNotFoundError') return undefined;
    throw e;
  }
}

/** Qubes' get_disk_utilization: the usage of all of the qube's volumes. */
async function diskUtilization(client: AdminClientLike, vm: string): Promise<number> {
  let total = 0;
  for (const volume of lines(await client.call('admin.vm.volume.List', vm))) {
    const m = /^usage=(\d+)$/m.exec(await client.call('admin.vm.volume.Info', vm, { arg: volume }));
    total += m ? Number(m[1]) : 0;
  }
  return total;
}

/**
 * TemplateVMs installed by qvm-template (feature `template-name` equal to the qube's name, as
 * Qubes' is_managed_template); `full` also reads what `info` shows. Missing features read as ''.
 */
export async function installedTemplates(client: AdminClientLike, full: boolean): Promise<Template[]> {
  const out: Template[] = [];
  for (const q of (await listQubes(client)).filter((e) => e.klass === 'TemplateVM')) {
    if ((await feature(client, q.name, 'template-name')) !== q.name) continue;
    const f = async (k: string) => (await feature(client, q.name, `template-${k}`)) ?? '';
    const t: Template = {
      name: q.name, epoch: await f('epoch'), version: await f('version'), release: await f('release'), reponame: await f('reponame'),
      size: 0, buildtime: '', installtime: '', license: '', url: '', summary: '', description: '',
    };
    if (full) {
      Object.assign(t, {
        size: await diskUtilization(client, q.name), buildtime: await f('buildtime'), installtime: await f('installtime'),
        license: await f('license'), url: await f('url'), summary: await f('summary'), description: (await f('description')).replace(/\|/g, '\n'),
      });
    }
    out.push(t);
  }
  return out;
}

/** The repository: `NAME|EPOCH|VERSION|RELEASE|REPO|SIZE|BUILDTIME|LICENSE|URL|SUMMARY|DESCRIPTION|` entries. */
export function parseTemplateSearch(text: string): Template[] {
  const out: Template[] = [];
  for (const entry of text.split('|\n')) {
    if (entry === '') continue;
    const f = entry.split('|');
    if (f.length !== 11) continue; // a malformed entry is skipped, as Qubes' client does
    const [name, epoch, version, release, reponame, size, buildtime, license, url, summary, description] = f;
    out.push({
      name, epoch, version, release, reponame, size: Number(size) || 0,
      // The query gives minutes (`%Y-%m-%d %H:%M`); Qubes shows them as a datetime with seconds.
      buildtime: /^\d{4}-\d\d-\d\d \d\d:\d\d$/.test(buildtime) ? `${buildtime}:00` : buildtime,
      installtime: '', license, url, summary, description,
    });
  }
  return out;
}

export async function availableTemplates(client: AdminClientLike): Promise<Template[]> {
  const all = parseTemplateSearch(await client.call('admin.template.List', 'dom0'));
  // Only the latest version of each name (Qubes' default without --all-versions).
  const latest = new Map<string, Template>();
  for (const t of all) {
    const seen = latest.get(t.name);
    if (!seen || compareEvr(seen, t) < 0) latest.set(t.name, t);
  }
  return [...latest.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Qubes' size_to_human: bytes below 1 KiB, else KiB/MiB/GiB with one decimal. */
export function sizeToHuman(size: number): string {
  if (size < 1024) return String(size);
  if (size < 1024 ** 2) return `${pyRound1(size / 1024)} KiB`;
  if (size < 1024 ** 3) return `${pyRound1(size / 1024 ** 2)} MiB`;
  return `${pyRound1(size / 1024 ** 3)} GiB`;
}

/** Python's str(round(x, 1)): always one decimal at least (`1.0`). */
function pyRound1(x: number): string {
  const r = Math.round(x * 10) / 10;
  return Number.isInteger(r) ? r.toFixed(1) : String(r);
}

/** Python's json.dumps layout (`", "` and `": "` separators), for --machine-readable-json. */
export function pyJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(pyJson).join(', ')}]`;
  if (v !== null && typeof v === 'object') return `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}: ${pyJson(x)}`).join(', ')}}`;
  return JSON.stringify(v).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
