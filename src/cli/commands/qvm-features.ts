// qvm-features: list, show, set and unset a qube's features (admin.vm.feature.*), free-form
// string pairs that extensions and policy read; the empty string means false.

import { formatTable } from '../output';
import { isCode, lines, newProgram, resolveFirstVm, UsageError, type CliDeps } from './common';

export const description = "Manage a qube's features.";

interface FeatureOptions {
  unset?: boolean;
  default?: boolean;
  delete?: boolean;
}

export async function run(argv: string[], deps: CliDeps): Promise<number> {
  const p = newProgram('qvm-features', description, deps)
    .argument('<VMNAME>', 'qube whose features to manage')
    .argument('[FEATURE]', 'name of the feature')
    .argument('[VALUE]', 'new value of the feature')
    .option('-D, --unset', 'unset the feature')
    .option('--default', 'unset the feature (same as --unset)')
    .option('--delete', 'unset the feature (same as --unset)');
  p.parse(argv, { from: 'user' });
  const o = p.opts<FeatureOptions>();
  const [vmArg, feature, value] = p.args;
  const unset = Boolean(o.unset || o.default || o.delete);
  if (feature === undefined && unset) throw new UsageError('--unset requires a feature');
  if (unset && value !== undefined) throw new UsageError('cannot both set and unset a value');
  if (feature === '') throw new UsageError('a feature name cannot be empty');
  const { client } = deps;
  const vm = (await resolveFirstVm(deps, vmArg)).name;

  if (feature === undefined) {
    const names = lines(await client.call('admin.vm.feature.List', vm));
    const values = await Promise.all(names.map((n) => client.call('admin.vm.feature.Get', vm, { arg: n })));
    deps.stdout(formatTable(names.map((n, i) => [n, values[i]])));
    return 0;
  }
  if (unset) {
    try {
      await client.call('admin.vm.feature.Remove', vm, { arg: feature });
    } catch (e) {
      if (!isCode(e, 'QubesFeatureNotFoundError')) throw e;
    }
    return 0;
  }
  if (value !== undefined) {
    await client.call('admin.vm.feature.Set', vm, { arg: feature, payload: value });
    return 0;
  }
  try {
    deps.stdout((await client.call('admin.vm.feature.Get', vm, { arg: feature })) + '\n');
    return 0;
  } catch (e) {
    // An unset feature is an answer, not an error: exit 1 without a message, as Qubes does.
    if (isCode(e, 'QubesFeatureNotFoundError')) return 1;
    throw e;
  }
}
