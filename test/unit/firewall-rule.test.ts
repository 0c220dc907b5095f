// The firewall rule model: addresses as glibc reads them, the Admin API line qubesd parses (bad
// lines refused with the field named), the command-line words, and what an enforcer is handed.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { QubesError } from '../../src/core/errors';
import { canonicalNetwork, parseIPv4, parseIPv6 } from '../../src/core/firewall-address';
import {
  enforcedRules, expireLeft, formatApiRule, formatClientRule, listRow, nextExpiry, parseApiPayload, parseApiRule, parseRuleWords,
  type FirewallRule,
} from '../../src/core/firewall';

const NOW = 1_900_000_000;
const words = (...w: string[]) => parseRuleWords(w, NOW);
const refused = (fn: () => unknown, field: RegExp, what = String(field)) =>
  assert.throws(fn, (e: unknown) => e instanceof QubesError && e.code === 'QubesValueError' && field.test(e.message) && !e.message.includes('\n'), what);

describe('addresses (glibc inet_pton, as qubesd reads them)', () => {
  it('takes dotted quads without leading zeros only', () => {
    assert.deepEqual(parseIPv4('192.168.0.1'), [192, 168, 0, 1]);
    for (const bad of ['1.2.3', '01.2.3.4', '1.2.3.256', '1.2.3.4.', '1.2.3.4.5', ' 1.2.3.4', '0x7f.0.0.1', '']) assert.equal(parseIPv4(bad), undefined, bad);
  });

  it('takes IPv6 with one ::, hex groups of 1-4 digits and a trailing dotted quad', () => {
    for (const good of ['::', '::1', '1::', '2001:DB8::1', '1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7::', '::ffff:1.2.3.4', '1:2:3:4:5:6:1.2.3.4', '0000:0::1']) {
      assert.ok(parseIPv6(good), good);
    }
    for (const bad of [':1', '1:', ':::', '1::2::3', '1:2:3:4:5:6:7::8', '1:2:3:4:5:6:7', '12345::', 'g::1', '1.2.3.4', '1.2.3.4::', '::1.2.3.4:5', 'fe80::1%eth0', '']) {
      assert.equal(parseIPv6(bad), undefined, bad);
    }
  });

  it('gives an enforcer the network: host bits cleared, IPv6 in RFC 5952 form', () => {
    assert.equal(canonicalNetwork(4, parseIPv4('10.1.2.3')!, 8), '10.0.0.0/8');
    assert.equal(canonicalNetwork(4, parseIPv4('10.1.2.3')!, 32), '10.1.2.3/32');
    assert.equal(canonicalNetwork(6, parseIPv6('2001:ABCD:efab:0:0:0:0:3')!, 64), '2001:abcd:efab::/64');
    assert.equal(canonicalNetwork(6, parseIPv6('2001:0:0:1:0:0:0:1')!, 128), '2001:0:0:1::1/128');
    assert.equal(canonicalNetwork(6, parseIPv6('::ffff:1.2.3.4')!, 128), '::ffff:102:304/128');
  });
});

describe("the Admin API line (qubesd's from_api_string and api_rule)", () => {
  it('stores fields in qubesd order: action, expire, destination, proto, specialtarget, ports, comment', () => {
    const line = 'comment=x';
    assert.equal(formatApiRule(parseApiRule(`action=accept proto=tcp dstports=443 dst4=192.168.0.0/24 expire=2063292452 ${line}`)),
      'action=accept expire=2063292452 dst4=192.168.0.0/24 proto=tcp dstports=443-443 comment=x');
    assert.equal(formatClientRule(parseApiRule('action=accept expire=2063292452 dst4=192.168.0.0/24 proto=tcp dstports=443-443 comment=x')),
      'action=accept proto=tcp dst4=192.168.0.0/24 dstports=443-443 expire=2063292452 comment=x');
  });

  it('takes dst4, dst6, dstname and dsthost for the destination; keeps the address text as qubesd does', () => {
    assert.equal(formatApiRule(parseApiRule('action=accept dstname=example.com')), 'action=accept dsthost=example.com');
    assert.equal(formatApiRule(parseApiRule('action=accept dsthost=2001:DB8::1')), 'action=accept dst6=2001:DB8::1/128');
    assert.equal(formatApiRule(parseApiRule('action=accept dst4=10.1.2.3/8')), 'action=accept dst4=10.1.2.3/8');
    assert.equal(formatApiRule(parseApiRule('action=accept expire=02583292452')), 'action=accept expire=02583292452');
    assert.equal(formatApiRule(parseApiRule('action=accept comment=')), 'action=accept');
    assert.equal(parseApiRule('action=accept comment=a comment with spaces').comment, 'a comment with spaces');
  });

  it('refuses bad lines with one error naming the field', () => {
    // Each: a line, and the field the error must name. Why each must fail is in its comment.
    const bad: [string, RegExp][] = [
      ['proto=tcp', /action: missing/], // every rule has an action
      ['action=allow', /action 'allow'/], // Qubes says accept, not allow
      ['action=accept action=drop', /action: given twice/], // qubesd refuses a repeated key
      ['action=accept dst4=1.1.1.1 dsthost=2.2.2.2', /dsthost: a second destination/], // one destination per rule
      ['action=accept dst6=127.0.0.1', /dst6 '127.0.0.1'/], // the key says IPv6 (qubesd would take it as dst4)
      ['action=accept dst4=::1', /dst4 '::1'/],
      ['action=accept proto=tcpcomment=x', /proto 'tcpcomment=x'/], // comment= must start a word (qubesd splits inside one)
      ['action=accept  proto=tcp', /word ''/], // words are separated by one space
      ['action=accept foo=bar', /option 'foo'/], // unknown key
      ['action=accept dsthost=', /dsthost '': empty/], // qubesd would store an empty host
      ['action=accept dsthost=1.2.3', /dsthost '1.2.3'/], // a malformed address is not a host name
      ['action=accept dsthost=Example.com', /dsthost 'Example.com'/], // host names are lower case
      ['action=accept dsthost=10.0.0.0/33', /dsthost.*at most 32/],
      ['action=accept dsthost=::/129', /dsthost.*at most 128/],
      ['action=accept dsthost=10.0.0.0/+8', /dsthost/], // '+' is not in qubesd's character set
      ['action=accept dsthost=a/b/c', /dsthost.*too many/],
      ['action=accept proto=tcp dstports=65536', /dstports '65536': ports out of range/],
      ['action=accept proto=tcp dstports=90-80', /dstports '90-80'/],
      ['action=accept proto=tcp dstports=8_0', /dstports '8_0'/], // plain decimal only
      ['action=accept proto=udp dstports=1-2-3', /dstports '1-2-3'/],
      ['action=accept dstports=80', /dstports: valid only with proto=tcp or proto=udp/],
      ['action=accept proto=icmp dstports=80', /dstports: valid only/],
      ['action=accept proto=tcp icmptype=8', /icmptype: valid only with proto=icmp/],
      ['action=accept proto=icmp icmptype=256', /icmptype '256'/],
      ['action=accept proto=icmp icmptype=0008', /icmptype '0008'/], // at most three digits (qubesd)
      ['action=accept specialtarget=dns6', /specialtarget 'dns6'/],
      ['action=accept expire=+300', /expire '\+300'/], // relative times are the command line's, not the API's
      ['action=accept expire=253402300800', /expire.*year 9999/], // Python's datetime cannot hold it
      ['action=accept comment=50%', /comment '50%'/], // Qubes' comment characters only
      ['action=accept\tproto=tcp', /action 'accept_proto=tcp'/], // a tab is no separator, and shown inert
      ['action=accept\x1b[31m', /action 'accept_\[31m'/], // a qube's escape sequence never reaches a terminal
    ];
    for (const [line, field] of bad) refused(() => parseApiRule(line), field, line);
  });

  it('parses a Set payload all or nothing: ASCII, one rule per line, the bad line numbered', () => {
    assert.equal(parseApiPayload(Buffer.from('action=accept proto=tcp\naction=drop\n')).length, 2);
    assert.equal(parseApiPayload(Buffer.from('action=drop')).length, 1, 'the last newline may be missing');
    refused(() => parseApiPayload(Buffer.from('action=accept\nactio=drop\n')), /^line 2: invalid firewall rule: option 'actio'/);
    refused(() => parseApiPayload(Buffer.from('action=accept\n\naction=drop\n')), /^line 2: .*line: empty/);
    refused(() => parseApiPayload(Buffer.from('\n')), /^line 1: /);
    assert.throws(() => parseApiPayload(Buffer.from('action=accept comment=żółw\n')), (e: unknown) => e instanceof QubesError && e.code === 'ProtocolError');
    refused(() => parseApiPayload(Buffer.from('action=accept\n'.repeat(10_001))), /at most 10000/);
  });
});

describe('the command-line words (qvm-firewall add/del RULE...)', () => {
  const api = (...w: string[]) => formatApiRule(words(...w));

  it('takes bare words as ACTION HOST PROTO PORTS-or-ICMPTYPE, mixed with key=value', () => {
    assert.equal(api('accept', '127.0.0.1', 'tcp', '80'), 'action=accept dst4=127.0.0.1/32 proto=tcp dstports=80-80');
    assert.equal(api('accept', '127.0.0.1', 'icmp', '8'), 'action=accept dst4=127.0.0.1/32 proto=icmp icmptype=8');
    assert.equal(api('dsthost=127.0.0.1', 'accept', 'dstports=443', 'tcp'), 'action=accept dst4=127.0.0.1/32 proto=tcp dstports=443-443');
    assert.equal(api('drop', 'proto=icmp'), 'action=drop proto=icmp');
    assert.equal(api('accept', 'comment=Allow LAN', '192.168.0.0/24'), 'action=accept dst4=192.168.0.0/24 comment=Allow LAN');
  });

  it('reads expire=+N from now', () => {
    assert.equal(words('accept', 'expire=+300').expire, NOW + 300);
    assert.equal(words('accept', 'expire=2583292452').expire, 2583292452);
  });

  it("refuses what Qubes' parser only takes by accident, and what it refuses", () => {
    const bad: [string[], RegExp][] = [
      [['accept', 'proto=tcp', 'action=drop'], /action: given twice/], // Qubes keeps the last one
      [['accept', 'dst4=1.1.1.1', 'dsthost=2.2.2.2'], /dsthost: a second destination/],
      [['accept', 'tcp'], /dsthost 'tcp': a keyword/], // Qubes would filter on a host named "tcp"
      [['accept', 'dns'], /dsthost 'dns': a keyword/],
      [['accept', '0.0.0.0/0'], /dsthost '0.0.0.0\/0': a \/0 network/], // Qubes' client drops it: the rule would match IPv6 too
      [['accept', 'dst6=::/0'], /dst6 '::\/0': a \/0 network/],
      [['dst6=127.0.0.1', 'accept'], /dst6 '127.0.0.1'/],
      [['accept', '127.1'], /dsthost '127.1'/], // Qubes keeps it as a host name, which a resolver reads as 127.0.0.1
      [['accept', 'proto=tcp', 'dstports=+80'], /dstports '\+80'/], // Python's int() takes a sign
      [['accept', 'proto=tcp', 'dstports=٨٠'], /dstports '٨٠'/], // and non-ASCII digits
      [['accept', 'expire=+-100'], /expire '\+-100'/],
      [['accept', 'expire=+999999999999'], /expire.*year 9999/],
      [['accept', '1.1.1.1', 'tcp', '80', 'extra'], /rule 'extra': one word too many/], // Qubes: IndexError
      [['accept', 'example.com', '80'], /proto '80'/], // the third bare word is the protocol
      [['accept', 'comment=a=b'], /comment 'a=b': '=' is not allowed/],
      [['accept', 'dstports='], /dstports: empty value/],
      [['accept', 'dstname=example.com'], /option 'dstname'/], // the command line knows dsthost, dst4, dst6
      [[''], /rule '': an empty word/],
      [[], /rule: empty/],
      [['proto=icmp'], /action: missing/],
    ];
    for (const [w, field] of bad) refused(() => words(...w), field, w.join(' '));
  });
});

describe('what qvm-firewall list shows, and what an enforcer gets', () => {
  const rules: FirewallRule[] = [
    parseApiRule('action=accept dst6=2001:DB8::5/32 proto=tcp dstports=443-443'),
    parseApiRule('action=drop expire=1899999990 proto=udp'),
    parseApiRule('action=accept expire=1900000100 dsthost=qubes-os.org comment=temp'),
    parseApiRule('action=accept specialtarget=dns'),
    parseApiRule('action=drop proto=icmp icmptype=8'),
  ];

  it("prints Qubes' pretty values: a single port as N, the time left as +Ns, '-' for unset", () => {
    const now = NOW * 1000;
    assert.deepEqual(listRow(rules[0], now), ['accept', '2001:DB8::5/32', 'tcp', '443', '-', '-', '-', '-']);
    assert.deepEqual(listRow(rules[2], now), ['accept', 'qubes-os.org', '-', '-', '-', '-', '+100s', 'temp']);
    assert.deepEqual(listRow(rules[4], now), ['drop', '-', 'icmp', '-', '-', '8', '-', '-']);
    assert.equal(expireLeft(100, 99_500), '+0s', 'half a second rounds to even');
    assert.equal(expireLeft(100, 98_500), '+2s');
    assert.equal(expireLeft(100, 100_400), '-0s', 'a negative time keeps its sign');
  });

  it('hands an enforcer the rules in force, in order, addresses canonical', () => {
    assert.deepEqual(enforcedRules(rules, NOW * 1000), [
      { action: 'accept', proto: 'tcp', dst: { family: 6, cidr: '2001:db8::/32' }, dstports: [443, 443] },
      { action: 'accept', dst: { host: 'qubes-os.org' }, expire: 1900000100, comment: 'temp' },
      { action: 'accept', specialtarget: 'dns' },
      { action: 'drop', proto: 'icmp', icmptype: 8 },
    ]);
    assert.equal(nextExpiry(rules, NOW * 1000), 1900000100);
    assert.equal(nextExpiry(rules, 1900000100 * 1000 + 1), undefined);
  });
});
