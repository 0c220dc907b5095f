// The normalized firewall rule that src/core/firewall.ts's parser produces (Qubes' firewall.xml / Admin
// API rule, qubes/firewall.py); declared here too so the net driver compiles on its own until the two join.

export interface FirewallRule {
  action: 'accept' | 'drop';
  proto?: 'tcp' | 'udp' | 'icmp';
  /** A CIDR (a bare address is a /32 or /128) or a host name that the caller resolves at apply time. */
  dst?: { family: 4 | 6; cidr: string } | { host: string };
  specialtarget?: 'dns';
  /** Inclusive range; only meaningful with tcp/udp (or no proto: then both). */
  dstports?: [number, number];
  /** Only meaningful with proto icmp. */
  icmptype?: number;
  /** Unix time (seconds) after which the rule no longer applies. */
  expire?: number;
  comment?: string;
}
