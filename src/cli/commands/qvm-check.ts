// qvm-check: answers by exit code whether qubes exist (or are running, paused, templates,
// networked): 0 all match, 1 none match or a qube does not exist, 3 some match. As Qubes, an
// unknown name is an answer (`NAME: non-existent!`, exit 1), not a usage error, and only the
// matching qubes are named (`None of qubes: running` when none match).

import {
  addTargetOptions, checkTargets, expandVmNames, hasWildcard, listQubes, newProgram, parsePropertyReply, verbosity,
  type CliDeps, type QubeEntry, type TargetOptions,
} from './common';
import { inert } from '../output';

export const description = 'Check whether qubes exist, run, are paused, are templates or can reach the network.';

interface CheckOptions extends TargetOptions {
  running?: boolean;
  paused?: boolean;
  template?: boolean;
  networked?: boolean;
  verbose: number;
  quiet: number;
}

type Check = [status: string, test: (q: QubeEntry) => boolean | Promise<boolean>];

export async function run(argv: string[], deps: CliDeps): Promise<number> {
  const p = addTargetOptions(newProgram('qvm-check', description, deps).argument('[VMNAME...]', 'qubes to check'))
    .option('--running', 'determine if (any of given) qube is running')
    .option('--paused', 'determine if (any of given) qube is paused')
    .option('--template', 'determine if (any of given) qube is a template')
    .option('--networked', 'determine if (any of given) qube can reach the network');
  p.parse(argv, { from: 'user' });
  const o = p.opts<CheckOptions>();
  checkTargets(p.args, o);
  const level = verbosity(o);
  const info = (s: string) => level >= 1 && deps.stderr(`qvm-check: ${s}\n`);

  const all = await listQubes(deps.client);
  const byName = new Map(all.map((q) => [q.name, q]));
  let domains: QubeEntry[];
  const invalid: string[] = [];
  if (o.all) {
    domains = all.filter((q) => q.klass !== 'AdminVM' && !o.exclude.includes(q.name));
  } else {
    domains = [];
    for (const arg of p.args) {
      const found = hasWildcard(arg) ? expandVmNames(all, [arg]) : byName.has(arg) ? [byName.get(arg) as QubeEntry] : [];
      if (found.length === 0 && !invalid.includes(arg)) invalid.push(arg);
      for (const q of found) if (!domains.includes(q)) domains.push(q);
    }
  }

  const checks: Check[] = [];
  if (o.running) checks.push(['running', (q) => q.state === 'Running']);
  if (o.paused) checks.push(['paused', (q) => q.state === 'Paused']);
  if (o.template) checks.push(['template', (q) => q.klass === 'TemplateVM']);
  if (o.networked) checks.push(['networked', (q) => isNetworked(deps, q)]);

  const byNameOrder = (qs: QubeEntry[]) => [...qs].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  let code = 0;
  if (checks.length === 0) {
    if (domains.length === 0) code = 1;
    else for (const q of byNameOrder(domains)) info(`${q.name}: exists`);
  } else {
    const matching: QubeEntry[] = [];
    for (const q of domains) {
      let ok = true;
      for (const [, test] of checks) if (!(await test(q))) ok = false;
      if (ok) matching.push(q);
    }
    if (matching.length !== domains.length) code = matching.length === 0 ? 1 : 3;
    const status = checks.map(([s]) => s).join(', ');
    if (matching.length === 0) info(`None of qubes: ${status}`);
    else for (const q of byNameOrder(matching)) info(`${q.name}: ${status}`);
    // Isola's addition, at -v only: why a qube that should run does not (its last run's end).
    if (level >= 2) for (const q of domains) if (!matching.includes(q) && q.lastError) deps.stderr(`qvm-check: ${q.name}: last run: ${inert(q.lastError)}\n`);
  }
  for (const n of [...invalid].sort()) {
    if (level >= 1) deps.stderr(`qvm-check: ${n}: non-existent!\n`);
    code = 1;
  }
  return code;
}

/** Qubes' is_networked: the qube provides network, or its netvm is not none. */
async function isNetworked(deps: CliDeps, q: QubeEntry): Promise<boolean> {
  if (q.klass === 'AdminVM') return false;
  const provides = await deps.client.call('admin.vm.property.Get', q.name, { arg: 'provides_network' }).then(
    (r) => /^true$/i.test(parsePropertyReply(r).value),
    () => false, // a property this isolad does not have: only netvm decides
  );
  if (provides) return true;
  return parsePropertyReply(await deps.client.call('admin.vm.property.Get', q.name, { arg: 'netvm' })).value !== '';
}
