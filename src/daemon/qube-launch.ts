// Turns a qube's properties and started volumes into the backend-neutral launch description: identity,
// limits, volumes, kernel, the guest library and what the agent is told. What each backend makes of it
// is its own business (src/backends/*).

import path from 'node:path';
import type { QubeLaunch } from '../core/backend';
import { QubesError } from '../core/errors';
import { memoryProblem } from '../core/properties';
import type { QubeRecord } from '../core/qube';
import { enabledAgentServices, qubesVmType } from '../core/qube-services';
import type { IdRange, StartedVolumes } from '../core/volumes';
import type { Collection } from './collection';
import type { DaemonConfig } from './config';

/** Processes a sandbox qube may have at once (fork bombs stop there). */
export const PIDS_LIMIT = 4096;

export function runtimeId(q: QubeRecord): string {
  return `${q.name}.${q.qid}`;
}

/** The qube's console, written by the backend's relay (never a host file inside the qube). */
export function guestLogFile(cfg: DaemonConfig, q: QubeRecord): string {
  return path.join(cfg.logDir, `guest-${q.name}.log`);
}

export function buildLaunch(cfg: DaemonConfig, col: Collection, q: QubeRecord, vols: StartedVolumes, ids: IdRange): QubeLaunch {
  // Refused, not raised to memory behind the user's back (a template's memory may have grown past it).
  const problem = memoryProblem(q, col.world());
  if (problem) throw new QubesError('QubesValueError', `${q.name}: ${problem}`);
  const kernel = col.prop(q, 'kernel');
  const vmType = qubesVmType(q, (x, p) => col.prop(x, p));
  return {
    runtimeId: runtimeId(q),
    name: q.name,
    uuid: q.uuid,
    ids,
    limits: {
      memoryMiB: Number(col.prop(q, 'memory')),
      maxmemMiB: Number(col.prop(q, 'maxmem')),
      vcpus: Number(col.prop(q, 'vcpus')),
      pidsLimit: PIDS_LIMIT,
    },
    volumes: { root: vols.root, private: vols.private },
    ...(typeof kernel === 'string' && kernel !== '' ? { kernel: { name: kernel, opts: String(col.prop(q, 'kernelopts') ?? '') } } : {}),
    guestLib: cfg.libDir,
    agentEnv: {
      ISOLA_QUBE_NAME: q.name,
      ISOLA_DEFAULT_USER: String(col.prop(q, 'default_user')),
      // Qubes' qubesdb /qubes-vm-type and /qubes-service/*: which of its own services the agent starts.
      ISOLA_VM_TYPE: vmType,
      ISOLA_SERVICES: enabledAgentServices(q, vmType).join(' '),
      // Qubes' `dns` property: the virtual servers its netvm forwards (none offline).
      ...(typeof col.prop(q, 'dns') === 'string' ? { ISOLA_DNS: String(col.prop(q, 'dns')) } : {}),
    },
    logFile: guestLogFile(cfg, q),
    networked: col.prop(q, 'netvm') !== null || col.prop(q, 'provides_network') === true,
    ...nicOf(col, q),
  };
}

/** The card of a qube with a netvm: its address and its netvm's, as the link will give them. */
function nicOf(col: Collection, q: QubeRecord): Pick<QubeLaunch, 'nic'> {
  const [ip, gateway, mac] = ['visible_ip', 'visible_gateway', 'mac'].map((p) => col.prop(q, p));
  if (col.prop(q, 'netvm') === null || typeof ip !== 'string' || typeof gateway !== 'string' || typeof mac !== 'string') return {};
  return { nic: { ip, gateway, mac } };
}
