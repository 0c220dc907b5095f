// The property table of qubes: every property Qubes' qvm-prefs lists for Isola's classes, under
// Qubes' names, types and defaults (including those derived from the template or from global
// prefs), and validation. Pure: the caller passes a World snapshot.

import { propertyValueError, QubesError } from './errors';
import { findLabel } from './labels';
import { NET_PROPERTIES } from './net-properties';
import {
  bootmodeCheck, devicesDeniedCheck, kernelCheck, kerneloptsCheck, memoryCheck, keyboardLayoutCheck, nonNegative, positive, virtModeCheck,
} from './property-checks';
import { ALL, parseBool, parseInteger, VMS, type Getter, type PropertyDef, type World } from './property-types';
import type { PropValue, QubeClass, QubeRecord } from './qube';
import { withArticle } from './grammar';

export type { PropertyDef, World } from './property-types';

type DefaultFn = NonNullable<PropertyDef['default']>;

/** Qubes' `_default_with_template`: the template's value, else a fixed default. */
function fromTemplate(prop: string, fallback: DefaultFn): DefaultFn {
  return (q, w, get) => {
    const tname = q.props.template;
    const template = typeof tname === 'string' ? w.qube(tname) : undefined;
    return template ? get(template, prop) : fallback(q, w, get);
  };
}

function qubeExists(v: PropValue, _q: QubeRecord, w: World): string | undefined {
  return v === null || w.qube(String(v)) ? undefined : `no such qube '${v}'`;
}

function netvmCheck(v: PropValue, q: QubeRecord, w: World, get: Getter): string | undefined {
  if (v === null) return undefined;
  const target = w.qube(String(v));
  if (!target) return `no such qube '${v}'`;
  if (target.name === q.name) return 'a qube cannot be its own netvm';
  if (target.klass === 'AdminVM' || !get(target, 'provides_network')) return `'${v}' does not provide network (provides_network is False)`;
  // Qubes: a running qube is relinked at once, so its new netvm must run (qvm-start it first).
  const running = w.runtime?.(q);
  if (running && !w.runtime!(target)) return `Cannot dynamically attach to stopped NetVM: '${v}' (qvm-start ${v} first)`;
  // A VM's network card is given at its start: one that runs without a netvm may have none to attach.
  if (running?.cardless) return `${q.name} is an hvm qube running offline: it gets a network card at its next start (set netvm while it is halted)`;
  for (let hop = target, n = 0; n < 64; n++) {
    const next = get(hop, 'netvm');
    if (next === null) return undefined;
    if (next === q.name) return `setting netvm to '${v}' would create a loop`;
    const nq = w.qube(String(next));
    if (!nq) return undefined;
    hop = nq;
  }
  return 'netvm chain too long';
}

/** Qubes' `_setter_provides_network`: a net qube stays one while qubes still use it. */
function providesNetworkCheck(v: PropValue, q: QubeRecord, w: World, get: Getter): string | undefined {
  if (v === true || !w.all) return undefined;
  const users = w.all().filter((o) => o.name !== q.name && o.klass !== 'AdminVM' && get(o, 'netvm') === q.name);
  return users.length ? "The qube is still used by other qubes, change theirs 'netvm' first" : undefined;
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

const NO_GUI = 'No effect yet: Isola has no GUI domain.';

const COMMON: readonly PropertyDef[] = [
  { name: 'name', type: 'str', classes: ALL, readOnly: true, help: 'User-visible name of the qube.' },
  { name: 'qid', type: 'int', classes: ALL, readOnly: true, help: 'Internal, persistent identifier of the qube.' },
  { name: 'uuid', type: 'uuid', classes: ALL, readOnly: true, help: 'UUID of the qube.' },
  { name: 'klass', type: 'str', classes: ALL, readOnly: true, computed: true, help: 'Class of the qube.', default: (q) => q.klass },
  { name: 'label', type: 'label', classes: ALL, help: 'Colourful label assigned to the qube (its trust level).' },
  { name: 'icon', type: 'str', classes: ALL, readOnly: true, computed: true, help: 'Icon name for the qube (freedesktop name).', default: iconOf },
  {
    name: 'template', type: 'vm', classes: ['AppVM', 'DispVM'], check: templateCheck,
    help: 'Template this qube is based on; its root filesystem comes from the template.',
  },
  {
    name: 'netvm', type: 'vm', classes: VMS, allowNone: true, check: netvmCheck,
    default: (q, w, get) => (q.klass === 'TemplateVM' || get(q, 'provides_network') ? null : w.globalProp('default_netvm')),
    help: 'Qube that provides network to this qube, or none for an offline qube.',
  },
  { name: 'provides_network', type: 'bool', classes: VMS, default: () => false, check: providesNetworkCheck, help: 'Whether this qube provides network to others.' },
  {
    name: 'memory', type: 'int', classes: VMS, check: (v, _q, w) => positive(v) ?? memoryCheck(v, w), default: fromTemplate('memory', () => 400),
    help: 'Memory guaranteed to the qube (MiB); the cgroup reservation of a sandbox.',
  },
  {
    name: 'maxmem', type: 'int', classes: VMS, check: nonNegative,
    default: fromTemplate('maxmem', (q, w, get) => Math.min(Number(get(q, 'memory')) * 10, Math.floor(w.hostMemoryMiB / 2))),
    help: 'Maximum memory the qube may use (MiB), the hard limit of a sandbox; 0 makes memory the limit.',
  },
  {
    name: 'maxmem', type: 'int', classes: ['AdminVM'], readOnly: true, default: (_q, w) => w.hostMemoryMiB,
    help: 'Memory of the host (MiB).',
  },
  { name: 'vcpus', type: 'int', classes: VMS, check: positive, default: fromTemplate('vcpus', () => 2), help: 'Number of virtual CPUs (the CPU quota of a sandbox).' },
  {
    name: 'virt_mode', type: 'str', classes: VMS, check: (v, _q, w) => virtModeCheck(v, w),
    default: fromTemplate('virt_mode', (_q, w) => String(w.globalProp('default_virt_mode') || 'sandbox')),
    normalize: (s) => s.toLowerCase(),
    help: "Isolation backend: 'sandbox' (OCI sandbox, shares the host kernel) or 'hvm' (QEMU/KVM). Xen's 'pv' and 'pvh' do not exist here.",
  },
  {
    name: 'kernel', type: 'str', classes: VMS, default: fromTemplate('kernel', (_q, w) => w.globalProp('default_kernel')),
    check: (v, _q, w) => kernelCheck(v, w),
    help: 'Kernel used by the vm backend (the sandbox backend shares the host kernel).',
  },
  {
    name: 'kernelopts', type: 'str', classes: VMS, check: kerneloptsCheck,
    default: (q, w, get) => (get(q, 'kernel') ? fromTemplate('kernelopts', () => '')(q, w, get) : ''),
    help: 'Kernel command line of the vm backend. No effect on a sandbox (it shares the host kernel).',
  },
  {
    name: 'bootmode', type: 'str', classes: VMS, check: bootmodeCheck, default: bootmodeDefault,
    help: 'Active boot mode (boot-mode.kernelopts.<mode> features). No effect yet: no kernel is booted by a sandbox.',
  },
  {
    name: 'appvm_default_bootmode', type: 'str', classes: ['TemplateVM'], check: bootmodeCheck,
    default: (q) => q.features['boot-mode.appvm-default'] ?? 'default',
    help: 'Default boot mode of the AppVMs based on this template. No effect yet.',
  },
  { name: 'debug', type: 'bool', classes: VMS, default: () => false, help: 'Turns on debugging features. No effect yet.' },
  { name: 'autostart', type: 'bool', classes: VMS, default: () => false, help: 'Start the qube when isolad starts.' },
  {
    name: 'include_in_backups', type: 'bool', classes: ALL,
    default: (q, _w, get) => (q.klass === 'DispVM' ? get(q, 'auto_cleanup') !== true : true),
    help: 'Include this qube in backups by default.',
  },
  { name: 'backup_timestamp', type: 'int', classes: VMS, check: nonNegative, help: 'Time of the last backup of the qube (seconds since the epoch).' },
  { name: 'installed_by_rpm', type: 'bool', classes: VMS, default: () => false, help: "Whether the qube's image was installed from a package. Informational." },
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
    name: 'management_dispvm', type: 'vm', classes: VMS, allowNone: true, check: dispvmTemplateCheck,
    default: fromTemplate('management_dispvm', (_q, w) => w.globalProp('management_dispvm')),
    help: 'Disposable template used to manage this qube. No effect yet: Isola has no management stack.',
  },
  { name: 'guivm', type: 'vm', classes: VMS, allowNone: true, check: qubeExists, default: (_q, w) => w.globalProp('default_guivm'), help: `Qube that shows this qube's windows. ${NO_GUI}` },
  { name: 'audiovm', type: 'vm', classes: VMS, allowNone: true, check: qubeExists, default: (_q, w) => w.globalProp('default_audiovm'), help: 'Qube that plays this qube\'s audio. No effect yet: Isola has no audio.' },
  {
    name: 'keyboard_layout', type: 'str', classes: VMS, check: keyboardLayoutCheck,
    default: (q, w, get) => {
      const g = get(q, 'guivm');
      const guivm = typeof g === 'string' ? w.qube(g) : undefined;
      return guivm ? get(guivm, 'keyboard_layout') : 'us++';
    },
    help: `Keyboard layout (layout+variant+options). ${NO_GUI}`,
  },
  { name: 'keyboard_layout', type: 'str', classes: ['AdminVM'], check: keyboardLayoutCheck, default: () => 'us++', help: `Keyboard layout (layout+variant+options). ${NO_GUI}` },
  { name: 'devices_denied', type: 'str', classes: ALL, check: devicesDeniedCheck, default: () => '', help: 'Device interface codes denied to this qube. No effect yet: Isola attaches no devices.' },
  { name: 'stubdom_mem', type: 'int', classes: VMS, check: positive, help: 'Memory of the stub domain (MiB). No effect: Isola has no stub domains.' },
  {
    name: 'updateable', type: 'bool', classes: ALL, readOnly: true, computed: true,
    default: (q) => q.klass === 'TemplateVM' || q.klass === 'StandaloneVM' || q.klass === 'AdminVM',
    help: 'Whether changes to the root filesystem persist (TemplateVM, StandaloneVM).',
  },
  { name: 'dispid', type: 'int', classes: ['DispVM'], readOnly: true, help: 'Internal, persistent identifier of the disposable.' },
  { name: 'auto_cleanup', type: 'bool', classes: ['DispVM'], default: () => false, help: 'Remove this qube when it shuts down.' },
  { name: 'is_preload', type: 'bool', classes: ['DispVM'], readOnly: true, computed: true, default: () => false, help: 'Whether this is a preloaded disposable (never, yet).' },
];

export const PROPERTIES: readonly PropertyDef[] = [...COMMON, ...NET_PROPERTIES];

const BY_CLASS = new Map<string, PropertyDef>();
for (const p of PROPERTIES) for (const k of p.classes) BY_CLASS.set(`${k}\0${p.name}`, p);

function iconOf(q: QubeRecord, w: World, get: Getter): PropValue {
  const label = String(q.props.label ?? 'black');
  if (q.klass === 'AdminVM') return 'adminvm-black';
  if (q.klass === 'TemplateVM') return `templatevm-${label}`;
  if (q.klass === 'AppVM' && get(q, 'template_for_dispvms') === true) return `templatevm-${label}`;
  void w;
  if (q.features.servicevm) return `servicevm-${label}`;
  const prefix = q.klass === 'StandaloneVM' ? 'standalonevm' : q.klass === 'DispVM' ? 'dispvm' : 'appvm';
  return `${prefix}-${label}`;
}

/** Qubes' `_default_bootmode`: the active mode if its kernelopts exist, else the template's AppVM default. */
function bootmodeDefault(q: QubeRecord, w: World, get: Getter): PropValue {
  const known = (mode: string) => mode === 'default' || `boot-mode.kernelopts.${mode}` in q.features || inTemplate(q, w, `boot-mode.kernelopts.${mode}`);
  const active = q.features['boot-mode.active'];
  if (active !== undefined && known(active)) return active;
  const t = q.props.template;
  const template = typeof t === 'string' ? w.qube(t) : undefined;
  if (template?.klass === 'TemplateVM') {
    const mode = String(get(template, 'appvm_default_bootmode'));
    if (known(mode)) return mode;
  }
  return 'default';
}

function inTemplate(q: QubeRecord, w: World, feature: string): boolean {
  const t = q.props.template;
  const template = typeof t === 'string' ? w.qube(t) : undefined;
  return template !== undefined && feature in template.features;
}

const OF_CLASS = new Map<QubeClass, PropertyDef[]>();

export function propertiesOf(klass: QubeClass): PropertyDef[] {
  let defs = OF_CLASS.get(klass);
  if (!defs) OF_CLASS.set(klass, (defs = PROPERTIES.filter((p) => p.classes.includes(klass))));
  return [...defs];
}

export function propertyDef(q: QubeRecord, untrustedName: string): PropertyDef {
  const def = BY_CLASS.get(`${q.klass}\0${untrustedName}`);
  if (!def) throw new QubesError('QubesNoSuchPropertyError', `Invalid property '${untrustedName}' of ${q.name}`);
  return def;
}

export interface Resolved {
  value: PropValue;
  isDefault: boolean;
  /** True when the property has neither a value nor a default. */
  unset: boolean;
}

/**
 * Resolved values per World snapshot and record: a listing resolves every property of every qube,
 * and the derived ones (visible_gateway, keyboard_layout…) ask the same questions again. A draft
 * record (a value being checked) is another object, so it never sees the snapshot's answers.
 */
const memo = new WeakMap<World, WeakMap<QubeRecord, Map<string, Resolved>>>();

export function resolveProperty(q: QubeRecord, name: string, w: World): Resolved {
  let perWorld = memo.get(w);
  if (!perWorld) memo.set(w, (perWorld = new WeakMap()));
  let perQube = perWorld.get(q);
  if (!perQube) perWorld.set(q, (perQube = new Map()));
  const hit = perQube.get(name);
  if (hit) return hit;
  const r = resolveUncached(q, name, w);
  perQube.set(name, r);
  return r;
}

function resolveUncached(q: QubeRecord, name: string, w: World): Resolved {
  const def = propertyDef(q, name);
  const get: Getter = (other, n) => resolveProperty(other, n, w).value;
  // dom0's identity is Qubes' fixed default; other qubes' identity is set once at creation.
  const identityDefault = q.klass === 'AdminVM';
  if (name === 'name') return { value: q.name, isDefault: identityDefault, unset: false };
  if (name === 'qid') return { value: q.qid, isDefault: identityDefault, unset: false };
  if (name === 'uuid') return { value: q.uuid, isDefault: identityDefault, unset: false };
  if (!def.computed && Object.prototype.hasOwnProperty.call(q.props, name)) return { value: q.props[name], isDefault: false, unset: false };
  if (def.default) return { value: def.default(q, w, get), isDefault: true, unset: false };
  return { value: null, isDefault: true, unset: true };
}

/**
 * Why memory and maxmem of `q` cannot stand together, if they cannot: maxmem (other than 0) below
 * memory. Qubes' core accepts it and the qube then fails to start; Isola refuses it when it is set
 * and names it when a start meets it (a template's memory raised above a child's maxmem).
 */
export function memoryProblem(q: QubeRecord, w: World): string | undefined {
  if (q.klass === 'AdminVM') return undefined;
  const memory = Number(resolveProperty(q, 'memory', w).value);
  const max = resolveProperty(q, 'maxmem', w);
  const maxmem = Number(max.value);
  if (maxmem === 0 || maxmem >= memory) return undefined;
  return `maxmem (${maxmem}${max.isDefault ? ', its default' : ''}) can not be less than memory (${memory}); raise maxmem, or set it to 0 to make memory the limit`;
}

/** Checks that involve more than one property, on `q` as it would be after the change. */
export function relationProblem(draft: QubeRecord, name: string, w: World): string | undefined {
  return name === 'memory' || name === 'maxmem' ? memoryProblem(draft, w) : undefined;
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
      value = def.normalize ? def.normalize(untrusted) : untrusted;
  }
  const get: Getter = (other, n) => resolveProperty(other, n, w).value;
  const problem = def.check?.(value, q, w, get) ?? relationProblem({ ...q, props: { ...q.props, [name]: value } }, name, w);
  if (problem) throw propertyValueError(q.name, name, problem);
  return value;
}
