import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { QubeLog, rotatingFileLogger, type Logger } from '../../src/daemon/logger';
import { LogBudget } from '../../src/core/log-budget';

describe("isolad's log", () => {
  it('rotates its file at the size cap and keeps the given number of old files', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'isola-log-'));
    try {
      const file = path.join(dir, 'isolad.log');
      const log = rotatingFileLogger(file, { maxBytes: 300, keep: 2 });
      for (let i = 0; i < 20; i++) log.warn(`line ${i} ${'x'.repeat(40)}`);
      assert.ok(readFileSync(file).length <= 300);
      assert.ok(existsSync(`${file}.1`) && existsSync(`${file}.2`));
      assert.equal(existsSync(`${file}.3`), false, 'no more than two old files');
      assert.match(readFileSync(file, 'utf8'), /line 19 /, 'the newest line is in the current file');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("QubeLog limits each qube's lines and says how many it held back", () => {
    const lines: string[] = [];
    const base: Logger = { info: (m) => lines.push(m), warn: (m) => lines.push(m), error: (m) => lines.push(m) };
    let clock = 1_000_000;
    const q = new QubeLog(base, new LogBudget({ burst: 2, perSecond: 1000 }), 60_000, () => clock);
    for (let i = 0; i < 5; i++) q.info('work', 'deny', `deny ${i}`);
    q.info('other', 'deny', 'other deny');
    assert.deepEqual(lines, ['deny 0', 'deny 1', 'other deny']);
    clock += 20; // the bucket refills (1000 a second)
    q.close();
    assert.deepEqual(lines.slice(3), ['… 3 similar lines from work suppressed (deny)']);
  });
});
