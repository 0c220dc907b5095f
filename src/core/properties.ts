// The property table of qubes: Qubes' names, types, defaults (including those derived from the
// template or from global prefs) and validation. Pure: the caller passes a World snapshot.

import { propertyValueError, QubesError } from './errors';
import { findLabel } from './labels';
import { parseBool, parseInteger, type PropType } from './property-types';
import type { PropValue, QubeClass, QubeRecord } from './qube';
import { withArticle } from './grammar';

/** A read-only view of the collection, for defaults and cross-qube checks. */
export interface World {
  qube(name: string): QubeRecord | undefined;
  globalProp(name: string): PropValue;
  /** Host memory, for Qubes' maxmem default. */
  hostMemoryMiB: number;
}

export interface PropertyDef {
  name: string;
  type: PropType;
  classes: readonly QubeClass[];
  help: string;
  /** No default means the property may have no value (`qvm-prefs` shows `U`). */
  default?: (q: QubeRecord, w: World) => PropValue;
  readOnly?: boolean;
  /** `vm`-typed properties that accept no qube (empty string). */
  allowNone?: boolean;
  /** Semantic checks on a parsed value; returns why it is refused. */
  check?: (value: PropValue, q: QubeRecord, w: World) => string | undefined;
}

const VMS: readonly QubeClass[] = ['TemplateVM', 'AppVM', 'StandaloneVM', 'DispVM'];
const ALL: readonly QubeClass[] = ['AdminVM', ...VMS];

/** Qubes' `_default_with_template`: the template's value, else a fixed default. */
function fromTemplate(prop: string, fallback: (q: QubeRecord, w: World) => PropValue) {
  return (q: QubeRecord, w: World): PropValue => {
    const tname = q.props.template;
    const template = typeof tname === 'string' ? w.qube(tname) : undefined;
    return template ? resolveProperty(template, prop, w).value : fallback(q, w);
  };
}

const positive = (v: PropValue) => (typeof v === 'number' && v > 0 ? undefined : 'must be a positive integer');
const nonNegative = (v: PropValue) => (typeof v === 'number' && v >= 0 ? undefined : 'must be a non-negative integer');

function netvmCheck(v: PropValue, q: QubeRecord, w: World): string | undefined {
  if (v === null) return undefined;
  const target = w.qube(String(v));
  if (!target) return `no such qube '${v}'`;
  if (target.name === q.name) return 'a qube cannot be its own netvm';
  if (!resolveProperty(target, 'provides_network', w).value) return `'${v}' does not provide network (provides_network is False)`;
  for (let hop = target, n = 0; n < 64; n++) {
    const next = resolveProperty(hop, 'netvm', w).value;
    if (next === null) return undefined;
    if (next === q.name) return `setting netvm to '${v}' would create a loop`;
    const nq = w.qube(String(next));
    if (!nq) return undefined;
    hop = nq;
  }
  return 'netvm chain too long';
}

/** template_for_dispvms, read safely: qubes of classes without the property are never disposable templates. */
export function isDispvmTemplate(q: QubeRecord, w: World): boolean {
  return (q.klass === 'AppVM' || q.klass === 'StandaloneVM') && resolveProperty(q, 'template_for_dispvms', w).value === true;
}

function dispvmTemplateCheck(v: PropValue, _q: QubeRecord, w: World): string | undefined {
  if (v === null) return undefined;
  const t = w.qube(String(v));
  if (!t) return `no such qube '${v}'`;
  return isDispvmTemplate(t, w) ? undefined : `'${v}' is not a disposable template (template_for_dispvms is False)`;
}

function templateCheck(v: PropValue, q: QubeRecord, w: World): string | undefined {
  const t = w.qube(String(v));
  if (!t) return `no such qube '${v}'`;
  if (q.klass === 'AppVM' && t.klass !== 'TemplateVM') return `'${v}' is ${withArticle(t.klass)}, not a TemplateVM`;
  if (q.klass === 'DispVM' && !isDispvmTemplate(t, w)) return `'${v}' is not a disposable template`;
  return undefined;
}

export const PROPERTIES: readonly PropertyDef[] = [
  { name: 'name', type: 'str', classes: ALL, readOnly: true, help: 'User-visible name of the qube.' },
  { name: 'qid', type: 'int', classes: ALL, readOnly: true, help: 'Internal, persistent identifier of the qube.' },
  { name: 'uuid', type: 'uuid', classes: ALL, readOnly: true, help: 'UUID of the qube.' },
  { name: 'klass', type: 'str', classes: ALL, readOnly: true, help: 'Class of the qube.' },
  { name: 'label', type: 'label', classes: ALL, help: 'Colourful label assigned to the qube (its trust level).' },
  { name: 'icon', type: 'str', classes: ALL, readOnly: true, help: 'Icon name for the qube.', default: iconOf },
  {
    name: 'template', type: 'vm', classes: ['AppVM', 'DispVM'], check: templateCheck,
    help: 'Template this qube is based on; its root filesystem comes from the template.',
  },
  {
    name: 'netvm', type: 'vm', classes: VMS, allowNone: true, check: netvmCheck,
    default: (q, w) => (q.klass === 'TemplateVM' || resolveProperty(q, 'provides_network', w).value ? null : w.globalProp('default_netvm')),
    help: 'Qube that provides network to this qube, or none for an offline qube.',
  },
  { name: 'provides_network', type: 'bool', classes: VMS, default: () => false, help: 'Whether this qube provides network to others.' },
  {
    name: 'memory', type: 'int', classes: VMS, check: positive, default: fromTemplate('memory', () => 400),
    help: 'Memory guaranteed to the qube (MiB).',
  },
  {
    name: 'maxmem', type: 'int', classes: VMS, check: nonNegative,
    default: fromTemplate('maxmem', (q, w) => {
      const mem = Number(resolveProperty(q, 'memory', w).value);
      return Math.min(mem * 10, Math.floor(w.hostMemoryMiB / 2));
    }),
    help: 'Maximum memory the qube may use (MiB); 0 means `memory`.',
  },
  { name: 'vcpus', type: 'int', classes: VMS, check: positive, default: fromTemplate('vcpus', () => 2), help: 'Number of virtual CPUs.' },
  {
    name: 'virt_mode', type: 'str', classes: VMS, default: fromTemplate('virt_mode', () => 'sandbox'),
    check: (v) => (v === 'sandbox' ? undefined : v === 'hvm' ? "virt_mode 'hvm' (the vm backend) is not available yet" : "must be 'sandbox' or 'hvm'"),
    help: "Isolation backend: 'sandbox' (OCI sandbox, shares the host kernel) or 'hvm' (QEMU/KVM).",
  },
  {
    name: 'kernel', type: 'str', classes: VMS, default: fromTemplate('kernel', (_q, w) => w.globalProp('default_kernel')),
    check: (v) => (/^[A-Za-z0-9._-]*$/.test(String(v)) ? undefined : 'invalid kernel name'),
    help: 'Kernel used by the vm backend (the sandbox backend shares the host kernel).',
  },
  { name: 'autostart', type: 'bool', classes: VMS, default: () => false, help: 'Start the qube when isolad starts.' },
  { name: 'include_in_backups', type: 'bool', classes: ALL, default: () => true, help: 'Include this qube in backups by default.' },
  {
    name: 'default_user', type: 'str', classes: VMS, default: fromTemplate('default_user', () => 'user'),
    check: (v) => (/^[a-z_][a-z0-9_-]{0,31}$/.test(String(v)) ? undefined : 'invalid user name'),
    help: 'User used by qvm-run and qrexec services by default.',
  },
  {
    name: 'qrexec_timeout', type: 'int', classes: VMS, check: positive,
    default: fromTemplate('qrexec_timeout', (_q, w) => w.globalProp('default_qrexec_timeout')),
    help: 'Seconds to wait for the agent to connect when starting the qube.',
  },
  {
    name: 'shutdown_timeout', type: 'int', classes: VMS, check: positive,
    default: fromTemplate('shutdown_timeout', (_q, w) => w.globalProp('default_shutdown_timeout')),
    help: 'Seconds to wait for a clean shutdown before the qube is killed.',
  },
  {
    name: 'template_for_dispvms', type: 'bool', classes: ['AppVM', 'StandaloneVM'], default: () => false,
    help: 'Whether this qube may be the template of disposables.',
  },
  {
    name: 'default_dispvm', type: 'vm', classes: ALL, allowNone: true, check: dispvmTemplateCheck,
    default: (q, w) => (q.klass === 'DispVM' ? (q.props.template ?? null) : w.globalProp('default_dispvm')),
    help: 'Disposable template used for @dispvm calls from this qube.',
  },
  {
    name: 'updateable', type: 'bool', classes: ALL, readOnly: true,
    default: (q) => q.klass === 'TemplateVM' || q.klass === 'StandaloneVM' || q.klass === 'AdminVM',
    help: 'Whether changes to the root filesystem persist (TemplateVM, StandaloneVM).',
  },
];

const BY_NAME = new Map(PROPERTIES.map((p) => [p.name, p]));

function iconOf(q: QubeRecord, w: World): PropValue {
  const label = String(q.props.label ?? 'black');
  const prefix =
    q.klass === 'TemplateVM' ? 'templatevm' : q.klass === 'StandaloneVM' ? 'standalonevm' : q.klass === 'DispVM' ? 'dispvm'
    : q.klass === 'AppVM' && q.props.template_for_dispvms === true ? 'templatevm'
    : q.klass === 'AdminVM' ? 'adminvm' : 'appvm';
  void w;
  return `${prefix}-${label}`;
}

export function propertiesOf(klass: QubeClass): PropertyDef[] {
  return PROPERTIES.filter((p) => p.classes.includes(klass));
}

export function propertyDef(q: QubeRecord, untrustedName: string): PropertyDef {
  const def = BY_NAME.get(untrustedName);
  if (!def || !def.classes.includes(q.klass)) {
    throw new QubesError('QubesNoSuchPropertyError', `Invalid property '${untrustedName}' of ${q.name}`);
  }
  return def;
}

export interface Resolved {
  value: PropValue;
  isDefault: boolean;
  /** True when the property has neither a value nor a default. */
  unset: boolean;
}

export function resolveProperty(q: QubeRecord, name: string, w: World): Resolved {
  const def = propertyDef(q, name);
  if (name === 'name') return { value: q.name, isDefault: false, unset: false };
  if (name === 'qid') return { value: q.qid, isDefault: false, unset: false };
  if (name === 'uuid') return { value: q.uuid, isDefault: false, unset: false };
  if (name === 'klass') return { value: q.klass, isDefault: false, unset: false };
  if (Object.prototype.hasOwnProperty.call(q.props, name)) return { value: q.props[name], isDefault: false, unset: false };
  if (def.default) return { value: def.default(q, w), isDefault: true, unset: false };
  return { value: null, isDefault: true, unset: true };
}

/** Parses and validates a value for `q.name`; throws QubesPropertyValueError on bad input. */
export function parsePropertyValue(q: QubeRecord, name: string, untrusted: string, w: World): PropValue {
  const def = propertyDef(q, name);
  if (def.readOnly) throw propertyValueError(q.name, name, 'property is read-only');
  let value: PropValue;
  switch (def.type) {
    case 'bool': {
      const b = parseBool(untrusted);
      if (b === undefined) throw propertyValueError(q.name, name, `'${untrusted}' is not a boolean (True/False)`);
      value = b;
      break;
    }
    case 'int': {
      const n = parseInteger(untrusted);
      if (n === undefined) throw propertyValueError(q.name, name, `'${untrusted}' is not an integer`);
      value = n;
      break;
    }
    case 'label': {
      const l = findLabel(untrusted);
      if (!l) throw new QubesError('QubesLabelNotFoundError', `Label does not exist: '${untrusted}'`);
      value = l.name;
      break;
    }
    case 'vm':
      if (untrusted === '' || untrusted === 'None') {
        if (!def.allowNone) throw propertyValueError(q.name, name, 'a qube is required');
        value = null;
      } else {
        value = untrusted;
      }
      break;
    default:
      value = untrusted;
  }
  const problem = def.check?.(value, q, w);
  if (problem) throw propertyValueError(q.name, name, problem);
  return value;
}
