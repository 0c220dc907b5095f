// Property types as Qubes defines them, the shape of a property definition, and the parsing of
// values from their wire/CLI string form. Every value from a client is `untrusted…` until one of
// these returns it.

import type { PropValue, QubeClass, QubeRecord } from './qube';

/** Isola's types; `wireType` maps them onto the five Qubes puts on the wire. */
export type PropType = 'str' | 'int' | 'bool' | 'vm' | 'label' | 'uuid';

/** What admin.vm.property.Get reports: Qubes knows only these five (a UUID or an address is `str`). */
export function wireType(t: PropType): 'str' | 'int' | 'bool' | 'vm' | 'label' {
  return t === 'uuid' ? 'str' : t;
}

/** The runtime facts a computed property may read (from the store's runtime row). */
export interface RuntimeFacts {
  /** Milliseconds since the epoch. */
  startedAt: number;
  /** The backend that runs it (`sandbox`, `hvm`). */
  backend?: string;
  /** A VM that was started without a network card (it had no netvm then): none can be attached now. */
  cardless?: boolean;
}

/** A read-only view of the collection, for defaults and cross-qube checks. */
export interface World {
  qube(name: string): QubeRecord | undefined;
  globalProp(name: string): PropValue;
  /** Host memory, for Qubes' maxmem default. */
  hostMemoryMiB: number;
  /** Host CPUs, for the global no_cpus. */
  hostCpus?: number;
  /** Every qube, for checks that look at who refers to a qube. */
  all?(): readonly QubeRecord[];
  /** The runtime row of a qube that is not halted; absent or undefined when it is halted. */
  runtime?(q: QubeRecord): RuntimeFacts | undefined;
  /** Why this host cannot run a virt_mode (undefined: it can); absent: not known, every mode is accepted. */
  virtModeProblem?(mode: string): string | undefined;
  /** Kernels installed for the hvm backend; absent: not known, any well-formed name is accepted. */
  kernels?(): readonly string[];
}

/** Resolves another property (with its default) while a default or a check is computed. */
export type Getter = (q: QubeRecord, name: string) => PropValue;

export interface PropertyDef {
  name: string;
  type: PropType;
  classes: readonly QubeClass[];
  help: string;
  /** No default means the property may have no value (`qvm-prefs` shows `U`). */
  default?: (q: QubeRecord, w: World, get: Getter) => PropValue;
  readOnly?: boolean;
  /** Qubes' stateless properties: always computed, never stored, always shown as default. */
  computed?: boolean;
  /** `vm`-typed properties that accept no qube (empty string). */
  allowNone?: boolean;
  /** Gives a parsed string the form Qubes stores (`MAC` -> `mac`). */
  normalize?: (untrusted: string) => string;
  /** Semantic checks on a parsed value; returns why it is refused. */
  check?: (value: PropValue, q: QubeRecord, w: World, get: Getter) => string | undefined;
}

export const VMS: readonly QubeClass[] = ['TemplateVM', 'AppVM', 'StandaloneVM', 'DispVM'];
export const ALL: readonly QubeClass[] = ['AdminVM', ...VMS];

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
