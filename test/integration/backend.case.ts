// Conformance suite every isolation Backend must pass (sandbox now, vm later): lifecycle, and that
// a qube sees only itself — its hostname, its uids, its network, its processes, its files.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { Backend, QubeRuntimeSpec, RuntimeInfo } from '../../src/core/backend';

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ConformanceHarness {
  backend: Backend;
  /** Runs argv inside a running qube (test-only back door: not part of the Backend interface). */
  exec(id: string, argv: string[]): Promise<ExecResult>;
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
 * `makeSpec(name, variant)` returns a complete spec for a qube named `name`; different variants
 * must get different uidBase ranges and rootfs copies. init must keep running and exit on SIGTERM.
 */
export function runBackendConformance(
  name: string,
  makeBackend: () => Promise<ConformanceHarness>,
  makeSpec: (name: string, variant: number) => Promise<QubeRuntimeSpec>,
  options: ConformanceOptions = {},
): void {
  const sharedKernel = options.sharedKernel ?? true;
  describe(`backend conformance: ${name}`, { skip: options.skip ?? false }, () => {
    let h: ConformanceHarness | undefined;
    const started = new Set<string>();
    let a: QubeRuntimeSpec;
    let b: QubeRuntimeSpec;
    let infoA: RuntimeInfo;
    let infoB: RuntimeInfo;
    let hostDir = '';

    const harness = (): ConformanceHarness => {
      assert.ok(h, 'harness was not created');
      return h;
    };
    const sh = async (id: string, script: string): Promise<ExecResult> => harness().exec(id, ['/bin/sh', '-c', script]);
    const start = async (spec: QubeRuntimeSpec): Promise<RuntimeInfo> => {
      started.add(spec.id);
      return harness().backend.start(spec);
    };

    before(async () => {
      h = await makeBackend();
      hostDir = fs.mkdtempSync(path.join(os.tmpdir(), 'isola-conf-host-'));
      a = await makeSpec('conf-a', 0);
      b = await makeSpec('conf-b', 1);
      infoA = await start(a);
      infoB = await start(b);
    });

    after(async () => {
      const errors: string[] = [];
      for (const id of started) {
        await h?.backend.destroy(id).catch((err: Error) => errors.push(err.message));
      }
      await h?.cleanup().catch((err: Error) => errors.push(err.message));
      if (hostDir) fs.rmSync(hostDir, { recursive: true, force: true });
      assert.deepEqual(errors, [], 'cleanup');
    });

    test('start resolves running with a pid, and state agrees', async () => {
      assert.equal(infoA.id, a.id);
      assert.equal(infoA.status, 'running');
      assert.ok(infoA.pid > 0);
      const st = await harness().backend.state(a.id);
      assert.deepEqual(st, { id: a.id, status: 'running', pid: infoA.pid });
    });

    test('hostname inside is the qube name', async () => {
      const r = await sh(a.id, 'cat /proc/sys/kernel/hostname');
      assert.equal(r.stdout.trim(), a.hostname);
    });

    test('root inside is uidBase on the host', { skip: !sharedKernel && 'not a shared kernel' }, async () => {
      assert.equal((await sh(a.id, 'id -u')).stdout.trim(), '0');
      const status = fs.readFileSync(`/proc/${infoA.pid}/status`, 'utf8');
      const uids = /^Uid:\s+(.*)$/m.exec(status)?.[1].split(/\s+/).map(Number);
      const gids = /^Gid:\s+(.*)$/m.exec(status)?.[1].split(/\s+/).map(Number);
      assert.deepEqual(uids, [a.uidBase, a.uidBase, a.uidBase, a.uidBase]);
      assert.deepEqual(gids, [a.uidBase, a.uidBase, a.uidBase, a.uidBase]);
      const map = fs.readFileSync(`/proc/${infoA.pid}/uid_map`, 'utf8').trim().split(/\s+/).map(Number);
      assert.deepEqual(map, [0, a.uidBase, a.uidCount]);
    });

    test('only the loopback interface exists', async () => {
      const r = await sh(a.id, 'cat /proc/net/dev');
      const ifaces = r.stdout.split('\n').slice(2).map((l) => l.split(':')[0].trim()).filter(Boolean);
      assert.deepEqual(ifaces, ['lo']);
    });

    test('host processes are invisible', async () => {
      const r = await sh(a.id, 'for p in /proc/[0-9]*; do echo "${p#/proc/} $(tr "\\0" " " < $p/cmdline)"; done');
      const procs = r.stdout.trim().split('\n').filter(Boolean);
      assert.ok(procs.length > 0 && procs.length < 10, `pids seen inside: ${procs.length}\n${r.stdout}`);
      assert.ok(procs.some((l) => l.startsWith('1 ')), 'the qube has its own pid 1');
      const hostNeedle = process.argv[1] ?? 'node';
      assert.ok(!r.stdout.includes(hostNeedle), 'the test runner is visible inside');
      assert.ok(!procs.some((l) => / node /.test(` ${l} `)), 'a host node process is visible inside');
    });

    test('seccomp filter is on in every process; no new namespaces', { skip: !sharedKernel && 'not a shared kernel' }, async () => {
      const r = await sh(a.id, 'grep -E "^Seccomp:" /proc/self/status /proc/1/status');
      for (const f of ['/proc/self/status', '/proc/1/status']) assert.match(r.stdout, new RegExp(`${f}:Seccomp:\\s+2`));
      const ns = await sh(a.id, 'unshare -U true; echo "user=$?"; unshare -n true; echo "net=$?"; unshare -m true; echo "mnt=$?"');
      assert.doesNotMatch(ns.stdout, /=0\b/, `a namespace could be created inside:\n${ns.stdout}`);
      const host = fs.readFileSync(`/proc/${infoA.pid}/status`, 'utf8');
      assert.match(host, /^Seccomp:\s+2$/m);
    });

    test('host sysctls and sysrq cannot be written', async () => {
      const before = fs.readFileSync('/proc/sys/kernel/hostname', 'utf8');
      for (const file of ['/proc/sys/kernel/hostname', '/proc/sys/vm/drop_caches', '/proc/sys/kernel/panic', '/proc/sysrq-trigger']) {
        const r = await sh(a.id, `echo 1 > ${file}`);
        assert.notEqual(r.code, 0, `${file} was writable`);
      }
      assert.equal(fs.readFileSync('/proc/sys/kernel/hostname', 'utf8'), before);
    });

    test('no host block, kvm or memory devices', async () => {
      for (const dev of ['/dev/kvm', '/dev/vda', '/dev/sda', '/dev/nvme0n1', '/dev/mem', '/dev/kmem', '/dev/port']) {
        const r = await sh(a.id, `test -e ${dev}`);
        assert.notEqual(r.code, 0, `${dev} exists inside`);
      }
      const r = await sh(a.id, 'ls /dev');
      assert.ok(!/\b(kvm|vd[a-z]|sd[a-z]|nvme|loop\d|mem)\b/.test(r.stdout), r.stdout);
    });

    test('a file planted on the host outside the rootfs is not readable', async () => {
      const secret = path.join(hostDir, 'secret.txt');
      fs.writeFileSync(secret, 'host-secret-7f3c\n', { mode: 0o644 });
      fs.chmodSync(hostDir, 0o755);
      const r = await sh(a.id, `cat ${secret}; cat /proc/1/root${secret}; grep -rs host-secret-7f3c /tmp /root /etc`);
      assert.ok(!r.stdout.includes('host-secret-7f3c'), r.stdout);
    });

    test('memory limit is enforced', async () => {
      const limitMiB = a.maxmemMiB === 0 ? a.memoryMiB : a.maxmemMiB;
      if (sharedKernel) {
        const r = await sh(a.id, 'cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max');
        assert.equal(Number(r.stdout.trim()), limitMiB * 1024 * 1024);
      }
      // dd's buffer is one block: touching twice the limit must get it killed, not the host.
      const r = await sh(a.id, `dd if=/dev/zero of=/dev/null bs=${limitMiB * 2}M count=1 2>&1; echo "rc=$?"`);
      assert.ok(r.code !== 0 || !/rc=0\b/.test(r.stdout), `allocating ${limitMiB * 2} MiB worked:\n${r.stdout}`);
      assert.equal((await harness().backend.state(a.id))?.status, 'running', 'init survived the OOM');
    });

    test('list shows both qubes', async () => {
      const ids = (await harness().backend.list()).map((i) => i.id);
      assert.ok(ids.includes(a.id) && ids.includes(b.id), ids.join(','));
    });

    test('pids() returns the host pids of the qube', async () => {
      const pids = await harness().backend.pids(a.id);
      assert.ok(pids.includes(infoA.pid), `${pids} lacks init ${infoA.pid}`);
      if (sharedKernel) {
        for (const pid of pids) {
          const st = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
          assert.match(st, new RegExp(`^Uid:\\s+${a.uidBase}\\s`, 'm'));
        }
      }
    });

    test('two qubes with different uid ranges cannot see each other', async () => {
      assert.notEqual(a.uidBase, b.uidBase);
      assert.ok(a.uidBase + a.uidCount <= b.uidBase || b.uidBase + b.uidCount <= a.uidBase, 'uid ranges overlap');
      await sh(b.id, 'echo b-private-91d2 > /root/marker; chmod 600 /root/marker');
      const r = await sh(a.id, 'cat /root/marker; ls /proc');
      assert.ok(!r.stdout.includes('b-private-91d2'));
      const pa = await harness().backend.pids(a.id);
      const pb = await harness().backend.pids(b.id);
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
      await assert.rejects(harness().backend.start(a), (err: Error) => err.message.includes(a.id) && !err.message.includes('\n'));
      assert.equal((await harness().backend.state(a.id))?.status, 'running');
    });

    test('a failing start names the qube and the reason in one line, and leaves nothing', async () => {
      const bad = { ...(await makeSpec('conf-bad', 2)), init: ['/nonexistent/init'] };
      started.add(bad.id);
      await assert.rejects(harness().backend.start(bad), (err: Error) => {
        assert.ok(err.message.includes(bad.id), err.message);
        assert.match(err.message, /nonexistent\/init/);
        assert.ok(!err.message.includes('\n'), err.message);
        return true;
      });
      assert.equal(await harness().backend.state(bad.id), undefined);
    });

    test('SIGTERM stops a qube and its state becomes stopped', async () => {
      await harness().backend.signal(b.id, 'SIGTERM');
      await waitFor(async () => (await harness().backend.state(b.id))?.status === 'stopped', 15_000, 'stopped after SIGTERM');
      assert.deepEqual(await harness().backend.state(b.id), { id: b.id, status: 'stopped', pid: 0 });
      await harness().backend.signal(b.id, 'SIGKILL'); // a stopped qube: no error
    });

    test('SIGKILL stops a qube', async () => {
      await harness().backend.signal(a.id, 'SIGKILL');
      await waitFor(async () => (await harness().backend.state(a.id))?.status === 'stopped', 15_000, 'stopped after SIGKILL');
      if (sharedKernel) assert.ok(isDead(infoA.pid), `init ${infoA.pid} still alive`);
    });

    test('destroy is idempotent and forgets the qube', async () => {
      for (const id of [a.id, b.id]) {
        await harness().backend.destroy(id);
        await harness().backend.destroy(id);
        assert.equal(await harness().backend.state(id), undefined);
      }
      const ids = (await harness().backend.list()).map((i) => i.id);
      assert.ok(!ids.includes(a.id) && !ids.includes(b.id));
      await harness().backend.destroy('never-started-0000');
    });

    test('destroy force-stops a running qube', async () => {
      const c = await makeSpec('conf-c', 3);
      const info = await start(c);
      await harness().backend.destroy(c.id);
      assert.equal(await harness().backend.state(c.id), undefined);
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
