// isolad's last line of defence: a failure that no handler caught is a bug, logged with its stack as
// one `BUG:` line (tests fail on it), and isolad keeps serving every other qube where it safely can.
//
// - unhandledRejection: log and continue. A rejected promise nobody awaited has already unwound its
//   own chain; nothing synchronous was left half-done by it.
// - uncaughtException: log and continue too. isolad's state lives in SQLite, where every change is
//   one transaction (a throw rolls it back), and each connection's state is its own; a throw out of
//   one callback leaves the others intact, and exiting would cut every qube off management and qrexec
//   (a restart reconciles, but a qube that can trigger the bug again would take isolad down at will).
//   It is fatal only when continuing is clearly unsafe: Node reports its own broken internals
//   (ERR_INTERNAL_ASSERTION), memory is exhausted, or failures come so fast (a burst of MAX_BURST
//   within BURST_MS) that isolad is evidently looping on a broken state; then isolad exits with the
//   bug logged, and qubes keep running for the next isolad to reattach to.

import type { Logger } from './logger';

const MAX_BURST = 100;
const BURST_MS = 10_000;
const FATAL_CODES = new Set(['ERR_INTERNAL_ASSERTION', 'ERR_OUT_OF_MEMORY', 'ERR_WORKER_OUT_OF_MEMORY']);

function describe(e: unknown): string {
  if (e instanceof Error) return e.stack ?? `${e.name}: ${e.message}`;
  return `non-error value thrown: ${String(e)}`;
}

function clearlyFatal(e: unknown): boolean {
  if (!(e instanceof Error)) return false;
  const code = (e as NodeJS.ErrnoException).code;
  return (code !== undefined && FATAL_CODES.has(code)) || /allocation failed|out of memory/i.test(e.message);
}

/** Installs the handlers once; returns a function that removes them (isolad's stop). */
export function installCrashHandlers(log: Logger, exit: (code: number) => void = (c) => process.exit(c)): () => void {
  const recent: number[] = [];
  const tooMany = () => {
    const now = Date.now();
    recent.push(now);
    while (recent.length && recent[0] < now - BURST_MS) recent.shift();
    return recent.length > MAX_BURST;
  };
  const onRejection = (reason: unknown) => {
    log.error(`BUG: unhandled rejection (isolad continues): ${describe(reason)}`);
    if (tooMany()) fatal('more than 100 unhandled failures within 10 s');
  };
  const onException = (e: unknown) => {
    log.error(`BUG: uncaught exception (isolad continues): ${describe(e)}`);
    if (clearlyFatal(e)) fatal('the failure leaves Node itself in an unknown state');
    else if (tooMany()) fatal('more than 100 unhandled failures within 10 s');
  };
  const fatal = (why: string) => {
    log.error(`BUG: isolad exits: ${why}; qubes keep running, a new isolad reattaches to them`);
    exit(70);
  };
  process.on('unhandledRejection', onRejection);
  process.on('uncaughtException', onException);
  return () => {
    process.off('unhandledRejection', onRejection);
    process.off('uncaughtException', onException);
  };
}
