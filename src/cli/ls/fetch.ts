// What qvm-ls asks isolad beyond admin.vm.List, and only when a column or filter needs it: one
// property.GetAll per qube, CurrentState per running qube, volume.Info per needed volume, tags and
// features per qube. Calls for different qubes run in parallel.

import { isCode, lines, parseGetAll, parseKeyValueLines, parseTokens, type CliDeps, type PropertyReply } from '../commands/common';
import type { LsContext, LsQube, Needs } from './columns';

/** The union of what the columns need. */
export function mergeNeeds(all: readonly Needs[]): Needs {
  const out: Needs = {};
  const vols = new Set<string>();
  for (const n of all) {
    if (n.props) out.props = true;
    if (n.state) out.state = true;
    if (n.netvmProps) out.netvmProps = true;
    if (n.volumes === 'all') out.volumes = 'all';
    else if (n.volumes && out.volumes !== 'all') for (const v of n.volumes) vols.add(v);
  }
  if (out.volumes !== 'all' && vols.size > 0) out.volumes = [...vols];
  return out;
}

export async function fetchProps(deps: CliDeps, qubes: readonly LsQube[]): Promise<void> {
  await Promise.all(qubes.filter((q) => !q.props).map(async (q) => {
    q.props = parseGetAll(await deps.client.call('admin.vm.property.GetAll', q.entry.name));
  }));
}

/** CurrentState of each qube that runs (MEMORY is `-` for a halted one, so it is not asked). */
async function fetchState(deps: CliDeps, qubes: readonly LsQube[]): Promise<void> {
  await Promise.all(qubes.filter((q) => q.entry.state !== 'Halted' && q.entry.state !== 'NA').map(async (q) => {
    q.state = parseTokens(await deps.client.call('admin.vm.CurrentState', q.entry.name));
  }));
}

/** A volume the qube does not have counts as absent (Qubes' KeyError -> 0), not as a failure. */
async function volumeInfo(deps: CliDeps, vm: string, vol: string): Promise<Map<string, string> | undefined> {
  try {
    return parseKeyValueLines(await deps.client.call('admin.vm.volume.Info', vm, { arg: vol }));
  } catch (e) {
    if (isCode(e, 'QubesValueError')) return undefined;
    throw e;
  }
}

async function fetchVolumes(deps: CliDeps, qubes: readonly LsQube[], which: readonly string[] | 'all'): Promise<void> {
  await Promise.all(qubes.map(async (q) => {
    q.volumes = new Map();
    // dom0 has no volumes (and admin.vm.volume.* cannot be asked of it).
    if (q.entry.klass === 'AdminVM') return;
    const names = which === 'all' ? lines(await deps.client.call('admin.vm.volume.List', q.entry.name)) : which;
    const infos = await Promise.all(names.map((v) => volumeInfo(deps, q.entry.name, v)));
    names.forEach((v, i) => infos[i] && q.volumes?.set(v, infos[i]!));
  }));
}

/** Everything the columns need for the qubes that will be shown; returns the context for GATEWAY. */
export async function fetchForColumns(deps: CliDeps, qubes: readonly LsQube[], needs: Needs): Promise<LsContext> {
  const extra = new Map<string, Map<string, PropertyReply>>();
  await Promise.all([
    needs.props ? fetchProps(deps, qubes) : undefined,
    needs.state ? fetchState(deps, qubes) : undefined,
    needs.volumes ? fetchVolumes(deps, qubes, needs.volumes) : undefined,
  ]);
  const listed = new Map(qubes.map((q) => [q.entry.name, q]));
  if (needs.netvmProps) {
    const missing = new Set<string>();
    for (const q of qubes) {
      const netvm = q.props?.get('netvm')?.value;
      if (netvm && !listed.get(netvm)?.props) missing.add(netvm);
    }
    await Promise.all([...missing].map(async (n) => {
      extra.set(n, parseGetAll(await deps.client.call('admin.vm.property.GetAll', n)));
    }));
  }
  return { propsOf: (n) => listed.get(n)?.props ?? extra.get(n) };
}

/** `admin.vm.tag.List` of each qube. */
export async function fetchTags(deps: CliDeps, qubes: readonly LsQube[]): Promise<Map<string, string[]>> {
  const tags = await Promise.all(qubes.map(async (q) => lines(await deps.client.call('admin.vm.tag.List', q.entry.name))));
  return new Map(qubes.map((q, i) => [q.entry.name, tags[i]]));
}

/** A feature's value, or undefined when the qube does not have it (Qubes' features.get(name, None)). */
export async function featureOf(deps: CliDeps, vm: string, feature: string): Promise<string | undefined> {
  try {
    return await deps.client.call('admin.vm.feature.Get', vm, { arg: feature });
  } catch (e) {
    if (isCode(e, 'QubesFeatureNotFoundError')) return undefined;
    throw e;
  }
}
