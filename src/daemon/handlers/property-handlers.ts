// admin.vm.property.* and admin.property.* (global prefs): Qubes' reply formats
// (`default=True type=int 400`), validation before any write, and property-set events.

import { GLOBAL_PROPERTIES, globalPropertyDef, parseGlobalValue, resolveGlobal } from '../../core/global-properties';
import { propertiesOf, propertyDef, parsePropertyValue, relationProblem, resolveProperty } from '../../core/properties';
import { formatValue, wireType, type Getter, type World } from '../../core/property-types';
import { propertyValueError, QubesError } from '../../core/errors';
import type { AdminMethod } from '../../core/admin-methods';
import type { Handler } from '../admin-server';
import type { QubeRecord } from '../../core/qube';
import { destQube, payloadText, type HandlerDeps } from './context';

const withoutProp = (q: QubeRecord, name: string): QubeRecord => ({ ...q, props: Object.fromEntries(Object.entries(q.props).filter(([k]) => k !== name)) });
const escape = (s: string) => s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');

/** Properties whose values or checks depend on the installed kernels. */
const KERNEL_PROPS = new Set(['kernel', 'kernelopts', 'default_kernel', 'virt_mode', 'default_virt_mode']);

/**
 * A fresh ISOLA_HOME installs its first guest kernel in the background: a call that reads or checks
 * a kernel-dependent property waits for it rather than answering '' (or refusing a kernel) meanwhile.
 */
function afterKernels(d: HandlerDeps, handlers: Partial<Record<AdminMethod, Handler>>): Partial<Record<AdminMethod, Handler>> {
  return Object.fromEntries(Object.entries(handlers).map(([method, h]) => [method, async (ctx) => {
    if (method.endsWith('.GetAll') || KERNEL_PROPS.has(ctx.req.arg)) await d.collection.kernelsKnown();
    return h!(ctx);
  }])) as Partial<Record<AdminMethod, Handler>>;
}

export function propertyHandlers(d: HandlerDeps): Partial<Record<AdminMethod, Handler>> {
  return afterKernels(d, propertyHandlersNow(d));
}

function propertyHandlersNow(d: HandlerDeps): Partial<Record<AdminMethod, Handler>> {
  const col = d.collection;
  const getLine = (q: QubeRecord, prop: string, w: World) => {
    const def = propertyDef(q, prop);
    const r = resolveProperty(q, prop, w);
    return `default=${r.isDefault ? 'True' : 'False'} type=${wireType(def.type)} ${formatValue(r.value)}`;
  };
  const globalLine = (prop: string) => {
    const def = globalPropertyDef(prop);
    const r = col.globalValue(prop);
    return `default=${r.isDefault ? 'True' : 'False'} type=${def.type} ${formatValue(r.value)}`;
  };
  return {
    'admin.vm.property.List': (ctx) => propertiesOf(destQube(d, ctx).klass).map((p) => p.name).sort().join('\n') + '\n',
    'admin.vm.property.Get': (ctx) => getLine(destQube(d, ctx), ctx.req.arg, col.world()),
    'admin.vm.property.GetAll': (ctx) => {
      const q = destQube(d, ctx);
      const w = col.world(); // one snapshot for the whole listing
      return propertiesOf(q.klass).map((p) => p.name).sort().map((p) => `${p} ${escape(getLine(q, p, w))}\n`).join('');
    },
    'admin.vm.property.GetDefault': (ctx) => {
      const q = destQube(d, ctx);
      const def = propertyDef(q, ctx.req.arg);
      if (!def.default) return '';
      const w = col.world();
      const get: Getter = (other, n) => resolveProperty(other, n, w).value;
      return `type=${wireType(def.type)} ${formatValue(def.default(withoutProp(q, def.name), w, get))}`;
    },
    'admin.vm.property.Help': (ctx) => propertyDef(destQube(d, ctx), ctx.req.arg).help,
    'admin.vm.property.Set': (ctx) => {
      const q = destQube(d, ctx);
      const name = ctx.req.arg;
      const untrustedValue = payloadText(ctx);
      const value = parsePropertyValue(q, name, untrustedValue, col.world());
      if (name === 'template' && col.powerState(q) !== 'Halted') {
        throw new QubesError('QubesVMNotHaltedError', `Cannot change template of a running qube: ${q.name}`);
      }
      // The backend and the kernel are chosen at start: a change could only take effect by surprise later.
      if ((name === 'virt_mode' || name === 'kernel') && col.powerState(q) !== 'Halted' && value !== resolveProperty(q, name, col.world()).value) {
        throw new QubesError('QubesVMNotHaltedError', `Cannot change ${name} of a running qube: ${q.name}; shut it down first (qvm-shutdown --wait ${q.name})`);
      }
      // As Qubes without memory hotplug: a sandbox's limit is fixed when it starts.
      if (name === 'maxmem' && col.powerState(q) !== 'Halted' && value !== resolveProperty(q, name, col.world()).value) {
        throw new QubesError('QubesVMNotHaltedError', `Can't change maxmem of VM ${q.name}, because it isn't Halted and memory hotplug is forbidden`);
      }
      const old = resolveProperty(q, name, col.world()).value;
      col.write(() => col.store.setProp(q.qid, name, value));
      d.events.emit(q.name, `property-set:${name}`, { name, newvalue: formatValue(value), oldvalue: formatValue(old) });
      return '';
    },
    'admin.vm.property.Reset': (ctx) => {
      const q = destQube(d, ctx);
      const name = ctx.req.arg;
      const def = propertyDef(q, name);
      if (def.readOnly) throw propertyValueError(q.name, name, 'property is read-only');
      if (!def.default) throw propertyValueError(q.name, name, 'property has no default value');
      // The default must itself be valid now (e.g. the global default_netvm may point at this qube).
      const draft = withoutProp(q, name);
      const w = col.world();
      const get: Getter = (other, n) => resolveProperty(other, n, w).value;
      const value = def.default(draft, w, get);
      const problem = (value === null ? undefined : def.check?.(value, draft, w, get)) ?? relationProblem(draft, name, w);
      if (problem) throw propertyValueError(q.name, name, `default value refused: ${problem}`);
      col.write(() => col.store.resetProp(q.qid, name));
      d.events.emit(q.name, `property-reset:${name}`, { name });
      return '';
    },
    'admin.property.List': () => GLOBAL_PROPERTIES.map((p) => p.name).sort().join('\n') + '\n',
    'admin.property.Get': (ctx) => globalLine(ctx.req.arg),
    'admin.property.GetAll': () => GLOBAL_PROPERTIES.map((p) => p.name).sort().map((p) => `${p} ${escape(globalLine(p))}\n`).join(''),
    'admin.property.GetDefault': (ctx) => {
      const def = globalPropertyDef(ctx.req.arg);
      return `type=${def.type} ${formatValue(resolveGlobal(def.name, {}, col.world()).value)}`;
    },
    'admin.property.Help': (ctx) => globalPropertyDef(ctx.req.arg).help,
    'admin.property.Set': (ctx) => {
      const name = ctx.req.arg;
      const value = parseGlobalValue(name, payloadText(ctx), col.world(), [d.pool.name]);
      col.write(() => col.store.setGlobal(name, value));
      d.events.emit('', `property-set:${name}`, { name, newvalue: formatValue(value) });
      return '';
    },
    'admin.property.Reset': (ctx) => {
      const name = ctx.req.arg;
      if (globalPropertyDef(name).readOnly) throw propertyValueError('dom0', name, 'property is read-only');
      col.write(() => col.store.resetGlobal(name));
      d.events.emit('', `property-reset:${name}`, { name });
      return '';
    },
  };
}
