// The compiled agent's own life: it waits for isolad quietly (one log line per state change, not per
// attempt), survives SIGHUP, and on SIGTERM stops its commands, SIGKILLing those that ignore SIGTERM once
// ISOLA_SHUTDOWN_TIMEOUT is over, then exits 0.

import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, test } from 'node:test';
import { AgentListener } from '../../src/qrexec';
import { AgentUnderTest, haveAgent } from './c-agent';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const exited = (a: AgentUnderTest) => new Promise<number | null>((r) => (a.child.exitCode !== null ? r(a.child.exitCode) : a.child.once('exit', (code) => r(code))));

function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

describe('the agent process', { skip: !haveAgent && 'build the agent first (scripts/build.sh)', timeout: 60_000 }, () => {
  let agent: AgentUnderTest;
  afterEach(() => agent.stop());

  test('waits for isolad with one log line, not one per attempt, and connects when it appears', async () => {
    agent = new AgentUnderTest();
    agent.spawnAgent();
    await sleep(1200); // 6 or more attempts, 100-200 ms apart
    assert.deepEqual(agent.logs, [`isola-agent: waiting for isolad at ${agent.socketPath} (ENOENT)`]);
    agent.listener = new AgentListener({ socketPath: agent.socketPath, log: () => {} });
    await agent.listener.listen();
    const hello = await agent.listener.waitForHello(2000);
    assert.equal(hello.ident, 'isola-agent/0.2.0 c');
    // The agent logs after its HELLO went out: the line may reach its stderr pipe a little after.
    for (let i = 0; i < 40 && agent.logs.length < 2; i++) await sleep(50);
    assert.match(agent.logs[1], /^isola-agent: connected to isolad at .* \(peer isolad\)$/);
    assert.equal((await agent.run('DEFAULT', 'echo up')).out, 'up\n');
  });

  test('keeps reading input a command no longer wants, and reports it once its output is drained', async () => {
    agent = new AgentUnderTest();
    await agent.start();
    assert.deepEqual(await agent.run('DEFAULT', 'head -c 3', Buffer.alloc(4 << 20, 0x61)), { code: 0, out: 'aaa', err: '' });
    assert.deepEqual(await agent.run('DEFAULT', 'exec >&-; sleep 0.2; echo late >&2; exit 3'), { code: 3, out: '', err: 'late\n' });
    const big = await agent.run('DEFAULT', 'head -c 3000000 /dev/zero; head -c 100000 /dev/zero >&2');
    assert.deepEqual([big.code, big.out.length, big.err.length], [0, 3_000_000, 100_000]);
  });

  test('ignores SIGHUP (a closed console must not stop the qube)', async () => {
    agent = new AgentUnderTest();
    await agent.start();
    agent.child.kill('SIGHUP');
    await sleep(200);
    assert.equal(agent.child.exitCode, null);
    assert.equal((await agent.run('DEFAULT', 'echo still')).out, 'still\n');
  });

  test('on SIGTERM stops its commands, SIGKILLs one that ignores SIGTERM after the grace, and exits 0', async () => {
    agent = new AgentUnderTest();
    await agent.start({ ISOLA_SHUTDOWN_TIMEOUT: '1' });
    const pidFile = path.join(agent.dir, 'stubborn.pid');
    await agent.listener.exec('DEFAULT', `trap '' TERM; echo $$ > ${pidFile}; while :; do sleep 0.05; done`, { justExec: true });
    const polite = path.join(agent.dir, 'polite.pid');
    await agent.listener.exec('DEFAULT', `echo $$ > ${polite}; exec sleep 100`, { justExec: true });
    for (let i = 0; i < 100 && !(existsSync(pidFile) && existsSync(polite)); i++) await sleep(20);
    const [stubborn, sleeper] = [pidFile, polite].map((f) => Number(readFileSync(f, 'utf8')));
    const t0 = Date.now();
    agent.child.kill('SIGTERM');
    assert.equal(await exited(agent), 0);
    const ms = Date.now() - t0;
    assert.ok(ms >= 900 && ms < 3000, `exited after ${ms} ms (grace 1 s)`);
    assert.equal(alive(sleeper), false);
    assert.equal(alive(stubborn), false, 'the command that ignored SIGTERM outlived the shutdown');
    assert.ok(agent.logs.some((l) => /shutdown \(SIGTERM\): SIGTERM to every process, 1s before SIGKILL/.test(l)));
    assert.ok(agent.logs.some((l) => /processes left after the grace period: SIGKILL/.test(l)));
  });
});
