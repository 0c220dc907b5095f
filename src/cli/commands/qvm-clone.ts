// qvm-clone: copy a qube (properties, features, tags, volumes) under a new name. Isola does it
// in one admin.vm.Clone call (an extension) so that the copy is all-or-nothing on the daemon side.

import { nameProblem } from '../../core/names';
import { creatableClasses, newProgram, pyRepr, resolveFirstVm, UsageError, type CliDeps } from './common';

export const description = 'Clone a qube under a new name.';

export async function run(argv: string[], deps: CliDeps): Promise<number> {
  const p = newProgram('qvm-clone', description, deps)
    .argument('<VMNAME>', 'qube to clone')
    .argument('<NEWVM>', 'name of the copy')
    .option('-C, --class <CLASS>', 'class of the copy (default: same as source)');
  p.parse(argv, { from: 'user' });
  const [sourceArg, name] = p.args;
  const { class: klass } = p.opts<{ class?: string }>();
  const bad = nameProblem(name);
  if (bad) throw new UsageError(`invalid qube name ${pyRepr(name)}: ${bad}`);
  if (klass !== undefined && !creatableClasses().includes(klass)) throw new UsageError(`no such domain class: ${pyRepr(klass)}`);
  const source = await resolveFirstVm(deps, sourceArg);
  await deps.client.call('admin.vm.Clone', source.name, { payload: `name=${name}${klass ? ` class=${klass}` : ''}` });
  return 0;
}
