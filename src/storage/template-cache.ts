// Template recipes, their cache keys and paths, and mmdebstrap's progress parsed from its stderr.
// Pure apart from reading the host's apt sources (so templates use the same mirror as the host).

import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { valueError } from '../core/errors';
import { TINYPROXY_UPDATES_CONF, UPDATES_BLACKLIST } from './updates-proxy-files';

/** Bump whenever the build (hooks, mmdebstrap options) changes in a way the recipe does not show. */
export const TEMPLATE_FORMAT_VERSION = 1;

export interface TemplateRecipe {
  name: string;
  description: string;
  suite: string;
  variant: 'minbase' | 'required' | 'important' | 'standard';
  packages: string[];
  /** sources.list one-line entries handed to mmdebstrap (and left in the template's /etc/apt). */
  mirrors: string[];
}

type KnownTemplate = Omit<TemplateRecipe, 'mirrors'>;

// nodejs is non-negotiable: the in-qube tools (qrexec-client-vm, qvm-copy, …) are Node scripts. The rest is what a Qubes user reaches for first.
export const KNOWN_TEMPLATES: readonly KnownTemplate[] = [
  {
    name: 'debian-12',
    description: 'Debian 12 (bookworm), small but usable: sudo, procps, iproute2, ping, less, nano',
    suite: 'bookworm',
    variant: 'minbase',
    // tinyproxy: the updates proxy a netvm based on it runs for the templates (docs/network.md).
    packages: ['nodejs', 'sudo', 'procps', 'ca-certificates', 'iproute2', 'iputils-ping', 'less', 'nano', 'tinyproxy'],
  },
  {
    name: 'debian-12-minimal',
    description: 'Debian 12 (bookworm), the bare minimum to run a qube',
    suite: 'bookworm',
    variant: 'minbase',
    packages: ['nodejs', 'sudo', 'ca-certificates'],
  },
];

export const knownTemplateNames = (): string[] => KNOWN_TEMPLATES.map((t) => t.name);

export function templateRecipe(name: string, mirrors?: string[]): TemplateRecipe {
  const known = KNOWN_TEMPLATES.find((t) => t.name === name);
  if (!known) {
    throw valueError(`Template '${name}' is not known; available templates: ${knownTemplateNames().join(', ')}`);
  }
  return { ...known, packages: [...known.packages], mirrors: mirrors ?? hostMirrors(known.suite) };
}

interface AptSource {
  uri: string;
  suites: string[];
  components: string[];
}

/** Parses apt sources in either format; `deb-src`, disabled entries and options are dropped. */
export function parseAptSources(text: string, format: 'one-line' | 'deb822'): AptSource[] {
  const out: AptSource[] = [];
  if (format === 'one-line') {
    for (const raw of text.split('\n')) {
      const line = raw.replace(/#.*/, '').replace(/\[[^\]]*\]/, ' ').trim();
      const [type, uri, suite, ...components] = line.split(/\s+/);
      if (type === 'deb' && uri && suite) out.push({ uri, suites: [suite], components });
    }
    return out;
  }
  for (const para of text.split(/\n\s*\n/)) {
    const fields = new Map<string, string>();
    let last = '';
    for (const raw of para.split('\n')) {
      if (raw.startsWith('#')) continue;
      const m = /^([A-Za-z-]+):\s*(.*)$/.exec(raw);
      if (m) fields.set((last = m[1].toLowerCase()), m[2].trim());
      else if (/^\s/.test(raw) && last) fields.set(last, `${fields.get(last)} ${raw.trim()}`);
    }
    const words = (k: string) => (fields.get(k) ?? '').split(/\s+/).filter(Boolean);
    if (!words('types').includes('deb') || fields.get('enabled')?.toLowerCase() === 'no') continue;
    for (const uri of words('uris')) out.push({ uri, suites: words('suites'), components: words('components') });
  }
  return out;
}

/** Turns the host's sources into mmdebstrap mirror lines for `suite` (plus -updates, -security). */
export function mirrorsFromSources(sources: AptSource[], suite: string): string[] {
  const wanted = [suite, `${suite}-updates`, `${suite}-security`];
  const lines: string[] = [];
  for (const s of sources) {
    for (const su of s.suites) {
      if (!wanted.includes(su)) continue;
      const line = `deb ${s.uri.replace(/\/+$/, '')} ${su} ${(s.components.length ? s.components : ['main']).join(' ')}`;
      if (!lines.includes(line)) lines.push(line);
    }
  }
  // Without the base suite there is nothing to bootstrap from: fall back to Debian's CDN.
  if (!lines.some((l) => l.split(' ')[2] === suite)) {
    return [
      `deb http://deb.debian.org/debian ${suite} main`,
      `deb http://deb.debian.org/debian ${suite}-updates main`,
      `deb http://deb.debian.org/debian-security ${suite}-security main`,
    ];
  }
  return lines;
}

export function hostMirrors(suite: string, aptDir = '/etc/apt', env: NodeJS.ProcessEnv = process.env): string[] {
  // ISOLA_DEBIAN_MIRROR: a local mirror (or, in tests, an unreachable one to make the build fail).
  if (env.ISOLA_DEBIAN_MIRROR) return [`deb ${env.ISOLA_DEBIAN_MIRROR} ${suite} main`];
  const sources: AptSource[] = [];
  const read = (p: string) => {
    try {
      return readFileSync(p, 'utf8');
    } catch {
      return '';
    }
  };
  sources.push(...parseAptSources(read(join(aptDir, 'sources.list')), 'one-line'));
  let entries: string[] = [];
  try {
    entries = readdirSync(join(aptDir, 'sources.list.d')).sort();
  } catch {
    /* no sources.list.d: fine */
  }
  for (const f of entries) {
    // apt ignores other extensions (e.g. `.disabled`), so do we.
    if (f.endsWith('.list')) sources.push(...parseAptSources(read(join(aptDir, 'sources.list.d', f)), 'one-line'));
    if (f.endsWith('.sources')) sources.push(...parseAptSources(read(join(aptDir, 'sources.list.d', f)), 'deb822'));
  }
  return mirrorsFromSources(sources, suite);
}

/**
 * Shell run by mmdebstrap as a customize hook ($1 = the new root). Makes the tree a Qubes-like
 * template: `user` with passwordless sudo, the mount points isolad binds into, and nothing of the host.
 */
export function customizeScript(recipe: TemplateRecipe): string {
  if (!/^[a-z0-9][a-z0-9.-]*$/.test(recipe.name)) throw valueError(`Template name '${recipe.name}' is not a valid hostname`);
  return [
    'set -eu',
    'root="$1"',
    'chroot "$root" useradd --create-home --home-dir /home/user --uid 1000 --user-group --groups sudo --shell /bin/bash user',
    'mkdir -p "$root/etc/sudoers.d"',
    "printf 'user ALL=(ALL:ALL) NOPASSWD: ALL\\n' > \"$root/etc/sudoers.d/qubes\"",
    'chmod 0440 "$root/etc/sudoers.d/qubes"',
    'mkdir -p "$root/rw" "$root/home" "$root/run/isola" "$root/etc/qubes-rpc" "$root/usr/lib/isola"',
    // mmdebstrap copies the build host's hostname and resolv.conf; neither belongs in a template.
    'rm -f "$root/etc/hostname" "$root/etc/resolv.conf" "$root/etc/hosts"',
    `printf '%s\\n' '${recipe.name}' > "$root/etc/hostname"`,
    `printf '127.0.0.1\\tlocalhost\\n127.0.1.1\\t%s\\n::1\\tlocalhost ip6-localhost ip6-loopback\\n' '${recipe.name}' > "$root/etc/hosts"`,
    'touch "$root/etc/resolv.conf"',
    'chmod 0644 "$root/etc/hostname" "$root/etc/hosts" "$root/etc/resolv.conf"',
    // Qubes' updates proxy configuration, used only where tinyproxy is installed (a netvm's template).
    'if [ -d "$root/etc/tinyproxy" ]; then',
    `  printf '%s' ${shellQuote(TINYPROXY_UPDATES_CONF)} > "$root/etc/tinyproxy/tinyproxy-updates.conf"`,
    `  printf '%s' ${shellQuote(UPDATES_BLACKLIST)} > "$root/etc/tinyproxy/updates-blacklist"`,
    '  chmod 0644 "$root/etc/tinyproxy/tinyproxy-updates.conf" "$root/etc/tinyproxy/updates-blacklist"',
    'fi',
    'rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb',
    // The builder skips mmdebstrap's /run cleanup so that /run/isola survives; do the rest of it here.
    'find "$root/run" -mindepth 1 -maxdepth 1 ! -name lock ! -name isola -exec rm -rf {} +',
  ].join('\n');
}

const shellQuote = (s: string): string => `'${s.replace(/'/g, "'\\''")}'`;

/** sha256 over everything that decides the tarball's content; package order does not matter. */
export function templateKey(recipe: TemplateRecipe): string {
  const canonical = JSON.stringify({
    format: TEMPLATE_FORMAT_VERSION,
    suite: recipe.suite,
    variant: recipe.variant,
    packages: [...new Set(recipe.packages)].sort(),
    mirrors: recipe.mirrors,
    hook: customizeScript(recipe),
  });
  return createHash('sha256').update(canonical).digest('hex');
}

export function defaultTemplateCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.ISOLA_CACHE || '/var/cache/isola', 'templates');
}

export const tarballFileName = (name: string, key: string): string => `${name}-${key.slice(0, 12)}.tar`;

/** Partial files carry the builder's pid so a concurrent build is never mistaken for a dead one. */
export const partialFileName = (name: string, key: string, pid: number): string =>
  `${tarballFileName(name, key)}.${pid}.partial`;

export function parsePartialFileName(file: string): { tarball: string; pid: number } | undefined {
  const m = /^(.+\.tar)\.(\d+)\.partial$/.exec(file);
  return m ? { tarball: m[1], pid: Number(m[2]) } : undefined;
}

interface Stage {
  re: RegExp;
  stage: string;
  start: number;
  end: number;
}

// Fractions follow measured wall time of a debian-12 build (18.7 s): update 1.3 s, download 0.6 s,
// extract 1.9 s, essential install 5 s, remaining install 7.8 s, tarball 1.7 s.
const STAGES: Stage[] = [
  { re: /^I: running apt-get update/, stage: 'update', start: 0.02, end: 0.09 },
  { re: /^I: downloading packages/, stage: 'download', start: 0.09, end: 0.12 },
  { re: /^I: extracting archives/, stage: 'extract', start: 0.12, end: 0.22 },
  { re: /^I: installing essential packages/, stage: 'install-essential', start: 0.22, end: 0.49 },
  { re: /^I: installing remaining packages/, stage: 'install', start: 0.49, end: 0.9 },
  { re: /^I: running --customize-hook/, stage: 'customize', start: 0.9, end: 0.905 },
  { re: /^I: cleaning package lists/, stage: 'cleanup', start: 0.905, end: 0.91 },
  { re: /^I: creating tarball/, stage: 'tarball', start: 0.91, end: 0.99 },
  { re: /^I: success in/, stage: 'done', start: 1, end: 1 },
];

/** Turns `mmdebstrap --verbose` stderr lines into a monotone fraction 0..1 and a stage name. */
export class MmdebstrapProgress {
  fraction = 0;
  stage = 'setup';
  private current: Stage | undefined;
  private total = 0; // packages apt announced for this stage
  private essential = 0; // packages downloaded before the essential install
  private done = 0; // work units seen in this stage

  /** Feeds one line; returns the new state if it moved, undefined otherwise. */
  feed(line: string): { fraction: number; stage: string } | undefined {
    const before = `${this.fraction}/${this.stage}`;
    const next = STAGES.find((s) => s.re.test(line));
    if (next && (!this.current || STAGES.indexOf(next) > STAGES.indexOf(this.current))) {
      if (this.current?.stage === 'download') this.essential = this.total;
      this.current = next;
      this.stage = next.stage;
      this.total = next.stage === 'install-essential' ? this.essential : 0;
      this.done = 0;
      this.advance(next.start);
    } else if (this.current) {
      const m = /^\d+ upgraded, (\d+) newly installed/.exec(line);
      if (m) this.total = Number(m[1]);
      else if (/^(Get:\d+ |Unpacking |Setting up )/.test(line)) this.done++;
      const units = this.current.stage === 'install' ? 3 : this.current.stage === 'install-essential' ? 2 : 1;
      // Without a package count, creep towards the stage's end instead of jumping to it.
      const within = this.total > 0 ? Math.min(1, this.done / (this.total * units)) : this.done / (this.done + 30);
      this.advance(this.current.start + (this.current.end - this.current.start) * within);
    }
    return `${this.fraction}/${this.stage}` === before ? undefined : { fraction: this.fraction, stage: this.stage };
  }

  private advance(f: number): void {
    this.fraction = Math.max(this.fraction, Math.min(1, Math.round(f * 1000) / 1000));
  }
}

/** Picks the line of mmdebstrap's output that says what went wrong, not that something did. */
export function mmdebstrapErrorLine(lines: string[]): string {
  const errors = lines.filter((l) => /^E: /.test(l) || /No space left on device/.test(l));
  const generic = /^E: (mmdebstrap failed to run|setup failed|.*failed to run)/;
  const pick = [...errors].reverse().find((l) => !generic.test(l)) ?? errors[errors.length - 1];
  const line = (pick ?? [...lines].reverse().find((l) => l.trim()) ?? 'no output').trim();
  return line.length > 200 ? `${line.slice(0, 197)}...` : line;
}
