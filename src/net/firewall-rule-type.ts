// The rule the nftables compiler consumes: core's EnforcedRule (addresses canonical, expired ones
// already left out by the caller or skipped by `now`), under the name the compiler uses.

export type { EnforcedRule as FirewallRule } from '../core/firewall';
