// Value checks of single properties, with Qubes' rules and (where Qubes has one) its wording:
// each returns why a value is refused, or undefined. Normalisers give the form Qubes stores.

import type { World } from './property-types';
import type { PropValue } from './qube';

export const positive = (v: PropValue) => (typeof v === 'number' && v > 0 ? undefined : 'must be a positive integer');
export const nonNegative = (v: PropValue) => (typeof v === 'number' && v >= 0 ? undefined : 'must be a non-negative integer');

/** Qubes' `_setter_kernelopts`: the Xen boot ABI limit, kept for the vm backend's command line. */
export function kerneloptsCheck(v: PropValue): string | undefined {
  const s = String(v);
  if (s.length > 512) return 'Kernelopts value too long (512 chars max)';
  return /[\x00-\x1f\x7f]/.test(s) ? 'control characters are not allowed' : undefined;
}

/** Qubes' `_setter_kbd_layout`: `layout+variant+options`. */
export function keyboardLayoutCheck(v: PropValue): string | undefined {
  const s = String(v);
  if (!/^[\x00-\x7f]*$/.test(s)) return 'Keyboard layouts must be ASCII';
  const parts = s.split('+');
  if (parts.length !== 3) return 'invalid number of keyboard layout parameters';
  const [layout, variant, options] = parts;
  if (!/^[A-Za-z]+$/.test(layout)) return 'Invalid keyboard layout provided';
  if (!/^[A-Za-z0-9_-]*$/.test(variant)) return 'Invalid layout variant provided';
  if (!/^[A-Za-z0-9_:,-]*$/.test(options)) return 'Invalid layout options provided';
  return undefined;
}

/** Qubes' `_setter_denied_list`: device interface codes `chhhhhh…`. */
export function devicesDeniedCheck(v: PropValue): string | undefined {
  return /^([bump*][0-9a-f*]{6})*$/.test(String(v))
    ? undefined
    : 'Interface code list should be in the form chhhhhhchhhhhh..., where c is one of "b", "u", "m", "p", "*" and h is a hexdigit or "*".';
}

export function macCheck(v: PropValue): string | undefined {
  return /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/.test(String(v)) ? undefined : 'Invalid MAC address value';
}

/** An IPv4 address as Python's ipaddress accepts it (four decimal octets, no leading zeros). */
export function ipv4Check(v: PropValue): string | undefined {
  const parts = String(v).split('.');
  const ok = parts.length === 4 && parts.every((p) => /^(0|[1-9][0-9]{0,2})$/.test(p) && Number(p) <= 255);
  return ok ? undefined : `'${String(v)}' does not appear to be an IPv4 address`;
}

/** Parses an IPv6 address into eight groups, or undefined (no zone, no embedded IPv4). */
function ipv6Groups(s: string): number[] | undefined {
  const halves = s.split('::');
  if (halves.length > 2) return undefined;
  const parse = (h: string) => (h === '' ? [] : h.split(':'));
  const head = parse(halves[0]);
  const tail = halves.length === 2 ? parse(halves[1]) : [];
  if (![...head, ...tail].every((g) => /^[0-9a-fA-F]{1,4}$/.test(g))) return undefined;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined;
  return [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill('0'), ...tail].map((g) => parseInt(g, 16));
}

export function ipv6Check(v: PropValue): string | undefined {
  return ipv6Groups(String(v)) ? undefined : `'${String(v)}' does not appear to be an IPv6 address`;
}

/** The compressed form Python prints (longest run of zero groups, if two or more, becomes `::`). */
export function normalizeIpv6(untrusted: string): string {
  const g = ipv6Groups(untrusted);
  if (!g) return untrusted;
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j === i ? i + 1 : j;
  }
  const hex = g.map((n) => n.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

/** Isola's virtualisation modes next to Qubes' Xen ones, which are refused with the reason. */
export function virtModeCheck(v: PropValue, w?: World): string | undefined {
  const s = String(v);
  if (s === 'pv' || s === 'pvh') return `virt_mode '${s}' needs Xen; Isola offers 'sandbox' and 'hvm'`;
  if (s !== 'sandbox' && s !== 'hvm') return 'Invalid virtualization mode, supported values: sandbox, hvm';
  const problem = w?.virtModeProblem?.(s);
  return problem ? `virt_mode '${s}' is not available on this host: ${problem}` : undefined;
}

/** More than the host has could never start (a VM's RAM, a sandbox's reservation): refused when set. */
export function memoryCheck(v: PropValue, w?: World): string | undefined {
  const host = w?.hostMemoryMiB;
  return typeof v === 'number' && host && v > host ? `${v} MiB is more than this host has (${host} MiB)` : undefined;
}

/** Qubes' validate_kernel: a kernel is a directory of the kernels dir ('' = the default kernel). */
export function kernelCheck(v: PropValue, w?: World): string | undefined {
  const s = String(v);
  if (s === '') return undefined;
  if (!/^[A-Za-z0-9._+-]+$/.test(s) || s === '.' || s === '..') return s.includes('/') ? "Kernel name cannot contain '/'" : 'invalid kernel name';
  const have = w?.kernels?.();
  if (have && !have.includes(s)) return `Kernel '${s}' not installed (installed: ${have.join(', ') || 'none'})`;
  return undefined;
}

/** A boot mode names a `boot-mode.kernelopts.<mode>` feature, or is `default`. */
export function bootmodeCheck(v: PropValue): string | undefined {
  return /^[A-Za-z0-9_.-]+$/.test(String(v)) ? undefined : 'invalid boot mode name';
}
