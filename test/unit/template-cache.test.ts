// Pure parts of template building: recipes, cache keys and paths, apt sources, and the
// mmdebstrap progress parser fed with lines as mmdebstrap 1.3 really prints them.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  KNOWN_TEMPLATES,
  MmdebstrapProgress,
  customizeScript,
  defaultTemplateCacheDir,
  mirrorsFromSources,
  mmdebstrapErrorLine,
  parseAptSources,
  parsePartialFileName,
  partialFileName,
  tarballFileName,
  templateKey,
  templateRecipe,
} from '../../src/storage/template-cache';
import { isQubesError } from '../../src/core/errors';

const MIRRORS = ['deb http://deb.debian.org/debian bookworm main'];

test('cache key is stable and ignores package order', () => {
  const a = templateRecipe('debian-12', MIRRORS);
  const b = templateRecipe('debian-12', MIRRORS);
  assert.equal(templateKey(a), templateKey(b));
  assert.match(templateKey(a), /^[0-9a-f]{64}$/);
  b.packages.reverse();
  assert.equal(templateKey(a), templateKey(b));
});

test('cache key changes with packages, mirrors and template', () => {
  const base = templateRecipe('debian-12', MIRRORS);
  const more = { ...base, packages: [...base.packages, 'curl'] };
  const otherMirror = templateRecipe('debian-12', ['deb http://ftp.de.debian.org/debian bookworm main']);
  const keys = new Set([base, more, otherMirror, templateRecipe('debian-12-minimal', MIRRORS)].map(templateKey));
  assert.equal(keys.size, 4);
});

test('known templates include debian-12 with nodejs; unknown names list the known ones', () => {
  assert.ok(KNOWN_TEMPLATES.some((t) => t.name === 'debian-12'));
  for (const t of KNOWN_TEMPLATES) assert.ok(t.packages.includes('nodejs'), t.name);
  assert.throws(
    () => templateRecipe('fedora-99'),
    (e: unknown) => isQubesError(e) && /fedora-99/.test(e.message) && /debian-12, debian-12-minimal/.test(e.message) && !e.message.includes('\n'),
  );
});

test('file names: tarball uses 12 key chars, partials carry the pid', () => {
  const key = 'abcdef0123456789'.repeat(4);
  assert.equal(tarballFileName('debian-12', key), 'debian-12-abcdef012345.tar');
  const partial = partialFileName('debian-12', key, 4242);
  assert.deepEqual(parsePartialFileName(partial), { tarball: 'debian-12-abcdef012345.tar', pid: 4242 });
  assert.equal(parsePartialFileName('debian-12-abcdef012345.tar'), undefined);
  assert.equal(defaultTemplateCacheDir({ ISOLA_CACHE: '/x' }), '/x/templates');
  assert.equal(defaultTemplateCacheDir({}), '/var/cache/isola/templates');
});

test('apt sources: deb822 and one-line, disabled and deb-src dropped, fallback to deb.debian.org', () => {
  const deb822 = [
    'Types: deb',
    '# http://snapshot.debian.org/archive/debian/20250520T000000Z',
    'URIs: http://mirror.example/debian',
    'Suites: bookworm bookworm-updates',
    'Components: main contrib',
    'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg',
    '',
    'Types: deb',
    'URIs: http://mirror.example/debian-security',
    'Suites: bookworm-security',
    'Components: main',
    '',
    'Types: deb',
    'Enabled: no',
    'URIs: http://disabled.example/debian',
    'Suites: bookworm',
  ].join('\n');
  const oneLine = 'deb [signed-by=/k.gpg] https://packages.cloud.google.com/apt cloud-sdk-bookworm main\ndeb-src http://x/debian bookworm main\n';
  const sources = [...parseAptSources(deb822, 'deb822'), ...parseAptSources(oneLine, 'one-line')];
  assert.equal(sources.length, 3);
  assert.deepEqual(mirrorsFromSources(sources, 'bookworm'), [
    'deb http://mirror.example/debian bookworm main contrib',
    'deb http://mirror.example/debian bookworm-updates main contrib',
    'deb http://mirror.example/debian-security bookworm-security main',
  ]);
  assert.deepEqual(mirrorsFromSources([], 'bookworm')[0], 'deb http://deb.debian.org/debian bookworm main');
});

test('customize script sets up user, sudo, mount points; rejects unsafe names', () => {
  const s = customizeScript(templateRecipe('debian-12', MIRRORS));
  assert.match(s, /useradd .*--uid 1000 .*user$/m);
  assert.match(s, /user ALL=\(ALL:ALL\) NOPASSWD: ALL/);
  assert.match(s, /chmod 0440 "\$root\/etc\/sudoers.d\/qubes"/);
  for (const d of ['/rw', '/home', '/run/isola', '/etc/qubes-rpc']) assert.ok(s.includes(`"$root${d}"`), d);
  assert.throws(() => customizeScript({ ...templateRecipe('debian-12', MIRRORS), name: "x'; rm -rf /" }));
});

/** A build as mmdebstrap --verbose prints it, shortened to a few packages per phase. */
function sampleOutput(): string[] {
  const essential = ['gcc-12-base', 'libc6', 'mawk', 'base-files', 'bash'];
  const remaining = ['libnode108', 'nodejs', 'sudo'];
  const get = (p: string, i: number) => `Get:${i + 1} http://deb.debian.org/debian bookworm/main amd64 ${p} amd64 1.0 [37.6 kB]`;
  return [
    'I: automatically chosen mode: root',
    "I: chroot architecture amd64 is equal to the host's architecture",
    'I: finding correct signed-by value...',
    'I: using /tmp/mmdebstrap.0IHTxAoXFn as tempdir',
    'I: running apt-get update...',
    'Get:1 http://deb.debian.org/debian bookworm InRelease [151 kB]',
    'Get:2 http://deb.debian.org/debian bookworm/main amd64 Packages [8790 kB]',
    'Fetched 8941 kB in 1s (12.3 MB/s)',
    'Reading package lists...',
    'I: downloading packages with apt...',
    'Reading package lists...',
    'Building dependency tree...',
    `0 upgraded, ${essential.length} newly installed, 0 to remove and 0 not upgraded.`,
    'Need to get 29.7 MB of archives.',
    ...essential.map(get),
    '/usr/bin/dpkg --status-fd 8 --no-triggers --configure mawk amd64',
    'Fetched 29.7 MB in 0s (290 MB/s)',
    'I: extracting archives...',
    'I: installing essential packages...',
    ...essential.flatMap((p) => [
      `Selecting previously unselected package ${p}:amd64.`,
      `Preparing to unpack .../${p}_1.0_amd64.deb ...`,
      `Unpacking ${p}:amd64 (1.0) ...`,
    ]),
    ...essential.map((p) => `Setting up ${p}:amd64 (1.0) ...`),
    'I: installing remaining packages inside the chroot...',
    'Reading package lists...',
    `0 upgraded, ${remaining.length} newly installed, 0 to remove and 0 not upgraded.`,
    ...remaining.map(get),
    ...remaining.map((p) => `Unpacking ${p}:amd64 (1.0) ...`),
    ...remaining.map((p) => `Setting up ${p}:amd64 (1.0) ...`),
    'Processing triggers for libc-bin (2.36-9+deb12u14) ...',
    'I: running --customize-hook in shell: sh -c \'set -eu\' exec /tmp/mmdebstrap.0IHTxAoXFn',
    'I: cleaning package lists and apt cache...',
    'I: creating tarball...',
    'I: done',
    'I: removing tempdir /tmp/mmdebstrap.0IHTxAoXFn...',
    'I: success in 16.9772 seconds',
  ];
}

test('progress parser is monotone, passes the stages in order and reaches 1 only at the end', () => {
  const p = new MmdebstrapProgress();
  const lines = sampleOutput();
  const seen: { fraction: number; stage: string }[] = [];
  for (const line of lines) {
    const u = p.feed(line);
    if (u) seen.push(u);
  }
  for (let i = 1; i < seen.length; i++) assert.ok(seen[i].fraction >= seen[i - 1].fraction, `step ${i}`);
  assert.equal(seen[seen.length - 1].fraction, 1);
  assert.equal(seen.filter((s) => s.fraction === 1).length, 1);
  const stages = [...new Set(seen.map((s) => s.stage))];
  assert.deepEqual(stages, ['update', 'download', 'extract', 'install-essential', 'install', 'customize', 'cleanup', 'tarball', 'done']);
  // Package lines move the bar inside a phase: more than one update per install phase.
  assert.ok(seen.filter((s) => s.stage === 'install-essential').length > 5);
  assert.ok(seen.filter((s) => s.stage === 'install').length > 5);
});

test('progress parser ignores a stage line seen again and noise before the first stage', () => {
  const p = new MmdebstrapProgress();
  assert.equal(p.feed('Use of uninitialized value in concatenation'), undefined);
  p.feed('I: installing remaining packages inside the chroot...');
  const f = p.fraction;
  p.feed('I: installing essential packages...');
  assert.equal(p.fraction, f);
  assert.equal(p.stage, 'install');
});

test('error line: the specific apt error, not the generic wrapper; long lines are cut', () => {
  const out = [
    'I: installing remaining packages inside the chroot...',
    'E: Unable to locate package no-such-pkg-xyz',
    `E: setup failed: E: apt-get ${'-o X=y '.repeat(50)} failed`,
    'I: main() received signal PIPE: waiting for setup...',
    'E: mmdebstrap failed to run',
  ];
  assert.equal(mmdebstrapErrorLine(out), 'E: Unable to locate package no-such-pkg-xyz');
  assert.ok(mmdebstrapErrorLine([`E: setup failed: ${'x'.repeat(400)}`]).length <= 200);
  assert.equal(mmdebstrapErrorLine(['tar: ./usr/x: Cannot write: No space left on device', 'E: mmdebstrap failed to run']), 'tar: ./usr/x: Cannot write: No space left on device');
  assert.equal(mmdebstrapErrorLine([]), 'no output');
});
