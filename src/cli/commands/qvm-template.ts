// qvm-template: install templates (admin.template.Install, progress from admin.Events), list and
// describe them as Qubes' client does (list, info) and remove them (admin.vm.Remove).

import { formatTable, progress } from '../output';
import {
  availableTemplates, compareEvr, evrString, installedTemplates, matchesSpec, pyJson, sizeToHuman, STATE_TITLE, type Template, type TemplateState,
} from '../template-query';
import { ensureCanAsk, forEachQube, listQubes, newProgram, noSuchDomain, UsageError, verbosity, type CliDeps } from './common';

export const description = 'Install, list and remove templates.';

const PROGRESS_EVENT = 'template-install-progress';

interface GlobalOptions {
  yes?: boolean;
  verbose: number;
  quiet: number;
}

async function install(deps: CliDeps, name: string, quiet: boolean): Promise<void> {
  const bar = progress(deps, `Installing ${name}`, quiet);
  let close: (() => void) | undefined;
  try {
    // Subscribe before the call so that no progress event is missed; progress is a nicety,
    // so a refused subscription does not stop the installation.
    close = await deps.client
      .events((e) => {
        if (e.event === PROGRESS_EVENT && e.kwargs.template === name) bar.update(Number(e.kwargs.fraction), e.kwargs.stage ?? '');
      })
      .catch(() => undefined);
    await deps.client.call('admin.template.Install', 'dom0', { arg: name });
  } finally {
    bar.stop();
    close?.();
  }
  deps.stdout(`Installed ${name}\n`);
}

interface ListOptions {
  all?: boolean;
  installed?: boolean;
  available?: boolean;
  extras?: boolean;
  upgrades?: boolean;
  allVersions?: boolean;
  machineReadable?: boolean;
  machineReadableJson?: boolean;
}

/** Qubes' list_templates: the selected states in Qubes' order, each row a template. */
async function query(deps: CliDeps, specs: string[], o: ListOptions, full: boolean): Promise<[TemplateState, Template][]> {
  const all = o.all || !(o.installed || o.available || o.extras || o.upgrades);
  const wanted = (t: Template) => specs.length === 0 || specs.some((s) => matchesSpec(t, s));
  const repo = all || o.available || o.extras || o.upgrades ? (await availableTemplates(deps.client)).filter(wanted) : [];
  const local = all || o.installed || o.extras || o.upgrades ? (await installedTemplates(deps.client, full)).filter(wanted) : [];
  const out: [TemplateState, Template][] = [];
  if (all || o.installed) for (const t of local) out.push(['installed', t]);
  if (all || o.available) for (const t of repo) out.push(['available', t]);
  if (o.extras) for (const t of local) if (!repo.some((r) => r.name === t.name)) out.push(['extra', t]);
  if (o.upgrades) {
    for (const t of repo) {
      const mine = local.find((l) => l.name === t.name);
      if (mine && compareEvr(mine, t) < 0) out.push(['upgradable', t]);
    }
  }
  if (out.length === 0) throw new UsageError('No matching templates to list');
  return out;
}

/** Consecutive rows of one state, as itertools.groupby gives them. */
function groups<T>(rows: [TemplateState, T][]): [TemplateState, T[]][] {
  const out: [TemplateState, T[]][] = [];
  for (const [state, row] of rows) {
    if (out.length > 0 && out[out.length - 1][0] === state) out[out.length - 1][1].push(row);
    else out.push([state, [row]]);
  }
  return out;
}

function infoFields(t: Template): Record<string, string> {
  return {
    name: t.name, epoch: t.epoch, version: t.version, release: t.release, reponame: t.reponame, size: String(t.size),
    buildtime: t.buildtime, installtime: t.installtime, license: t.license, url: t.url, summary: t.summary, description: t.description,
  };
}

function infoRows(state: TemplateState, t: Template): string[][] {
  const rows = [
    ['Name', ':', t.name], ['Epoch', ':', t.epoch], ['Version', ':', t.version], ['Release', ':', t.release],
    ['Size', ':', sizeToHuman(t.size)], ['Repository', ':', t.reponame], ['Buildtime', ':', t.buildtime],
  ];
  if (state === 'installed' || state === 'extra') rows.push(['Install time', ':', t.installtime]);
  rows.push(['URL', ':', t.url], ['License', ':', t.license], ['Summary', ':', t.summary]);
  t.description.split('\n').filter((l, i, a) => l !== '' || i < a.length - 1).forEach((l, i) => rows.push([i === 0 ? 'Description' : '', ':', l]));
  rows.push([' ', ' ', ' ']);
  return rows;
}

async function listOrInfo(deps: CliDeps, command: 'list' | 'info', specs: string[], o: ListOptions): Promise<number> {
  if (o.machineReadable && o.machineReadableJson) throw new UsageError('argument --machine-readable-json: not allowed with argument --machine-readable');
  const rows = await query(deps, specs, o, command === 'info');
  const listRow = (t: Template) => ({ name: t.name, evr: evrString(t), reponame: t.reponame });
  if (o.machineReadable) {
    for (const [state, t] of rows) {
      const fields = command === 'list' ? Object.values(listRow(t)) : Object.values({ ...infoFields(t), description: t.description.replace(/\n/g, '|') });
      deps.stdout([state, ...fields].join('|') + '\n');
    }
  } else if (o.machineReadableJson) {
    const json: Record<string, unknown[]> = {};
    for (const [state, ts] of groups(rows)) json[state] = ts.map((t) => (command === 'list' ? listRow(t) : infoFields(t)));
    deps.stdout(pyJson(json) + '\n');
  } else {
    for (const [state, ts] of groups(rows)) {
      deps.stdout(STATE_TITLE[state] + '\n');
      deps.stdout(formatTable(command === 'list' ? ts.map((t) => [t.name, evrString(t), t.reponame]) : ts.flatMap((t) => infoRows(state, t))));
    }
  }
  return 0;
}

async function remove(deps: CliDeps, names: string[], yes: boolean): Promise<number> {
  const ask = yes ? undefined : ensureCanAsk(deps, '-y/--yes');
  const qubes = new Map((await listQubes(deps.client)).map((q) => [q.name, q.klass]));
  for (const n of names) {
    const klass = qubes.get(n);
    if (klass === undefined) throw noSuchDomain(n);
    if (klass !== 'TemplateVM') throw new UsageError(`'${n}' is ${/^[AEIOU]/.test(klass) ? 'an' : 'a'} ${klass}, not a template; remove it with qvm-remove`);
  }
  if (ask) {
    deps.stderr('This will completely remove the selected VM(s)...\n' + names.map((n) => `  ${n}\n`).join(''));
    if ((await ask('Are you sure? [y/N] ')).trim().toUpperCase() !== 'Y') {
      deps.stderr('Remove cancelled.\n');
      return 1;
    }
  }
  return forEachQube('qvm-template', deps, names, async (n) => {
    await deps.client.call('admin.vm.Remove', n);
  });
}

export async function run(argv: string[], deps: CliDeps): Promise<number> {
  const p = newProgram('qvm-template', description, deps).option('-y, --yes', 'assume yes to questions');
  const g = () => p.opts<GlobalOptions>();
  let act: (() => Promise<number>) | undefined;
  p.command('install').description('Install template packages.')
    .argument('<TEMPLATE...>', 'templates to install (see: qvm-template list --available)')
    .action((names: string[]) => {
      act = () => forEachQube('qvm-template', deps, [...new Set(names)], (n) => install(deps, n, verbosity(g()) < 1));
    });
  for (const [command, help] of [['list', 'List templates.'], ['info', 'Display details about templates.']] as const) {
    p.command(command).description(help)
      .option('--all', 'Show all templates (default).')
      .option('--installed', 'Show installed templates.')
      .option('--available', 'Show available templates.')
      .option('--extras', 'Show extras (e.g., ones that exist locally but not in repos) templates.')
      .option('--upgrades', 'Show available upgrades.')
      .option('--all-versions', 'Show all available versions, not only the latest.')
      .option('--machine-readable', 'Enable machine-readable output.')
      .option('--machine-readable-json', 'Enable machine-readable output (JSON).')
      .argument('[TEMPLATESPEC...]', 'templates to show: NAME, NAME-VERSION-RELEASE, … (wildcards allowed)')
      .action((specs: string[], o: ListOptions) => {
        act = () => listOrInfo(deps, command, specs, o);
      });
  }
  p.command('remove').description('Remove installed templates.')
    .argument('<TEMPLATE...>', 'templates to remove')
    .action((names: string[]) => {
      act = () => remove(deps, [...new Set(names)], Boolean(g().yes));
    });
  p.parse(argv, { from: 'user' });
  if (!act) throw new UsageError('a command is required: install, list, info or remove');
  return act();
}
