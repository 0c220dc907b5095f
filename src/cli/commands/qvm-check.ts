// qvm-check: answers by exit code whether qubes exist (or are running, paused, templates), from a
// single admin.vm.List: 0 all match, 1 none match or a qube does not exist, 3 some match.

import { addTargetOptions, checkTargets, listQubes, newProgram, verbosity, type CliDeps, type QubeEntry, type TargetOptions } from './common';

export const description = 'Check whether qubes exist, run, are paused or are templates.';

interface CheckOptions extends TargetOptions {
  running?: boolean;
  paused?: boolean;
  template?: boolean;
  verbose: number;
  quiet: number;
}

export async function run(argv: string[], deps: CliDeps): Promise<number> {
  const p = addTargetOptions(newProgram('qvm-check', description, deps).argument('[VMNAME...]', 'qubes to check'))
    .option('--running', 'whether the qubes are running')
    .option('--paused', 'whether the qubes are paused')
    .option('--template', 'whether the qubes are templates');
  p.parse(argv, { from: 'user' });
  const o = p.opts<CheckOptions>();
  checkTargets(p.args, o);
  const say = (s: string) => verbosity(o) >= 1 && deps.stderr(`qvm-check: ${s}\n`);

  const all = await listQubes(deps.client);
  const byName = new Map(all.map((q) => [q.name, q]));
  const targets = o.all ? all.filter((q) => q.klass !== 'AdminVM' && !o.exclude.includes(q.name)).map((q) => q.name) : [...new Set(p.args)];
  const existing = targets.filter((n) => byName.has(n)).sort();
  const missing = targets.filter((n) => !byName.has(n)).sort();

  const filters: [string, (q: QubeEntry) => boolean][] = [];
  if (o.running) filters.push(['running', (q) => q.state === 'Running']);
  if (o.paused) filters.push(['paused', (q) => q.state === 'Paused']);
  if (o.template) filters.push(['template', (q) => q.klass === 'TemplateVM']);

  const why = (n: string) => (byName.get(n)?.lastError ? ` (last run: ${byName.get(n)!.lastError})` : '');
  let code: number;
  if (filters.length === 0) {
    code = existing.length > 0 ? 0 : 1;
    for (const n of existing) say(`${n}: exists${why(n)}`);
  } else {
    const status = filters.map(([s]) => s).join(', ');
    const matching = existing.filter((n) => filters.every(([, test]) => test(byName.get(n) as QubeEntry)));
    code = matching.length === targets.length ? 0 : matching.length === 0 ? 1 : 3;
    for (const n of existing) say(matching.includes(n) ? `${n}: ${status}` : `${n}: not ${status}${why(n)}`);
  }
  for (const n of missing) say(`${n}: non-existent!`);
  return missing.length > 0 ? 1 : code;
}
