// qubes-vm-update's progress lines: redrawn in place on a terminal (cursor controls apart from the text,
// lines cut to the width so the redraw stays aligned), one plain line per change elsewhere.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Progress } from '../../src/cli/vm-update/progress';

function recorder(tty: boolean, columns = 80) {
  const text: string[] = [];
  const controls: string[] = [];
  const all: string[] = [];
  return { text, controls, all, out: { text: (s: string) => (text.push(s), all.push(s)), controls: (s: string) => (controls.push(s), all.push(s)), tty, columns } };
}

test('not a terminal: a line per change of state, nothing drawn at first, repeats dropped', () => {
  const r = recorder(false);
  const p = new Progress(['debian-12', 'fedora'], r.out);
  p.set('debian-12', 'starting');
  p.set('debian-12', 'starting');
  p.set('fedora', 'failed', 'exit code 100: E: Failed to fetch');
  assert.deepEqual(r.text, ['debian-12: starting\n', 'fedora: failed (exit code 100: E: Failed to fetch)\n']);
  assert.deepEqual(r.controls, []);
});

test('a terminal: every qube has its line, each change moves up and redraws them all; escapes only in controls', () => {
  const r = recorder(true);
  const p = new Progress(['debian-12', 'x'], r.out);
  assert.deepEqual(r.text, ['debian-12  pending\n', 'x          pending\n']);
  p.set('x', 'updating');
  assert.deepEqual(r.text.slice(2), ['debian-12  pending\n', 'x          updating\n']);
  assert.equal(r.controls.filter((c) => c === '\x1b[2A').length, 1, 'up two lines, once');
  for (const t of r.text) assert.doesNotMatch(t, /\x1b/);
});

test('a terminal: a long state is cut to the width, so no line wraps', () => {
  const r = recorder(true, 40);
  const p = new Progress(['debian-12'], r.out);
  p.set('debian-12', 'failed', 'E: '.padEnd(300, 'x'));
  for (const t of r.text) assert.ok(t.length <= 40, `${t.length}: ${t}`);
});
