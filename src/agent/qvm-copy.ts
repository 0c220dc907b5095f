// qvm-copy, qvm-copy-to-vm, qvm-move, qvm-move-to-vm inside a qube: sends files through the
// qubes.Filecopy service (policy decides; qvm-copy lets the policy's ask choose the target).
// A move removes the sources only after the receiver confirmed every byte (CRC checked).

import { rmSync } from 'fs';
import { needsAllowAllNames, packPaths } from './filecopy';
import { EXIT_REFUSED, callWithStreams } from './qrexec-client-vm';
import { errorText } from '../core/error-text';

const TOOLS = ['qvm-copy', 'qvm-copy-to-vm', 'qvm-move', 'qvm-move-to-vm'] as const;
export type CopyTool = (typeof TOOLS)[number];

export function isCopyTool(name: string | undefined): name is CopyTool {
  return TOOLS.includes(name as CopyTool);
}

export async function qvmCopy(tool: CopyTool, argv: string[]): Promise<number> {
  const opts = argv.filter((a) => a.startsWith('-'));
  const args = argv.filter((a) => !a.startsWith('-'));
  const unknown = opts.filter((o) => o !== '--without-progress' && o !== '--ignore-symlinks');
  const toVm = tool.endsWith('-to-vm');
  const usage = `usage: ${tool} [--without-progress] [--ignore-symlinks] ${toVm ? 'VMNAME ' : ''}FILE...\n`;
  if (opts.includes('-h') || opts.includes('--help')) {
    const verb = tool.startsWith('qvm-move') ? 'Move' : 'Copy';
    process.stdout.write(`${usage}\n${verb} FILEs ${toVm ? 'to VMNAME' : 'to a qube chosen by the policy (ask)'}, into ~/QubesIncoming/<this qube>/ there.\n`);
    return 0;
  }
  if (unknown.length || (toVm ? args.length < 2 : args.length < 1)) {
    process.stderr.write(usage);
    return 2;
  }
  const target = toVm ? args[0] : '@default';
  const files = toVm ? args.slice(1) : args;
  const service = files.some((f) => needsAllowAllNames(f)) ? 'qubes.Filecopy+allow-all-names' : 'qubes.Filecopy';
  const call = await callWithStreams(target, service);
  if (call.refused) {
    process.stderr.write(`${tool}: the copy was refused by policy\n`);
    return EXIT_REFUSED;
  }
  const { toRemote, fromRemote, session } = call;
  try {
    const r = await packPaths(files, toRemote, { reply: fromRemote, ignoreSymlinks: opts.includes('--ignore-symlinks') });
    toRemote.end();
    await session;
    if (tool.startsWith('qvm-move')) for (const f of files) rmSync(f, { recursive: true, force: true });
    if (!opts.includes('--without-progress')) process.stderr.write(`${tool}: sent ${r.files} file(s), ${r.bytes} bytes\n`);
    return 0;
  } catch (e) {
    toRemote.destroy();
    call.sock.destroy();
    process.stderr.write(`${tool}: ${errorText(e)}${tool.startsWith('qvm-move') ? ' (nothing was removed)' : ''}\n`);
    return 1;
  }
}
