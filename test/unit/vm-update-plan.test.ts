// qubes-vm-update's decisions: Qubes 4.3 vmupdate's targeting (--targets ignores the update state,
// -T/-S/-A/--all follow it, --skip wins), its selection (--update-if-stale N by default), what apt's
// output (bytes the qube chose) says, and which running qubes must restart.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseQubesTime, readOutcome, selectTargets, toRestart, type Targeting, type UpdateCandidate } from '../../src/cli/vm-update/plan';

const now = new Date(Date.UTC(2026, 11, 3, 12, 0, 0));
const q = (name: string, klass: string, features: Record<string, string> = {}, state = 'Halted'): UpdateCandidate => ({ name, klass, state, features: new Map(Object.entries(features)) });
const fresh = { 'last-updates-check': '2026-12-02 12:00:00' };
const old = { 'last-updates-check': '2026-11-01 12:00:00' };
const qubes = [
  q('debian-12', 'TemplateVM', fresh),
  q('fedora', 'TemplateVM', old),
  q('never', 'TemplateVM'),
  q('known', 'TemplateVM', { ...fresh, 'updates-available': '1' }),
  q('skipped', 'TemplateVM', { 'skip-update': '1' }),
  q('alone', 'StandaloneVM'),
  q('work', 'AppVM', {}, 'Running'),
  q('halted-app', 'AppVM'),
];
const none: Targeting = { targets: [], skip: [], templates: false, standalones: false, apps: false, all: false };
const pick = (t: Partial<Targeting>, sel: Parameters<typeof selectTargets>[2] = { kind: 'stale', days: 7 }) =>
  selectTargets(qubes, { ...none, ...t }, sel, now).chosen.map((x) => x.name);

test('default: every template and standalone that is stale (never checked, or older than 7 days) or has updates known', () => {
  assert.deepEqual(pick({}), ['fedora', 'never', 'known', 'alone']);
  assert.deepEqual(pick({}, { kind: 'stale', days: 0 }), ['debian-12', 'fedora', 'never', 'known', 'alone'], 'N=0: all are stale');
  assert.deepEqual(pick({}, { kind: 'available' }), ['known']);
  assert.deepEqual(pick({}, { kind: 'force' }), ['debian-12', 'fedora', 'never', 'known', 'alone'], 'skip-update is still skipped');
});

test('--targets ignores the update state; groups add to it; --skip wins over both', () => {
  assert.deepEqual(pick({ targets: ['debian-12'] }), ['debian-12'], 'fresh, but named');
  assert.deepEqual(pick({ targets: ['skipped'] }), ['skipped'], 'named: skip-update does not apply');
  assert.deepEqual(pick({ targets: ['debian-12'], standalones: true }), ['debian-12', 'alone']);
  assert.deepEqual(pick({ templates: true, skip: ['fedora'] }), ['never', 'known']);
  assert.deepEqual(pick({ targets: ['debian-12'], skip: ['debian-12'] }), []);
  assert.deepEqual(pick({ apps: true }, { kind: 'force' }), ['work'], '-A: running AppVMs only');
  assert.deepEqual(selectTargets(qubes, { ...none, targets: ['nope'], skip: ['gone'] }, { kind: 'force' }, now).unknown, ['nope', 'gone']);
});

test('a last-updates-check that is not Qubes\' timestamp counts as never checked', () => {
  for (const bad of ['', 'yesterday', '2026-13-01 00:00:00x', '2026-12-02T12:00:00', '9999999-01-01 00:00:00']) {
    assert.equal(parseQubesTime(bad), undefined, bad);
  }
  assert.deepEqual(selectTargets([q('t', 'TemplateVM', { 'last-updates-check': 'garbage' })], none, { kind: 'stale', days: 7 }, now).chosen.length, 1);
});

test("apt's output: updated, no updates, or failed with apt's own reason line", () => {
  assert.deepEqual(readOutcome('Reading...\n1 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.\n', 0), { status: 'updated', detail: '1 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.' });
  assert.deepEqual(readOutcome('0 upgraded, 0 newly installed, 0 to remove and 0 not upgraded.\n', 0), { status: 'no updates' });
  assert.deepEqual(readOutcome('Err:1 http://x\nE: Failed to fetch http://x/Packages  404\nE: Some index files failed to download.\n', 100),
    { status: 'failed', detail: 'exit code 100: E: Failed to fetch http://x/Packages  404' }, 'the first E: line says why');
  assert.deepEqual(readOutcome('', 125), { status: 'failed', detail: 'exit code 125' });
  assert.equal(readOutcome('all fine, trust me\n', 0).status, 'failed', 'exit 0 without apt\'s summary is not an update');
});

test('hostile output: escapes, control bytes and endless lines reach the summary as short printable text', () => {
  const evil = `\x1b]0;owned\x07\x1b[2J\x00E: \x1b[31mred\x1b[0m ${'A'.repeat(100_000)}\r\n`;
  const r = readOutcome(evil, 1);
  assert.equal(r.status, 'failed');
  const detail = (r as { detail: string }).detail;
  assert.ok(detail.length <= 220, `${detail.length} characters`);
  assert.match(detail, /^exit code 1: /);
  assert.doesNotMatch(detail, /[\x00-\x1f\x7f]/);
  // A fake summary line with control bytes inside still parses as apt's (the bytes are spaces then).
  assert.equal(readOutcome('0 upgraded, 0 newly installed, 0 to remove\x1b[8m\n', 0).status, 'no updates');
});

test('qubes to restart: running AppVMs and DispVMs of an updated template, not halted ones, not the updated themselves', () => {
  const derived = [
    { name: 'work', klass: 'AppVM', state: 'Running', templates: ['debian-12'], servicevm: false },
    { name: 'sys-net', klass: 'AppVM', state: 'Running', templates: ['debian-12'], servicevm: true },
    { name: 'disp1', klass: 'DispVM', state: 'Running', templates: ['dvm', 'debian-12'], servicevm: false },
    { name: 'other', klass: 'AppVM', state: 'Running', templates: ['fedora'], servicevm: false },
    { name: 'off', klass: 'AppVM', state: 'Halted', templates: ['debian-12'], servicevm: false },
  ];
  assert.deepEqual(toRestart(derived, new Set(['debian-12'])).map((x) => x.name), ['work', 'sys-net', 'disp1']);
  assert.deepEqual(toRestart(derived, new Set()).map((x) => x.name), []);
});
