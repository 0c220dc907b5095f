// qvm-tags: list, query, add and remove a qube's tags (admin.vm.tag.*), with Qubes' commands and
// aliases: `list [TAG]` (ls, l; the default), `add TAG...` (a, set), `del TAG` (d, unset, u; one
// tag only, as Qubes). `list TAG` answers by its exit code (0 set, 1 not set).

import { isCode, lines, newProgram, pyRepr, resolveFirstVm, UsageError, type CliDeps } from './common';

export const description = "Manage a qube's tags.";

const MODES: Record<string, 'list' | 'add' | 'del'> = {
  list: 'list', ls: 'list', l: 'list',
  add: 'add', a: 'add', set: 'add',
  del: 'del', d: 'del', unset: 'del', u: 'del',
};

export async function run(argv: string[], deps: CliDeps): Promise<number> {
  const p = newProgram('qvm-tags', description, deps)
    .argument('<VMNAME>', 'qube whose tags to manage')
    .argument('[COMMAND]', 'list (ls, l) [TAG] | add (a, set) TAG... | del (d, unset, u) TAG; default: list')
    .argument('[TAG...]', 'tags');
  p.parse(argv, { from: 'user' });
  const [vmArg, command = 'list', ...tags] = p.args;
  const mode = MODES[command];
  if (!mode) throw new UsageError(`argument command: invalid choice: ${pyRepr(command)} (choose from ${Object.keys(MODES).map(pyRepr).join(', ')})`);
  // argparse's words for its sub-parsers' nargs: list '?', add '+', del 1.
  if (mode !== 'add' && tags.length > 1) throw new UsageError(`unrecognized arguments: ${tags.slice(1).join(' ')}`);
  if (mode !== 'list' && tags.length === 0) throw new UsageError('the following arguments are required: tag');
  if (tags.includes('')) throw new UsageError('a tag cannot be empty');
  const { client } = deps;
  const vm = (await resolveFirstVm(deps, vmArg)).name;

  if (mode === 'list' && tags.length === 1) {
    if ((await client.call('admin.vm.tag.Get', vm, { arg: tags[0] })).trim() !== '1') return 1;
    deps.stdout(tags[0] + '\n');
    return 0;
  }
  if (mode === 'list') {
    deps.stdout(lines(await client.call('admin.vm.tag.List', vm)).sort().map((t) => t + '\n').join(''));
    return 0;
  }
  for (const tag of tags) {
    if (mode === 'add') {
      await client.call('admin.vm.tag.Set', vm, { arg: tag });
      continue;
    }
    try {
      await client.call('admin.vm.tag.Remove', vm, { arg: tag });
    } catch (e) {
      // Qubes' discard(): removing a tag that is not there is not an error.
      if (!isCode(e, 'QubesTagNotFoundError')) throw e;
    }
  }
  return 0;
}
