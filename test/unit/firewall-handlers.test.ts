// admin.vm.firewall.Get/Set/Reload on the daemon's real store: Qubes' default for a fresh qube,
// all-or-nothing replacement, expired rules dropped, the firewall-changed hook, and the rules'
// life with their qube (restart, clone, remove, expiry).

import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { QubesError } from '../../src/core/errors';
import { FirewallExpiry } from '../../src/daemon/firewall-expiry';
import { firewallInForce } from '../../src/daemon/firewall-rules';
import { DaemonClient } from './fakes/daemon-client';
import { Harness } from './fakes/harness';

const future = () => Math.floor(Date.now() / 1000) + 3600;
const dump = (h: Harness) => JSON.stringify(h.store.db.prepare('SELECT * FROM firewall ORDER BY qid').all());

async function rejects(p: Promise<unknown>, code: string, message: RegExp): Promise<void> {
  await assert.rejects(p, (e: unknown) => e instanceof QubesError && e.code === code && message.test(e.message));
}

describe('admin.vm.firewall.*', () => {
  let h: Harness;
  let api: DaemonClient;
  beforeEach(async () => {
    h = new Harness();
    await h.templateAndApp('work');
    api = new DaemonClient(h);
  });
  afterEach(() => h.close());

  const changes = (name = 'work') => h.eventsOf(name, 'firewall-changed').length;

  it("gives a fresh qube Qubes' default: one accept rule, nothing stored", async () => {
    assert.equal(await api.call('admin.vm.firewall.Get', 'work'), 'action=accept\n');
    assert.equal(h.store.firewall(h.q('work').qid), undefined);
    assert.deepEqual(firewallInForce(h.collection, 'work'), [{ action: 'accept' }]);
  });

  it('replaces all rules; Get returns them in order, in qubesd form, each newline-terminated', async () => {
    const exp = future();
    await api.call('admin.vm.firewall.Set', 'work', {
      payload: `action=accept proto=tcp dst4=192.168.0.0/24 dstports=443-443\naction=accept dsthost=qubes-os.org expire=${exp} comment=for an hour\naction=drop\n`,
    });
    assert.equal(await api.call('admin.vm.firewall.Get', 'work'),
      `action=accept dst4=192.168.0.0/24 proto=tcp dstports=443-443\naction=accept expire=${exp} dsthost=qubes-os.org comment=for an hour\naction=drop\n`);
    assert.equal(changes(), 1, 'firewall-changed fired once');
    assert.deepEqual(firewallInForce(h.collection, 'work'), [
      { action: 'accept', proto: 'tcp', dst: { family: 4, cidr: '192.168.0.0/24' }, dstports: [443, 443] },
      { action: 'accept', dst: { host: 'qubes-os.org' }, expire: exp, comment: 'for an hour' },
      { action: 'drop' },
    ]);
  });

  it('a refused Set saves nothing and fires nothing', async () => {
    await api.call('admin.vm.firewall.Set', 'work', { payload: 'action=drop proto=icmp\n' });
    const before = dump(h);
    const events = changes();
    const bad: [string, string, RegExp][] = [
      ['action=accept\naction=accept proto=tcp dstports=99999\n', 'QubesValueError', /^line 2: invalid firewall rule: dstports '99999'/],
      ['action=accept\nfoo\n', 'QubesValueError', /^line 2: /],
      ['action=accept comment=\u00e9t\u00e9\n', 'ProtocolError', /non-ASCII/],
      ['', 'ProtocolError', /needs a payload/],
    ];
    for (const [payload, code, message] of bad) await rejects(api.call('admin.vm.firewall.Set', 'work', { payload }), code, message);
    assert.equal(dump(h), before, 'the store is byte-for-byte unchanged');
    assert.equal(changes(), events);
    assert.equal(await api.call('admin.vm.firewall.Get', 'work'), 'action=drop proto=icmp\n');
  });

  it('drops rules already expired when saving, as qubesd; only expired rules leave none (all dropped)', async () => {
    await api.call('admin.vm.firewall.Set', 'work', { payload: 'action=accept proto=udp expire=1463292452\naction=drop proto=tcp\n' });
    assert.equal(await api.call('admin.vm.firewall.Get', 'work'), 'action=drop proto=tcp\n');
    await api.call('admin.vm.firewall.Set', 'work', { payload: 'action=accept expire=1463292452\n' });
    assert.equal(await api.call('admin.vm.firewall.Get', 'work'), '');
    assert.deepEqual(h.store.firewall(h.q('work').qid), [], 'no rule, which is not the default');
    assert.deepEqual(firewallInForce(h.collection, 'work'), []);
  });

  it('Reload fires firewall-changed without changing anything', async () => {
    const before = dump(h);
    assert.equal(await api.call('admin.vm.firewall.Reload', 'work'), '');
    assert.equal(changes(), 1);
    assert.equal(dump(h), before);
  });

  it('refuses dom0 as destination, and unknown qubes', async () => {
    for (const m of ['admin.vm.firewall.Get', 'admin.vm.firewall.Reload'] as const) await rejects(api.call(m, 'dom0'), 'ProtocolError', /cannot be called on dom0/);
    await rejects(api.call('admin.vm.firewall.Set', 'dom0', { payload: 'action=drop\n' }), 'ProtocolError', /cannot be called on dom0/);
    await rejects(api.call('admin.vm.firewall.Get', 'nope'), 'QubesVMNotFoundError', /nope/);
    await rejects(api.call('admin.vm.firewall.Get', 'work', { arg: 'x' }), 'ProtocolError', /takes no argument/);
  });

  it('keeps the rules across an isolad restart', async () => {
    await api.call('admin.vm.firewall.Set', 'work', { payload: 'action=drop specialtarget=dns\n' });
    await h.restart();
    assert.equal(await new DaemonClient(h).call('admin.vm.firewall.Get', 'work'), 'action=drop specialtarget=dns\n');
  });

  it('a clone gets the same rules; a removed qube takes its rules with it', async () => {
    await api.call('admin.vm.firewall.Set', 'work', { payload: 'action=accept dsthost=example.com\naction=drop\n' });
    await api.call('admin.vm.Clone', 'work', { payload: 'name=work2' });
    assert.equal(await api.call('admin.vm.firewall.Get', 'work2'), 'action=accept dsthost=example.com\naction=drop\n');
    const qid = h.q('work').qid;
    await api.call('admin.vm.Remove', 'work');
    assert.equal(h.store.firewall(qid), undefined);
    assert.equal((h.store.db.prepare('SELECT COUNT(*) AS n FROM firewall').get() as { n: number }).n, 1, "only work2's rules are left");
  });

  it('a damaged stored rule fails closed: Get and the enforcer hook refuse instead of guessing', async () => {
    h.store.setFirewall(h.q('work').qid, ['action=accept', 'action=maybe']);
    await rejects(api.call('admin.vm.firewall.Get', 'work'), 'QubesException', /work: stored firewall rule 1 is damaged/);
    assert.throws(() => firewallInForce(h.collection, 'work'), /damaged/);
  });
});

describe('expiry of firewall rules', () => {
  let h: Harness;
  let api: DaemonClient;
  let expiry: FirewallExpiry | undefined;
  beforeEach(async () => {
    h = new Harness();
    await h.templateAndApp('work');
    api = new DaemonClient(h);
  });
  afterEach(async () => {
    expiry?.stop();
    await h.close();
  });

  it('removes a rule when its time has passed and fires firewall-changed', async () => {
    const exp = future();
    await api.call('admin.vm.firewall.Set', 'work', { payload: `action=accept dsthost=example.com expire=${exp}\naction=drop\n` });
    // The clock is past the expiry (isolad was down when it passed): the rule goes at once.
    expiry = new FirewallExpiry(h.collection, h.events, h.log, () => (exp + 1) * 1000);
    expiry.start();
    await h.until(() => h.store.firewall(h.q('work').qid)?.length === 1, 'the expired rule to be removed');
    assert.deepEqual(h.store.firewall(h.q('work').qid), ['action=drop']);
    assert.equal(h.eventsOf('work', 'firewall-changed').length, 2, 'one for the Set, one for the expiry');
    assert.deepEqual(expiry.pending(), []);
  });

  it('waits for the next expiry of each qube and follows changes', async () => {
    expiry = new FirewallExpiry(h.collection, h.events, h.log);
    expiry.start();
    assert.deepEqual(expiry.pending(), []);
    await api.call('admin.vm.firewall.Set', 'work', { payload: `action=accept expire=${future()}\n` });
    assert.deepEqual(expiry.pending(), ['work']);
    await api.call('admin.vm.firewall.Set', 'work', { payload: 'action=accept\n' });
    assert.deepEqual(expiry.pending(), []);
    await api.call('admin.vm.firewall.Set', 'work', { payload: `action=accept expire=${future()}\n` });
    await api.call('admin.vm.Remove', 'work');
    assert.deepEqual(expiry.pending(), [], 'a removed qube has nothing to wait for');
  });
});
