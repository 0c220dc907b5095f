// The qrexec router: a service call from a qube (its agent socket says which qube) is decided by
// the policy in force, logged, and — if allowed — run in the target qube, the caller's connection
// spliced onto the service's data connection. Calls run concurrently, bounded per source qube.

import { QubesError } from '../core/errors';
import { answerAsk, evaluate, serviceCallProblem, splitServiceCall, type Resolution } from '../policy';
import { pipeFrames } from '../qrexec/client';
import type { FramedSocket } from '../qrexec/frame-reader';
import { MSG_SERVICE_CONNECT, MSG_SERVICE_REFUSED, encodeServiceParams, type TriggerService3 } from '../qrexec/protocol';
import type { HandlerDeps } from './handlers/context';
import { systemInfo } from './system-info';

/** Calls one qube may have running at once; more wait their turn, up to MAX_WAITING_PER_QUBE. */
export const MAX_CALLS_PER_QUBE = 64;
/** Beyond this many waiting calls a flooding qube is refused: other qubes' calls never wait on it. */
export const MAX_WAITING_PER_QUBE = 256;

interface Lane {
  running: number;
  waiting: (() => void)[];
}

export class QrexecRouter {
  private readonly lanes = new Map<string, Lane>();

  constructor(private readonly d: HandlerDeps) {}

  /** Decides and runs one call. Never throws: every failure refuses the call. */
  async handle(source: string, untrusted: TriggerService3, conn: FramedSocket): Promise<void> {
    const lane = this.lanes.get(source) ?? { running: 0, waiting: [] };
    this.lanes.set(source, lane);
    if (lane.running >= MAX_CALLS_PER_QUBE) {
      if (lane.waiting.length >= MAX_WAITING_PER_QUBE) {
        const why = `${source} has ${MAX_CALLS_PER_QUBE} calls running and ${MAX_WAITING_PER_QUBE} waiting`;
        return this.refuse(conn, untrusted, this.record(source, untrusted.targetDomain, untrusted.serviceName, '', 'deny', null, why));
      }
      await new Promise<void>((resolve) => lane.waiting.push(resolve));
    }
    lane.running++;
    try {
      await this.route(source, untrusted, conn);
    } catch (e) {
      this.refuse(conn, untrusted, `${(e as Error).message}`);
    } finally {
      lane.running--;
      const next = lane.waiting.shift();
      if (next) next();
      else if (lane.running === 0) this.lanes.delete(source);
    }
  }

  private async route(source: string, untrusted: TriggerService3, conn: FramedSocket): Promise<void> {
    const { service, argument } = splitServiceCall(untrusted.serviceName);
    const problem = serviceCallProblem(service, argument);
    if (problem) return this.refuse(conn, untrusted, this.record(source, untrusted.targetDomain, service, argument, 'deny', null, problem));
    let r = evaluate(this.d.policy.current, { service, argument, source, target: untrusted.targetDomain }, systemInfo(this.d.collection));
    if (r.result === 'ask') {
      this.record(source, untrusted.targetDomain, service, argument, 'ask', r, r.reason);
      const question = this.d.asks.ask(source, service, argument, r);
      const withdraw = () => this.d.asks.cancel(question.id);
      conn.socket.once('close', withdraw);
      const answer = await question.answer;
      conn.socket.off('close', withdraw);
      r = answerAsk(r, answer, systemInfo(this.d.collection));
    }
    if (r.result !== 'allow') return this.refuse(conn, untrusted, this.record(source, untrusted.targetDomain, service, argument, r.result, r, r.reason));
    const refusal = r.execute_error ?? this.unsupportedTarget(r.target!);
    if (refusal) return this.refuse(conn, untrusted, this.record(source, r.target!, service, argument, 'deny', r, refusal));
    const target = this.d.collection.byUuid(r.target!.replace(/^uuid:/, ''))?.name ?? r.target!;
    this.record(source, target, service, argument, 'allow', r, r.reason);
    await this.ensureRunning(target, r);
    const q = this.d.collection.get(target);
    const session = await this.d.lifecycle.agent(q).exec(r.user ?? 'DEFAULT', `QUBESRPC ${service}${argument} ${source}`);
    // CONNECT goes first: splicing may forward the service's first frames at once. The client's own
    // frames wait in the paused connection until the splice accepts them.
    conn.send(MSG_SERVICE_CONNECT, encodeServiceParams(untrusted.requestId));
    const piped = pipeFrames(conn.socket, session.raw(), { clientFramed: conn, label: `${source} -> ${target} ${service}${argument}`, log: (l) => this.d.log.info(l) });
    conn.resume();
    await piped;
  }

  private unsupportedTarget(target: string): string | undefined {
    if (target === 'dom0') return 'services in dom0 are not available yet';
    if (target.startsWith('@dispvm')) return 'disposables are not available yet';
    return undefined;
  }

  private async ensureRunning(target: string, r: Resolution): Promise<void> {
    const q = this.d.collection.get(target);
    await this.d.lifecycle.locked(q, async () => undefined); // a start in progress finishes first
    if (this.d.collection.powerState(q) !== 'Halted') return;
    if (!r.autostart) throw new QubesError('QubesVMNotRunningError', `${target} is not running and the policy says autostart=no`);
    await this.d.lifecycle.start(target).catch((e: QubesError) => {
      if (e.code !== 'QubesVMNotHaltedError') throw e;
    });
  }

  private record(source: string, target: string, service: string, argument: string, result: string, r: Resolution | null, reason: string): string {
    const rule = r?.rule ? `${r.rule.file}:${r.rule.line}` : '';
    this.d.collection.store.logDecision({ at: Date.now(), source, target, service, argument, result, rule, reason });
    this.d.log.info(`qrexec ${source} -> ${target} ${service}${argument}: ${result}${rule ? ` (${rule})` : ''}`);
    return reason;
  }

  private refuse(conn: FramedSocket, untrusted: TriggerService3, reason: string): void {
    this.d.log.info(`qrexec call refused: ${reason}`);
    try {
      conn.send(MSG_SERVICE_REFUSED, encodeServiceParams(untrusted.requestId));
      conn.end();
    } catch {
      conn.close();
    }
  }
}
