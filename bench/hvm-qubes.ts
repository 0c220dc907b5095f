// The hvm parts of the vm bench that need isolad: a qube's start to agent ready as a user sees it
// (qvm-start, which returns once the agent has said hello), per machine type, and the memory of many
// idle hvm qubes at once. Each runs its own isolad (harness Instance) on a fresh ISOLA_HOME.

import * as fs from 'node:fs';
import * as path from 'node:path';
import type { VmMachine } from '../src/backends/vm/qemu-args';
import { Instance } from '../test/integration/harness';
import { readSmaps, stats } from './smaps';

export interface QubeStarts {
  machine: VmMachine;
  ms: ReturnType<typeof stats>;
}

export interface IdleQubes {
  machine: VmMachine;
  qubes: number;
  memoryMiB: number;
  totalPssMiB: number;
  memAvailableDropMiB: number;
  overheadMiB: ReturnType<typeof stats>;
}

const memAvailableMiB = () => Number(/^MemAvailable:\s+(\d+) kB/m.exec(fs.readFileSync('/proc/meminfo', 'utf8'))![1]) / 1024;

async function withInstance<T>(machine: VmMachine, fn: (inst: Instance) => Promise<T>): Promise<T> {
  const inst = new Instance({ env: { ISOLA_VM_MACHINE: machine } });
  try {
    await inst.start();
    await inst.installTemplate();
    return await fn(inst);
  } finally {
    await inst.destroy();
  }
}

/** The QEMU pids of an instance's running hvm qubes, from the run dirs the backend keeps. */
function qemuPids(inst: Instance): number[] {
  const root = inst.config.vmRoot;
  return fs.readdirSync(root).flatMap((id) => {
    try {
      return [(JSON.parse(fs.readFileSync(path.join(root, id, 'started'), 'utf8')) as { pid: number }).pid];
    } catch {
      return [];
    }
  });
}

export async function qubeStarts(machines: VmMachine[], runs: number): Promise<QubeStarts[]> {
  const out: QubeStarts[] = [];
  for (const machine of machines) {
    const ms = await withInstance(machine, async (inst) => {
      await inst.ok('qvm-create', '--label', 'red', 'h');
      await inst.ok('qvm-prefs', 'h', 'virt_mode', 'hvm');
      await inst.ok('qvm-start', 'h'); // the first start also probes the accelerator and builds the initramfs
      await inst.ok('qvm-shutdown', '--wait', 'h');
      const xs: number[] = [];
      for (let i = 0; i < runs; i++) {
        const t = process.hrtime.bigint();
        await inst.ok('qvm-start', 'h');
        xs.push(Number(process.hrtime.bigint() - t) / 1e6);
        await inst.ok('qvm-shutdown', '--wait', 'h');
      }
      return xs;
    });
    process.stderr.write(`hvm start ${machine}: ${ms.map((x) => x.toFixed(0)).join(' ')} ms\n`);
    out.push({ machine, ms: stats(ms) });
  }
  return out;
}

export async function idleQubesMemory(n: number, machine: VmMachine = 'q35'): Promise<IdleQubes> {
  return withInstance(machine, async (inst) => {
    const memoryMiB = Number((await inst.ok('qvm-prefs', 'debian-12', 'memory')).trim());
    const before = memAvailableMiB();
    for (let i = 0; i < n; i++) {
      await inst.ok('qvm-create', '--label', 'gray', `idle${i}`);
      await inst.ok('qvm-prefs', `idle${i}`, 'virt_mode', 'hvm');
      await inst.ok('qvm-start', `idle${i}`);
    }
    await new Promise((r) => setTimeout(r, 10_000)); // let the last boots settle
    const smaps = qemuPids(inst).map((pid) => readSmaps(pid, memoryMiB));
    const over = smaps.filter((s) => s.guestRam).map((s) => (s.pssKiB - s.guestRam!.pssKiB) / 1024);
    const r: IdleQubes = {
      machine, qubes: smaps.length, memoryMiB,
      totalPssMiB: smaps.reduce((a, s) => a + s.pssKiB, 0) / 1024,
      memAvailableDropMiB: before - memAvailableMiB(),
      overheadMiB: stats(over),
    };
    process.stderr.write(`idle hvm qubes: ${JSON.stringify(r)}\n`);
    return r;
  });
}
