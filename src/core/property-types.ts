// Parsing of property values from their wire/CLI string form, per Qubes' property types.
// Every value from a client is `untrusted…` until one of these returns it.

import type { PropValue } from './qube';

export type PropType = 'str' | 'int' | 'bool' | 'vm' | 'label' | 'uuid';

const TRUE_WORDS = new Set(['true', '1', 'yes', 'on']);
const FALSE_WORDS = new Set(['false', '0', 'no', 'off']);

export function parseBool(untrusted: string): boolean | undefined {
  const v = untrusted.toLowerCase();
  if (TRUE_WORDS.has(v)) return true;
  if (FALSE_WORDS.has(v)) return false;
  return undefined;
}

export function parseInteger(untrusted: string): number | undefined {
  if (!/^[+-]?[0-9]{1,15}$/.test(untrusted)) return undefined;
  return Number(untrusted);
}

/** The string form Qubes prints: `True`/`False`, empty for None. */
export function formatValue(value: PropValue): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'boolean') return value ? 'True' : 'False';
  return String(value);
}
