// qvm-pause / qvm-unpause: admin.vm.Pause / Unpause for each named qube (or --all), as Qubes' tools:
// every qube is tried, failures are listed one per line, the exit code is 1 if any failed.

import { errorText } from '../../core/error-text';
import { addTargetOptions, newProgram, resolveTargets, type CliDeps, type TargetOptions } from './common';

export function pauseCommand(tool: 'qvm-pause' | 'qvm-unpause') {
  const pausing = tool === 'qvm-pause';
  const description = pausing
    ? 'Pause qubes: their processes stop where they are until qvm-unpause (paused qubes are killed at host shutdown).'
    : 'Unpause paused qubes.';
  return {
    description,
    async run(argv: string[], deps: CliDeps): Promise<number> {
      const p = addTargetOptions(newProgram(tool, description, deps).argument('[VMNAME...]', pausing ? 'qubes to pause' : 'qubes to unpause'));
      p.parse(argv, { from: 'user' });
      const names = await resolveTargets(deps, p.args, p.opts<TargetOptions>());
      const failed = new Map<string, unknown>();
      await Promise.all(names.map((n) => deps.client.call(pausing ? 'admin.vm.Pause' : 'admin.vm.Unpause', n).catch((e) => failed.set(n, e))));
      const action = pausing ? 'pause' : 'unpause/resume';
      for (const n of names.filter((x) => failed.has(x))) deps.stderr(`${tool}: error: Failed to ${action}: ${n}: ${errorText(failed.get(n))}\n`);
      return failed.size ? 1 : 0;
    },
  };
}

export const { description, run } = pauseCommand('qvm-pause');
