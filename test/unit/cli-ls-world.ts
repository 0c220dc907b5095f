// Canned Admin API replies for qvm-ls tests: admin.vm.List, one property.GetAll and (running) CurrentState per qube,
// built from a compact table of qubes.

export type Def = [name: string, klass: string, state: string, props: Record<string, string>];

const TYPES: Record<string, string> = {
  label: 'label', template: 'vm', netvm: 'vm', provides_network: 'bool', updateable: 'bool', debug: 'bool', autostart: 'bool',
  installed_by_rpm: 'bool', internal: 'bool', maxmem: 'int', memory: 'int', vcpus: 'int',
};

/** Replies for admin.vm.List and one GetAll per qube; other calls come from `extra`. */
export function world(defs: Def[], extra: Record<string, string> = {}): Record<string, string> {
  const out: Record<string, string> = {
    'admin.vm.List dom0': defs.map(([n, k, s], i) => `${n} class=${k} state=${s} uuid=00000000-0000-0000-0000-${String(i).padStart(12, '0')}\n`).join(''),
  };
  for (const [n, , state, { accel, ...props }] of defs) {
    // `accel` is no property: what CurrentState says of a running VM (qvm-ls' VIRT-MODE shows it).
    if (state !== 'Halted') out[`admin.vm.CurrentState ${n}`] = `mem=0 mem_static_max=0 cputime=0 power_state=${state}${accel ? ` accel=${accel}` : ''}`;
    out[`admin.vm.property.GetAll ${n}`] = Object.entries(props).map(([k, v]) => `${k} default=False type=${TYPES[k] ?? 'str'} ${v}\n`).join('');
  }
  return { ...out, ...extra };
}
