// The netvm's nftables compiler, without nft: Qubes' rule semantics (first match wins, drop is a fast
// reject, proto-less ports mean tcp and udp, specialtarget=dns, expiry, fail closed on names) and the
// table layout that the integration test then runs for real.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { compileClientRules, connectionAllowed, parseCidr4 } from '../../src/net/client-rules';
import type { FirewallRule } from '../../src/net/firewall-rule-type';
import { clientChain, clientRemoval, clientUpdate, netvmRuleset, tableRemoval, type NetvmFirewall } from '../../src/net/nft-ruleset';
import { nftErrorLine, parseConntrack } from '../../src/net/nft';

const NOW = 1_700_000_000;
const names = new Map<string, string[]>();
const chainOf = (rules: FirewallRule[], resolved: ReadonlyMap<string, string[]> | { failure: string } = names) =>
  clientUpdate('t1', { ip: '10.137.0.5', vif: 'vif5', rules, resolved }, NOW)
    .script.split('\n')
    .filter((l) => l.startsWith('add rule'))
    .map((l) => l.replace('add rule inet isola-t1 qbs-10-137-0-5 ', ''));
const REJECT = 'reject with icmp type admin-prohibited';

function fw(over: Partial<NetvmFirewall> = {}): NetvmFirewall {
  return { tag: 't1', upstream: 'eth0', masquerade: true, dns: ['198.51.100.53'], clients: [], ...over };
}

describe('one client chain', () => {
  test('keeps the order of the rules and ends in a reject (Qubes policy drop)', () => {
    assert.deepEqual(chainOf([{ action: 'drop', dst: { family: 4, cidr: '198.51.100.10' }, proto: 'tcp', dstports: [80, 80] }, { action: 'accept' }]), [
      `ip daddr 198.51.100.10 tcp dport 80 ${REJECT}`,
      'accept',
      REJECT,
    ]);
  });

  test('ports without a protocol cover tcp and udp, ranges stay ranges, host bits are cleared', () => {
    assert.deepEqual(chainOf([{ action: 'accept', dst: { family: 4, cidr: '198.51.100.77/24' }, dstports: [8000, 8080] }]), [
      'ip daddr 198.51.100.0/24 meta l4proto { tcp, udp } th dport 8000-8080 accept',
      REJECT,
    ]);
  });

  test('icmp with and without a type; a protocol alone', () => {
    assert.deepEqual(chainOf([{ action: 'accept', proto: 'icmp', icmptype: 8 }, { action: 'accept', proto: 'icmp' }, { action: 'drop', proto: 'udp' }]), [
      'icmp type 8 accept',
      'meta l4proto icmp accept',
      `meta l4proto udp ${REJECT}`,
      REJECT,
    ]);
  });

  test('specialtarget=dns is port 53 over tcp and udp to the upstream servers (after DNAT)', () => {
    assert.deepEqual(chainOf([{ action: 'accept', specialtarget: 'dns' }, { action: 'accept', specialtarget: 'dns', proto: 'udp' }]), [
      'ip daddr @dns-upstream meta l4proto { tcp, udp } th dport 53 accept',
      'ip daddr @dns-upstream udp dport 53 accept',
      REJECT,
    ]);
    assert.deepEqual(chainOf([{ action: 'accept', specialtarget: 'dns', dstports: [80, 90] }, { action: 'accept', specialtarget: 'dns', proto: 'icmp' }]), [REJECT], 'narrowed to nothing');
  });

  test('expired rules are skipped and the next expiry is reported', () => {
    const rules: FirewallRule[] = [
      { action: 'accept', dst: { family: 4, cidr: '198.51.100.1' }, expire: NOW - 1 },
      { action: 'accept', dst: { family: 4, cidr: '198.51.100.2' }, expire: NOW },
      { action: 'accept', dst: { family: 4, cidr: '198.51.100.3' }, expire: NOW + 60 },
      { action: 'accept', dst: { family: 4, cidr: '198.51.100.4' }, expire: NOW + 30 },
    ];
    assert.deepEqual(chainOf(rules), ['ip daddr 198.51.100.3 accept', 'ip daddr 198.51.100.4 accept', REJECT]);
    assert.equal(compileClientRules(rules, names, NOW).nextExpiry, NOW + 30);
  });

  test('host names use the resolution given; IPv6 destinations are left out of the IPv4 chain', () => {
    const resolved = new Map([['a.test', ['198.51.100.7', '2001:db8::1', '198.51.100.8']], ['six.test', ['2001:db8::2']]]);
    const rules: FirewallRule[] = [{ action: 'accept', dst: { host: 'a.test' }, proto: 'tcp' }, { action: 'accept', dst: { host: 'six.test' } }, { action: 'accept', dst: { family: 6, cidr: '2001:db8::/32' } }];
    assert.deepEqual(chainOf(rules, resolved), ['ip daddr { 198.51.100.7, 198.51.100.8 } meta l4proto tcp accept', REJECT]);
    assert.equal(compileClientRules(rules, resolved, NOW).skippedV6, 2);
  });

  test('a name that did not resolve gives the whole client a single reject (fail closed) and says so', () => {
    const rules: FirewallRule[] = [{ action: 'accept', specialtarget: 'dns' }, { action: 'accept', dst: { host: 'gone.test' } }];
    const lines = chainOf(rules, new Map([['other.test', ['198.51.100.1']]]));
    assert.deepEqual(lines, [`${REJECT} comment "fail closed: gone.test did not resolve"`]);
    const rs = netvmRuleset(fw({ clients: [{ ip: '10.137.0.5', vif: 'vif5', rules, resolved: { failure: 'DNS timed out' } }] }), NOW);
    assert.deepEqual(rs.failClosed, [{ ip: '10.137.0.5', reason: 'DNS timed out' }]);
    assert.equal(compileClientRules([{ action: 'accept' }], { failure: 'x' }, NOW).failClosed, undefined, 'no names used: the failure does not matter');
  });

  test('a malformed rule fails the client closed rather than opening it', () => {
    for (const bad of [
      { action: 'accept', dst: { family: 4, cidr: '10.0.0.300' } }, // not an address
      { action: 'accept', proto: 'tcp', dstports: [90, 80] }, // reversed range
      { action: 'accept', proto: 'sctp' }, // unknown protocol: could be read as "any"
      { action: 'allow' }, // unknown action
    ] as unknown as FirewallRule[]) {
      assert.ok(compileClientRules([bad], names, NOW).failClosed, JSON.stringify(bad));
    }
  });

  test('comments are kept in the nft alphabet', () => {
    assert.deepEqual(chainOf([{ action: 'accept', comment: 'say "hi"; rm -rf [x]' }]), ['accept comment "say _hi_; rm -rf [x]"', REJECT]);
  });
});

describe('the table', () => {
  test('replaces only its own table, atomically, and registers each client on its own vif', () => {
    const s = netvmRuleset(fw({ clients: [{ ip: '10.137.0.5', vif: 'vif5', rules: [{ action: 'accept' }], resolved: names }] }), NOW).script;
    const lines = s.split('\n');
    assert.deepEqual(lines.slice(0, 3), ['add table inet isola-t1', 'delete table inet isola-t1', 'table inet isola-t1 {']);
    assert.ok(!/table (ip|ip6|inet) (?!isola-t1)/.test(s), 'names no other table');
    assert.ok(lines.includes('add element inet isola-t1 clients { "vif5" . 10.137.0.5 : jump qbs-10-137-0-5 }'));
    assert.ok(lines.includes('add element inet isola-t1 vif-addr { "vif5" . 10.137.0.5 }'));
    assert.match(s, /priority raw;[^}]*iifname \. ip saddr @vif-addr accept/);
    assert.match(s, /iifname "vif\*" ip daddr 10\.139\.1\.1 meta l4proto \{ tcp, udp \} th dport 53 dnat ip to 198\.51\.100\.53/);
    assert.match(s, /ip daddr 10\.139\.1\.2 .* dnat ip to 198\.51\.100\.53/, 'one server serves both virtual addresses');
    assert.match(s, /policy drop;\n\s+iifname "vif\*" oifname != "eth0" drop/);
    assert.match(s, /oifname "eth0" masquerade/);
    assert.doesNotMatch(netvmRuleset(fw({ masquerade: false }), NOW).script, /masquerade/);
  });

  test('two upstream servers map to the two virtual ones in order', () => {
    const s = netvmRuleset(fw({ dns: ['2001:db8::53', '198.51.100.53', '198.51.100.54'] }), NOW).script;
    assert.match(s, /10\.139\.1\.1 .* to 198\.51\.100\.53\n/);
    assert.match(s, /10\.139\.1\.2 .* to 198\.51\.100\.54\n/);
    assert.match(s, /set dns-upstream \{ type ipv4_addr; elements = \{ 198\.51\.100\.53, 198\.51\.100\.54 \} \}/);
  });

  test('the same input gives the same script', () => {
    const f = fw({ clients: [{ ip: '10.137.0.5', vif: 'vif5', rules: [{ action: 'accept' }], resolved: names }] });
    assert.equal(netvmRuleset(f, NOW).script, netvmRuleset(f, NOW).script);
  });

  test('refuses names that would escape the script or the vif wildcard', () => {
    assert.throws(() => netvmRuleset(fw({ tag: 'a b' }), NOW), /instance tag/);
    assert.throws(() => netvmRuleset(fw({ upstream: 'eth0"; flush ruleset' }), NOW), /upstream interface/);
    assert.throws(() => netvmRuleset(fw({ upstream: 'vif1' }), NOW), /must not be named/);
    assert.throws(() => netvmRuleset(fw({ clients: [{ ip: '10.137.0.5', vif: 'eth1', rules: [], resolved: names }] }), NOW), /vif<N>/);
    assert.throws(() => netvmRuleset(fw({ clients: [{ ip: '10.137.0.5; x', vif: 'vif5', rules: [], resolved: names }] }), NOW), /IPv4/);
    assert.throws(() => netvmRuleset(fw({ dns: ['1.2.3'] }), NOW), /DNS server/);
  });

  test('removal of a client and of the table are idempotent by construction', () => {
    const r = clientRemoval('t1', { ip: '10.137.0.5', vif: 'vif5' }).split('\n');
    assert.equal(r[0], `add chain inet isola-t1 ${clientChain('10.137.0.5')}`);
    assert.equal(r.filter((l) => l.startsWith('delete')).length, 4);
    assert.equal(tableRemoval('t1'), 'add table inet isola-t1\ndelete table inet isola-t1\n');
  });
});

describe('which tracked connections the new rules forbid', () => {
  const c = compileClientRules(
    [{ action: 'drop', dst: { family: 4, cidr: '198.51.100.10' }, proto: 'tcp', dstports: [80, 80] }, { action: 'accept', dst: { family: 4, cidr: '198.51.100.0/24' } }, { action: 'accept', specialtarget: 'dns' }],
    names,
    NOW,
  );
  const dns = ['203.0.113.53'];
  test('first match wins, as in the chain', () => {
    assert.equal(connectionAllowed(c, dns, { proto: 'tcp', dst: '198.51.100.10', dport: 80 }), false);
    assert.equal(connectionAllowed(c, dns, { proto: 'tcp', dst: '198.51.100.10', dport: 81 }), true);
    assert.equal(connectionAllowed(c, dns, { proto: 'udp', dst: '198.51.100.99', dport: 80 }), true);
    assert.equal(connectionAllowed(c, dns, { proto: 'udp', dst: '192.0.2.1', dport: 53 }), false);
    assert.equal(connectionAllowed(c, dns, { proto: 'udp', dst: '203.0.113.53', dport: 53 }), true);
    assert.equal(connectionAllowed(c, dns, { proto: 'icmp', dst: '203.0.113.53', icmptype: 8 }), false);
  });

  test('conntrack lines: the destination judged is the one after DNAT', () => {
    const text = [
      'tcp      6 431999 ESTABLISHED src=10.137.0.5 dst=198.51.100.10 sport=41234 dport=80 src=198.51.100.10 dst=203.0.113.2 sport=80 dport=41234 [ASSURED] mark=0 use=1',
      'udp      17 29 src=10.137.0.5 dst=10.139.1.1 sport=5353 dport=53 [UNREPLIED] src=203.0.113.53 dst=203.0.113.2 sport=53 dport=5353 mark=0 use=1',
      'icmp     1 29 src=10.137.0.5 dst=198.51.100.10 type=8 code=0 id=77 src=198.51.100.10 dst=203.0.113.2 type=0 code=0 id=77 mark=0 use=1',
      'conntrack v1.4.7 (conntrack-tools): 3 flow entries have been shown.',
    ].join('\n');
    const e = parseConntrack(text);
    assert.equal(e.length, 3);
    assert.deepEqual([e[0].proto, e[0].origDst, e[0].dst, e[0].sport, e[0].dport], ['tcp', '198.51.100.10', '198.51.100.10', 41234, 80]);
    assert.deepEqual([e[1].origDst, e[1].dst, e[1].dport], ['10.139.1.1', '203.0.113.53', 53]);
    assert.deepEqual([e[2].icmptype, e[2].icmpid, e[2].protonum], [8, 77, 1]);
    assert.equal(connectionAllowed(c, dns, e[1]), true, 'a query to the virtual server counts as DNS');
  });
});

test('nft errors become one line naming the script line', () => {
  const script = 'table inet x {\n  chain c { bogus }\n}\n';
  const stderr = '/dev/stdin:2:13-17: Error: syntax error, unexpected string\n  chain c { bogus }\n            ^^^^^\n';
  assert.equal(nftErrorLine(stderr, script), 'line 2: syntax error, unexpected string (in: chain c { bogus })');
  assert.equal(parseCidr4('10.1.2.3/33'), undefined);
  assert.equal(parseCidr4('010.1.2.3'), undefined);
});
