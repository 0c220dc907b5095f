// Runs the backend conformance suite against RuncBackend on a busybox rootfs, as root, with a
// private runc --root, bundle dir and cgroup parent so that parallel runs never touch each other.

import { execFile } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import type { QubeLaunch } from '../../src/core/backend';
import { probeOciRuntime, removeCgroupParent, RuncBackend } from '../../src/backends/sandbox';
import { runBackendConformance, type ConformanceHarness, type ExecResult } from './backend.case';
import { buildTinyRootfs, ensureStaticBusybox } from './fixtures/tiny-rootfs';

const UID_COUNT = 65536;

function skipReason(): { skip: string } | { runtime: string; busybox: string } {
  if (process.getuid?.() !== 0) return { skip: 'needs root (user namespaces with a uid range, cgroups)' };
  let runtime: string;
  try {
    runtime = probeOciRuntime().path;
  } catch (err) {
    return { skip: (err as Error).message };
  }
  try {
    if (Number(fs.readFileSync('/proc/sys/user/max_user_namespaces', 'utf8')) === 0) {
      return { skip: 'user namespaces are disabled (user.max_user_namespaces = 0)' };
    }
  } catch {
    // older kernels lack the knob and allow them
  }
  const bb = ensureStaticBusybox();
  if ('reason' in bb) return { skip: bb.reason };
  return { runtime, busybox: bb.path };
}

const probe = skipReason();
const tag = crypto.randomBytes(3).toString('hex');
// Random 64Ki-aligned base per run, above the ranges isolad hands out (src/daemon/config.ts stops
// below 0xC4000000), so a test qube never shares ids with a real qube on the same host.
const uidBase = 0xd0000000 + crypto.randomInt(0, 0x1f00) * UID_COUNT;
let tmp = '';

function execIn(runtime: string, stateRoot: string, id: string, argv: string[]): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    execFile(runtime, ['--root', stateRoot, 'exec', id, ...argv], { timeout: 60_000, maxBuffer: 8 << 20, encoding: 'utf8' },
      (err, stdout, stderr) => {
        if (err && typeof err.code === 'string') reject(new Error(`${runtime} exec ${id}: ${err.message}`));
        else resolve({ code: err ? Number(err.code ?? 1) : 0, stdout, stderr });
      });
  });
}

runBackendConformance(
  'sandbox (RuncBackend)',
  async (): Promise<ConformanceHarness> => {
    if ('skip' in probe) throw new Error(probe.skip);
    tmp = fs.mkdtempSync('/tmp/isola-sbx-');
    // The qube's root is an unprivileged host uid: it must be able to walk down to its rootfs.
    fs.chmodSync(tmp, 0o711);
    const stateRoot = path.join(tmp, 'state');
    const agentRoot = path.join(tmp, 'agent');
    fs.mkdirSync(agentRoot, { mode: 0o711 });
    fs.chmodSync(agentRoot, 0o711);
    const backend = new RuncBackend({
      runtimePath: probe.runtime, stateRoot, bundleRoot: path.join(tmp, 'bundles'), agentRoot, cgroupParent: `isola-test-${tag}`,
    });
    return {
      backend,
      exec: (id, argv) => execIn(probe.runtime, stateRoot, id, argv),
      cleanup: async () => {
        const errors: string[] = [];
        for (const c of await backend.list().catch(() => [])) {
          await backend.destroy(c.id).catch((err: Error) => errors.push(err.message));
        }
        try {
          removeCgroupParent(`isola-test-${tag}`);
        } catch (err) {
          errors.push((err as Error).message);
        }
        fs.rmSync(tmp, { recursive: true, force: true });
        if (errors.length) throw new Error(errors.join('; '));
      },
    };
  },
  async (name: string, variant: number): Promise<QubeLaunch> => {
    if ('skip' in probe) throw new Error(probe.skip);
    const base = uidBase + variant * UID_COUNT;
    const root = buildTinyRootfs(path.join(tmp, `rootfs-${name}`), base, probe.busybox);
    const priv = path.join(tmp, `private-${name}`);
    fs.mkdirSync(priv, { recursive: true });
    fs.chownSync(priv, base, base);
    // The guest library as isolad gives it (the build's in-qube programs); variant 9 lacks the agent.
    let guestLib = path.resolve(__dirname, '../../qube');
    if (variant === 9) {
      guestLib = path.join(tmp, 'empty-lib');
      fs.mkdirSync(guestLib, { recursive: true });
    }
    return {
      runtimeId: `${name}-${tag}`,
      name,
      uuid: `${name}-${tag}-uuid`,
      ids: { base, count: UID_COUNT },
      limits: { memoryMiB: 32, maxmemMiB: 64, vcpus: 1, pidsLimit: 64 },
      volumes: { root: { name: 'root', readonly: false, tree: root }, private: { name: 'private', readonly: false, tree: priv } },
      guestLib,
      agentEnv: { ISOLA_QUBE_NAME: name, ISOLA_DEFAULT_USER: 'root' },
      logFile: path.join(tmp, 'logs', `${name}.log`),
    };
  },
  { skip: 'skip' in probe ? probe.skip : undefined, sharedKernel: true },
);
