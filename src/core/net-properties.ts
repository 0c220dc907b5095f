// Qubes' network and runtime properties (mac, ip, ip6, visible_*, gateway*, dns, xid, start_time,
// stubdom_*), computed from what exists as Qubes computes them: a networked qube's link to its netvm
// uses them (docs/network.md). IPv6 addresses are computed as Qubes does but not routed yet.

import { ipv4Check, ipv6Check, macCheck, normalizeIpv6 } from './property-checks';
import { VMS, type Getter, type PropertyDef, type World } from './property-types';
import type { PropValue, QubeRecord } from './qube';

/** Qubes' `qubes_ipv6_prefix`, as Python prints it. */
const IPV6_PREFIX = 'fd09:24ef:4179:';

/** Qubes' `vmid_to_ipv4`: ids below 255 keep `.0.id`; higher ones skip `.0` and `.255`. */
export function vmidToIpv4(prefix: string, vmid: number): string {
  if (vmid < 255) return `${prefix}.${(vmid >> 8) & 0xff}.${vmid & 0xff}`;
  const id = vmid - 1;
  return `${prefix}.${Math.floor(id / 254)}.${(id % 254) + 1}`;
}

/** features.check_with_template: the qube's own feature, else its template's (and so on). */
function withTemplate(q: QubeRecord, feature: string, w: World): string | undefined {
  for (let cur: QubeRecord | undefined = q, n = 0; cur && n < 8; n++) {
    if (Object.prototype.hasOwnProperty.call(cur.features, feature)) return cur.features[feature];
    const t: PropValue | undefined = cur.props.template;
    cur = typeof t === 'string' ? w.qube(t) : undefined;
  }
  return undefined;
}

/** features.check_with_netvm, read as Python's truth: the first qube on the netvm chain that has it. */
function withNetvm(q: QubeRecord, feature: string, w: World, get: Getter): boolean {
  for (let cur: QubeRecord | undefined = q, n = 0; cur && n < 64; n++) {
    if (Object.prototype.hasOwnProperty.call(cur.features, feature)) return cur.features[feature] !== '';
    const next: PropValue = isNetClass(cur) ? get(cur, 'netvm') : null;
    cur = typeof next === 'string' ? w.qube(next) : undefined;
  }
  return false;
}

const isNetClass = (q: QubeRecord) => q.klass !== 'AdminVM';

function netvmOf(q: QubeRecord, w: World, get: Getter): QubeRecord | undefined {
  const n = get(q, 'netvm');
  return typeof n === 'string' ? w.qube(n) : undefined;
}

function isNetworked(q: QubeRecord, get: Getter): boolean {
  return get(q, 'provides_network') === true || get(q, 'netvm') !== null;
}

const orNull = (v: PropValue | undefined): PropValue => (v === undefined || v === '' ? null : v);

function gateway(q: QubeRecord, get: Getter): PropValue {
  return get(q, 'provides_network') === true ? get(q, 'visible_ip') : null;
}

function gateway6(q: QubeRecord, w: World, get: Getter): PropValue {
  return withNetvm(q, 'ipv6', w, get) && get(q, 'provides_network') === true ? get(q, 'visible_ip6') : null;
}

/** Python's str(float) of seconds since the epoch (`1700000000.25`, `1700000000.0`). */
export function pythonTimestamp(ms: number): string {
  const s = ms / 1000;
  return Number.isInteger(s) ? `${s}.0` : String(s);
}

const computed = (name: string, type: PropertyDef['type'], help: string, f: NonNullable<PropertyDef['default']>): PropertyDef => ({
  name, type, classes: VMS, help, computed: true, readOnly: true, default: f,
});

export const NET_PROPERTIES: readonly PropertyDef[] = [
  {
    name: 'mac', type: 'str', classes: VMS, default: () => '00:16:3e:5e:6c:00', check: macCheck, normalize: (s) => s.toLowerCase(),
    help: 'MAC address of the NIC emulated inside VM.',
  },
  {
    name: 'ip', type: 'str', classes: VMS, check: ipv4Check,
    default: (q, _w, get) => (isNetworked(q, get) ? vmidToIpv4(q.klass === 'DispVM' ? '10.138' : '10.137', dispidOr(q)) : null),
    help: 'IP address of this domain (Qubes\' 10.137.x.y from the qid, when networked).',
  },
  {
    name: 'ip6', type: 'str', classes: VMS, check: ipv6Check, normalize: normalizeIpv6,
    default: (q, w, get) => {
      if (!isNetworked(q, get) || !withNetvm(q, 'ipv6', w, get)) return null;
      return `${IPV6_PREFIX}:${q.klass === 'DispVM' ? 'a8a' : 'a89'}:${dispidOr(q).toString(16)}`;
    },
    help: 'IPv6 address of this domain (when networked and the ipv6 feature is on). No effect yet: IPv6 is not routed.',
  },
  computed('visible_ip', 'str', 'IP address of this domain as seen by the domain.', (q, w, get) => orNull(withTemplate(q, 'net.fake-ip', w)) ?? get(q, 'ip')),
  computed('visible_ip6', 'str', 'IPv6 address of this domain as seen by the domain.', (q, _w, get) => get(q, 'ip6')),
  computed('visible_gateway', 'str', 'Default gateway of this domain as seen by the domain.', (q, w, get) => {
    const net = netvmOf(q, w, get);
    return orNull(withTemplate(q, 'net.fake-gateway', w)) ?? (net ? gateway(net, get) : null);
  }),
  computed('visible_gateway6', 'str', 'Default (IPv6) gateway of this domain as seen by the domain.', (q, w, get) => {
    const net = netvmOf(q, w, get);
    return withNetvm(q, 'ipv6', w, get) && net ? gateway6(net, w, get) : null;
  }),
  computed('visible_netmask', 'str', 'Netmask as seen by the domain.', (q, w, get) => {
    const net = netvmOf(q, w, get);
    return orNull(withTemplate(q, 'net.fake-netmask', w)) ?? (net && isNetworked(net, get) ? '255.255.255.255' : null);
  }),
  computed('gateway', 'str', 'Gateway for other domains that use this domain as netvm.', (q, _w, get) => gateway(q, get)),
  computed('gateway6', 'str', 'Gateway (IPv6) for other domains that use this domain as netvm.', (q, w, get) => gateway6(q, w, get)),
  computed('dns', 'str', 'DNS servers set up for this domain.', (q, _w, get) =>
    get(q, 'netvm') !== null || get(q, 'provides_network') === true ? '10.139.1.1 10.139.1.2' : null),
  // No Xen domain id exists: a running qube's id is its qid, which is unique among running qubes as domids are.
  computed('xid', 'int', 'Xen ID. Or not Xen, but ID: -1 when halted, else the qid of the running qube.', (q, w) => (w.runtime?.(q) ? q.qid : -1)),
  computed('start_time', 'str', 'Tell when machine was started (seconds since the epoch; empty when halted).', (q, w) => {
    const rt = w.runtime?.(q);
    return rt ? pythonTimestamp(rt.startedAt) : null;
  }),
  computed('stubdom_xid', 'int', 'Xen ID of the stub domain: always -1 (Isola has no stub domains).', () => -1),
  computed('stubdom_uuid', 'str', 'UUID of the stub domain: always empty (Isola has no stub domains).', () => null),
];

function dispidOr(q: QubeRecord): number {
  const d = q.props.dispid;
  return typeof d === 'number' ? d : q.qid;
}
