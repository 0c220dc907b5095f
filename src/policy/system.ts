// The snapshot of qubes the evaluator decides against, in Qubes' system-info shape, and the lookups
// on it (by name or by `uuid:`), so the evaluator itself never asks anybody anything.

/** One qube as Qubes' `internal.GetSystemInfo` describes it; extra keys are ignored. */
export interface DomainInfo {
  type: string;
  tags: readonly string[];
  default_dispvm?: string | null;
  template_for_dispvms: boolean;
  power_state: string;
  uuid?: string;
  /** Qubes' `internal` feature: never offered in an ask dialog. */
  internal?: boolean;
  /** RemoteVM only: the local qube that relays calls to and from it, and the service it uses. */
  relayvm?: string | null;
  transport_rpc?: string | null;
}

export interface SystemInfo {
  domains: Readonly<Record<string, DomainInfo>>;
}

export const ADMINVM_UUID = 'uuid:00000000-0000-0000-0000-000000000000';

/** `dom0`, `@adminvm` and dom0's uuid are one qube under three spellings. */
export function isAdminVmSpelling(text: string): boolean {
  return text === 'dom0' || text === '@adminvm' || text === ADMINVM_UUID;
}

// Own-property checks only: a qube may legitimately be named `constructor` or `toString`.
const hasOwn = (o: object, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k);

// uuid → name per snapshot, so that rules written with uuids do not cost a scan each. A hit is
// re-checked against the snapshot and a miss falls back to the scan, so a caller that edits its
// snapshot in place still gets exact answers.
const uuidIndexes = new WeakMap<object, Map<string, string>>();

function uuidIndex(system: SystemInfo): Map<string, string> {
  const index = new Map<string, string>();
  for (const name of Object.keys(system.domains)) {
    const uuid = system.domains[name].uuid;
    if (typeof uuid === 'string' && uuid !== '' && !index.has(uuid)) index.set(uuid, name);
  }
  uuidIndexes.set(system.domains, index);
  return index;
}

/** The qube a name or `uuid:U` designates, as its name; undefined if there is none. */
export function domainName(system: SystemInfo, text: string): string | undefined {
  if (hasOwn(system.domains, text)) return text;
  if (!text.startsWith('uuid:')) return undefined;
  const uuid = text.slice(5);
  if (uuid === '') return undefined;
  const cached = (uuidIndexes.get(system.domains) ?? uuidIndex(system)).get(uuid);
  if (cached !== undefined && hasOwn(system.domains, cached) && system.domains[cached].uuid === uuid) return cached;
  for (const name of Object.keys(system.domains)) {
    if (system.domains[name].uuid === uuid) {
      uuidIndex(system);
      return name;
    }
  }
  return undefined;
}

export function domainInfo(system: SystemInfo, text: string): DomainInfo | undefined {
  const name = domainName(system, text);
  return name === undefined ? undefined : system.domains[name];
}

/** The disposable template a plain `@dispvm` from this source means (its `default_dispvm`). */
export function defaultDispvmOf(system: SystemInfo, source: string | undefined): string | undefined {
  if (source === undefined) return undefined;
  const info = domainInfo(system, source);
  const t = info?.default_dispvm;
  return typeof t === 'string' && t !== '' ? t : undefined;
}
