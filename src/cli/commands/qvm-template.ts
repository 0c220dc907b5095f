// qvm-template: install templates (admin.template.Install, progress from admin.Events), list the
// installed and available ones (admin.template.List) and remove them (admin.vm.Remove).

import { formatTable, progress } from '../output';
import { ensureCanAsk, forEachQube, lines, listQubes, newProgram, UsageError, verbosity, type CliDeps } from './common';

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
  installed?: boolean;
  available?: boolean;
  machineReadable?: boolean;
}

async function list(deps: CliDeps, o: ListOptions): Promise<number> {
  const entries = lines(await deps.client.call('admin.template.List', 'dom0')).map((l) => {
    const [name, status = '', ...detail] = l.split(' ');
    return { name, status, detail: detail.join(' ') };
  });
  const wanted = (['installed', 'available'] as const).filter((s) => (!o.installed && !o.available) || o[s]);
  if (o.machineReadable) {
    deps.stdout(entries.filter((e) => (wanted as string[]).includes(e.status)).map((e) => `${e.status}|${e.name}|${e.detail}\n`).join(''));
    return 0;
  }
  for (const status of wanted) {
    const rows = entries.filter((e) => e.status === status).map((e) => [e.name, e.detail]);
    if (rows.length > 0) deps.stdout(`${status === 'installed' ? 'Installed' : 'Available'} Templates\n` + formatTable(rows));
  }
  return 0;
}

async function remove(deps: CliDeps, names: string[], yes: boolean): Promise<number> {
  const ask = yes ? undefined : ensureCanAsk(deps, '-y/--yes');
  const qubes = new Map((await listQubes(deps.client)).map((q) => [q.name, q.klass]));
  for (const n of names) {
    const klass = qubes.get(n);
    if (klass === undefined) throw new UsageError(`'${n}' is not an installed template (see: qvm-template list --installed)`);
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
  p.command('install').description('build and install templates (progress on stderr)')
    .argument('<TEMPLATE...>', 'templates to install (see: qvm-template list --available)')
    .action((names: string[]) => {
      act = () => forEachQube('qvm-template', deps, [...new Set(names)], (n) => install(deps, n, verbosity(g()) < 1));
    });
  p.command('list').alias('ls').description('list installed and available templates')
    .option('--installed', 'only installed templates')
    .option('--available', 'only templates available for installation')
    .option('--all', 'installed and available templates (the default)')
    .option('--machine-readable', 'STATUS|NAME|DETAIL lines, for scripts')
    .action((o: ListOptions) => {
      act = () => list(deps, o);
    });
  p.command('remove').description('remove installed templates')
    .argument('<TEMPLATE...>', 'templates to remove')
    .action((names: string[]) => {
      act = () => remove(deps, [...new Set(names)], Boolean(g().yes));
    });
  p.parse(argv, { from: 'user' });
  if (!act) throw new UsageError('a command is required: install, list or remove');
  return act();
}
