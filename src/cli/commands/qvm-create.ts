// qvm-create: one admin.vm.Create.<CLASS> call (template as argument, `name= label= k=v…` as
// payload). The payload is space-separated, so names and values are checked here for blanks.
// Unlike Qubes (which creates the qube, then sets each --prop and may fail half-way), the
// properties travel in the create call: a bad one creates nothing.

import { nameProblem } from '../../core/names';
import { collect, creatableClasses, createMethod, lines, newProgram, pyRepr, UsageError, type CliDeps } from './common';

export const description = 'Create a new qube.';

/** Qubes' classes that Isola does not create (yet): refused as such, not as unknown. */
const QUBES_ONLY = ['AdminVM', 'DispVM'];

interface CreateOptions {
  class: string;
  standalone?: boolean;
  disp?: boolean;
  template?: string;
  label?: string;
  property: string[];
  helpClasses?: boolean;
}

export async function run(argv: string[], deps: CliDeps): Promise<number> {
  const p = newProgram('qvm-create', description, deps)
    .usage('[options] --label LABEL VMNAME')
    .argument('[VMNAME]', 'name of the new qube')
    .option('-C, --class <CLASS>', 'class of the new qube (default: AppVM; see --help-classes)', 'AppVM')
    .option('--standalone', 'shortcut for --class StandaloneVM')
    .option('--disp', 'alias for --class DispVM --label red')
    .option('-t, --template <TEMPLATE>', 'template the qube is based on (default: the default_template global property)')
    .option('-l, --label <LABEL>', 'label (colour) of the new qube, e.g. red, yellow, green; required')
    .option('--prop, --property <NAME=VALUE>', 'set a property of the new qube (repeatable)', collect, [])
    .option('--help-classes', 'list the classes that can be created and exit');
  p.parse(argv, { from: 'user' });
  const o = p.opts<CreateOptions>();
  const { client } = deps;

  if (o.helpClasses) {
    // Qubes lists the classes sorted; only those Isola can create are shown.
    const classes = lines(await client.call('admin.vmclass.List', 'dom0')).filter((c) => createMethod(c)).sort();
    deps.stdout(classes.map((c) => c + '\n').join(''));
    return 0;
  }
  const [name] = p.args;
  let klass = o.class;
  let label = o.label;
  if (o.disp) {
    klass = 'DispVM';
    label ??= 'red';
  }
  if (o.standalone) klass = 'StandaloneVM';
  // Qubes' order and words: the label is checked first, then the name.
  if (!label) throw new UsageError('--label option is mandatory');
  if (name === undefined) throw new UsageError('VMNAME is mandatory');
  const bad = nameProblem(name);
  if (bad) throw new UsageError(`invalid qube name ${pyRepr(name)}: ${bad}`);
  const pairs = o.property.map((kv) => {
    const m = /^([A-Za-z_][A-Za-z0-9_-]*)=(\S*)$/.exec(kv);
    if (!m) throw new UsageError(kv.includes('=') ? `invalid property token: ${pyRepr(kv)} (a value cannot contain blanks)` : `Invalid property token: ${pyRepr(kv)}`);
    return ` ${m[1].replace(/-/g, '_')}=${m[2]}`;
  });

  // Both lookups are reads; nothing is created unless the label and the class exist.
  const labels = lines(await client.call('admin.label.List', 'dom0'));
  if (!labels.includes(label)) throw new UsageError(`no such label: ${pyRepr(label)}; available: ${labels.join(', ')}`);
  const method = createMethod(klass);
  if (!method && QUBES_ONLY.includes(klass)) throw new UsageError(`cannot create a qube of class ${pyRepr(klass)} (choose from ${creatableClasses().sort().join(', ')})`);
  if (!method) throw new UsageError(`no such domain class: ${pyRepr(klass)}`);

  const payload = `name=${name} label=${label}${pairs.join('')}`;
  await client.call(method, 'dom0', { arg: o.template ?? '', payload });
  return 0;
}
