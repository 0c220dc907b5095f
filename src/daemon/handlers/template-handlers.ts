// admin.template.* (Isola extensions): templates are built from Debian's archive with mmdebstrap
// (cached), extracted into a new TemplateVM's root and registered with Qubes' `template-*`
// features. Progress arrives as events; List answers as Qubes' repository query does.

import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { AdminMethod } from '../../core/admin-methods';
import { QubesError } from '../../core/errors';
import type { QubeRecord } from '../../core/qube';
import { volumeLayout } from '../../core/volumes';
import { buildTemplate, extractTemplate } from '../../storage/template-builder';
import { KNOWN_TEMPLATES, TEMPLATE_FORMAT_VERSION, tarballFileName, templateKey, templateRecipe } from '../../storage/template-cache';
import type { Handler } from '../admin-server';
import { AGENT_IN_QUBE } from '../../backends/sandbox';
import type { HandlerDeps } from './context';
import type { TemplateMeta } from '../../core/template-meta';
import { newQubeSizes } from '../volume-sizes';

/** Where Isola's templates come from, in Qubes' `reponame` field: Debian's archive, built locally. */
export const TEMPLATE_REPO = 'isola-debian';

const utc = (d: Date) => d.toISOString().slice(0, 19).replace('T', ' ');

/**
 * EVR of a Debian build: epoch 0, version = the UTC date of the build (Debian's archive changes
 * daily, so that is what tells two builds apart), release = Isola's template format version.
 * A template not built yet would be built today.
 */
export function templateMeta(name: string, built?: { mtime: Date; size: number }): TemplateMeta {
  const t = KNOWN_TEMPLATES.find((k) => k.name === name);
  const date = built?.mtime ?? new Date();
  return {
    name,
    epoch: '0',
    version: date.toISOString().slice(0, 10).replace(/-/g, ''),
    release: String(TEMPLATE_FORMAT_VERSION),
    reponame: TEMPLATE_REPO,
    size: built?.size ?? 0,
    buildtime: built ? utc(built.mtime) : '',
    license: 'DFSG-free',
    url: 'https://www.debian.org/',
    summary: `Isola template for ${name}`,
    description: `${t?.description ?? name}\nBuilt from Debian ${t?.suite ?? ''} (${t?.variant ?? ''}) with: ${t?.packages.join(', ') ?? ''}`,
  };
}

/** The cached build of a known template, if there is one (stat of its tarball). */
async function cachedBuild(d: HandlerDeps, name: string): Promise<{ mtime: Date; size: number } | undefined> {
  try {
    const file = path.join(d.config.cache, 'templates', tarballFileName(name, templateKey(templateRecipe(name))));
    const st = await fs.stat(file);
    return { mtime: st.mtime, size: st.size };
  } catch {
    return undefined;
  }
}

/** One entry as Qubes' qubes.TemplateSearch prints it: `|`-separated fields, ended by `|\n`. */
export const templateSearchLine = (m: TemplateMeta): string =>
  [m.name, m.epoch, m.version, m.release, m.reponame, String(m.size), m.buildtime.slice(0, 16), m.license, m.url, m.summary, m.description].join('|') + '|\n';

export function templateHandlers(d: HandlerDeps): Partial<Record<AdminMethod, Handler>> {
  const installing = new Set<string>();
  return {
    // What Qubes' repository query answers: every template that can be installed, installed or not.
    'admin.template.List': async () => {
      const out: string[] = [];
      for (const t of KNOWN_TEMPLATES) out.push(templateSearchLine(templateMeta(t.name, await cachedBuild(d, t.name))));
      return out.join('');
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

/** The features qvm-template sets on the templates it installs (Qubes' `template-*`). */
function templateFeatures(m: TemplateMeta, installed: Date): Record<string, string> {
  return {
    'template-name': m.name,
    'template-epoch': m.epoch,
    'template-version': m.version,
    'template-release': m.release,
    'template-reponame': m.reponame,
    'template-buildtime': m.buildtime,
    'template-installtime': utc(installed),
    'template-license': m.license,
    'template-url': m.url,
    'template-summary': m.summary,
    'template-description': m.description.replace(/\n/g, '|'),
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
  const st = await fs.stat(built.tarball);
  const meta = templateMeta(name, { mtime: st.mtime, size: st.size });
  const draft: QubeRecord = {
    qid: 0, uuid: col.newUuid(), name, klass: 'TemplateVM', props: { label: 'black' },
    features: { ...templateFeatures(meta, new Date()), os: 'Linux', 'template-cache-key': built.key.slice(0, 12) }, tags: ['created-by-dom0'],
  };
  const sizes = newQubeSizes('TemplateVM', d.config.volumeSizes);
  await d.pool.create({ uuid: draft.uuid, klass: 'TemplateVM', sizes }, {});
  try {
    progress(0.85, 'extracting');
    await d.pool.importRoot({ uuid: draft.uuid, klass: 'TemplateVM' }, async (dir) => {
      await extractTemplate(built.tarball, dir);
      const agentDst = path.join(dir, AGENT_IN_QUBE);
      await fs.mkdir(path.dirname(agentDst), { recursive: true });
      await fs.copyFile(path.join(d.config.libDir, path.basename(AGENT_IN_QUBE)), agentDst);
      await fs.chmod(agentDst, 0o755);
    });
    progress(0.97, 'registering');
    col.write(() => {
      draft.qid = col.store.nextQid();
      col.store.insertQube(draft);
      for (const v of volumeLayout('TemplateVM')) col.store.putVolume(draft.qid, { name: v.name, pool: d.pool.name, size: sizes[v.name] ?? v.defaultSize, revisionsToKeep: 1 });
      if (col.globalValue('default_template').value === null) col.store.setGlobal('default_template', name);
    });
  } catch (e) {
    await d.pool.remove(draft.uuid);
    throw new QubesError('QubesException', `Installing template ${name} failed: ${(e as Error).message.split('\n')[0]}`);
  }
  progress(1, 'done');
  d.events.emit(name, 'domain-add', { klass: 'TemplateVM' });
}
