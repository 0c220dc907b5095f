// Rate limits for log lines a qube can cause: a token bucket per (qube, kind of line) — a burst,
// then a steady rate — and a count of what was held back, so that a flooding qube costs the log a
// bounded number of bytes per second and the lines it causes still say how many there were.
// Pure: the caller passes the clock, and writes what admit() and drain() return.

export interface LogBudgetOptions {
  /** Lines of one kind one qube may log at once (default 20). */
  burst?: number;
  /** Lines per second it earns back (default 2). */
  perSecond?: number;
  /** Buckets kept at most: beyond, the fullest are forgotten (their qubes start again from a full burst). */
  maxBuckets?: number;
}

interface Bucket {
  tokens: number;
  at: number;
  suppressed: number;
}

export interface Suppressed {
  qube: string;
  kind: string;
  count: number;
}

export class LogBudget {
  private readonly buckets = new Map<string, Bucket & { qube: string; kind: string }>();
  private readonly burst: number;
  private readonly perMs: number;
  private readonly maxBuckets: number;

  constructor(opts: LogBudgetOptions = {}) {
    this.burst = opts.burst ?? 20;
    this.perMs = (opts.perSecond ?? 2) / 1000;
    this.maxBuckets = opts.maxBuckets ?? 4096;
  }

  /**
   * May this line be written now? If yes, and lines of its kind were held back before, `suppressed`
   * says how many (to be written first); if no, it is counted.
   */
  admit(qube: string, kind: string, now: number): { write: boolean; suppressed: number } {
    const key = `${qube}\0${kind}`;
    let b = this.buckets.get(key);
    if (!b) {
      if (this.buckets.size >= this.maxBuckets) this.forgetIdle(now);
      b = { qube, kind, tokens: this.burst, at: now, suppressed: 0 };
      this.buckets.set(key, b);
    }
    this.refill(b, now);
    if (b.tokens < 1) {
      b.suppressed++;
      return { write: false, suppressed: 0 };
    }
    b.tokens--;
    const suppressed = b.suppressed;
    b.suppressed = 0;
    return { write: true, suppressed };
  }

  /** Counts held back by buckets that can write again (the limit lifted); called now and then. */
  drain(now: number): Suppressed[] {
    const out: Suppressed[] = [];
    for (const [key, b] of this.buckets) {
      this.refill(b, now);
      if (b.suppressed > 0 && b.tokens >= 1) {
        b.tokens--;
        out.push({ qube: b.qube, kind: b.kind, count: b.suppressed });
        b.suppressed = 0;
      } else if (b.suppressed === 0 && b.tokens >= this.burst) {
        this.buckets.delete(key); // full and quiet: the same as a new bucket
      }
    }
    return out;
  }

  private refill(b: Bucket, now: number): void {
    b.tokens = Math.min(this.burst, b.tokens + Math.max(0, now - b.at) * this.perMs);
    b.at = now;
  }

  private forgetIdle(now: number): void {
    for (const [key, b] of this.buckets) {
      this.refill(b, now);
      if (b.suppressed === 0) this.buckets.delete(key);
      if (this.buckets.size < this.maxBuckets / 2) return;
    }
  }
}

/** The line that stands for the lines a budget held back. */
export function suppressedLine(s: Suppressed): string {
  return `… ${s.count} similar line${s.count === 1 ? '' : 's'} from ${s.qube} suppressed (${s.kind})`;
}
