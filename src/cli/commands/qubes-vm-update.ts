// qubes-vm-update (Qubes 4.3's name and options, core-admin-linux vmupdate): updates templates and
// standalones in place through the Admin API. Each chosen qube is started if halted, updated as root
// (apt-get update && apt-get -y dist-upgrade, non-interactive) through qubes.VMRootShell, and shut
// down again if it was started for this; a line per qube shows its state, a summary the outcome.
// Then the running qubes whose template changed are named (restarted with --apply-to-sys /
// --apply-to-all; --no-apply, the default, leaves them). Decisions live in ../vm-update/plan.

import { Option } from 'commander';
import { Readable, Writable } from 'node:stream';
import { runCall, StreamBrokenError } from '../qvm-run-io';
import {
  isSelected, printable, qubesTime, readOutcome, selectTargets, toRestart, UPDATABLE, UPDATE_SCRIPT,
  type DerivedQube, type Outcome, type Selection, type UpdateCandidate,
} from '../vm-update/plan';
import { Progress } from '../vm-update/progress';
import { isCode, lines, listQubes, newProgram, noSuchDomain, parsePropertyReply, UsageError, type QubeEntry } from './common';
import type { RunDeps } from './qvm-run';

export const description = 'Update templates and standalone qubes, and say which qubes must restart to see it.';

/** What a qube's update may print before the oldest output is dropped (a qube must not fill our memory). */
const OUTPUT_CAP = 256 * 1024;

interface Options {
  targets?: string;
  skip?: string;
  templates?: boolean;
  standalones?: boolean;
  apps?: boolean;
  all?: boolean;
  maxConcurrency: number;
  forceUpdate?: boolean;
  updateIfAvailable?: boolean;
  updateIfStale?: number;
  applyToSys?: boolean;
  applyToAll?: boolean;
  noApply?: boolean;
  signalNoUpdates?: boolean;
  dryRun?: boolean;
  progress: boolean;
  showOutput?: boolean;
  quiet?: boolean;
}

const positive = (what: string) => (v: string): number => {
  if (!/^[1-9]\d{0,5}$/.test(v)) throw new UsageError(`argument ${what}: invalid int value: '${v}'`);
  return Number(v);
};
const nonNegative = (what: string) => (v: string): number => {
  if (!/^\d{1,6}$/.test(v)) throw new UsageError(`argument ${what}: invalid int value: '${v}'`);
  return Number(v);
};
const names = (s: string | undefined) => (s ?? '').split(',').map((x) => x.trim()).filter(Boolean);

function parse(argv: string[], deps: RunDeps) {
  const p = newProgram('qubes-vm-update', description, deps, { verbosity: false })
    .option('--targets <TARGETS>', 'comma separated list of qubes to update, whatever their update state')
    .option('--skip <SKIP>', 'comma separated list of qubes to leave out')
    .option('-T, --templates', 'all templates (updatable TemplateVMs)')
    .option('-S, --standalones', 'all StandaloneVMs')
    .option('-A, --apps', 'running AppVMs, updated in place (the change is lost when they restart)')
    .option('--all', 'default: every template and StandaloneVM')
    .option('-x, --max-concurrency <N>', 'qubes updated at the same time', positive('--max-concurrency'), 4)
    .option('--force-update', 'update every targeted qube, even without known updates')
    .option('--update-if-available', 'update only the qubes with known updates available (feature updates-available)')
    .option('--update-if-stale <N>', 'default: update qubes with known updates or not updated for N days (default: 7)', nonNegative('--update-if-stale'))
    .option('-r, --apply-to-sys', '(also --restart) restart the service qubes (netvms, servicevm) whose template was updated; shut down updated templates that ran')
    .option('-R, --apply-to-all', 'as --apply-to-sys, and shut down the other qubes whose template was updated')
    .option('--no-apply', 'default: restart or shut down nothing, only name the qubes that must restart')
    .option('--signal-no-updates', 'exit with 100 instead of 0 when no qube had updates')
    .option('--dry-run', 'only print the qubes that would be updated')
    .option('--no-progress', 'no progress lines, only the summary')
    .addOption(new Option('--restart').hideHelp())
    .option('-v, --show-output', "(also --verbose) print each qube's update output after the summary")
    .addOption(new Option('--verbose').hideHelp())
    .option('-q, --quiet', 'print nothing but errors');
  p.parse(argv, { from: 'user' });
  const o = p.opts<Options & { restart?: boolean; verbose?: boolean }>();
  // Qubes' second names of two options (commander takes one long name per option).
  o.applyToSys ||= o.restart;
  o.showOutput ||= o.verbose;
  // commander turns --no-apply into apply=false: read it back under Qubes' name.
  o.noApply = (p.opts() as { apply?: boolean }).apply === false;
  const exclusive = [o.forceUpdate, o.updateIfAvailable, o.updateIfStale !== undefined].filter(Boolean).length;
  if (exclusive > 1) throw new UsageError('argument --force-update, --update-if-available and --update-if-stale are mutually exclusive');
  if ([o.applyToSys, o.applyToAll, o.noApply].filter(Boolean).length > 1) throw new UsageError('argument --apply-to-sys, --apply-to-all and --no-apply are mutually exclusive');
  if (p.args.length) throw new UsageError(`unrecognized arguments: ${p.args.join(' ')}`);
  const sel: Selection = o.forceUpdate ? { kind: 'force' } : o.updateIfAvailable ? { kind: 'available' } : { kind: 'stale', days: o.updateIfStale ?? 7 };
  return { o, sel };
}

async function features(deps: RunDeps, vm: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const have = new Set(lines(await deps.client.call('admin.vm.feature.List', vm)));
  for (const f of ['updates-available', 'last-updates-check', 'skip-update']) {
    if (have.has(f)) out.set(f, await deps.client.call('admin.vm.feature.Get', vm, { arg: f }));
  }
  return out;
}

async function prop(deps: RunDeps, vm: string, name: string): Promise<string> {
  return parsePropertyReply(await deps.client.call('admin.vm.property.Get', vm, { arg: name })).value;
}

/** A Writable that keeps the last OUTPUT_CAP bytes it was given. */
function capped(): { stream: Writable; text: () => string } {
  let chunks: Buffer[] = [];
  let size = 0;
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk);
      size += chunk.length;
      if (size > 2 * OUTPUT_CAP) {
        const all = Buffer.concat(chunks).subarray(-OUTPUT_CAP);
        chunks = [all];
        size = all.length;
      }
      cb();
    },
  });
  return { stream, text: () => Buffer.concat(chunks).subarray(-OUTPUT_CAP).toString('latin1') };
}

interface Result {
  name: string;
  outcome: Outcome;
  output: string;
}

async function updateOne(deps: RunDeps, q: QubeEntry, progress: Progress | undefined): Promise<Result> {
  const startedHere = q.state === 'Halted';
  let output = '';
  try {
    if (!UPDATABLE.has(q.klass) && !(q.klass === 'AppVM' && q.state === 'Running')) {
      return { name: q.name, outcome: { status: 'failed', detail: `a halted ${q.klass} cannot be updated (its root is its template's)` }, output };
    }
    if (q.state !== 'Running' && !startedHere) return { name: q.name, outcome: { status: 'failed', detail: `qube is ${q.state}` }, output };
    if (startedHere) {
      progress?.set(q.name, 'starting');
      await deps.client.call('admin.vm.Start', q.name);
    }
    progress?.set(q.name, 'updating');
    const out = capped();
    const call = { user: 'DEFAULT', service: 'qubes.VMRootShell', prefix: Buffer.from(`${UPDATE_SCRIPT}; exit\n`), justExec: false, autostart: false };
    let code: number;
    try {
      [code] = await runCall(deps.connect!, q.name, call, { kind: 'pass', stdin: Readable.from([]), stdout: out.stream, stderr: out.stream });
    } catch (e) {
      if (!(e instanceof StreamBrokenError)) throw e;
      code = 125;
    }
    output = out.text();
    const outcome = readOutcome(output, code);
    if (startedHere) {
      progress?.set(q.name, 'shutting down');
      // Waited for: a template's root is committed at its shutdown, and only then do its qubes see the change.
      await deps.client.call('admin.vm.Shutdown', q.name, { arg: 'wait' });
    }
    if (outcome.status !== 'failed') {
      await deps.client.call('admin.vm.feature.Set', q.name, { arg: 'last-updates-check', payload: qubesTime(new Date()) });
      await deps.client.call('admin.vm.feature.Remove', q.name, { arg: 'updates-available' }).catch((e: unknown) => {
        if (!isCode(e, 'QubesFeatureNotFoundError')) throw e;
      });
    }
    return { name: q.name, outcome, output };
  } catch (e) {
    return { name: q.name, outcome: { status: 'failed', detail: printable((e as Error).message) }, output };
  }
}

/** Runs fn over items, at most n at a time, results in the items' order. */
async function pool<T, R>(items: readonly T[], n: number, fn: (x: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  return out;
}

async function derivedQubes(deps: RunDeps, all: readonly QubeEntry[]): Promise<DerivedQube[]> {
  const running = all.filter((q) => (q.klass === 'AppVM' || q.klass === 'DispVM') && q.state === 'Running');
  return Promise.all(running.map(async (q) => {
    const tpl = await prop(deps, q.name, 'template');
    const templates = [tpl];
    if (q.klass === 'DispVM' && tpl) templates.push(await prop(deps, tpl, 'template').catch(() => ''));
    const net = (await prop(deps, q.name, 'provides_network')) === 'True';
    const svc = await deps.client.call('admin.vm.feature.Get', q.name, { arg: 'servicevm' }).then((v) => v !== '', (e: unknown) => {
      if (isCode(e, 'QubesFeatureNotFoundError')) return false;
      throw e;
    });
    return { name: q.name, klass: q.klass, state: q.state, templates: templates.filter(Boolean), servicevm: net || svc };
  }));
}

export async function run(argv: string[], deps: RunDeps): Promise<number> {
  const { o, sel } = parse(argv, deps);
  const say = (s: string) => !o.quiet && deps.stdout(s);
  const all = await listQubes(deps.client);
  const known = new Set(all.map((q) => q.name));
  for (const n of [...names(o.targets), ...names(o.skip)]) if (!known.has(n)) throw noSuchDomain(n);
  const entries = all.filter((q) => q.klass !== 'AdminVM');
  const relevant = entries.filter((q) => UPDATABLE.has(q.klass) || q.klass === 'AppVM' || names(o.targets).includes(q.name));
  const candidates: UpdateCandidate[] = await Promise.all(relevant.map(async (q) => ({ name: q.name, klass: q.klass, state: q.state, features: await features(deps, q.name) })));
  const { chosen } = selectTargets(candidates, {
    targets: names(o.targets), skip: names(o.skip), templates: Boolean(o.templates), standalones: Boolean(o.standalones), apps: Boolean(o.apps), all: Boolean(o.all),
  }, sel, new Date());
  if (chosen.length === 0) {
    say(`No qube to update${sel.kind === 'stale' ? ` (none has known updates or went ${sel.days} days without one; --force-update updates them anyway)` : ''}.\n`);
    return o.signalNoUpdates ? 100 : 0;
  }
  if (o.dryRun) {
    for (const q of chosen) say(`${q.name}: would be updated${isSelected(q, sel, new Date()) ? '' : ' (named in --targets)'}\n`);
    return 0;
  }
  const byName = new Map(entries.map((q) => [q.name, q]));
  // On a terminal the redrawn lines go to stderr with their cursor controls (one stream: no interleaving);
  // elsewhere plain lines on stdout, a log of the run.
  const progress = o.quiet || !o.progress ? undefined : new Progress(chosen.map((q) => q.name), {
    text: deps.isTTY ? deps.stderr : deps.stdout, controls: deps.controls ?? deps.stderr, tty: deps.isTTY, columns: deps.columns,
  });
  const results = await pool(chosen, o.maxConcurrency, async (c) => {
    const r = await updateOne(deps, byName.get(c.name)!, progress);
    progress?.set(c.name, r.outcome.status, r.outcome.status === 'no updates' ? '' : r.outcome.detail);
    return r;
  });

  say('\nSummary:\n');
  for (const status of ['updated', 'no updates', 'failed'] as const) {
    const of = results.filter((r) => r.outcome.status === status);
    if (of.length) say(`  ${status}: ${of.map((r) => r.name).join(', ')}\n`);
  }
  for (const r of results) if (r.outcome.status === 'failed') deps.stderr(`qubes-vm-update: ${r.name}: ${r.outcome.detail}\n`);
  if (o.showOutput) for (const r of results) say(`\n--- ${r.name} ---\n${r.output.split(/\r?\n/).map(printable).join('\n')}\n`);

  const updated = new Set(results.filter((r) => r.outcome.status === 'updated').map((r) => r.name));
  const code = await apply(deps, o, updated, say);
  if (results.some((r) => r.outcome.status === 'failed')) return 1;
  if (code) return code;
  return o.signalNoUpdates && updated.size === 0 ? 100 : 0;
}

/** Qubes' propagation: which running qubes see the new templates only after a restart, and what is done about it. */
async function apply(deps: RunDeps, o: Options, updated: ReadonlySet<string>, say: (s: string) => void): Promise<number> {
  if (updated.size === 0) return 0;
  const now = await listQubes(deps.client);
  const stale = toRestart(await derivedQubes(deps, now), updated);
  const runningTemplates = now.filter((q) => updated.has(q.name) && q.klass === 'TemplateVM' && q.state === 'Running').map((q) => q.name);
  if (!o.applyToSys && !o.applyToAll) {
    if (runningTemplates.length) say(`\nStill running, committed at their shutdown: ${runningTemplates.join(', ')}\n`);
    if (stale.length) say(`\nQubes to restart to use the updates (or run again with --apply-to-sys / --apply-to-all): ${stale.map((q) => q.name).join(', ')}\n`);
    return 0;
  }
  let code = 0;
  const step = async (what: string, fn: () => Promise<unknown>) => {
    try {
      await fn();
    } catch (e) {
      deps.stderr(`qubes-vm-update: ${what}: ${printable((e as Error).message)}\n`);
      code = 1;
    }
  };
  // The templates first: their shutdown commits the root the restarted qubes start from.
  for (const t of runningTemplates) await step(`shutting down ${t}`, () => deps.client.call('admin.vm.Shutdown', t, { arg: 'wait' }));
  for (const q of stale) {
    if (q.servicevm) {
      say(`Restarting ${q.name}\n`);
      await step(`restarting ${q.name}`, async () => {
        await deps.client.call('admin.vm.Shutdown', q.name, { arg: 'wait' });
        await deps.client.call('admin.vm.Start', q.name);
      });
    } else if (o.applyToAll) {
      say(`Shutting down ${q.name}\n`);
      await step(`shutting down ${q.name}`, () => deps.client.call('admin.vm.Shutdown', q.name, { arg: 'wait' }));
    }
  }
  const left = stale.filter((q) => !q.servicevm && !o.applyToAll);
  if (left.length) say(`\nQubes to restart to use the updates: ${left.map((q) => q.name).join(', ')}\n`);
  return code;
}
