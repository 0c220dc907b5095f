// A qube's start as explicit steps, each with its undo, so a feature adds a step (attach to the netvm,
// GUI) instead of editing the lifecycle. A start runs the ups in order; a failure runs the downs of the
// steps already done, in reverse; a stop runs every down in reverse once the runtime has stopped.

import type { Backend, RuntimeInfo } from '../core/backend';
import type { QubeRecord } from '../core/qube';
import type { IdRange, StartedVolumes } from '../core/volumes';
import type { AgentListener } from '../qrexec/agent-link';

/** One run of one qube: what the steps made so far (the steps' shared state). */
export interface QubeRun {
  q: QubeRecord;
  ids: IdRange;
  backend: Backend;
  runtimeId: string;
  vols?: StartedVolumes;
  agent?: AgentListener;
  /** Settles when the agent said hello (armed before the runtime starts: the agent may be quick). */
  hello?: Promise<void>;
  info?: RuntimeInfo;
}

export interface StopOptions {
  /** Keep what the qube changed (a stop after a finished start); false after a failed start. */
  commit: boolean;
}

export interface QubeStep {
  readonly name: string;
  up(run: QubeRun): Promise<void>;
  /**
   * Undoes up. Also runs where up never ran in this isolad (reconcile after a restart), so it must
   * cope with nothing to undo. A throw is recorded as the stop's reason; the other downs still run.
   */
  down(run: QubeRun, opts: StopOptions): Promise<void>;
}

export class StepList {
  private readonly steps: QubeStep[] = [];

  constructor(steps: QubeStep[]) {
    this.steps.push(...steps);
  }

  /** Adds a step before the named one (e.g. the network before `start`). */
  insertBefore(name: string, step: QubeStep): void {
    const i = this.steps.findIndex((s) => s.name === name);
    if (i < 0) throw new Error(`no qube step named ${name}`);
    if (this.steps.some((s) => s.name === step.name)) throw new Error(`a qube step named ${step.name} exists already`);
    this.steps.splice(i, 0, step);
  }

  names(): string[] {
    return this.steps.map((s) => s.name);
  }

  /**
   * Runs every up in order, timing each; on a failure, the downs of the steps done (the failed one
   * included: it may have half-done its part), in reverse, then rethrows.
   */
  async up(run: QubeRun, onUndoError: (step: string, e: unknown) => void): Promise<Record<string, number>> {
    const times: Record<string, number> = {};
    const done: QubeStep[] = [];
    for (const s of this.steps) {
      const t = Date.now();
      done.push(s);
      try {
        await s.up(run);
      } catch (e) {
        await this.downOf(done, run, { commit: false }, onUndoError);
        throw e;
      }
      times[s.name] = Date.now() - t;
    }
    return times;
  }

  /** Every down in reverse; resolves to the reasons of the downs that failed (empty: all went well). */
  async down(run: QubeRun, opts: StopOptions): Promise<string[]> {
    const reasons: string[] = [];
    await this.downOf(this.steps, run, opts, (_s, e) => reasons.push(e instanceof Error ? e.message : String(e)));
    return reasons;
  }

  private async downOf(steps: QubeStep[], run: QubeRun, opts: StopOptions, onError: (step: string, e: unknown) => void): Promise<void> {
    for (const s of [...steps].reverse()) {
      try {
        await s.down(run, opts);
      } catch (e) {
        onError(s.name, e);
      }
    }
  }
}
