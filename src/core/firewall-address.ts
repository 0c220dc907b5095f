// IP addresses of firewall rules as Qubes reads them: the text forms glibc's inet_pton accepts (what
// Python's socket.inet_pton, and so qubesd, calls), and the canonical network an enforcer matches.

/** glibc inet_pton4: exactly four decimal octets, no leading zero, nothing else; the bytes or undefined. */
export function parseIPv4(text: string): number[] | undefined {
  const parts = text.split('.');
  if (parts.length !== 4) return undefined;
  const out: number[] = [];
  for (const p of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return undefined;
    const n = Number(p);
    if (n > 255) return undefined;
    out.push(n);
  }
  return out;
}

const HEX_GROUP = /^[0-9A-Fa-f]{1,4}$/;

/**
 * glibc inet_pton6: up to eight groups of 1-4 hex digits, at most one `::` (standing for at least
 * one zero group), an optional trailing dotted quad in place of the last two groups; the 16 bytes
 * or undefined.
 */
export function parseIPv6(text: string): number[] | undefined {
  if (text === '' || /[^0-9A-Fa-f:.]/.test(text)) return undefined;
  const double = text.indexOf('::');
  if (double !== -1 && text.indexOf('::', double + 1) !== -1) return undefined;
  const groupsOf = (part: string): number[] | undefined => {
    if (part === '') return [];
    const words = part.split(':');
    const out: number[] = [];
    for (let i = 0; i < words.length; i++) {
      const w = words[i];
      if (i === words.length - 1 && w.includes('.')) {
        const v4 = parseIPv4(w);
        if (!v4) return undefined;
        out.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
      } else if (HEX_GROUP.test(w)) out.push(parseInt(w, 16));
      else return undefined;
    }
    return out;
  };
  let groups: number[];
  if (double === -1) {
    const all = groupsOf(text);
    if (!all || all.length !== 8) return undefined;
    groups = all;
  } else {
    const head = groupsOf(text.slice(0, double));
    const tail = groupsOf(text.slice(double + 2));
    // A dotted quad is only legal at the very end.
    if (!head || !tail || text.slice(0, double).includes('.')) return undefined;
    if (head.length + tail.length > 7) return undefined;
    groups = [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
  }
  return groups.flatMap((g) => [g >> 8, g & 0xff]);
}

/** The address with every bit past `prefixlen` cleared. */
function masked(bytes: readonly number[], prefixlen: number): number[] {
  return bytes.map((b, i) => {
    const keep = Math.max(0, Math.min(8, prefixlen - i * 8));
    return b & ((0xff << (8 - keep)) & 0xff);
  });
}

function formatIPv4(bytes: readonly number[]): string {
  return bytes.join('.');
}

/** RFC 5952 text: lower case, no leading zeros, the longest run (2+) of zero groups as `::`. */
function formatIPv6(bytes: readonly number[]): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i] << 8) | bytes[i + 1]);
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  const hex = (gs: number[]) => gs.map((g) => g.toString(16)).join(':');
  if (best === -1) return hex(groups);
  return `${hex(groups.slice(0, best))}::${hex(groups.slice(best + bestLen))}`;
}

/**
 * The network a rule's address stands for, canonical: `10.0.0.0/8` for `10.1.2.3/8` (Qubes stores
 * host bits as given; a prefix match ignores them), `2001:db8::/32` for `2001:DB8:0::1/32`.
 */
export function canonicalNetwork(family: 4 | 6, bytes: readonly number[], prefixlen: number): string {
  const net = masked(bytes, prefixlen);
  return `${family === 4 ? formatIPv4(net) : formatIPv6(net)}/${prefixlen}`;
}
