// The agent's parsers under a fuzzer: dist/test-native/fuzz-frames (built by scripts/build.sh with
// AddressSanitizer and UBSan) runs a seeded stream of random and mutated frame streams and files.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

const FUZZER = path.resolve(__dirname, '../../test-native/fuzz-frames');

test('survives 5 s of mutated, truncated, oversized and out-of-order frames without a sanitizer report (agent-frame-fuzz)', { skip: !existsSync(FUZZER) && 'build first (scripts/build.sh)', timeout: 60_000 }, () => {
  const r = spawnSync(FUZZER, ['5', '0x15014a9e7'], { encoding: 'utf8' });
  assert.equal(r.status, 0, `fuzzer failed:\n${r.stderr.slice(-4000)}`);
  assert.equal(r.stderr, '');
  const runs = Number(/(\d+) inputs/.exec(r.stdout)?.[1]);
  assert.ok(runs > 5000, `only ${runs} inputs in 5 s`);
});
