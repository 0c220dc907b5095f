// The writable a qube's output stream is shown through on a terminal: escape and control
// characters replaced (TerminalFilter) when asked, else the chunks pass untouched.

import { Writable } from 'node:stream';
import { TerminalFilter } from '../core/terminal-filter';

/**
 * A writable in front of `target`, filtering what passes when asked (one TerminalFilter per
 * stream, so a character cut between two chunks is judged whole); never ends the target.
 * Unfiltered, the chunks pass as they are: no copy, no scan.
 */
export function terminalOutput(target: Writable, filter: boolean): Writable {
  const f = filter ? new TerminalFilter() : null;
  const write = (chunk: Buffer, cb: () => void) => {
    if (chunk.length === 0 || target.write(chunk)) cb();
    else target.once('drain', () => cb());
  };
  return new Writable({
    write: (chunk: Buffer, _enc, cb) => write(f ? f.push(chunk) : chunk, () => cb()),
    final: (cb) => write(f ? f.end() : Buffer.alloc(0), () => cb()),
  });
}
