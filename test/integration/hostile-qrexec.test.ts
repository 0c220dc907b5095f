// A hostile qrexec caller inside a qube against isolad itself: calls that are refused but keep
// their sockets, callers that vanish during an 'ask', floods of denied calls for the log, and a
// failure inside one qube's handling. isolad must stay up, bounded, and serve the other qubes.

import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { canRunIntegration, Instance, sleep } from './harness';
import { RAW_QREXEC_SCRIPT } from './raw-qrexec-script';
import { createConnection, type Socket } from 'node:net';
import {
  AgentListener, DAEMON_TO_AGENT_DATA, HELLO_FLAG_CLIENT, MSG_DATA_STDIN, MSG_HELLO, MSG_TRIGGER_SERVICE3, encodeFrame, encodeHello, encodeTriggerService3,
} from '../../src/qrexec';

const skip = canRunIntegration();

const POLICY = [
  'test.Echo     +viaask work vault ask',
  'test.Echo     * work  vault allow',
  'test.Echo     * other vault allow',
  '* * @anyvm @anyvm deny',
].join('\n') + '\n';

describe('hostile qrexec callers against isolad', { skip, concurrency: false }, () => {
  let inst: Instance;
  let policyDir: string;
  const inQube = (vm: string, cmd: string, input?: string) => inst.cli('qvm-run', ['-p', vm, cmd], input);
  const fds = () => readdirSync(`/proc/${inst.daemonPid}/fd`).length;
  const rssKiB = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${inst.daemonPid}/status`, 'utf8'))![1]);
  const qubeFile = (vm: string, file: string) => `/proc/${inst.containers().find((c) => c.id.startsWith(`${vm}.`))!.pid}/root${file}`;
  const pendingAsks = async () => (await inst.ok('isola', 'ask', 'list')).trim().split('\n').slice(1).filter(Boolean);
  const until = async (what: string, cond: () => boolean | Promise<boolean>, ms: number) => {
    for (const end = Date.now() + ms; Date.now() < end; await sleep(100)) if (await cond()) return;
    assert.fail(`${what} within ${ms} ms`);
  };

  before(async () => {
    policyDir = mkdtempSync(path.join(os.tmpdir(), 'isola-hostile-policy-'));
    writeFileSync(path.join(policyDir, '30-test.policy'), POLICY);
    inst = new Instance({ env: { ISOLA_POLICY_DIR: policyDir, ISOLA_ASK_TIMEOUT: '300', ISOLA_TEST_FAULT: 'qrexec:test.Fault' } });
    await inst.start();
    await inst.installTemplate();
    await inst.ok('qvm-run', '-p', '-u', 'root', 'debian-12', "mkdir -p /etc/qubes-rpc && printf '#!/bin/sh\\ncat\\n' > /etc/qubes-rpc/test.Echo && chmod 755 /etc/qubes-rpc/test.Echo");
    await inst.ok('qvm-shutdown', '--wait', 'debian-12');
    for (const [name, label] of [['work', 'blue'], ['vault', 'black'], ['other', 'red']]) await inst.ok('qvm-create', '--label', label, name);
    for (const vm of ['work', 'other']) await inQube(vm, 'cat > /tmp/rq.js', RAW_QREXEC_SCRIPT);
    assert.equal((await inQube('work', 'echo warm | qrexec-client-vm vault test.Echo')).stdout, 'warm\n');
  });
  after(async () => {
    await inst?.destroy();
    rmSync(policyDir, { recursive: true, force: true });
  });

  test('refused-call-socket-leak: 600 refused calls that send 64 KiB+ and hold their sockets cost isolad nothing once refused', async (t) => {
    const fds0 = fds();
    const rss0 = rssKiB();
    const status = qubeFile('work', '/tmp/rq.status');
    const flood = inQube('work', 'rm -f /tmp/rq.status; node /tmp/rq.js hold 600 vault test.Nope 70000 30000');
    await until('every hostile call answered', () => existsSync(status), 90_000);
    // Each refused connection lingers at most a short grace for its last frames; the callers hold theirs for 30 s.
    await until('isolad has let go of the refused connections while their callers still hold them', () => fds() < fds0 + 40, 10_000)
      .catch(() => assert.fail(`isolad holds ${fds() - fds0} more descriptors while the refused callers hold theirs`));
    const alive = await inQube('work', 'echo alive');
    assert.equal(alive.stdout, 'alive\n', `qvm-run into the flooding qube: ${alive.stderr}`);
    const allowed = await inQube('work', 'echo still | qrexec-client-vm vault test.Echo');
    assert.equal(allowed.stdout, 'still\n', `a permitted call from the flooding qube: ${allowed.stderr}`);
    t.diagnostic(`while held: isolad +${fds() - fds0} descriptors, RSS +${Math.round((rssKiB() - rss0) / 1024)} MB`);
    assert.ok(rssKiB() - rss0 < 40 * 1024, `isolad RSS grew by ${Math.round((rssKiB() - rss0) / 1024)} MB`);
    const r = await flood;
    assert.match(r.stdout, /answered=600 /, r.stderr);
    await until('descriptors back near the baseline', () => fds() < fds0 + 10, 10_000);
  });

  test('refused-call-socket-leak: an ask whose caller is killed, or whose qube is killed, is withdrawn', async () => {
    assert.deepEqual(await pendingAsks(), []);
    const killed = inQube('work', 'echo $$ > /tmp/ask.pid; exec qrexec-client-vm vault test.Echo+viaask');
    await until('the question appears', async () => (await pendingAsks()).length === 1, 20_000);
    await inst.ok('qvm-run', '-p', 'work', 'kill -9 $(cat /tmp/ask.pid)');
    await killed;
    await until('the question of a killed caller is withdrawn (isola ask list empty)', async () => (await pendingAsks()).length === 0, 5000);

    const junk = inQube('work', 'node -e "' +
      "const s=require('net').createConnection('/run/qubes/qrexec-client.sock');" +
      "const f=(t,p)=>{const h=Buffer.alloc(8);h.writeUInt32LE(t,0);h.writeUInt32LE(p.length,4);return Buffer.concat([h,p])};" +
      "const h=Buffer.alloc(16);h.write('ISOLAQRX',0,'latin1');h.writeUInt32LE(1,8);h.writeUInt32LE(4,12);" +
      "const t=Buffer.alloc(96+17);t.write('vault',0);t.write('r1',64);t.write('test.Echo+viaask',96);" +
      "s.write(Buffer.concat([f(0x300,h),f(0x212,t)]));setTimeout(()=>s.write(f(0x190,Buffer.alloc(100))),1500);s.resume();s.on('close',()=>process.exit(0));s.on('error',()=>{});setTimeout(()=>process.exit(1),20000)" +
      '"');
    await until('the second question appears', async () => (await pendingAsks()).length === 1, 20_000);
    assert.equal((await junk).code, 0, 'a caller that sends frames while its question waits is dropped');
    await until('the question of a caller that broke the protocol is withdrawn', async () => (await pendingAsks()).length === 0, 5000);

    const dying = inQube('work', 'qrexec-client-vm vault test.Echo+viaask');
    await until('the third question appears', async () => (await pendingAsks()).length === 1, 20_000);
    await inst.ok('qvm-kill', 'work');
    await dying;
    await until('the question of a killed qube is withdrawn', async () => (await pendingAsks()).length === 0, 5000);
    await inst.ok('qvm-start', 'work');
    await inQube('work', 'cat > /tmp/rq.js', RAW_QREXEC_SCRIPT);
  });

  test('log-flood: thousands of denied calls from one qube add a bounded amount to the log, with the count of suppressed lines', async (t) => {
    const before = inst.daemonLog.length;
    const r = await inQube('other', 'node /tmp/rq.js calls 3000 vault test.Nope');
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { refused: 3000 });
    await until('the suppressed count is written once the limit lifts', () => /\d+ similar lines from other suppressed/.test(inst.daemonLog.slice(before)), 5000);
    const grown = inst.daemonLog.length - before;
    t.diagnostic(`3000 denied calls: ${grown} bytes of log`);
    assert.ok(grown < 40_000, `3000 denied calls wrote ${grown} bytes to isolad's log`);
    const mark = inst.daemonLog.length;
    assert.equal((await inQube('work', 'qrexec-client-vm vault test.Nope')).code, 126);
    await until("another qube's denied call is still logged", () => /qrexec work -> vault test\.Nope\+?: deny/.test(inst.daemonLog.slice(mark)), 3000);
  });

  test('log-flood: a 60 000-character service name costs the log and the policy log no more than a valid call', async (t) => {
    const before = inst.daemonLog.length;
    const r = await inQube('other', 'node /tmp/rq.js calls 200 vault "$(head -c 60000 /dev/zero | tr "\\0" A)"');
    assert.deepEqual(JSON.parse(r.stdout), { refused: 200 }, r.stderr);
    await sleep(1500);
    const grown = inst.daemonLog.length - before;
    t.diagnostic(`200 calls with a 60 000-character name: ${grown} bytes of log`);
    assert.ok(grown < 40_000, `they wrote ${grown} bytes to isolad's log`);
    const Database = (await import('better-sqlite3')).default;
    const db = new Database(inst.config.dbPath, { readonly: true, fileMustExist: true });
    try {
      const row = db.prepare("SELECT count(*) AS n, max(length(service) + length(argument) + length(reason)) AS longest FROM qrexec_log WHERE source = 'other' AND service LIKE 'AAAA%'").get() as { n: number; longest: number };
      assert.equal(row.n, 200, 'every call is in the policy log');
      assert.ok(row.longest < 1500, `a policy log row holds ${row.longest} characters of the caller's name`);
    } finally {
      db.close();
    }
  });

  test('handler-error-isolated: a failure while handling one qube\'s call is logged as a BUG and every qube is still served', async () => {
    inst.allowBugs(/test fault/);
    const r = await inQube('work', 'qrexec-client-vm vault test.Fault');
    assert.equal(r.code, 126, r.stderr);
    await until('the failure is logged as a BUG with its stack', () => /BUG: .*test fault[^\n]*\n\s+at /.test(inst.daemonLog), 3000);
    assert.equal(inst.daemonLog.match(/BUG: /g)?.length, 2, 'one unhandled rejection and one uncaught exception');
    assert.equal((await inQube('other', 'echo served')).stdout, 'served\n');
    assert.equal((await inQube('other', 'echo across | qrexec-client-vm vault test.Echo')).stdout, 'across\n');
    assert.equal((await inQube('work', 'echo again | qrexec-client-vm vault test.Echo')).stdout, 'again\n', 'the qube whose call failed is served too');
  });
});

// The per-qube byte budget, on isolad's own listener (no qube needed): callers whose calls are
// stalled (their target does not read) make isolad hold what they sent; over the budget, the
// qube's newest connection goes, its older ones and other qubes' connections stay.
describe('per-qube memory budget of the qrexec listener', () => {
  test('refused-call-socket-leak: over its byte budget a qube loses its newest connection, not its older ones', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'isola-budget-'));
    const lines: string[] = [];
    const listener = new AgentListener({ socketPath: path.join(dir, 'a.sock'), clientSocketPath: path.join(dir, 'c.sock'), name: 'work', maxBufferedBytes: 100_000, log: (l) => lines.push(l) });
    await listener.listen();
    // A stalled splice: the call is accepted, then isolad stops reading it (the target is full).
    listener.on('service-call', (_u, conn) => {
      conn.allow(DAEMON_TO_AGENT_DATA);
      conn.pause();
    });
    try {
      const callers: Socket[] = [];
      const closed = [false, false, false];
      for (let i = 0; i < 3; i++) {
        const s = createConnection(path.join(dir, 'c.sock'));
        await new Promise((r) => s.once('connect', r));
        s.on('error', () => undefined);
        s.once('close', () => (closed[i] = true));
        s.resume();
        s.write(Buffer.concat([encodeFrame(MSG_HELLO, encodeHello(HELLO_FLAG_CLIENT)), encodeFrame(MSG_TRIGGER_SERVICE3, encodeTriggerService3({ targetDomain: 'vault', requestId: `r${i}`, serviceName: 'test.Echo' }))]));
        await sleep(100);
        for (let k = 0; k < 4; k++) s.write(encodeFrame(MSG_DATA_STDIN, Buffer.alloc(65536)));
        callers.push(s);
        await sleep(200);
      }
      await until2(async () => closed.some(Boolean), 5000);
      await sleep(1500);
      assert.equal(closed[0], false, 'the oldest call stays');
      assert.equal(closed[2], true, 'the newest call is dropped');
      assert.ok(listener.bufferedBytes() <= 100_000, `isolad still holds ${listener.bufferedBytes()} bytes for the qube`);
      assert.ok(lines.some((l) => /holds more than 100000 bytes in isolad/.test(l)), lines.join('\n'));
      for (const c of callers) c.destroy();
    } finally {
      await listener.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

async function until2(cond: () => Promise<boolean>, ms: number): Promise<void> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(100)) if (await cond()) return;
  assert.fail(`not within ${ms} ms`);
}
