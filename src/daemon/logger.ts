// isolad's log: one line per event on stderr (journald adds timestamps under systemd), or a file of
// its own that rotates at a size cap (ISOLA_LOG_FILE). Lines a qube can cause go through a budget
// per (qube, kind), so that no qube can flood the log or the disk under it.

import { closeSync, fstatSync, openSync, renameSync, writeSync } from 'node:fs';
import { LogBudget, suppressedLine } from '../core/log-budget';

export interface Logger {
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

function levelled(write: (line: string) => void, quiet: boolean): Logger {
  const line = (level: string, msg: string) => write(`${new Date().toISOString()} isolad ${level}: ${msg}\n`);
  return {
    info: (m) => { if (!quiet) line('info', m); },
    warn: (m) => line('warning', m),
    error: (m) => line('error', m),
  };
}

export function stderrLogger(quiet = false): Logger {
  return levelled((l) => process.stderr.write(l), quiet);
}

/** Appends to `file`; past maxBytes it becomes file.1 (file.1 becomes file.2, …), keeping `keep` old files. */
export function rotatingFileLogger(file: string, opts: { maxBytes?: number; keep?: number; quiet?: boolean } = {}): Logger {
  const maxBytes = opts.maxBytes ?? 16 * 1024 * 1024;
  const keep = opts.keep ?? 4;
  let fd = openSync(file, 'a', 0o600);
  let size = fstatSync(fd).size;
  const rotate = () => {
    closeSync(fd);
    for (let i = keep - 1; i >= 1; i--) {
      try {
        renameSync(`${file}.${i}`, `${file}.${i + 1}`);
      } catch {
        /* not there yet */
      }
    }
    renameSync(file, `${file}.1`);
    fd = openSync(file, 'a', 0o600);
    size = 0;
  };
  return levelled((line) => {
    const b = Buffer.from(line);
    if (size + b.length > maxBytes && size > 0) rotate();
    writeSync(fd, b);
    size += b.length;
  }, opts.quiet ?? false);
}

/** isolad's log as `isola daemon` runs it: ISOLA_LOG_FILE (rotated at 16 MiB, 4 old files kept) or stderr. */
export function daemonLogger(env: NodeJS.ProcessEnv = process.env): Logger {
  return env.ISOLA_LOG_FILE ? rotatingFileLogger(env.ISOLA_LOG_FILE) : stderrLogger();
}

/** Lines caused by a qube: each (qube, kind) has a budget; what it holds back is counted and reported. */
export class QubeLog {
  private readonly timer: NodeJS.Timeout;

  /** now: the clock the budget refills by (tests pass their own: a refill between two lines is timing). */
  constructor(private readonly log: Logger, private readonly budget = new LogBudget(), flushMs = 1000, private readonly now = () => Date.now()) {
    // The count of held-back lines is written once the qube's flood stops (its budget refills).
    this.timer = setInterval(() => this.flush(), flushMs);
    this.timer.unref();
  }

  info(qube: string, kind: string, msg: string): void {
    this.line(qube, kind, msg, (m) => this.log.info(m));
  }

  warn(qube: string, kind: string, msg: string): void {
    this.line(qube, kind, msg, (m) => this.log.warn(m));
  }

  close(): void {
    clearInterval(this.timer);
    this.flush();
  }

  private line(qube: string, kind: string, msg: string, write: (m: string) => void): void {
    const { write: ok, suppressed } = this.budget.admit(qube, kind, this.now());
    if (!ok) return;
    if (suppressed) this.log.info(suppressedLine({ qube, kind, count: suppressed }));
    write(msg);
  }

  private flush(): void {
    for (const s of this.budget.drain(this.now())) this.log.info(suppressedLine(s));
  }
}
