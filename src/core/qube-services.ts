// Qubes' in-qube services that isola-agent starts itself (no systemd in a qube): which ones a qube
// runs, by Qubes' rule. Qubes writes /qubes-vm-type (TemplateVM, NetVM, ProxyVM, AppVM) to qubesdb and
// enables default services by it (qubes-sysinit.sh: a NetVM runs qubes-updates-proxy, a TemplateVM
// updates-proxy-setup); a feature `service.NAME` turns one on ('1') or off ('') whatever the type.

import type { QubeRecord } from './qube';

/** The services the agent knows how to start. */
export const AGENT_SERVICES = ['qubes-updates-proxy', 'updates-proxy-setup'] as const;
export type AgentService = (typeof AGENT_SERVICES)[number];

export type QubesVmType = 'TemplateVM' | 'NetVM' | 'ProxyVM' | 'AppVM';

/** Qubes' /qubes-vm-type: a StandaloneVM or DispVM is an AppVM there too. */
export function qubesVmType(q: QubeRecord, get: (q: QubeRecord, prop: string) => unknown): QubesVmType {
  if (q.klass === 'TemplateVM') return 'TemplateVM';
  if (get(q, 'provides_network') !== true) return 'AppVM';
  return get(q, 'netvm') === null ? 'NetVM' : 'ProxyVM';
}

const DEFAULTS: Record<QubesVmType, readonly AgentService[]> = {
  NetVM: ['qubes-updates-proxy'],
  TemplateVM: ['updates-proxy-setup'],
  ProxyVM: [],
  AppVM: [],
};

export function enabledAgentServices(q: QubeRecord, type: QubesVmType): AgentService[] {
  return AGENT_SERVICES.filter((s) => {
    const key = `service.${s}`;
    if (!Object.prototype.hasOwnProperty.call(q.features, key)) return DEFAULTS[type].includes(s);
    return q.features[key] !== ''; // Qubes' feature booleans: '' is false
  });
}
