// isolad's composition root: opens the store, the pool, the backends (by virt_mode) and the agent channels,
// reconciles with what survived a restart, and serves the Admin API.

import { promises as fs } from 'node:fs';
import path from 'node:path';
import { removeCgroupParent, RuncBackend } from '../backends/sandbox';
import type { Backend, VirtMode } from '../core/backend';
import { OverlayPool } from '../storage/overlay-pool';
import { preparePoolFs } from '../storage/pool-fs';
import { mountAllVolumes } from '../storage/volume-fs';
import { Store } from '../store/store';
import { AdminServer } from './admin-server';
import { Collection } from './collection';
import { loadConfig, type DaemonConfig } from './config';
import { EventBus } from './event-bus';
import { featureTagHandlers } from './handlers/feature-tag-handlers';
import { lifecycleHandlers } from './handlers/lifecycle-handlers';
import { propertyHandlers } from './handlers/property-handlers';
import { policyHandlers } from './handlers/policy-handlers';
import { templateHandlers } from './handlers/template-handlers';
import { vmHandlers } from './handlers/vm-handlers';
import { volumeHandlers } from './handlers/volume-handlers';
import type { HandlerDeps } from './handlers/context';
import { clipboardHandlers } from './handlers/clipboard-handlers';
import { firewallHandlers } from './handlers/firewall-handlers';
import { FirewallExpiry } from './firewall-expiry';
import { GlobalClipboard } from './clipboard';
import { BUILTIN_RPC_CONFIG, BUILTIN_SCRIPTS, BUILTIN_SERVICES, BUILTIN_TCP_SERVICES } from './builtin-services';
import { Lifecycle } from './lifecycle';
import { BackendRegistry } from './backend-registry';
import { stderrLogger, type Logger } from './logger';
import { policyDir } from './policy-fs';
import { PolicyStore } from './policy-store';
import { AskQueue } from './ask-queue';
import { QrexecRouter } from './qrexec-router';
import { QubeIds } from './qube-ids';
import { UidRegistry } from '../store/uid-registry';
import { reconcile } from './reconcile';
import { acquireInstanceLock, type InstanceLock } from './instance-lock';
import { runHandler } from './run-relay';
import { startHvm } from './hvm-backend';
import { wireNetwork } from './network-wiring';

export interface Isolad {
  config: DaemonConfig;
  policy: PolicyStore;
  collection: Collection;
  lifecycle: Lifecycle;
  stop(): Promise<void>;
}


/** Static binaries the build puts beside the in-qube bundles (they run in any template). */
const QUBE_PROGRAMS = ['isola-agent', 'isola-runas', 'isola-vport-bridge', 'isola-qrexec-client-vm'];

/**
 * Host helpers that a qube's runtime runs as the qube's (unprivileged on the host) root, before the
 * qube's root is pivoted to: copied under ISOLA_HOME, which it can traverse wherever the build is.
 */
const RUNTIME_HOOKS = ['isola-proc-bind'];
export const runtimeHookDir = (cfg: DaemonConfig): string => path.join(cfg.home, 'libexec');

/** The in-qube programs (agent, qrexec-client-vm), bundled by the build next to the compiled daemon. */
export function qubeBundleDir(): string {
  return path.resolve(__dirname, '../../qube');
}

async function prepareDirs(cfg: DaemonConfig): Promise<void> {
  // 0711: qubes' unprivileged-on-host roots must traverse to their own (0700) directories only.
  for (const dir of [cfg.home, cfg.runDir, cfg.agentDir]) {
    await fs.mkdir(dir, { recursive: true });
    await fs.chmod(dir, 0o711);
  }
  for (const dir of [cfg.poolDir, cfg.logDir, cfg.bundleRoot, path.dirname(cfg.poolDir)]) await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  await fs.mkdir(cfg.libDir, { recursive: true });
  await fs.chmod(cfg.libDir, 0o755);
  // Every qube gets the agent and tools of this isolad, bound read-only: agent and daemon always match.
  for (const file of await fs.readdir(qubeBundleDir())) {
    const mode = file.endsWith('.js') ? 0o644 : QUBE_PROGRAMS.includes(file) ? 0o755 : 0;
    if (!mode) continue;
    const tmp = path.join(cfg.libDir, `.${file}.${process.pid}`);
    await fs.copyFile(path.join(qubeBundleDir(), file), tmp);
    await fs.chmod(tmp, mode);
    await fs.rename(tmp, path.join(cfg.libDir, file));
  }
  await fs.mkdir(runtimeHookDir(cfg), { recursive: true });
  await fs.chmod(runtimeHookDir(cfg), 0o755);
  for (const file of RUNTIME_HOOKS) {
    const tmp = path.join(runtimeHookDir(cfg), `.${file}.${process.pid}`);
    await fs.copyFile(path.resolve(__dirname, '../../libexec', file), tmp);
    await fs.chmod(tmp, 0o755);
    await fs.rename(tmp, path.join(runtimeHookDir(cfg), file));
  }
  // Built-in services, found by agents after the qube's own /etc/qubes-rpc (which may override them).
  const rpc = path.join(cfg.libDir, 'qubes-rpc');
  await fs.mkdir(rpc, { recursive: true, mode: 0o755 });
  for (const [service, script] of Object.entries(BUILTIN_SERVICES)) await writeScript(path.join(rpc, service), script);
  for (const [service, target] of Object.entries(BUILTIN_TCP_SERVICES)) await writeSymlink(path.join(rpc, service), target);
  for (const [name, script] of Object.entries(BUILTIN_SCRIPTS)) await writeScript(path.join(cfg.libDir, name), script);
  const rpcConfig = path.join(cfg.libDir, 'rpc-config');
  await fs.mkdir(rpcConfig, { recursive: true, mode: 0o755 });
  for (const [service, text] of Object.entries(BUILTIN_RPC_CONFIG)) await writeScript(path.join(rpcConfig, service), text);
}

async function writeSymlink(file: string, target: string): Promise<void> {
  const tmp = `${file}.${process.pid}`;
  await fs.rm(tmp, { force: true });
  await fs.symlink(target, tmp);
  await fs.rename(tmp, file);
}

async function writeScript(file: string, text: string): Promise<void> {
  const tmp = `${file}.${process.pid}`;
  await fs.writeFile(tmp, text, { mode: 0o755 });
  await fs.chmod(tmp, 0o755);
  await fs.rename(tmp, file);
}

export async function startIsolad(opts: { env?: NodeJS.ProcessEnv; log?: Logger; backends?: Backend[] } = {}): Promise<Isolad> {
  const config = loadConfig(opts.env);
  const log = opts.log ?? stderrLogger();
  if (process.getuid?.() !== 0) throw new Error('isolad must run as root (it manages mounts, namespaces and cgroups)');
  // Before anything is touched: a second daemon would take over the qubes and the socket.
  const lock = await acquireInstanceLock(config);
  try {
    return await startLocked(config, log, lock, opts);
  } catch (e) {
    await lock.release();
    throw e;
  }
}

async function startLocked(config: DaemonConfig, log: Logger, lock: InstanceLock, opts: { env?: NodeJS.ProcessEnv; backends?: Backend[] }): Promise<Isolad> {
  await prepareDirs(config);
  const poolFs = await preparePoolFs(config.poolDir, opts.env ?? process.env);
  if (poolFs.mode === 'legacy') log.warn(poolFs.detail);
  await mountAllVolumes(config.poolDir, (m) => log.warn(`storage: ${m}`));
  const store = new Store(config.dbPath);
  const collection = new Collection(store);
  const events = new EventBus();
  const pool = new OverlayPool('default', config.poolDir, config.runDir, (line) => log.warn(line));
  // Set once the lifecycle exists; a QEMU cannot end before a qube was started through it.
  let lifecycle: Lifecycle | undefined;
  const hvm = opts.backends ? undefined : await startHvm(config, log, opts.env ?? process.env, (id) => lifecycle?.runtimeEnded(id));
  const backends = new BackendRegistry(opts.backends ?? [new RuncBackend({
    stateRoot: config.runcRoot, bundleRoot: config.bundleRoot, procBindHelper: path.join(runtimeHookDir(config), 'isola-proc-bind'),
    agentRoot: config.agentDir, cgroupParent: config.cgroupParent, log: (line) => log.warn(`agent channel: ${line}`),
  }), hvm!.backend]);
  collection.host = {
    virtModeProblem: (m) => {
      if (!backends.modes().includes(m as VirtMode)) return `this isolad has no ${m} backend (available: ${backends.modes().join(', ')})`;
      return m === 'hvm' ? hvm?.problem() : undefined;
    },
    kernels: () => hvm?.host.kernels() ?? [],
  };
  if (hvm) collection.kernelsKnown = () => hvm.host.kernelsKnown();
  if (hvm) collection.vmCardless = (id) => !hvm.backend.hasNic(id);
  const uids = new QubeIds(config, collection, new UidRegistry(config.uidRegistry), log);
  // Before reconcile: a qube of an older database gets its range registered before anything uses it.
  await uids.migrate();
  lifecycle = new Lifecycle({ config, collection, pool, backends, events, log, uids });
  const net = wireNetwork({ config, collection, backends, lifecycle, events, log });
  const policy = new PolicyStore(policyDir(opts.env), log, (st) => {
    if (st.state === 'loaded') events.emit('', 'policy-loaded', { files: String(st.files), rules: String(st.rules) });
    else events.emit('', 'policy-load-failed', { error: st.error ?? '', since: new Date(st.errorSince ?? Date.now()).toISOString() });
  });
  policy.reload();
  policy.watch();
  await reconcile(collection, lifecycle, backends, pool, log);
  await net.sweepHost();
  const deps: HandlerDeps = { config, collection, lifecycle, pool, events, log, policy, asks: new AskQueue(events, config.askTimeoutMs), firewallBlocked: (n) => net.blocked(n) };
  const handlers = {
    ...vmHandlers(deps),
    ...propertyHandlers(deps),
    ...featureTagHandlers(deps),
    ...volumeHandlers(deps),
    ...lifecycleHandlers(deps),
    ...templateHandlers(deps),
    ...policyHandlers(deps),
    ...firewallHandlers(deps),
    ...clipboardHandlers(new GlobalClipboard(deps)),
  };
  // Rules with an expire time are dropped when it passes, with a firewall-changed for the enforcer.
  const firewallExpiry = new FirewallExpiry(collection, events, log);
  firewallExpiry.start();
  const server = new AdminServer(handlers, { 'admin.vm.Run': runHandler(deps) }, events, log);
  const router = new QrexecRouter(deps, (req) => server.callFromQube(req));
  lifecycle.onServiceCall = (source, untrusted, conn) => void router.handle(source, untrusted, conn);
  await server.listen(config.socket);
  lifecycle.startSweep();
  log.info(`listening on ${config.socket} (home ${config.home}, instance ${config.instance})`);
  await autostart(collection, lifecycle, log);
  return {
    config,
    policy,
    collection,
    lifecycle,
    async stop() {
      lifecycle.stopSweep();
      net.stop();
      firewallExpiry.stop();
      policy.close();
      await server.close();
      // Qubes keep running: a new isolad reattaches to them.
      for (const a of lifecycle.agents.values()) await a.close().catch(() => undefined);
      // With no qube left, nothing of this instance should stay in the host's cgroup trees.
      if (store.runtimes().length === 0) {
        try {
          removeCgroupParent(config.cgroupParent);
        } catch (e) {
          log.warn(`cgroup cleanup: ${(e as Error).message}`);
        }
      }
      store.close();
      await lock.release();
    },
  };
}

async function autostart(col: Collection, lifecycle: Lifecycle, log: Logger): Promise<void> {
  for (const q of col.all()) {
    if (q.klass === 'AdminVM' || col.powerState(q) !== 'Halted' || col.prop(q, 'autostart') !== true) continue;
    await lifecycle.start(q.name).catch((e: Error) => log.error(`autostart ${q.name}: ${e.message}`));
  }
}
