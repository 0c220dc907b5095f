// A netvm's firewall in real namespaces, without isolad: a "netvm" netns routing two "client" netns
// (veths, 10.137.0.x/32) to an "internet" netns with hosts on documentation ranges only. Every netns
// is named with a per-run prefix and only those are deleted; no packet reaches the host's network.

import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { after, before, describe, test } from 'node:test';
import type { FirewallRule } from '../../src/net/firewall-rule-type';
import { applyClientFirewall, applyNetvmFirewall, applyNetvmSysctls, clientConnections, deleteInstanceTable, nftApply, removeClientFirewall } from '../../src/net/nft';
import { clientRemoval, netvmRuleset, type NetvmClient, type NetvmFirewall } from '../../src/net/nft-ruleset';

function missing(): string | undefined {
  if (process.getuid?.() !== 0) return 'needs root (network namespaces, nftables)';
  for (const t of ['nft', 'ip', 'nsenter', 'conntrack']) {
    if (!['/usr/sbin', '/usr/bin', '/sbin', '/bin'].some((d) => existsSync(path.join(d, t)))) return `${t} is not installed`;
  }
  return undefined;
}

const P = `nf${randomBytes(3).toString('hex')}`;
const NS = { inet: `${P}-inet`, netvm: `${P}-netvm`, c5: `${P}-c5`, c6: `${P}-c6` };
const NETVM = `/run/netns/${NS.netvm}`;
const DNS = ['198.51.100.53', '198.51.100.54'];
const H10 = '198.51.100.10';
const H11 = '198.51.100.11';
const now = () => Math.floor(Date.now() / 1000);
const created: string[] = [];
const peers: ChildProcess[] = [];

const ip = (ns: string, ...args: string[]) => execFileSync('ip', ['-n', ns, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
const nftList = (ns: string, ...what: string[]) => execFileSync('nsenter', [`--net=/run/netns/${ns}`, 'nft', '-s', 'list', ...what], { encoding: 'utf8' });

interface Reply {
  ok: boolean;
  ms: number;
  code?: string;
  data?: string;
}

/** A netns-peer process: its JSON lines, and (for an agent) a request/response call. */
class Peer {
  readonly events: Record<string, string>[] = [];
  private readonly pending = new Map<number, (r: Reply) => void>();
  private nextId = 1;
  readonly ready: Promise<void>;
  private readonly child: ChildProcess;

  constructor(ns: string, mode: 'serve' | 'agent', cfg: object = {}) {
    this.child = spawn('nsenter', [`--net=/run/netns/${ns}`, process.execPath, path.join(__dirname, 'netns-peer.js'), mode, JSON.stringify(cfg)], { stdio: ['pipe', 'pipe', 'inherit'] });
    peers.push(this.child);
    this.ready = new Promise((resolve, reject) => {
      this.child.on('exit', (code) => reject(new Error(`netns-peer ${mode} in ${ns} exited with ${code}`)));
      readline.createInterface({ input: this.child.stdout! }).on('line', (l) => {
        const m = JSON.parse(l) as Record<string, string> & { id?: number };
        if (m.ev === 'ready') resolve();
        else if (m.id !== undefined) this.pending.get(m.id)?.(m as unknown as Reply);
        else this.events.push(m);
      });
    });
  }

  call(op: string, args: Record<string, unknown>, timeoutMs = 1500): Promise<Reply> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      this.child.stdin!.write(JSON.stringify({ id, op, timeoutMs, ...args }) + '\n');
    });
  }
}

let c5: Peer;
let c6: Peer;
let netvmAgent: Peer;
let internet: Peer;
let netvmServices: Peer;
let c6Services: Peer;
const acceptAll: FirewallRule[] = [{ action: 'accept' }];
const client = (n: 5 | 6, rules: FirewallRule[], resolved: NetvmClient['resolved'] = new Map()): NetvmClient => ({ ip: `10.137.0.${n}`, vif: `vif${n}`, rules, resolved });
const firewall = (c5rules = acceptAll): NetvmFirewall => ({ tag: P, upstream: 'eth0', masquerade: true, dns: DNS, clients: [client(5, c5rules), client(6, acceptAll)] });
const setRules = (rules: FirewallRule[], resolved?: NetvmClient['resolved']) => applyClientFirewall(NETVM, P, client(5, rules, resolved), DNS, now());
const tcp = (host: string, port: number, timeoutMs?: number) => c5.call('tcp', { host, port }, timeoutMs);
const h = (cidr: string) => ({ family: 4 as const, cidr });

/** Rejected by the netvm (ICMP admin-prohibited ⇒ EHOSTUNREACH), quickly: no timeout. */
function assertRejectedFast(r: Reply, what: string): void {
  assert.equal(r.ok, false, `${what} should be refused`);
  assert.equal(r.code, 'EHOSTUNREACH', `${what}: ${r.code}`);
  assert.ok(r.ms < 1000, `${what} took ${r.ms} ms`);
}

describe('a netvm enforces its clients\' firewalls', { skip: missing(), concurrency: false }, () => {
  let foreign = '';

  before(async () => {
    for (const ns of Object.values(NS)) {
      execFileSync('ip', ['netns', 'add', ns]);
      created.push(ns);
      ip(ns, 'link', 'set', 'lo', 'up');
    }
    // The internet: its hosts live on lo; 203.0.113.0/24 links it to the netvm.
    for (const a of [H10, H11, ...DNS]) ip(NS.inet, 'addr', 'add', `${a}/32`, 'dev', 'lo');
    ip(NS.netvm, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'up0', 'netns', NS.inet);
    ip(NS.inet, 'addr', 'add', '203.0.113.1/24', 'dev', 'up0');
    ip(NS.inet, 'link', 'set', 'up0', 'up');
    ip(NS.netvm, 'addr', 'add', '203.0.113.2/24', 'dev', 'eth0');
    ip(NS.netvm, 'link', 'set', 'eth0', 'up');
    ip(NS.netvm, 'route', 'add', 'default', 'via', '203.0.113.1');
    await applyNetvmSysctls(NETVM);
    // Clients as Qubes wires them: a /32 each, the netvm's address on every vif as their gateway.
    for (const n of [5, 6]) {
      const ns = n === 5 ? NS.c5 : NS.c6;
      ip(NS.netvm, 'link', 'add', `vif${n}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
      ip(NS.netvm, 'addr', 'add', '10.137.0.1/32', 'dev', `vif${n}`);
      ip(NS.netvm, 'link', 'set', `vif${n}`, 'up');
      ip(NS.netvm, 'route', 'add', `10.137.0.${n}/32`, 'dev', `vif${n}`);
      ip(ns, 'addr', 'add', `10.137.0.${n}/32`, 'dev', 'eth0');
      ip(ns, 'link', 'set', 'eth0', 'up');
      ip(ns, 'route', 'add', '10.137.0.1', 'dev', 'eth0');
      ip(ns, 'route', 'add', 'default', 'via', '10.137.0.1');
    }
    // A table that is not ours, in the netvm: it must survive everything below.
    await nftApply(NETVM, `table ip ${P}-other {\n  set keep { type ipv4_addr; elements = { 192.0.2.1 } }\n  chain c { }\n}\n`);
    foreign = nftList(NS.netvm, 'table', 'ip', `${P}-other`);

    internet = new Peer(NS.inet, 'serve', {
      tcp: [80, 443, 8080, 8081],
      udpEcho: [{ addr: H10, port: 8080 }, { addr: H10, port: 9999 }],
      dns: [{ addr: DNS[0], answer: '192.0.2.53' }, { addr: DNS[1], answer: '192.0.2.54' }],
    });
    netvmServices = new Peer(NS.netvm, 'serve', { tcp: [8082], udpEcho: [], dns: [] });
    c6Services = new Peer(NS.c6, 'serve', { tcp: [80], udpEcho: [], dns: [] });
    c5 = new Peer(NS.c5, 'agent');
    c6 = new Peer(NS.c6, 'agent');
    netvmAgent = new Peer(NS.netvm, 'agent');
    await Promise.all([internet, netvmServices, c6Services, c5, c6, netvmAgent].map((p) => p.ready));

    const rs = netvmRuleset(firewall(), now());
    await nftApply(NETVM, rs.script, { check: true });
    await applyNetvmFirewall(NETVM, firewall(), now());
  });

  after(async () => {
    for (const p of peers) if (p.pid && p.exitCode === null) process.kill(p.pid);
    for (const ns of created) execFileSync('ip', ['netns', 'del', ns]);
  });

  test('an allowed host is reachable, masqueraded behind the netvm', async () => {
    const r = await tcp(H10, 80);
    assert.deepEqual([r.ok, r.data], [true, 'hello 203.0.113.2']);
    assert.equal((await c6.call('tcp', { host: H11, port: 443 })).ok, true);
  });

  test('a denied host is rejected fast, not left to time out', async () => {
    await setRules([{ action: 'accept', dst: h(H11) }]);
    assertRejectedFast(await tcp(H10, 80), 'tcp to a host not allowed');
    assert.equal((await tcp(H11, 80)).ok, true);
    assert.equal((await c6.call('tcp', { host: H10, port: 80 })).ok, true, "the other client's rules are untouched");
  });

  test('rules apply in order, the first match wins', async () => {
    await setRules([{ action: 'drop', dst: h(H10), proto: 'tcp', dstports: [80, 80] }, { action: 'accept', dst: h(H10) }]);
    assertRejectedFast(await tcp(H10, 80), 'dropped before the accept');
    assert.equal((await tcp(H10, 8080)).ok, true);
    await setRules([{ action: 'accept', dst: h(H10) }, { action: 'drop', dst: h(H10), proto: 'tcp', dstports: [80, 80] }]);
    assert.equal((await tcp(H10, 80)).ok, true, 'accepted before the drop');
  });

  test('a port range without a protocol opens exactly those ports, tcp and udp', async () => {
    await setRules([{ action: 'accept', dst: h(H10), dstports: [443, 8080] }]);
    assert.equal((await tcp(H10, 443)).ok, true);
    assert.equal((await tcp(H10, 8080)).ok, true);
    assertRejectedFast(await tcp(H10, 80), 'below the range');
    assertRejectedFast(await tcp(H10, 8081), 'above the range');
    assert.equal((await c5.call('udp', { host: H10, port: 8080 })).ok, true, 'udp in the range');
    assert.equal((await c5.call('udp', { host: H10, port: 9999 })).ok, false, 'udp outside the range');
  });

  test('specialtarget=dns answers through the virtual servers while other udp is refused', async () => {
    await setRules([{ action: 'accept', specialtarget: 'dns' }]);
    const q1 = await c5.call('dns', { host: '10.139.1.1', name: 'example.test' });
    const q2 = await c5.call('dns', { host: '10.139.1.2', name: 'example.test' });
    assert.deepEqual([q1.ok, q1.data, q2.ok, q2.data], [true, '192.0.2.53', true, '192.0.2.54'], 'each virtual server reaches its upstream one');
    const udpSeen = internet.events.filter((e) => e.ev === 'udp').length;
    assert.equal((await c5.call('udp', { host: H10, port: 9999 })).ok, false);
    assert.equal(internet.events.filter((e) => e.ev === 'udp').length, udpSeen, 'the datagram never reached the host');
    assertRejectedFast(await tcp(H10, 80), 'tcp with only DNS allowed');
    await setRules([{ action: 'accept', dst: h(H10) }]);
    assert.equal((await c5.call('dns', { host: '10.139.1.1', name: 'example.test' })).ok, false, 'no DNS without the rule');
  });

  test('an expired rule is ignored, a live one applies', async () => {
    await setRules([{ action: 'accept', dst: h(H10), expire: now() - 5 }]);
    assertRejectedFast(await tcp(H10, 80), 'expired accept');
    const { compiled } = await setRules([{ action: 'accept', dst: h(H10), expire: now() + 3600 }]);
    assert.equal((await tcp(H10, 80)).ok, true);
    assert.ok(compiled.nextExpiry! > now());
  });

  test('a name that did not resolve blocks all traffic of that client, and says so', async () => {
    const rules: FirewallRule[] = [{ action: 'accept', dst: { host: 'allowed.test' } }, { action: 'accept', dst: { host: 'gone.test' } }, { action: 'accept', specialtarget: 'dns' }];
    const { compiled } = await setRules(rules, new Map([['allowed.test', [H11]]]));
    assert.match(compiled.failClosed ?? '', /gone\.test/);
    assertRejectedFast(await tcp(H11, 80), 'a resolved name of a failed client');
    assert.equal((await c5.call('dns', { host: '10.139.1.1', name: 'x.test' })).ok, false);
    await setRules(rules, new Map([['allowed.test', [H11]], ['gone.test', ['2001:db8::1']]]));
    assert.equal((await tcp(H11, 80)).ok, true, 'once every name resolves, the rules apply');
    assertRejectedFast(await tcp(H10, 80), 'not a resolved address');
  });

  test('client-to-client: a qube cannot reach another behind the same netvm', async () => {
    await setRules(acceptAll);
    const seen = c6Services.events.length;
    const r = await tcp('10.137.0.6', 80, 1000);
    assert.equal(r.ok, false);
    assert.equal(c6Services.events.length, seen, 'the other client saw no connection');
  });

  test('netvm-dials-clients: nothing in the netvm can open a connection to its clients', async () => {
    await setRules(acceptAll);
    const seen = c6Services.events.length;
    const r = await netvmAgent.call('tcp', { host: '10.137.0.6', port: 80 }, 1500);
    assert.equal(r.ok, false, 'the netvm reached a client');
    assert.equal(c6Services.events.length, seen, 'the client saw no connection');
    assert.equal((await tcp(H10, 80)).ok, true, 'replies to what the clients open still reach them');
  });

  test('netvm-services: a client cannot reach the netvm itself', async () => {
    await setRules(acceptAll);
    assertRejectedFast(await tcp('10.137.0.1', 8082), 'the gateway address');
    assertRejectedFast(await tcp('203.0.113.2', 8082), "the netvm's upstream address");
    assert.equal(netvmServices.events.length, 0);
  });

  test('spoofed-source: a client sending as another address is dropped before routing', async () => {
    await setRules(acceptAll);
    const counter = () => Number(/packets (\d+)/.exec(execFileSync('nsenter', [`--net=${NETVM}`, 'nft', 'list', 'counter', 'inet', `isola-${P}`, 'spoofed'], { encoding: 'utf8' }))![1]);
    const before = counter();
    const udpSeen = internet.events.filter((e) => e.ev === 'udp').length;
    for (const fake of ['10.137.0.6', '10.137.0.66']) {
      ip(NS.c5, 'addr', 'add', `${fake}/32`, 'dev', 'eth0');
      try {
        assert.equal((await c5.call('udp', { host: H10, port: 9999, localAddress: fake }, 800)).ok, false, `as ${fake}`);
      } finally {
        ip(NS.c5, 'addr', 'del', `${fake}/32`, 'dev', 'eth0');
      }
    }
    assert.equal(internet.events.filter((e) => e.ev === 'udp').length, udpSeen, 'no spoofed datagram got out');
    assert.ok(counter() >= before + 2, 'the anti-spoofing chain dropped them');
    assert.equal((await c5.call('udp', { host: H10, port: 9999 })).ok, true, 'the real address still works');
  });

  /** Packets counted by a chain of a test-owned table (created and deleted by the test itself). */
  const counted = (ns: string, table: string, chain: string) =>
    Number(/packets (\d+)/.exec(execFileSync('nsenter', [`--net=/run/netns/${ns}`, 'nft', 'list', 'chain', 'inet', table, chain], { encoding: 'utf8' }))![1]);

  test('ipv6-from-client: a client\'s IPv6 never gets past the vif', async () => {
    const watch = `${P}-watch6`;
    await nftApply(NETVM, `table inet ${watch} {\n  chain early { type filter hook prerouting priority -400; iifname "vif5" meta nfproto ipv6 counter; }\n  chain late { type filter hook prerouting priority -200; iifname "vif5" meta nfproto ipv6 counter; }\n}\n`);
    ip(NS.netvm, '-6', 'addr', 'add', '2001:db8:5::1/64', 'dev', 'vif5', 'nodad');
    ip(NS.c5, '-6', 'addr', 'add', '2001:db8:5::5/64', 'dev', 'eth0', 'nodad');
    try {
      assert.equal((await c5.call('udp', { host: '2001:db8:5::1', port: 9999 }, 800)).ok, false);
      assert.ok(counted(NS.netvm, watch, 'early') > 0, 'the client did send IPv6');
      assert.equal(counted(NS.netvm, watch, 'late'), 0, 'none of it passed the anti-spoofing chain');
    } finally {
      ip(NS.c5, '-6', 'addr', 'del', '2001:db8:5::5/64', 'dev', 'eth0');
      ip(NS.netvm, '-6', 'addr', 'del', '2001:db8:5::1/64', 'dev', 'vif5');
      await nftApply(NETVM, `delete table inet ${watch}\n`);
    }
  });

  test('misrouted-to-another-vif: traffic for a client leaves only through its own vif', async () => {
    await setRules(acceptAll);
    const watch = `${P}-watch`;
    await nftApply(`/run/netns/${NS.c5}`, `table inet ${watch} {\n  chain pre { type filter hook prerouting priority -400; ip daddr 10.137.0.6 counter; }\n}\n`);
    const c5mac = JSON.parse(execFileSync('ip', ['-n', NS.c5, '-j', 'link', 'show', 'eth0'], { encoding: 'utf8' }))[0].address as string;
    // As if the netvm's routing were wrong: c6's replies routed (and resolved) to c5's vif.
    ip(NS.netvm, 'route', 'replace', '10.137.0.6/32', 'dev', 'vif5');
    ip(NS.netvm, 'neigh', 'replace', '10.137.0.6', 'lladdr', c5mac, 'dev', 'vif5');
    try {
      const seen = internet.events.filter((e) => e.ev === 'udp').length;
      assert.equal((await c6.call('udp', { host: H10, port: 9999 }, 800)).ok, false);
      assert.equal(internet.events.filter((e) => e.ev === 'udp').length, seen + 1, 'the request went out');
      assert.equal(counted(NS.c5, watch, 'pre'), 0, 'the reply never reached the wrong client');
    } finally {
      ip(NS.netvm, 'neigh', 'del', '10.137.0.6', 'dev', 'vif5');
      ip(NS.netvm, 'route', 'replace', '10.137.0.6/32', 'dev', 'vif6');
      await nftApply(`/run/netns/${NS.c5}`, `delete table inet ${watch}\n`);
    }
    assert.equal((await c6.call('udp', { host: H10, port: 9999 })).ok, true);
  });

  test('an open connection that new rules forbid is cut; one they allow survives', async () => {
    await setRules(acceptAll);
    assert.equal((await c5.call('open', { name: 'cut', host: H10, port: 80 })).ok, true);
    assert.equal((await c5.call('open', { name: 'kept', host: H11, port: 80 })).ok, true);
    assert.equal((await c5.call('send', { name: 'cut', text: 'one' })).data, 'echo one');
    const { dropped } = await setRules([{ action: 'accept', dst: h(H11) }]);
    assert.ok(dropped >= 1, `dropped ${dropped}`);
    assert.equal((await c5.call('send', { name: 'cut', text: 'two' }, 1000)).ok, false, 'the forbidden one is dead');
    assert.equal((await c5.call('send', { name: 'kept', text: 'three' })).data, 'echo three');
    const left = await clientConnections(NETVM, '10.137.0.5');
    assert.ok(!left.some((e) => e.dst === H10 && e.proto === 'tcp'), JSON.stringify(left));
  });

  test('a 1000-rule firewall applies to a running client well under a second', async () => {
    const rules: FirewallRule[] = Array.from({ length: 999 }, (_, i) => ({ action: 'accept', proto: 'tcp', dst: h(`192.0.2.${i % 250}`), dstports: [1000 + i, 1000 + i] }));
    rules.push({ action: 'accept', dst: h(H10), proto: 'tcp', dstports: [80, 80] });
    const t0 = performance.now();
    await setRules(rules);
    const ms = performance.now() - t0;
    console.log(`# 1000 rules applied to one client (nft + conntrack prune) in ${ms.toFixed(0)} ms`);
    assert.ok(ms < 5000, `${ms} ms`);
    assert.equal(nftList(NS.netvm, 'chain', 'inet', `isola-${P}`, 'qbs-10-137-0-5').split('\n').filter((l) => /accept|reject/.test(l)).length, 1001);
    assert.equal((await tcp(H10, 80)).ok, true, 'the last rule is reached');
    assertRejectedFast(await tcp(H10, 443), 'past every rule');
  });

  test('applying twice is idempotent; removal of a client is too, and only cuts that client', async () => {
    await applyNetvmFirewall(NETVM, firewall(), now());
    const once = nftList(NS.netvm, 'table', 'inet', `isola-${P}`);
    await applyNetvmFirewall(NETVM, firewall(), now());
    assert.equal(nftList(NS.netvm, 'table', 'inet', `isola-${P}`), once);
    await setRules(acceptAll);
    assert.equal(nftList(NS.netvm, 'table', 'inet', `isola-${P}`), once, 'the same client update again changes nothing');
    assert.equal((await c5.call('open', { name: 'removed', host: H10, port: 80 })).ok, true);
    await removeClientFirewall(NETVM, P, client(5, []));
    await nftApply(NETVM, clientRemoval(P, client(5, [])));
    assert.deepEqual(await clientConnections(NETVM, '10.137.0.5'), [], 'its connections went with it');
    assert.equal((await c5.call('send', { name: 'removed', text: 'x' }, 800)).ok, false);
    assert.equal((await tcp(H10, 80, 800)).ok, false, 'a removed client gets nothing through');
    assert.equal((await c6.call('tcp', { host: H10, port: 80 })).ok, true);
    await setRules(acceptAll);
    const lines = (s: string) => s.split('\n').sort();
    assert.deepEqual(lines(nftList(NS.netvm, 'table', 'inet', `isola-${P}`)), lines(once), 're-adding restores the same table (chain order aside)');
  });

  test("a bad script changes nothing and fails with nft's message on one line", async () => {
    const before = nftList(NS.netvm, 'ruleset');
    await assert.rejects(nftApply(NETVM, `add rule inet isola-${P} qbs-10-137-0-5 accept\nadd rule inet isola-${P} qbs-10-137-0-5 bogus\n`), (e: Error) => {
      assert.match(e.message, /^nft in \/run\/netns\/.*: line 2: .*bogus/);
      assert.ok(!e.message.includes('\n'));
      return true;
    });
    assert.equal(nftList(NS.netvm, 'ruleset'), before, 'the first line was not applied either');
  });

  test('only our table is ever touched: a foreign one survives, ours goes away', async () => {
    assert.equal(nftList(NS.netvm, 'table', 'ip', `${P}-other`), foreign);
    await deleteInstanceTable(NETVM, P);
    await deleteInstanceTable(NETVM, P);
    assert.doesNotMatch(nftList(NS.netvm, 'tables'), new RegExp(`isola-${P}`));
    assert.equal(nftList(NS.netvm, 'table', 'ip', `${P}-other`), foreign);
    await deleteInstanceTable(`/run/netns/${P}-gone`, P); // a stopped netvm: nothing to do
  });
});
