// The hvm backend as isolad runs it: QemuBackend with this isolad's kernels, accelerator and boot files
// (VmHost), and each qube's agent over its two virtio-serial ports (SerialAgentChannel).

import { existsSync } from 'node:fs';
import { QemuBackend } from '../backends/vm/qemu-backend';
import { serialSockets } from '../backends/vm/qemu-args';
import { SerialAgentChannel } from '../backends/vm/serial-channel';
import type { DaemonConfig } from './config';
import type { Logger } from './logger';
import { VmHost, vmMachine } from './vm-host';

export const QEMU_BINARY = '/usr/bin/qemu-system-x86_64';

export interface Hvm {
  backend: QemuBackend;
  host: VmHost;
  /** Why `virt_mode hvm` cannot be chosen here now, or undefined. */
  problem(): string | undefined;
}

export async function startHvm(config: DaemonConfig, log: Logger, env: NodeJS.ProcessEnv, onExit: (runtimeId: string, reason: string) => void): Promise<Hvm> {
  const machine = vmMachine(env);
  const host = new VmHost(config, log, machine, config.libDir);
  const qemu = env.ISOLA_QEMU || QEMU_BINARY;
  const haveQemu = existsSync(qemu);
  if (haveQemu) await host.init();
  const backend = new QemuBackend({
    runRoot: config.vmRoot,
    qemu,
    machine,
    log: (line) => log.info(`hvm: ${line}`),
    accel: () => host.accel(),
    bootFiles: (launch, dir) => host.bootFiles(launch, dir),
    channel: async (q, runDir) => {
      const s = serialSockets(runDir);
      return new SerialAgentChannel({ agentSocket: s.agent, clientSocket: s.client, label: `qube ${q.runtimeId}`, log: (l) => log.warn(`agent channel: ${l}`) });
    },
    onExit,
  });
  return {
    backend,
    host,
    problem: () => (haveQemu ? host.problem() : `QEMU is not installed (${qemu}; apt-get install qemu-system-x86)`),
  };
}
