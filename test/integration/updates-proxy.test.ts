// Qubes' updates proxy against a real isolad: an offline template (netvm none, loopback only) runs
// apt through its 127.0.0.1:8082 forwarder, qrexec's qubes.UpdatesProxy and sys-net's tinyproxy to
// the tests' own mirror (a test host serving a tiny repository); what the proxy refuses, who may call
// it, and hostile bytes at both ends. No request leaves for a real mirror: the template's only source
// is the test host, and sys-net resolves names with the test internet's DNS.

import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { SHIPPED_POLICY_DIR } from '../../src/daemon/setup';
import { PACKAGE, publishPackage, sourcesLine } from './apt-repo';
import { canRunIntegration, Instance, sleep } from './harness';
import { DNS_SERVER, TestInternet } from './net-world';

const skip = canRunIntegration();
const MIRROR = 'deb.test';
const MIRROR_IP = '198.51.100.10';

/** Node run in a qube (script on stdin): one raw request per line to the forwarder, each status line printed. */
const proxyProbe = (requests: string[]) => `
const net = require('net');
const reqs = ${JSON.stringify(requests)};
(async () => {
  for (const r of reqs) {
    const line = await new Promise((resolve) => {
      const s = net.connect(8082, '127.0.0.1');
      let b = '';
      s.setTimeout(15000, () => { s.destroy(); resolve('TIMEOUT'); });
      s.on('data', (d) => { b += d.toString('latin1'); });
      s.on('close', () => resolve(b.split('\\r\\n')[0] || 'EMPTY'));
      s.on('error', (e) => resolve('ERR ' + e.code));
      s.write(r);
    });
    console.log(JSON.stringify([r.split('\\r\\n')[0], line]));
  }
})();
`;

describe('updates proxy: an offline template updated through qrexec and the update qube', { skip, concurrency: false }, () => {
  let inst: Instance;
  let inet: TestInternet;
  let base: string;
  let repo: string;
  let policyDir: string;
  const run = (vm: string, cmd: string, opts: { user?: string; input?: string } = {}) =>
    inst.cli('qvm-run', ['-p', ...(opts.user ? ['-u', opts.user] : []), vm, cmd], opts.input);
  const rootOk = async (vm: string, cmd: string) => {
    const r = await run(vm, cmd, { user: 'root' });
    assert.equal(r.code, 0, `${vm}: ${cmd}: ${r.stdout}${r.stderr}`);
    return r.stdout;
  };
  const probe = async (vm: string, requests: string[]) => {
    const r = await run(vm, 'node', { input: proxyProbe(requests) });
    assert.equal(r.code, 0, r.stderr);
    return new Map(r.stdout.trim().split('\n').map((l) => JSON.parse(l) as [string, string]));
  };

  before(async () => {
    base = mkdtempSync(path.join(os.tmpdir(), 'isola-updates-'));
    repo = path.join(base, 'repo');
    publishPackage(repo, '1.0');
    policyDir = path.join(base, 'policy.d');
    cpSync(SHIPPED_POLICY_DIR, policyDir, { recursive: true }); // Qubes' defaults, as `isola setup` installs them
    inet = await TestInternet.create({ [MIRROR]: MIRROR_IP }, repo);
    inst = new Instance({ env: { ISOLA_UPLINK_DNS: DNS_SERVER, ISOLA_POLICY_DIR: policyDir } });
    await inst.start();
    await inst.installTemplate();
    // What `isola setup` makes.
    await inst.ok('qvm-create', '--label', 'red', '--prop', 'provides_network=True', '--prop', 'netvm=', 'sys-net');
    await inst.ok('qvm-create', '--label', 'green', '--prop', 'provides_network=True', '--prop', 'netvm=sys-net', 'sys-firewall');
    await inst.ok('qubes-prefs', 'default_netvm', 'sys-firewall');
    await inst.ok('qvm-create', '--label', 'blue', 'work');
    // The template's only source is the test mirror: no apt request may head for a real one.
    await rootOk('debian-12', `rm -f /etc/apt/sources.list.d/* && echo '${sourcesLine(MIRROR)}' > /etc/apt/sources.list`);
  });
  after(async () => {
    await inst?.destroy();
    inet?.destroy();
    if (base) rmSync(base, { recursive: true, force: true });
  });

  test('a template with netvm none and loopback only installs a package from the mirror through qubes.UpdatesProxy', async (t) => {
    assert.equal((await inst.ok('qvm-prefs', 'debian-12', 'netvm')).trim(), '');
    const links = await rootOk('debian-12', 'ip -o link');
    assert.deepEqual(links.trim().split('\n').map((l) => l.split(':')[1].trim()), ['lo']);
    assert.equal(await rootOk('debian-12', 'cat /etc/apt/apt.conf.d/01qubes-proxy'), 'Acquire::http::Proxy "http://127.0.0.1:8082/";\n');
    await inst.ok('qvm-start', 'work'); // running on the template's old root until it restarts
    const t0 = Date.now();
    const update = await run('debian-12', 'apt-get update', { user: 'root' });
    const updateMs = Date.now() - t0;
    assert.equal(update.code, 0, update.stdout + update.stderr);
    assert.doesNotMatch(update.stdout + update.stderr, /^(Err|W|E):/m);
    const install = await run('debian-12', `DEBIAN_FRONTEND=noninteractive apt-get install -y ${PACKAGE}`, { user: 'root' });
    assert.equal(install.code, 0, install.stdout + install.stderr);
    assert.equal(await rootOk('debian-12', PACKAGE), 'hello 1.0\n');
    assert.ok(inet.requests.some((r) => /GET "\/repo\/(\.\/)?isola-hello_1\.0_all\.deb"$/.test(r)), inet.requests.join('\n'));
    t.diagnostic(`apt-get update through the proxy: ${updateMs} ms`);
    // The path taken: sys-net started for the call and runs tinyproxy as its own unprivileged user.
    const ps = await rootOk('sys-net', 'ps -eo user:20,args');
    assert.match(ps, /^tinyproxy\s+tinyproxy -d -c \/etc\/tinyproxy\/tinyproxy-updates\.conf$/m);
  });

  test('the package survives the template restart, and an AppVM sees it once it restarts (outdated until then)', async () => {
    await inst.ok('qvm-shutdown', '--wait', 'debian-12');
    assert.match(await inst.ok('qvm-volume', 'info', 'work:root'), /^is_outdated\s+True$/m);
    assert.equal((await run('work', `command -v ${PACKAGE} || echo none`)).stdout, 'none\n', 'a running AppVM keeps its snapshot');
    await inst.ok('qvm-start', 'debian-12');
    assert.equal(await rootOk('debian-12', `dpkg-query -W -f '\${Version}' ${PACKAGE}`), '1.0');
    await inst.ok('qvm-shutdown', '--wait', 'work');
    await inst.ok('qvm-start', 'work');
    assert.equal((await run('work', PACKAGE)).stdout, 'hello 1.0\n');
    assert.match(await inst.ok('qvm-volume', 'info', 'work:root'), /^is_outdated\s+False$/m);
  });

  test('only the netvm runs the proxy, and only the template forwards: no tinyproxy, listener or apt proxy config elsewhere', async () => {
    for (const vm of ['sys-firewall', 'work', 'debian-12']) {
      if ((await inst.cli('qvm-check', ['--running', vm])).code !== 0) await inst.ok('qvm-start', vm);
      assert.doesNotMatch(await rootOk(vm, 'ps -eo args'), /tinyproxy/, `${vm} runs no tinyproxy`);
    }
    assert.equal(await rootOk('work', 'test -e /etc/apt/apt.conf.d/01qubes-proxy && echo present || echo absent'), 'absent\n');
    const noForwarder = await probe('work', ['GET http://deb.test/ HTTP/1.0\r\n\r\n']);
    assert.equal([...noForwarder.values()][0], 'ERR ECONNREFUSED', 'an AppVM has no 127.0.0.1:8082');
  });

  test('appvm-calls-updates-proxy: denied by policy, whatever target it names', async () => {
    for (const target of ["''", 'sys-net', '@default']) {
      const r = await run('work', `qrexec-client-vm ${target} qubes.UpdatesProxy < /dev/null`);
      assert.equal(r.code, 126, `${target}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, /Request refused/);
    }
  });

  test("proxy-to-qubes-own-addresses: the filter refuses 10.137.x, sys-net's loopback and their other spellings", async () => {
    const ip = (await inst.ok('qvm-prefs', 'work', 'ip')).trim();
    const hosts = [ip, '10.137.255.254', '10.139.1.1', '127.0.0.1', '127.0.0.1:8082', 'localhost', '127.1', '2130706433', '0x7f000001', '0177.0.0.1', '[::1]', 'LOCALHOST.'];
    const get = (h: string) => `GET http://${h}/ HTTP/1.0\r\nHost: ${h}\r\n\r\n`;
    const before = inet.requests.length;
    const got = await probe('debian-12', [...hosts.map(get), get(MIRROR), `CONNECT ${MIRROR}:80 HTTP/1.0\r\n\r\n`, `CONNECT 127.0.0.1:443 HTTP/1.0\r\n\r\n`]);
    for (const h of hosts) assert.match(got.get(`GET http://${h}/ HTTP/1.0`)!, /^HTTP\/1\.[01] 403/, `${h} must be filtered`);
    assert.match(got.get(`GET http://${MIRROR}/ HTTP/1.0`)!, /^HTTP\/1\.[01] 200/, 'the mirror itself is reachable');
    assert.match(got.get(`CONNECT ${MIRROR}:80 HTTP/1.0`)!, /^HTTP\/1\.[01] 403/, 'CONNECT only to 443 and 873');
    assert.match(got.get('CONNECT 127.0.0.1:443 HTTP/1.0')!, /^HTTP\/1\.[01] 403/);
    assert.equal(inet.requests.length, before + 1, 'only the mirror was asked');
  });

  test('template-floods-8082 with garbage and huge headers: isolad, both agents and the proxy keep working', async () => {
    const flood = `
const net = require('net'), crypto = require('crypto');
const socks = [];
for (let i = 0; i < 60; i++) {
  const s = net.connect(8082, '127.0.0.1');
  s.on('error', () => {});
  socks.push(s);
  if (i % 3 === 0) s.write('GET http://deb.test/ HTTP/1.1\\r\\nX: ' + 'A'.repeat(4 << 20));
  else if (i % 3 === 1) s.write(crypto.randomBytes(2 << 20));
  // and every third one says nothing at all, holding its forwarder
}
setTimeout(() => { console.log('held'); }, 3000);
setTimeout(() => { for (const s of socks) s.destroy(); process.exit(0); }, 8000);
`;
    const flooding = run('debian-12', 'node', { input: flood });
    await sleep(4000);
    // While the connections are held: isolad answers, the template's agent runs commands.
    assert.equal((await inst.cli('qvm-ls', ['--raw-list'])).code, 0);
    assert.equal((await run('debian-12', 'echo alive')).stdout, 'alive\n');
    assert.equal((await flooding).code, 0);
    await sleep(1000);
    const got = await probe('debian-12', [`GET http://${MIRROR}/ HTTP/1.0\r\n\r\n`]);
    assert.match([...got.values()][0], /^HTTP\/1\.[01] 200/);
    assert.equal((await run('debian-12', 'apt-get update', { user: 'root' })).code, 0);
    assert.equal((await run('sys-net', 'echo alive')).stdout, 'alive\n');
  });

  test('tinyproxy killed in sys-net is started again by the agent, and the template updates again', async () => {
    const pids = async () => (await rootOk('sys-net', 'ps -o pid= -u tinyproxy || true')).trim().split(/\s+/).filter(Boolean);
    const before = await pids();
    assert.ok(before.length > 0, 'tinyproxy runs');
    await rootOk('sys-net', `kill -9 ${before.join(' ')}`); // the test's own qube, by pid
    let after: string[] = [];
    for (let i = 0; i < 50 && (after = await pids()).every((p) => before.includes(p)); i++) await sleep(200);
    assert.ok(after.length > 0 && after.some((p) => !before.includes(p)), `restarted: ${before} -> ${after}`);
    assert.equal((await run('debian-12', 'apt-get update', { user: 'root' })).code, 0);
  });

  test('a policy that sends the template to a qube without the proxy fails the update cleanly', async () => {
    const file = path.join(policyDir, '30-updates-test.policy');
    writeFileSync(file, 'qubes.UpdatesProxy * @type:TemplateVM @default allow target=sys-firewall\n');
    try {
      await sleep(2000); // isolad re-reads the policy directory within a second
      // sys-firewall is a ProxyVM: Qubes runs no updates proxy there, so the call ends without an answer.
      const got = await probe('debian-12', [`GET http://${MIRROR}/ HTTP/1.0\r\n\r\n`]);
      assert.equal([...got.values()][0], 'EMPTY');
      const r = await run('debian-12', 'apt-get -o Acquire::Retries=0 update', { user: 'root' });
      assert.match(r.stdout + r.stderr, /^(Err|E):.*deb\.test/m, `apt-get update exited ${r.code}: ${r.stdout}`);
    } finally {
      unlinkSync(file);
    }
    await sleep(2000);
    assert.equal((await run('debian-12', 'apt-get update', { user: 'root' })).code, 0, 'and works again with the default policy');
  });

  test('sudo apt-get install in an AppVM goes through its own netvm, not the proxy, and is gone after a restart', async () => {
    publishPackage(repo, '2.0');
    if ((await inst.cli('qvm-check', ['--running', 'work'])).code !== 0) await inst.ok('qvm-start', 'work');
    const r = await run('work', `sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y ${PACKAGE}`);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal((await run('work', PACKAGE)).stdout, 'hello 2.0\n');
    const workIp = (await inst.ok('qvm-prefs', 'work', 'ip')).trim();
    assert.ok(!inet.requests.some((q) => q.startsWith(workIp)), 'the mirror sees the AppVM only behind its netvms (NAT)');
    await inst.ok('qvm-shutdown', '--wait', 'work');
    await inst.ok('qvm-start', 'work');
    assert.equal((await run('work', PACKAGE)).stdout, 'hello 1.0\n', "back to the template's package: an AppVM's root is not kept");
  });

  test('qubes-vm-update starts the halted template, upgrades it through the proxy, halts it again and names the qubes to restart', async () => {
    publishPackage(repo, '2.0');
    await inst.ok('qvm-shutdown', '--wait', 'debian-12');
    if ((await inst.cli('qvm-check', ['--running', 'work'])).code !== 0) await inst.ok('qvm-start', 'work');
    const r = await inst.cli('qubes-vm-update', ['--targets', 'debian-12', '--no-apply']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    // Not a terminal: one plain line per change of state.
    assert.match(r.stdout, /^debian-12: starting\ndebian-12: updating\ndebian-12: shutting down\ndebian-12: updated \(1 upgraded, 0 newly installed, 0 to remove/m);
    assert.match(r.stdout, /^ {2}updated: debian-12$/m);
    // sys-net and sys-firewall run on debian-12 too.
    assert.match(r.stdout, /^Qubes to restart to use the updates.*: sys-firewall, sys-net, work$/m);
    assert.equal((await inst.cli('qvm-check', ['--running', 'debian-12'])).code, 1, 'halted again, as it was');
    assert.match(await inst.ok('qvm-volume', 'info', 'work:root'), /^is_outdated\s+True$/m);
    assert.match(await inst.ok('qvm-features', 'debian-12', 'last-updates-check'), /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\n$/);
    await inst.ok('qvm-shutdown', '--wait', 'work');
    await inst.ok('qvm-start', 'work');
    assert.equal((await run('work', PACKAGE)).stdout, 'hello 2.0\n');

    const again = await inst.cli('qubes-vm-update', ['--targets', 'debian-12', '--signal-no-updates']);
    assert.equal(again.code, 100, again.stdout + again.stderr);
    assert.match(again.stdout, /^ {2}no updates: debian-12$/m);
    const stale = await inst.cli('qubes-vm-update', []);
    assert.equal(stale.code, 0);
    assert.match(stale.stdout, /^No qube to update/, 'checked just now: not stale, so the default selection skips it');
  });

  test('qubes-vm-update reports a failed update with apt\'s reason and exits 1', async () => {
    const file = path.join(policyDir, '30-updates-test.policy');
    writeFileSync(file, 'qubes.UpdatesProxy * @type:TemplateVM @default deny\n');
    try {
      await sleep(2000);
      const r = await inst.cli('qubes-vm-update', ['--targets', 'debian-12', '--force-update']);
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.match(r.stdout, /^ {2}failed: debian-12$/m);
      assert.match(r.stderr, /^qubes-vm-update: debian-12: exit code 100: E: Failed to fetch http:\/\/deb\.test\//m);
      assert.equal((await inst.cli('qvm-check', ['--running', 'debian-12'])).code, 1, 'shut down again after the failure too');
    } finally {
      unlinkSync(file);
    }
  });
});
