// qvm-clipboard: the host's half of Qubes' two-level clipboard, as commands (the future UI has
// buttons for the same Admin API calls). copy-from reads a qube's clipboard into the global one;
// paste-to hands it to another qube if policy qubes.ClipboardPaste allows, and empties it.

import { parseTokens, resolveVm, UsageError, newProgram, type CliDeps } from './common';

export const description = "Copy a qube's clipboard to the global clipboard, or paste it into another qube.";

export async function run(argv: string[], deps: CliDeps): Promise<number> {
  const p = newProgram('qvm-clipboard', description, deps)
    .argument('<ACTION>', 'copy-from VMNAME | paste-to VMNAME | show | clear')
    .argument('[VMNAME]', 'the qube to copy from or paste into')
    .addHelpText('after', '\nThe global clipboard remembers its source qube, holds at most 64000 bytes and is emptied by a paste.\n');
  p.parse(argv, { from: 'user' });
  const [action, vm] = p.args;
  const needsVm = action === 'copy-from' || action === 'paste-to';
  if (!['copy-from', 'paste-to', 'show', 'clear'].includes(action)) throw new UsageError(`invalid action '${action}' (choose from copy-from, paste-to, show, clear)`);
  if (needsVm !== Boolean(vm)) throw new UsageError(needsVm ? `${action} requires a VMNAME` : `${action} takes no VMNAME`);
  const { client } = deps;
  if (vm !== undefined) await resolveVm(deps, vm); // an unknown qube is a usage error, as in every tool
  if (action === 'copy-from') {
    const t = parseTokens(await client.call('admin.clipboard.CopyFrom', vm));
    deps.stderr(`copied ${t.get('size')} bytes from ${vm} to the global clipboard\n`);
  } else if (action === 'paste-to') {
    const t = parseTokens(await client.call('admin.clipboard.PasteTo', vm));
    deps.stderr(`pasted ${t.get('size')} bytes from ${t.get('source')} into ${vm}; the global clipboard is now empty\n`);
  } else if (action === 'clear') {
    await client.call('admin.clipboard.Clear', 'dom0');
  } else {
    const text = (await client.call('admin.clipboard.Get', 'dom0')).trim();
    if (!text) {
      deps.stdout('empty\n');
      return 1;
    }
    const t = parseTokens(text);
    deps.stdout(`${t.get('size')} bytes from ${t.get('source')}, copied ${t.get('copied')}\n`);
  }
  return 0;
}
