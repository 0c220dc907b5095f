// qvm-create: one admin.vm.Create.<CLASS> call (template as argument, `name= label= k=v…` as
// payload). The payload is space-separated, so names and values are checked here for blanks.

import { nameProblem } from '../../core/names';
import { collect, creatableClasses, createMethod, lines, newProgram, UsageError, type CliDeps } from './common';

export const description = 'Create a new qube.';

interface CreateOptions {
  class: string;
  standalone?: boolean;
  template?: string;
  label?: string;
  property: string[];
  helpClasses?: boolean;
}

export async function run(argv: string[], deps: CliDeps): Promise<number> {
  const p = newProgram('qvm-create', description, deps)
    .usage('[options] --label LABEL VMNAME')
    .argument('[VMNAME]', 'name of the new qube')
    .option('-C, --class <CLASS>', `class of the new qube (${creatableClasses().join(', ')})`, 'AppVM')
    .option('--standalone', 'create a StandaloneVM (shortcut for --class StandaloneVM)')
    .option('-t, --template <TEMPLATE>', 'template the qube is based on (default: the default_template global property)')
    .option('-l, --label <LABEL>', 'label (colour) of the new qube; required')
    .option('--prop, --property <NAME=VALUE>', 'set a property of the new qube (repeatable)', collect, [])
    .option('--help-classes', 'list the classes that can be created and exit');
  p.parse(argv, { from: 'user' });
  const o = p.opts<CreateOptions>();

  if (o.helpClasses) {
    const classes = lines(await deps.client.call('admin.vmclass.List', 'dom0')).filter((c) => createMethod(c));
    deps.stdout(classes.map((c) => c + '\n').join(''));
    return 0;
  }
  const [name] = p.args;
  if (name === undefined) throw new UsageError('the following arguments are required: VMNAME');
  if (!o.label) throw new UsageError('the following arguments are required: --label/-l');
  const bad = nameProblem(name);
  if (bad) throw new UsageError(`invalid qube name '${name}': ${bad}`);
  if (/\s/.test(o.label)) throw new UsageError(`invalid label '${o.label}'`);
  if (o.standalone && p.getOptionValueSource('class') === 'cli' && o.class !== 'StandaloneVM') {
    throw new UsageError('--standalone cannot be combined with --class ' + o.class);
  }
  const klass = o.standalone ? 'StandaloneVM' : o.class;
  const method = createMethod(klass);
  if (!method) throw new UsageError(`cannot create a qube of class '${klass}' (choose from ${creatableClasses().join(', ')})`);

  const pairs = o.property.map((kv) => {
    const m = /^([A-Za-z_][A-Za-z0-9_-]*)=(\S*)$/.exec(kv);
    if (!m) throw new UsageError(`invalid --property '${kv}': expected NAME=VALUE without blanks`);
    return ` ${m[1].replace(/-/g, '_')}=${m[2]}`;
  });
  const payload = `name=${name} label=${o.label}${pairs.join('')}`;
  await deps.client.call(method, 'dom0', { arg: o.template ?? '', payload });
  return 0;
}
