// Creating, cloning, listing and removing qubes. Volumes are made before the record is saved
// and removed if saving fails, so a refused or interrupted call leaves nothing behind.

import type { AdminMethod } from '../../core/admin-methods';
import { QubesError, valueError } from '../../core/errors';
import { LABELS, findLabel } from '../../core/labels';
import { nameProblem } from '../../core/names';
import { parsePropertyValue } from '../../core/properties';
import { CREATABLE_CLASSES, type QubeClass, type QubeRecord } from '../../core/qube';
import { volumeLayout } from '../../core/volumes';
import type { Handler } from '../admin-server';
import { currentState } from '../current-state';
import { systemInfo } from '../system-info';
import { evaluateNonInteractive } from '../../policy';
import { destQube, parseKeyValues, payloadText, type HandlerDeps } from './context';
import { withArticle } from '../../core/grammar';
import { newQubeSizes } from '../volume-sizes';

/**
 * Qubes' second gate for a qube's admin.vm.List: only the qubes X for which the same policy allows
 * `admin.vm.List` from the caller to X (an `ask` counts as no), so a grant names what may be seen.
 */
function visibleTo(d: HandlerDeps, caller: string, qubes: QubeRecord[]): QubeRecord[] {
  const system = systemInfo(d.collection);
  return qubes.filter((q) =>
    evaluateNonInteractive(d.policy.current, { service: 'admin.vm.List', argument: '', source: caller, target: q.name }, system).result === 'allow');
}

export function vmHandlers(d: HandlerDeps): Partial<Record<AdminMethod, Handler>> {
  const col = d.collection;
  // Isola adds last_error= (percent-encoded) for a halted qube whose last run ended badly.
  const lastError = (q: QubeRecord) => {
    const e = col.powerState(q) === 'Halted' ? col.store.lastErrors().get(q.qid) : undefined;
    return e ? ` last_error=${encodeURIComponent(e)}` : '';
  };
  const listLine = (q: QubeRecord) => `${q.name} class=${q.klass} state=${col.powerState(q)} uuid=${q.uuid}${lastError(q)}\n`;
  const sorted = () => col.all().sort((a, b) => (a.klass === 'AdminVM' ? -1 : b.klass === 'AdminVM' ? 1 : a.name.localeCompare(b.name)));
  const create = (klass: QubeClass): Handler => (ctx) => createQube(d, klass, ctx.req.arg, payloadText(ctx));
  return {
    'admin.vmclass.List': () => CREATABLE_CLASSES.join('\n') + '\n',
    'admin.vm.List': (ctx) => {
      const listed = ctx.req.dest === 'dom0' ? sorted() : [destQube(d, ctx)];
      return (ctx.req.source === 'dom0' ? listed : visibleTo(d, ctx.req.source, listed)).map(listLine).join('');
    },
    'admin.vm.Create.AppVM': create('AppVM'),
    'admin.vm.Create.TemplateVM': create('TemplateVM'),
    'admin.vm.Create.StandaloneVM': create('StandaloneVM'),
    'admin.vm.Clone': (ctx) => cloneQube(d, destQube(d, ctx), payloadText(ctx)),
    'admin.vm.Remove': (ctx) => removeQube(d, destQube(d, ctx)),
    'admin.vm.CurrentState': (ctx) => {
      const q = destQube(d, ctx);
      return currentState(col, d.config, q, lastError(q));
    },
    'admin.label.List': () => LABELS.map((l) => l.name).join('\n') + '\n',
    'admin.label.Get': (ctx) => labelOf(ctx.req.arg).color,
    'admin.label.Index': (ctx) => String(labelOf(ctx.req.arg).index),
    'admin.pool.List': () => `${d.pool.name}\n`,
    'internal.GetSystemInfo': () => JSON.stringify(systemInfo(col)),
  };
}

function labelOf(untrusted: string) {
  const l = findLabel(untrusted);
  if (!l) throw new QubesError('QubesLabelNotFoundError', `Label does not exist: '${untrusted}'`);
  return l;
}

function checkNewName(d: HandlerDeps, untrustedName: string | undefined): string {
  if (untrustedName === undefined) throw valueError('name= is required');
  const problem = nameProblem(untrustedName);
  if (problem) throw valueError(`Invalid qube name '${untrustedName}': ${problem}`);
  if (d.collection.find(untrustedName)) throw new QubesError('QubesVMAlreadyExistsError', `VM ${untrustedName} already exists`);
  return untrustedName;
}

async function createQube(d: HandlerDeps, klass: QubeClass, untrustedTemplate: string, untrustedPayload: string): Promise<string> {
  const col = d.collection;
  const kv = parseKeyValues(untrustedPayload);
  const name = checkNewName(d, kv.get('name'));
  const untrustedLabel = kv.get('label');
  if (!untrustedLabel) throw valueError('label= is required');
  const label = labelOf(untrustedLabel).name;
  const templateName = untrustedTemplate || (col.globalValue('default_template').value as string | null) || '';
  let template: QubeRecord | undefined;
  if (templateName) {
    template = col.get(templateName);
    if (template.klass !== 'TemplateVM') throw valueError(`'${templateName}' is ${withArticle(template.klass)}, not a TemplateVM`);
  }
  if (!template) throw new QubesError('QubesNoTemplateError', `${klass} '${name}' needs a template (none given and no default_template)`);

  const draft: QubeRecord = { qid: 0, uuid: col.newUuid(), name, klass, props: { label }, features: {}, tags: ['created-by-dom0'] };
  if (klass === 'AppVM') draft.props.template = template.name;
  for (const [k, v] of kv) {
    if (k === 'name' || k === 'label') continue;
    draft.props[k] = parsePropertyValue(draft, k, v, col.world());
  }
  const copyRoot = klass !== 'AppVM' ? { uuid: template.uuid, klass: template.klass } : undefined;
  const sizes = newQubeSizes(klass, d.config.volumeSizes, d.lifecycle.volumesOf(template).sizes);
  await d.pool.create({ uuid: draft.uuid, klass, sizes }, { copyRootFrom: copyRoot });
  try {
    col.write(() => {
      draft.qid = col.store.nextQid();
      col.store.insertQube(draft);
      for (const v of volumeLayout(klass)) col.store.putVolume(draft.qid, { name: v.name, pool: d.pool.name, size: sizes[v.name] ?? v.defaultSize, revisionsToKeep: 1 });
    });
  } catch (e) {
    await d.pool.remove(draft.uuid);
    throw e;
  }
  d.events.emit(name, 'domain-add', { klass });
  return '';
}

async function cloneQube(d: HandlerDeps, src: QubeRecord, untrustedPayload: string): Promise<string> {
  const col = d.collection;
  const kv = parseKeyValues(untrustedPayload);
  const name = checkNewName(d, kv.get('name'));
  const cls = kv.get('class');
  if (cls !== undefined && cls !== src.klass) throw new QubesError('QubesNotImplementedError', `cloning into another class (${cls}) is not supported`);
  if (src.klass === 'AdminVM') throw valueError('dom0 cannot be cloned');
  if (col.powerState(src) !== 'Halted') throw new QubesError('QubesVMNotHaltedError', `Cannot clone a running qube: ${src.name}`);
  return d.lifecycle.locked(src, async () => {
    const uuid = col.newUuid();
    const tags = src.tags.filter((t) => !t.startsWith('created-by-')).concat('created-by-dom0');
    const copy: QubeRecord = { qid: 0, uuid, name, klass: src.klass, props: { ...src.props }, features: { ...src.features }, tags };
    const srcVols = d.lifecycle.volumesOf(src);
    await d.pool.clone(srcVols, { uuid, klass: src.klass, sizes: srcVols.sizes });
    try {
      col.write(() => {
        copy.qid = col.store.nextQid();
        col.store.insertQube(copy);
        for (const v of col.store.volumes(src.qid)) col.store.putVolume(copy.qid, v);
        // As qvm-clone: the copy has the same firewall.
        col.store.copyFirewall(src.qid, copy.qid);
      });
    } catch (e) {
      await d.pool.remove(uuid);
      throw e;
    }
    d.events.emit(name, 'domain-add', { klass: src.klass });
    return '';
  });
}

async function removeQube(d: HandlerDeps, q: QubeRecord): Promise<string> {
  const col = d.collection;
  if (q.klass === 'AdminVM') throw valueError('dom0 cannot be removed');
  return d.lifecycle.locked(q, async () => {
    if (col.powerState(q) !== 'Halted') throw new QubesError('QubesVMNotHaltedError', `Cannot remove a running qube: ${q.name}; shut it down first`);
    const users = col.referrers(q);
    if (users.length) throw new QubesError('QubesVMInUseError', `VM ${q.name} is in use by: ${users.join(', ')}`);
    col.write(() => col.store.deleteQube(q.qid));
    // The record is gone first: a crash now leaves only volumes that the next start collects.
    await d.pool.remove(q.uuid);
    await d.lifecycle.releaseIds(q);
    d.events.emit(q.name, 'domain-delete');
    return '';
  });
}
