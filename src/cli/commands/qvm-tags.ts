// qvm-tags: list, query, add and remove a qube's tags (admin.vm.tag.*). `list TAG` answers by its
// exit code (0 set, 1 not set), which is what scripts and policy authors use it for.

import { isCode, lines, newProgram, UsageError, type CliDeps } from './common';

export const description = "Manage a qube's tags.";

const MODES: Record<string, 'list' | 'add' | 'del'> = {
  list: 'list', ls: 'list', l: 'list',
  add: 'add', a: 'add', set: 'add',
  del: 'del', d: 'del', unset: 'del', u: 'del',
};

export async function run(argv: string[], deps: CliDeps): Promise<number> {
  const p = newProgram('qvm-tags', description, deps)
    .argument('<VMNAME>', 'qube whose tags to manage')
    .argument('[COMMAND]', 'list (ls, l) [TAG] | add (a, set) TAG... | del (d, unset, u) TAG...; default: list')
    .argument('[TAG...]', 'tags');
  p.parse(argv, { from: 'user' });
  const [vm, command = 'list', ...tags] = p.args;
  const mode = MODES[command];
  if (!mode) throw new UsageError(`invalid command '${command}' (choose from list, add, del)`);
  if (mode === 'list' && tags.length > 1) throw new UsageError('list takes at most one tag');
  if (mode !== 'list' && tags.length === 0) throw new UsageError(`${command} requires at least one tag`);
  const { client } = deps;

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
      if (!isCode(e, 'QubesTagNotFoundError')) throw e;
    }
  }
  return 0;
}
