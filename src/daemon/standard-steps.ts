// The steps every qube's start is made of: volumes → agent channel → backend create → start → agent
// hello. Others (the network, later) go between them through StepList.insertBefore.

import { errorText } from '../core/error-text';
import type { StoragePool, QubeVolumes } from '../core/volumes';
import { AgentListener } from '../qrexec/agent-link';
import type { Collection } from './collection';
import type { DaemonConfig } from './config';
import type { Logger } from './logger';
import { buildLaunch, guestLogFile } from './qube-launch';
import type { QubeRun, QubeStep } from './qube-steps';
import { inertReason } from './reason-text';

export interface StepDeps {
  config: DaemonConfig;
  collection: Collection;
  pool: StoragePool;
  log: Logger;
  volumesOf(run: QubeRun): QubeVolumes;
  /** Makes the qube's agent listener on its backend's channel, wired to the lifecycle's events. */
  openAgent(run: QubeRun): Promise<AgentListener>;
  closeAgent(run: QubeRun): Promise<void>;
}

export function standardSteps(d: StepDeps): QubeStep[] {
  return [
    {
      name: 'volumes',
      async up(run) {
        run.vols = await d.pool.start(d.volumesOf(run), run.ids, run.backend.volumeForm);
        for (const w of run.vols.warnings ?? []) d.log.warn(`${run.q.name}: ${inertReason(w)}`);
      },
      // A failed commit keeps the changes (committed at the next start): its reason is the stop's.
      async down(run, { commit }) {
        await d.pool.stop(d.volumesOf(run), run.ids, commit).catch((e: unknown) => {
          throw new Error(inertReason(errorText(e)));
        });
      },
    },
    {
      name: 'channel',
      async up(run) {
        run.agent = await d.openAgent(run);
        const ms = Number(d.collection.prop(run.q, 'qrexec_timeout')) * 1000;
        run.hello = run.agent.waitForHello(ms).then(() => undefined, () => {
          throw new Error(`the agent of ${run.q.name} did not connect within ${ms / 1000} s`);
        });
        run.hello.catch(() => undefined); // awaited by the hello step; a start failing earlier must not leave it unhandled
      },
      down: (run) => d.closeAgent(run),
    },
    {
      name: 'create',
      up: (run) => run.backend.create(buildLaunch(d.config, d.collection, run.q, run.vols!, run.ids)),
      down: (run) => run.backend.destroy(run.runtimeId),
    },
    {
      name: 'start',
      async up(run) {
        run.info = await run.backend.start(run.runtimeId);
      },
      // Nothing of its own: destroying the runtime is create's undo.
      down: async () => undefined,
    },
    {
      name: 'hello',
      async up(run) {
        await Promise.race([run.hello!, exitDuringStart(d, run)]);
      },
      down: async () => undefined,
    },
  ];
}

/** Fails fast when the qube's init exits before its agent said hello (instead of waiting qrexec_timeout). */
async function exitDuringStart(d: StepDeps, run: QubeRun): Promise<void> {
  let settled = false;
  void run.hello!.finally(() => (settled = true)).catch(() => undefined);
  while (!settled) {
    // Later than a healthy agent's hello, so healthy starts pay nothing for this check.
    await sleep(250);
    if (settled) break;
    const st = await run.backend.state(run.runtimeId).catch(() => undefined);
    if (!settled && (!st || st.status === 'stopped')) {
      throw new Error(`the qube's init exited before its agent connected (see ${guestLogFile(d.config, run.q)})`);
    }
  }
  await run.hello;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
