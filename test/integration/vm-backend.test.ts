// Runs the backend conformance suite against QemuBackend as isolad wires it (src/daemon/hvm-backend.ts):
// real QEMU under TCG, the cloud kernel and initramfs from VmHost, the real agent and vport bridge of the
// build's guest library, the serial agent channel, and volumes in form `image` from an OverlayPool whose
// root is a tiny busybox tree. Slow: every qube is a TCG boot; the suite boots each of its qubes once (a
// and b side by side, then c alone; the bad one is refused before QEMU runs): about 21 s wall on this
// 2-core host, 10 s of it a and b booting to their agents' hello.

import { spawnSync } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { QubeLaunch } from '../../src/core/backend';
import type { IdRange, QubeVolumes } from '../../src/core/volumes';
import { QemuBackend } from '../../src/backends/vm/qemu-backend';
import { serialSockets } from '../../src/backends/vm/qemu-args';
import { shellQuote } from '../../src/backends/vm/boot-config';
import { SerialAgentChannel } from '../../src/backends/vm/serial-channel';
import type { DaemonConfig } from '../../src/daemon/config';
import type { Logger } from '../../src/daemon/logger';
import { VmHost, vmMachine } from '../../src/daemon/vm-host';
import { OverlayPool } from '../../src/storage/overlay-pool';
import type { ExecSession } from '../../src/qrexec/agent-link';
import { runBackendConformance, type ConformanceHarness, type ExecResult } from './backend.case';
import { buildTinyRootfs, ensureStaticBusybox } from './fixtures/tiny-rootfs';
import { TEST_CACHE, testKernel } from './vm-test-kernel';

const QEMU = '/usr/bin/qemu-system-x86_64';
const UID_COUNT = 65536;
const GUEST_LIB = path.resolve(__dirname, '../../qube');
const MiB = 1024 * 1024;
/** q35 unless ISOLA_VM_MACHINE says microvm, as isolad picks it. */
const MACHINE = vmMachine(process.env);

function skipReason(): { skip: string } | { busybox: string } {
  if (process.getuid?.() !== 0) return { skip: 'needs root (the VMM jail, loop-mounted volume images)' };
  if (!fs.existsSync(QEMU)) return { skip: 'qemu-system-x86_64 is not installed' };
  for (const f of ['isola-agent', 'isola-vport-bridge']) {
    if (!fs.existsSync(path.join(GUEST_LIB, f))) return { skip: `run \`npm run build\` first (no ${path.join(GUEST_LIB, f)})` };
  }
  if (spawnSync('mkfs.ext4', ['-V']).status !== 0) return { skip: 'mkfs.ext4 is not installed' };
  const bb = ensureStaticBusybox();
  if ('reason' in bb) return { skip: bb.reason };
  return { busybox: bb.path };
}

const probe = skipReason();
const tag = crypto.randomBytes(3).toString('hex');
// As in sandbox-backend.test.ts: a random 64Ki-aligned base above isolad's ranges (QEMU runs as it).
const uidBase = 0xd0000000 + crypto.randomInt(0, 0x1f00) * UID_COUNT;
let tmp = '';
let pool: OverlayPool;
const volumes = new Map<string, { q: QubeVolumes; ids: IdRange }>();
const logs: string[] = [];
const log: Logger = { info: (l) => logs.push(l), warn: (l) => logs.push(`warn: ${l}`), error: (l) => logs.push(`error: ${l}`) };

/** Runs a session with no input to its end. */
async function collect(session: ExecSession, timeoutMs: number): Promise<ExecResult> {
  session.stdin.end();
  const read = async (r: NodeJS.ReadableStream) => {
    const parts: Buffer[] = [];
    for await (const c of r) parts.push(c as Buffer);
    return Buffer.concat(parts).toString('utf8');
  };
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`exec did not end within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    const [stdout, stderr, code] = await Promise.race([Promise.all([read(session.stdout), read(session.stderr), session.exit]), timeout]);
    return { code, stdout, stderr };
  } finally {
    clearTimeout(timer);
  }
}

runBackendConformance(
  `[slow] hvm (QemuBackend, ${MACHINE}, TCG)`,
  async (): Promise<ConformanceHarness> => {
    if ('skip' in probe) throw new Error(probe.skip);
    await testKernel();
    tmp = fs.mkdtempSync('/tmp/isola-vmconf-');
    fs.chmodSync(tmp, 0o711); // buildTinyRootfs wants its parents traversable, as a sandbox's root needs them
    pool = new OverlayPool('default', path.join(tmp, 'pool'), path.join(tmp, 'pool-run'), (l) => logs.push(`pool: ${l}`));
    // VmHost as isolad makes it: kernels from a home (the test kernel's), base initramfs cached in ISOLA_CACHE.
    const config = { home: path.join(TEST_CACHE, 'test-kernel-home'), cache: TEST_CACHE } as DaemonConfig;
    const host = new VmHost(config, log, MACHINE, GUEST_LIB);
    await host.init();
    const backend = new QemuBackend({
      runRoot: path.join(tmp, 'run'),
      qemu: QEMU,
      machine: MACHINE,
      log: (l) => logs.push(`hvm: ${l}`),
      // TCG as the probe decides on this host (KVM hangs Linux guests here); the probe itself is not under test.
      accel: async () => 'tcg',
      bootFiles: (launch, dir) => host.bootFiles(launch, dir),
      channel: async (q, runDir) => {
        const s = serialSockets(runDir);
        return new SerialAgentChannel({ agentSocket: s.agent, clientSocket: s.client, label: `qube ${q.runtimeId}`, log: (l) => logs.push(`channel: ${l}`) });
      },
    });
    return {
      backend,
      exec: async (id, argv, agent) => {
        if (!agent) throw new Error(`qube ${id}: no agent listener to run ${argv.join(' ')} through`);
        await agent.waitForHello(60_000);
        return collect(await agent.exec('root', argv.map(shellQuote).join(' ')), 60_000);
      },
      cleanup: async () => {
        const errors: string[] = [];
        for (const c of await backend.list().catch(() => [])) {
          await backend.destroy(c.id).catch((err: Error) => errors.push(err.message));
        }
        for (const { q, ids } of volumes.values()) {
          await pool.stop(q, ids, false).catch((err: Error) => errors.push(err.message));
          await pool.remove(q.uuid).catch((err: Error) => errors.push(err.message));
        }
        if (process.env.ISOLA_TEST_KEEP) console.error(`kept ${tmp}\n${logs.join('\n')}`);
        else fs.rmSync(tmp, { recursive: true, force: true });
        if (errors.length) throw new Error(errors.join('; '));
      },
    };
  },
  async (name: string, variant: number): Promise<QubeLaunch> => {
    if ('skip' in probe) throw new Error(probe.skip);
    const ids = { base: uidBase + variant * UID_COUNT, count: UID_COUNT };
    // Its own volumes per qube, as isolad makes a standalone's: a root imported into the pool, a fresh private.
    const q: QubeVolumes = {
      uuid: crypto.randomUUID(),
      klass: 'StandaloneVM',
      sizes: { root: 64 * MiB, private: 32 * MiB, volatile: 32 * MiB },
    };
    await pool.create(q, {});
    volumes.set(name, { q, ids });
    await pool.importRoot(q, async (dir) => {
      // Owned by root as a template's files are (the guest's own kernel sees the disk's real owners).
      const built = buildTinyRootfs(path.join(tmp, `rootfs-${name}`), 0, probe.busybox);
      spawnSync('cp', ['-a', `${built}/.`, dir], { stdio: 'inherit' });
      fs.rmSync(built, { recursive: true, force: true });
    });
    const started = await pool.start(q, ids, 'image');
    // The guest library as isolad gives it (the build's in-qube programs); variant 9 lacks the agent.
    let guestLib = GUEST_LIB;
    if (variant === 9) {
      guestLib = path.join(tmp, 'empty-lib');
      fs.mkdirSync(guestLib, { recursive: true });
    }
    return {
      // The run root is this run's own: the name alone is unique in it, and the backend's messages name it.
      runtimeId: name,
      name,
      uuid: q.uuid,
      ids,
      limits: { memoryMiB: 192, maxmemMiB: 0, vcpus: 1, pidsLimit: 64 },
      volumes: { root: started.root, private: started.private },
      guestLib,
      agentEnv: { ISOLA_QUBE_NAME: name, ISOLA_DEFAULT_USER: 'root' },
      logFile: path.join(tmp, 'logs', `${name}.log`),
    };
  },
  { skip: 'skip' in probe ? probe.skip : undefined, sharedKernel: false },
);
