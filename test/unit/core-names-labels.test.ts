// Qube names and labels: Qubes' rules, with a table of names that must be refused and why.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { findLabel, LABELS } from '../../src/core/labels';
import { nameProblem } from '../../src/core/names';

test('accepts names Qubes accepts', () => {
  for (const n of ['work', 'sys-net', 'a', 'Work_2.b', 'x'.repeat(31), 'debian-12']) assert.equal(nameProblem(n), undefined, n);
});

const BAD_NAMES: [string, string][] = [
  ['', 'empty'],
  ['1work', 'starts with a digit'],
  ['-work', 'starts with a dash'],
  ['.hidden', 'starts with a dot (hidden file, path tricks)'],
  ['wo rk', 'space: splits Admin API headers'],
  ['a/b', 'slash: a path'],
  ['..', 'parent directory'],
  ['work\n', 'newline: forges log lines'],
  ['wörk', 'non-ASCII'],
  ['x'.repeat(32), 'longer than 31 characters'],
  ['none', 'reserved: means no qube'],
  ['default', 'reserved: means the default'],
  ['Domain-0', "reserved: Xen's dom0"],
  ['stubdom-dm', "ends with -dm (Qubes' device-model stubdomains)"],
  ['a:b', 'colon: policy token syntax'],
  ['@anyvm', 'at sign: policy keywords'],
];
for (const [name, why] of BAD_NAMES) {
  test(`refuses the name ${JSON.stringify(name)}: ${why}`, () => assert.ok(nameProblem(name)));
}

test("has Qubes' eight labels with Qubes' colours and indices", () => {
  assert.deepEqual(LABELS.map((l) => `${l.index}:${l.name}:${l.color}`), [
    '1:red:0xcc0000', '2:orange:0xf57900', '3:yellow:0xedd400', '4:green:0x73d216',
    '5:gray:0x555555', '6:blue:0x3465a4', '7:purple:0x75507b', '8:black:0x000000',
  ]);
});

test('finds a label by name, index or label-N, and nothing else', () => {
  assert.equal(findLabel('blue')?.name, 'blue');
  assert.equal(findLabel('6')?.name, 'blue');
  assert.equal(findLabel('label-1')?.name, 'red');
  for (const bad of ['pink', 'Blue', '0', '9', 'label-', '', ' red', '06x']) assert.equal(findLabel(bad), undefined, bad);
});
