// The guest kernel's command line. microvm has no HPET, PM timer or PIT speaker gate, so under TCG the
// kernel cannot calibrate its TSC and, with `quiet`, usually hangs there (measured: 3 of 4 boots);
// telling it the host's TSC rate (TCG's guest TSC is the host's) skips the calibration.

import { readFileSync } from 'node:fs';

export type Machine = 'microvm' | 'q35';

/** The host's TSC rate in kHz, from /proc/cpuinfo text ("cpu MHz"); undefined if absent or odd. */
export function tscKhzFromCpuinfo(cpuinfo: string): number | undefined {
  const mhz = Number(/^cpu MHz\s*:\s*([0-9]+(?:\.[0-9]+)?)\s*$/m.exec(cpuinfo)?.[1]);
  return Number.isFinite(mhz) && mhz >= 100 && mhz <= 100_000 ? Math.round(mhz * 1000) : undefined;
}

export function hostTscKhz(): number | undefined {
  try {
    return tscKhzFromCpuinfo(readFileSync('/proc/cpuinfo', 'latin1'));
  } catch {
    return undefined;
  }
}

export function guestCmdline(machine: Machine, opts: { tscKhz?: number; extra?: string[] } = {}): string {
  const args = ['console=ttyS0', 'panic=-1', 'quiet'];
  if (machine === 'microvm' && opts.tscKhz) args.push(`tsc_early_khz=${opts.tscKhz}`);
  return [...args, ...(opts.extra ?? [])].join(' ');
}
