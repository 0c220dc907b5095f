// Conformance suite every isolation Backend must pass (sandbox now, vm later): lifecycle, the agent
// channel, and that a qube sees only itself — its hostname, its uids, its network, its processes, its files.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { Backend, QubeLaunch, RuntimeInfo } from '../../src/core/backend';
import { AgentListener, type ExecSession } from '../../src/qrexec/agent-link';

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ConformanceHarness {
  backend: Backend;
  /**
   * Runs argv inside a running qube as its root (test-only back door: not part of the Backend interface).
   * `agent` is the suite's listener on the qube's channel, for a harness whose only way in is the agent.
   */
  exec(id: string, argv: string[], agent: AgentListener | undefined): Promise<ExecResult>;
  /** Removes everything the harness made (temp dirs, cgroup parents); runs even after failures. */
  cleanup(): Promise<void>;
}

export interface ConformanceOptions {
  /** Reason to skip the whole suite (not root, runtime missing, ...). */
  skip?: string;
  /**
   * The qube shares the host kernel (sandbox): its processes are host processes with host pids,
   * seccomp and no_new_privs are visible in /proc. False for a VM, where those checks do not apply.
   */
  sharedKernel?: boolean;
}

/**
 * `makeLaunch(name, variant)` returns a complete launch for a qube named `name`; different variants
 * must get different uid ranges and volume copies, and a guestLib holding the real agent (the qube's
 * init: it keeps running and exits on SIGTERM). `variant` 9 gets a guestLib without the agent.
 */
export function runBackendConformance(
  name: string,
  makeBackend: () => Promise<ConformanceHarness>,
  makeLaunch: (name: string, variant: number) => Promise<QubeLaunch>,
  options: ConformanceOptions = {},
): void {
  const sharedKernel = options.sharedKernel ?? true;
  describe(`backend conformance: ${name}`, { skip: options.skip ?? false }, () => {
    let h: ConformanceHarness | undefined;
    const started = new Set<string>();
    let a: QubeLaunch;
    let b: QubeLaunch;
    let agentA: AgentListener;
    const agents: AgentListener[] = [];
    let infoA: RuntimeInfo;
    let infoB: RuntimeInfo;
    let hostDir = '';

    const harness = (): ConformanceHarness => {
      assert.ok(h, 'harness was not created');
      return h;
    };
    const agentOf = new Map<string, AgentListener>();
    const sh = async (id: string, script: string): Promise<ExecResult> => harness().exec(id, ['/bin/sh', '-c', script], agentOf.get(id));
    const uuidOf = (l: QubeLaunch) => ({ runtimeId: l.runtimeId, uuid: l.uuid, ids: l.ids });
    /** As the lifecycle does it: the channel listens before the qube runs. */
    const listening = new Set<string>();
    const start = async (l: QubeLaunch): Promise<RuntimeInfo> => {
      started.add(l.runtimeId);
      if (!listening.has(l.runtimeId)) await listen(l);
      await harness().backend.create(l);
      return harness().backend.start(l.runtimeId);
    };
    const listen = async (l: QubeLaunch): Promise<AgentListener> => {
      const agent = new AgentListener({ channel: await harness().backend.channel(uuidOf(l)), name: l.name, log: () => undefined });
      await agent.listen();
      agents.push(agent);
      agentOf.set(l.runtimeId, agent);
      listening.add(l.runtimeId);
      return agent;
    };

    before(async () => {
      h = await makeBackend();
      hostDir = fs.mkdtempSync(path.join(os.tmpdir(), 'isola-conf-host-'));
      a = await makeLaunch('conf-a', 0);
      b = await makeLaunch('conf-b', 1);
      agentA = await listen(a);
      await listen(b);
      infoA = await start(a);
      infoB = await start(b);
    });

    after(async () => {
      const errors: string[] = [];
      for (const agent of agents) await agent.close().catch((err: Error) => errors.push(err.message));
      for (const id of started) {
        await h?.backend.destroy(id).catch((err: Error) => errors.push(err.message));
      }
      await h?.cleanup().catch((err: Error) => errors.push(err.message));
      if (hostDir) fs.rmSync(hostDir, { recursive: true, force: true });
      assert.deepEqual(errors, [], 'cleanup');
    });

    test('start resolves running with a pid, and state agrees', async () => {
      assert.equal(infoA.id, a.runtimeId);
      assert.equal(infoA.status, 'running');
      assert.ok(infoA.pid > 0);
      const st = await harness().backend.state(a.runtimeId);
      assert.deepEqual(st, { id: a.runtimeId, status: 'running', pid: infoA.pid });
    });

    test('the agent says hello over the backend\'s channel and runs commands as the qube\'s users', async () => {
      const hello = await agentA.waitForHello(30_000);
      assert.match(hello.ident, /^isola-agent\//);
      const session = await agentA.exec('root', 'echo "$(id -u) $(cat /proc/sys/kernel/hostname)"; echo err >&2; exit 7');
      const out = await collect(session);
      assert.equal(out.stdout.toString(), `0 ${a.name}\n`);
      assert.equal(out.stderr.toString(), 'err\n');
      assert.equal(out.exitCode, 7);
    });

    test('the channel is the qube\'s identity: a second qube\'s agent never reaches the first one\'s listener', async () => {
      const bAgent = agents[1];
      await bAgent.waitForHello(30_000);
      const out = await collect(await bAgent.exec('root', 'cat /proc/sys/kernel/hostname'));
      assert.equal(out.stdout.toString(), `${b.name}\n`);
      assert.notEqual(agentA, bAgent);
    });

    test('the qube\'s root cannot swap its channel endpoints, and the channel keeps working (channel-endpoint-swap)', async () => {
      const r = await sh(a.runtimeId, 'for f in /run/isola/agent.sock /run/qubes/qrexec-client.sock; do rm -f $f && echo "removed $f"; ln -sf /etc/passwd $f 2>/dev/null && echo "replaced $f"; done; true');
      assert.doesNotMatch(r.stdout, /removed|replaced/, r.stdout);
      await agentA.ping();
      const out = await collect(await agentA.exec('root', 'true'));
      assert.equal(out.exitCode, 0);
    });

    test('hostname inside is the qube name', async () => {
      const r = await sh(a.runtimeId, 'cat /proc/sys/kernel/hostname');
      assert.equal(r.stdout.trim(), a.name);
    });

    test('root inside is uidBase on the host', { skip: !sharedKernel && 'not a shared kernel' }, async () => {
      assert.equal((await sh(a.runtimeId, 'id -u')).stdout.trim(), '0');
      const status = fs.readFileSync(`/proc/${infoA.pid}/status`, 'utf8');
      const uids = /^Uid:\s+(.*)$/m.exec(status)?.[1].split(/\s+/).map(Number);
      const gids = /^Gid:\s+(.*)$/m.exec(status)?.[1].split(/\s+/).map(Number);
      assert.deepEqual(uids, [a.ids.base, a.ids.base, a.ids.base, a.ids.base]);
      assert.deepEqual(gids, [a.ids.base, a.ids.base, a.ids.base, a.ids.base]);
      const map = fs.readFileSync(`/proc/${infoA.pid}/uid_map`, 'utf8').trim().split(/\s+/).map(Number);
      assert.deepEqual(map, [0, a.ids.base, a.ids.count]);
    });

    test('root inside is root of its own kernel, and the VMM on the host is the qube\'s uid with no capabilities', { skip: sharedKernel && 'a shared kernel' }, async () => {
      assert.equal((await sh(a.runtimeId, 'id -u')).stdout.trim(), '0');
      const status = fs.readFileSync(`/proc/${infoA.pid}/status`, 'utf8');
      const field = (k: string) => new RegExp(`^${k}:[ \\t]*(.*)$`, 'm').exec(status)?.[1].trim().split(/\s+/);
      assert.deepEqual(field('Uid')?.map(Number), [a.ids.base, a.ids.base, a.ids.base, a.ids.base]);
      assert.deepEqual(field('Gid')?.map(Number), [a.ids.base, a.ids.base, a.ids.base, a.ids.base]);
      for (const k of ['CapPrm', 'CapEff', 'CapBnd', 'CapAmb']) assert.deepEqual(field(k), ['0000000000000000'], k);
      assert.deepEqual(field('Seccomp'), ['2']);
      assert.deepEqual(field('NoNewPrivs'), ['1']);
    });

    test('only the loopback interface exists', async () => {
      const r = await sh(a.runtimeId, 'cat /proc/net/dev');
      const ifaces = r.stdout.split('\n').slice(2).map((l) => l.split(':')[0].trim()).filter(Boolean);
      assert.deepEqual(ifaces, ['lo']);
    });

    test('host processes are invisible', async () => {
      const r = await sh(a.runtimeId, 'for p in /proc/[0-9]*; do echo "${p#/proc/} $(tr "\\0" " " < $p/cmdline)"; done');
      // A VM's own kernel lists its kernel threads too (no cmdline): only its processes are counted.
      const procs = r.stdout.trim().split('\n').filter(Boolean).filter((l) => sharedKernel || /^\d+ \S/.test(l));
      assert.ok(procs.length > 0 && procs.length < 10, `pids seen inside: ${procs.length}\n${r.stdout}`);
      assert.ok(procs.some((l) => l.startsWith('1 ')), 'the qube has its own pid 1');
      const hostNeedle = process.argv[1] ?? 'node';
      assert.ok(!r.stdout.includes(hostNeedle), 'the test runner is visible inside');
      assert.ok(!procs.some((l) => / node /.test(` ${l} `)), 'a host node process is visible inside');
    });

    test('seccomp filter is on in every process; no new namespaces', { skip: !sharedKernel && 'not a shared kernel' }, async () => {
      const r = await sh(a.runtimeId, 'grep -E "^Seccomp:" /proc/self/status /proc/1/status');
      for (const f of ['/proc/self/status', '/proc/1/status']) assert.match(r.stdout, new RegExp(`${f}:Seccomp:\\s+2`));
      const ns = await sh(a.runtimeId, 'unshare -U true; echo "user=$?"; unshare -n true; echo "net=$?"; unshare -m true; echo "mnt=$?"');
      assert.doesNotMatch(ns.stdout, /=0\b/, `a namespace could be created inside:\n${ns.stdout}`);
      const host = fs.readFileSync(`/proc/${infoA.pid}/status`, 'utf8');
      assert.match(host, /^Seccomp:\s+2$/m);
    });

    test('host sysctls and sysrq cannot be written', async () => {
      const before = fs.readFileSync('/proc/sys/kernel/hostname', 'utf8');
      const panicBefore = fs.readFileSync('/proc/sys/kernel/panic', 'utf8');
      for (const file of ['/proc/sys/kernel/hostname', '/proc/sys/vm/drop_caches', '/proc/sys/kernel/panic', '/proc/sysrq-trigger']) {
        const r = await sh(a.runtimeId, `echo 1 > ${file}`);
        // A VM's root writes its own kernel's (what it may): the host's must not change, checked below.
        if (sharedKernel) assert.notEqual(r.code, 0, `${file} was writable`);
      }
      assert.equal(fs.readFileSync('/proc/sys/kernel/hostname', 'utf8'), before);
      assert.equal(fs.readFileSync('/proc/sys/kernel/panic', 'utf8'), panicBefore);
      if (!sharedKernel) {
        // The write reached the guest's kernel, so the one above was not the host's; the name is put back.
        assert.equal((await sh(a.runtimeId, `cat /proc/sys/kernel/hostname; echo ${a.name} > /proc/sys/kernel/hostname`)).stdout.trim(), '1');
        assert.equal((await sh(a.runtimeId, 'cat /proc/sys/kernel/hostname')).stdout.trim(), a.name);
      }
    });

    test('no host block, kvm or memory devices', async () => {
      if (!sharedKernel) {
        // A VM's /dev is its own kernel's: its block devices must be exactly its own disks (virtio, serial
        // isola-d<N>), its memory devices are its own RAM, and nothing of the host's (kvm, sd*, nvme*) shows.
        const disks = [...(a.volumes.root.image?.disks ?? []), ...(a.volumes.private.image?.disks ?? [])];
        const blk = await sh(a.runtimeId, 'for b in /sys/block/*; do echo "${b##*/} $(cat $b/serial 2>/dev/null)"; done');
        const devs = blk.stdout.trim().split('\n').filter((l) => l && !/^(ram|loop)\d+ $/.test(l));
        assert.deepEqual(devs.map((l) => l.split(' ')[1]).sort(), disks.map((_, i) => `isola-d${i}`).sort(), blk.stdout);
        assert.ok(devs.every((l) => /^vd[a-z]+ isola-d\d+$/.test(l)), blk.stdout);
        for (const dev of ['/dev/kvm', '/dev/sda', '/dev/nvme0n1']) assert.notEqual((await sh(a.runtimeId, `test -e ${dev}`)).code, 0, `${dev} exists inside`);
        const ls = await sh(a.runtimeId, 'ls /dev');
        assert.ok(!/\b(kvm|sd[a-z]|nvme\w*)\b/.test(ls.stdout), ls.stdout);
        return;
      }
      for (const dev of ['/dev/kvm', '/dev/vda', '/dev/sda', '/dev/nvme0n1', '/dev/mem', '/dev/kmem', '/dev/port']) {
        const r = await sh(a.runtimeId, `test -e ${dev}`);
        assert.notEqual(r.code, 0, `${dev} exists inside`);
      }
      const r = await sh(a.runtimeId, 'ls /dev');
      assert.ok(!/\b(kvm|vd[a-z]|sd[a-z]|nvme|loop\d|mem)\b/.test(r.stdout), r.stdout);
    });

    test('a file planted on the host outside the rootfs is not readable', async () => {
      const secret = path.join(hostDir, 'secret.txt');
      fs.writeFileSync(secret, 'host-secret-7f3c\n', { mode: 0o644 });
      fs.chmodSync(hostDir, 0o755);
      const r = await sh(a.runtimeId, `cat ${secret}; cat /proc/1/root${secret}; grep -rs host-secret-7f3c /tmp /root /etc`);
      assert.ok(!r.stdout.includes('host-secret-7f3c'), r.stdout);
    });

    test('memory limit is enforced', async () => {
      const limitMiB = a.limits.maxmemMiB === 0 ? a.limits.memoryMiB : a.limits.maxmemMiB;
      if (sharedKernel) {
        const r = await sh(a.runtimeId, 'cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max');
        assert.equal(Number(r.stdout.trim()), limitMiB * 1024 * 1024);
      } else {
        // A VM's limit is its RAM: the guest's kernel has no more than that (less what it reserves).
        const r = await sh(a.runtimeId, 'grep MemTotal /proc/meminfo');
        const kib = Number(/MemTotal:\s+(\d+) kB/.exec(r.stdout)?.[1]);
        assert.ok(kib > 0 && kib <= limitMiB * 1024, `the guest has ${kib} KiB, its limit is ${limitMiB} MiB`);
      }
      // dd's buffer is one block: touching twice the limit must get it killed, not the host.
      const r = await sh(a.runtimeId, `dd if=/dev/zero of=/dev/null bs=${limitMiB * 2}M count=1 2>&1; echo "rc=$?"`);
      assert.ok(r.code !== 0 || !/rc=0\b/.test(r.stdout), `allocating ${limitMiB * 2} MiB worked:\n${r.stdout}`);
      assert.equal((await harness().backend.state(a.runtimeId))?.status, 'running', 'init survived the OOM');
    });

    test('list shows both qubes', async () => {
      const ids = (await harness().backend.list()).map((i) => i.id);
      assert.ok(ids.includes(a.runtimeId) && ids.includes(b.runtimeId), ids.join(','));
    });

    test('pids() returns the host pids of the qube', async () => {
      const pids = await harness().backend.pids(a.runtimeId);
      assert.ok(pids.includes(infoA.pid), `${pids} lacks init ${infoA.pid}`);
      if (sharedKernel) {
        for (const pid of pids) {
          const st = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
          assert.match(st, new RegExp(`^Uid:\\s+${a.ids.base}\\s`, 'm'));
        }
      }
    });

    test('two qubes with different uid ranges cannot see each other', async () => {
      assert.notEqual(a.ids.base, b.ids.base);
      assert.ok(a.ids.base + a.ids.count <= b.ids.base || b.ids.base + b.ids.count <= a.ids.base, 'uid ranges overlap');
      await sh(b.runtimeId, 'echo b-private-91d2 > /root/marker; chmod 600 /root/marker');
      const r = await sh(a.runtimeId, 'cat /root/marker; ls /proc');
      assert.ok(!r.stdout.includes('b-private-91d2'));
      const pa = await harness().backend.pids(a.runtimeId);
      const pb = await harness().backend.pids(b.runtimeId);
      assert.ok(pa.every((p) => !pb.includes(p)));
      assert.notEqual(infoA.pid, infoB.pid);
      if (sharedKernel) {
        const sa = fs.readlinkSync(`/proc/${infoA.pid}/ns/pid`);
        const sb = fs.readlinkSync(`/proc/${infoB.pid}/ns/pid`);
        assert.notEqual(sa, sb);
        assert.notEqual(fs.readlinkSync(`/proc/${infoA.pid}/ns/net`), fs.readlinkSync(`/proc/${infoB.pid}/ns/net`));
        assert.notEqual(fs.readlinkSync(`/proc/${infoA.pid}/ns/user`), fs.readlinkSync(`/proc/${infoB.pid}/ns/user`));
      }
    });

    test('starting an id that is running is refused and leaves it running', async () => {
      await assert.rejects(harness().backend.create(a), (err: Error) => err.message.includes(a.runtimeId) && !err.message.includes('\n'));
      assert.equal((await harness().backend.state(a.runtimeId))?.status, 'running');
    });

    test('a failing start names the qube and the reason in one line, and leaves nothing', async () => {
      const bad = await makeLaunch('conf-bad', 9);
      await assert.rejects(start(bad), (err: Error) => {
        assert.ok(err.message.includes(bad.runtimeId), err.message);
        assert.match(err.message, /isola-agent/);
        assert.ok(!err.message.includes('\n'), err.message);
        return true;
      });
      assert.equal(await harness().backend.state(bad.runtimeId), undefined);
    });

    test('pause freezes every process of the qube, unpause lets it go on', async () => {
      const count = async () => Number((await collect(await agentA.exec('root', 'cat /tmp/isola-count'))).stdout.toString());
      await collect(await agentA.exec('root', 'i=0; (while :; do i=$((i+1)); echo $i > /tmp/isola-count; sleep 0.05; done) >/dev/null 2>&1 & sleep 0.5'));
      const before = await count();
      await harness().backend.pause(a.runtimeId);
      assert.equal((await harness().backend.state(a.runtimeId))?.status, 'paused');
      await new Promise((r) => setTimeout(r, 2000));
      await harness().backend.unpause(a.runtimeId);
      assert.equal((await harness().backend.state(a.runtimeId))?.status, 'running');
      const after = await count();
      assert.ok(after - before < 10, `the counter went from ${before} to ${after} in 2 s of pause (about 40 if it ran)`);
      await new Promise((r) => setTimeout(r, 1000));
      assert.ok((await count()) > after, 'it counts again after unpause');
    });

    test('SIGTERM stops a qube and its state becomes stopped', async () => {
      await harness().backend.signal(b.runtimeId, 'SIGTERM');
      await waitFor(async () => (await harness().backend.state(b.runtimeId))?.status === 'stopped', 15_000, 'stopped after SIGTERM');
      assert.deepEqual(await harness().backend.state(b.runtimeId), { id: b.runtimeId, status: 'stopped', pid: 0 });
      await harness().backend.signal(b.runtimeId, 'SIGKILL'); // a stopped qube: no error
    });

    test('SIGKILL stops a qube', async () => {
      await harness().backend.signal(a.runtimeId, 'SIGKILL');
      await waitFor(async () => (await harness().backend.state(a.runtimeId))?.status === 'stopped', 15_000, 'stopped after SIGKILL');
      if (sharedKernel) assert.ok(isDead(infoA.pid), `init ${infoA.pid} still alive`);
    });

    test('destroy is idempotent and forgets the qube', async () => {
      for (const id of [a.runtimeId, b.runtimeId]) {
        await harness().backend.destroy(id);
        await harness().backend.destroy(id);
        assert.equal(await harness().backend.state(id), undefined);
      }
      const ids = (await harness().backend.list()).map((i) => i.id);
      assert.ok(!ids.includes(a.runtimeId) && !ids.includes(b.runtimeId));
      await harness().backend.destroy('never-started-0000');
    });

    test('destroy force-stops a running qube', async () => {
      const c = await makeLaunch('conf-c', 3);
      const info = await start(c);
      await harness().backend.destroy(c.runtimeId);
      assert.equal(await harness().backend.state(c.runtimeId), undefined);
      if (sharedKernel) await waitFor(async () => isDead(info.pid), 5000, 'init dead after destroy');
    });
  });
}

/** Gone, or a zombie waiting for the host's init (the detached qube's parent) to reap it. */
function isDead(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z';
  } catch {
    return true;
  }
}

async function waitFor(cond: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`timed out after ${timeoutMs} ms waiting for: ${what}`);
}

/** Runs a session with no input to its end: its output and exit code. */
async function collect(session: ExecSession): Promise<{ stdout: Buffer; stderr: Buffer; exitCode: number }> {
  session.stdin.end();
  const read = async (r: NodeJS.ReadableStream) => {
    const parts: Buffer[] = [];
    for await (const c of r) parts.push(c as Buffer);
    return Buffer.concat(parts);
  };
  const [stdout, stderr, exitCode] = await Promise.all([read(session.stdout), read(session.stderr), session.exit]);
  return { stdout, stderr, exitCode };
}
