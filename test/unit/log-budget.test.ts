import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { LogBudget, suppressedLine } from '../../src/core/log-budget';

describe('LogBudget', () => {
  it('lets a burst through, then a steady rate, and counts what it held back', () => {
    const b = new LogBudget({ burst: 3, perSecond: 2 });
    const written = Array.from({ length: 10 }, () => b.admit('work', 'deny', 0).write).filter(Boolean).length;
    assert.equal(written, 3);
    assert.deepEqual(b.admit('work', 'deny', 500), { write: true, suppressed: 7 }, 'half a second earns one line, which carries the count');
    assert.deepEqual(b.admit('work', 'deny', 500), { write: false, suppressed: 0 });
  });

  it('keeps qubes and kinds apart', () => {
    const b = new LogBudget({ burst: 1, perSecond: 1 });
    assert.equal(b.admit('work', 'deny', 0).write, true);
    assert.equal(b.admit('work', 'deny', 0).write, false);
    assert.equal(b.admit('other', 'deny', 0).write, true, 'another qube has its own budget');
    assert.equal(b.admit('work', 'allow', 0).write, true, 'another kind has its own budget');
  });

  it('reports held-back counts once the limit lifts, and forgets quiet buckets', () => {
    const b = new LogBudget({ burst: 1, perSecond: 1 });
    b.admit('work', 'deny', 0);
    for (let i = 0; i < 5; i++) b.admit('work', 'deny', 0);
    assert.deepEqual(b.drain(100), [], 'not yet: the flood has not earned a line');
    assert.deepEqual(b.drain(1000), [{ qube: 'work', kind: 'deny', count: 5 }]);
    assert.deepEqual(b.drain(5000), []);
    assert.equal(suppressedLine({ qube: 'work', kind: 'deny', count: 5 }), '… 5 similar lines from work suppressed (deny)');
  });
});
