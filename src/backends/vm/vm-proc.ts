// A QEMU pid is only trusted with the start time recorded when it began: pids are reused, and a kill
// sent to a recycled pid would hit some other process of the host.

import * as fs from 'node:fs';

/** Field 22 of /proc/PID/stat (clock ticks since boot) and the state letter; undefined if no such pid. */
export function procStat(pid: number): { startTime: string; state: string } | undefined {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return undefined;
  }
  // comm may hold spaces and parentheses: the fields start after the last ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { state: fields[0], startTime: fields[19] };
}

/** The process began at startTime and has not ended (a zombie has ended). */
export function isAlive(pid: number, startTime: string): boolean {
  if (!Number.isInteger(pid) || pid <= 1) return false;
  const st = procStat(pid);
  return st !== undefined && st.startTime === startTime && st.state !== 'Z' && st.state !== 'X';
}

/** Sends SIGKILL only to the process that began at startTime. */
export function killVerified(pid: number, startTime: string): void {
  if (!isAlive(pid, startTime)) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone in between
  }
}

export async function waitGone(pid: number, startTime: string, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (isAlive(pid, startTime)) {
    if (Date.now() > until) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

/** The host's MemTotal in MiB (0 if unreadable: no check then). */
export function hostMemMiB(): number {
  try {
    const m = /^MemTotal:\s+(\d+) kB/m.exec(fs.readFileSync('/proc/meminfo', 'utf8'));
    return m ? Math.floor(Number(m[1]) / 1024) : 0;
  } catch {
    return 0;
  }
}

/** Tries O_DIRECT on a file: tmpfs and some others refuse it, and QEMU's cache.direct=on would fail there. */
export function supportsDirectIo(file: string): boolean {
  const O_DIRECT = fs.constants.O_DIRECT ?? 0o40000;
  try {
    fs.closeSync(fs.openSync(file, fs.constants.O_RDONLY | O_DIRECT));
    return true;
  } catch {
    return false;
  }
}
