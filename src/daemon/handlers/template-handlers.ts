// admin.template.* (Isola extensions): templates are built from Debian's archive with mmdebstrap
// (cached), extracted into a new TemplateVM's root and registered. Progress arrives as events.

import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { AdminMethod } from '../../core/admin-methods';
import { QubesError } from '../../core/errors';
import type { QubeRecord } from '../../core/qube';
import { volumeLayout } from '../../core/volumes';
import { buildTemplate, extractTemplate } from '../../storage/template-builder';
import { KNOWN_TEMPLATES, templateRecipe } from '../../storage/template-cache';
import type { Handler } from '../admin-server';
import { AGENT_IN_QUBE } from '../qube-runtime-spec';
import type { HandlerDeps } from './context';

export function templateHandlers(d: HandlerDeps): Partial<Record<AdminMethod, Handler>> {
  const installing = new Set<string>();
  return {
    'admin.template.List': () => {
      const installed = d.collection.all().filter((q) => q.klass === 'TemplateVM');
      const lines = installed.map((q) => `${q.name} installed ${KNOWN_TEMPLATES.find((t) => t.name === q.features['template-name'])?.description ?? 'local template'}`);
      for (const t of KNOWN_TEMPLATES) if (!installed.some((q) => q.name === t.name)) lines.push(`${t.name} available ${t.description}`);
      return lines.sort().join('\n') + '\n';
    },
    'admin.template.Install': async (ctx) => {
      const name = ctx.req.arg;
      templateRecipe(name); // unknown names are refused before anything else
      if (d.collection.find(name)) throw new QubesError('QubesVMAlreadyExistsError', `Template ${name} is already installed`);
      if (installing.has(name)) throw new QubesError('QubesVMAlreadyExistsError', `Template ${name} is already being installed`);
      installing.add(name);
      try {
        await installTemplate(d, name);
      } finally {
        installing.delete(name);
      }
      return '';
    },
  };
}

async function installTemplate(d: HandlerDeps, name: string): Promise<void> {
  const col = d.collection;
  let last = -1;
  const progress = (fraction: number, stage: string) => {
    // Events are for people: one per percent is plenty.
    const pct = Math.floor(fraction * 100);
    if (pct === last) return;
    last = pct;
    d.events.emit('', 'template-install-progress', { template: name, fraction: fraction.toFixed(2), stage });
  };
  const built = await buildTemplate({ name, cacheDir: path.join(d.config.cache, 'templates'), onProgress: (f, s) => progress(f * 0.8, s) });
  const draft: QubeRecord = {
    qid: 0, uuid: col.newUuid(), name, klass: 'TemplateVM', props: { label: 'black' },
    features: { 'template-name': name, os: 'Linux', 'template-cache-key': built.key.slice(0, 12) }, tags: ['created-by-dom0'],
  };
  await d.pool.create({ uuid: draft.uuid, klass: 'TemplateVM' }, {});
  try {
    progress(0.85, 'extracting');
    await d.pool.importRoot({ uuid: draft.uuid, klass: 'TemplateVM' }, async (dir) => {
      await extractTemplate(built.tarball, dir);
      const agentDst = path.join(dir, AGENT_IN_QUBE);
      await fs.mkdir(path.dirname(agentDst), { recursive: true });
      await fs.copyFile(path.join(d.config.libDir, 'isola-agent.js'), agentDst);
    });
    progress(0.97, 'registering');
    col.write(() => {
      draft.qid = col.store.nextQid();
      col.store.insertQube(draft);
      for (const v of volumeLayout('TemplateVM')) col.store.putVolume(draft.qid, { name: v.name, pool: d.pool.name, size: v.defaultSize, revisionsToKeep: 1 });
      if (col.globalValue('default_template').value === null) col.store.setGlobal('default_template', name);
    });
  } catch (e) {
    await d.pool.remove(draft.uuid);
    throw new QubesError('QubesException', `Installing template ${name} failed: ${(e as Error).message.split('\n')[0]}`);
  }
  progress(1, 'done');
  d.events.emit(name, 'domain-add', { klass: 'TemplateVM' });
}
