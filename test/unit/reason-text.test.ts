// Reasons recorded for a qube hold qube-chosen bytes: stored inert, whatever they were.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { inertReason } from '../../src/daemon/reason-text';

test('control characters, C1 controls and direction overrides are escaped; text stays', () => {
  assert.equal(inertReason('commit of x\u001b]0;OWNED\u0007y failed'), 'commit of x\\x1b]0;OWNED\\x07y failed');
  assert.equal(inertReason('a\u009bb\u202ec\nd\u0000'), 'a\\x9bb\\u{202e}c\\x0ad\\x00');
  assert.equal(inertReason("'/home/user/x\ufffd': no such file"), "'/home/user/x\ufffd': no such file");
});

test('a reason is bounded in length', () => {
  assert.ok(inertReason('x'.repeat(100_000)).length <= 2001);
});
