// The qrexec router: a service call from a qube (its agent socket says which qube) is decided by
// the policy in force, logged, and — if allowed — run in the target qube, the caller's connection
// spliced onto the service's data connection. Calls run concurrently, bounded per source qube.

import { QubesError } from '../core/errors';
import { MAX_SERVICE_CALL_LENGTH, answerAsk, evaluate, evaluateNonInteractive, serviceCallProblem, splitServiceCall, type Resolution } from '../policy';
import { pipeFrames } from '../qrexec/client';
import type { FramedSocket } from '../qrexec/frame-reader';
import { finishConnection } from '../qrexec/connection-end';
import {
  DAEMON_TO_AGENT_DATA, EMPTY, MAX_NOTICE, MSG_DATA_EXIT_CODE, MSG_DATA_STDOUT, MSG_SERVICE_CONNECT, MSG_SERVICE_NOTICE, MSG_SERVICE_REFUSED, NOTHING,
  encodeServiceParams, encodeU32, type TriggerService3,
} from '../qrexec/protocol';
import { encodeEvent, type AdminRequest } from '../core/admin-wire';
import { ADMIN_METHODS, isAdminMethod } from '../core/admin-methods';
import type { HandlerDeps } from './handlers/context';
import { systemInfo } from './system-info';
import { QubeLog } from './logger';

/** Admin API payloads from qubes are small (property values, features): bigger is refused. */
const MAX_ADMIN_PAYLOAD = 1024 * 1024;
/** Unsent event bytes a qube's admin.Events stream may leave in isolad before it is dropped. */
const MAX_EVENT_BACKLOG = 1024 * 1024;

/** Longest qube-chosen string (service name, argument, target) kept in the policy log and isolad's log. */
const MAX_LOGGED = MAX_SERVICE_CALL_LENGTH + 1;

function clip(untrusted: string, max = MAX_LOGGED): string {
  return untrusted.length > max ? `${untrusted.slice(0, max)}… (${untrusted.length} characters)` : untrusted;
}

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
  /** Every line a call writes names its source qube: each qube's lines have their own rate limit. */
  private readonly qlog: QubeLog;
  /** ISOLA_TEST_FAULT=qrexec:SERVICE: a call of SERVICE fails outside any handler (tests of the crash handlers). */
  private readonly faultService: string | undefined;

  constructor(
    private readonly d: HandlerDeps,
    /** Runs an Admin API call a qube made (the policy allowed it, target dom0); returns the reply bytes. */
    private readonly callAdmin: (req: AdminRequest) => Promise<Buffer>,
  ) {
    this.qlog = new QubeLog(d.log);
    this.faultService = /^qrexec:(.+)$/.exec(process.env.ISOLA_TEST_FAULT ?? '')?.[1];
  }

  close(): void {
    this.qlog.close();
  }

  /** Decides and runs one call. Never throws: every failure refuses the call. */
  async handle(source: string, untrusted: TriggerService3, conn: FramedSocket): Promise<void> {
    try {
      if (untrusted.serviceName === this.faultService) this.injectFault(source);
      await this.queued(source, untrusted, conn);
    } catch (e) {
      this.refuse(source, conn, untrusted, `${(e as Error).message}`);
    }
  }

  private async queued(source: string, untrusted: TriggerService3, conn: FramedSocket): Promise<void> {
    const lane = this.lanes.get(source) ?? { running: 0, waiting: [] };
    this.lanes.set(source, lane);
    if (lane.running >= MAX_CALLS_PER_QUBE) {
      if (lane.waiting.length >= MAX_WAITING_PER_QUBE) {
        const why = `${source} has ${MAX_CALLS_PER_QUBE} calls running and ${MAX_WAITING_PER_QUBE} waiting`;
        return this.refuse(source, conn, untrusted, this.record(source, untrusted.targetDomain, untrusted.serviceName, '', 'deny', null, why));
      }
      await new Promise<void>((resolve) => lane.waiting.push(resolve));
    }
    lane.running++;
    try {
      // A caller that left while it waited its turn is not worth a decision.
      if (conn.closed) return;
      await this.route(source, untrusted, conn);
    } catch (e) {
      this.refuse(source, conn, untrusted, `${(e as Error).message}`);
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
    if (problem) return this.refuse(source, conn, untrusted, this.record(source, untrusted.targetDomain, service, argument, 'deny', null, problem));
    let r = evaluate(this.d.policy.current, { service, argument, source, target: untrusted.targetDomain }, systemInfo(this.d.collection));
    if (r.result === 'ask') {
      this.record(source, untrusted.targetDomain, service, argument, 'ask', r, r.reason);
      const question = this.d.asks.ask(source, service, argument, r, untrusted.targetDomain || '@default');
      const asked = this.d.asks.list().find((a) => a.id === question.id);
      const secs = Math.round(this.d.config.askTimeoutMs / 1000);
      const to = asked?.defaultTarget ? ` --target ${asked.defaultTarget}` : '';
      // The caller would otherwise wait in silence: say who decides and how.
      this.notify(conn, `waiting for the host to allow ${service}${argument === '+' ? '' : argument} (question ${question.id}); on the host: isola ask allow ${question.id}${to}, or isola ask deny ${question.id}; denied if nobody answers within ${secs} s`);
      // However the caller goes (close, error, a frame it may not send yet, its qube stopping: all end
      // in 'close', as its socket is read while it waits), its question is withdrawn.
      const withdraw = () => this.d.asks.cancel(question.id);
      if (conn.closed) withdraw();
      else conn.socket.once('close', withdraw);
      const answer = await question.answer;
      conn.socket.off('close', withdraw);
      if (answer.unanswered === 'timeout') this.notify(conn, `nobody answered on the host within ${secs} s: the call is refused`);
      r = answerAsk(r, answer, systemInfo(this.d.collection));
      // Allowed just as the caller left: nothing is started for nobody.
      if (conn.closed && r.result === 'allow') {
        this.record(source, untrusted.targetDomain, service, argument, 'deny', r, 'the caller left before the answer');
        return;
      }
    }
    if (r.result !== 'allow') return this.refuse(source, conn, untrusted, this.record(source, untrusted.targetDomain, service, argument, r.result, r, r.reason));
    if (r.target === 'dom0' && service.startsWith('admin.') && !r.execute_error) {
      return this.serveAdmin(source, untrusted, conn, service, argument, r);
    }
    const refusal = r.execute_error ?? this.unsupportedTarget(r.target!);
    if (refusal) return this.refuse(source, conn, untrusted, this.record(source, r.target!, service, argument, 'deny', r, refusal));
    const target = this.d.collection.byUuid(r.target!.replace(/^uuid:/, ''))?.name ?? r.target!;
    this.record(source, target, service, argument, 'allow', r, r.reason);
    await this.ensureRunning(target, r);
    const q = this.d.collection.get(target);
    const session = await this.d.lifecycle.agent(q).exec(r.user ?? 'DEFAULT', `QUBESRPC ${service}${argument} ${source}`);
    // CONNECT goes first: splicing may forward the service's first frames at once. The client's own
    // frames wait in the paused connection until the splice accepts them.
    conn.send(MSG_SERVICE_CONNECT, encodeServiceParams(untrusted.requestId));
    const piped = pipeFrames(conn.socket, session.raw(), { clientFramed: conn, label: `${source} -> ${target} ${service}${argument}`, log: (l) => this.qlog.info(source, 'qrexec stream', l) });
    conn.resume();
    await piped;
    finishConnection(conn);
  }

  /**
   * Qubes' Admin API from a qube: the call is about the qube the caller named (Qubes keeps the
   * requested target as the destination when the policy redirects to dom0), its payload is the
   * caller's stdin, and the reply (Qubes' `30 00`/`32 00` bytes) is its stdout.
   */
  private async serveAdmin(source: string, untrusted: TriggerService3, conn: FramedSocket, service: string, argument: string, r: Resolution): Promise<void> {
    const asked = r.requested_target ?? '';
    const dest = asked === 'dom0' || asked === '@adminvm' ? 'dom0' : this.d.collection.find(asked)?.name;
    if (!dest) return this.refuse(source, conn, untrusted, this.record(source, asked, service, argument, 'deny', r, `admin call about '${asked}', which is no qube`));
    this.record(source, 'dom0', service, argument, 'allow', r, r.reason);
    conn.send(MSG_SERVICE_CONNECT, encodeServiceParams(untrusted.requestId));
    conn.allow(DAEMON_TO_AGENT_DATA);
    const chunks: Buffer[] = [];
    let size = 0;
    await new Promise<void>((resolve, reject) => {
      conn.onFrame = (f) => {
        if (f.payload.length === 0) return resolve();
        size += f.payload.length;
        if (size > MAX_ADMIN_PAYLOAD) return reject(new Error(`admin call payload over ${MAX_ADMIN_PAYLOAD} bytes`));
        chunks.push(f.payload);
      };
      conn.onClose = () => reject(new Error('the caller left before sending its payload'));
      conn.resume();
    });
    conn.allow(NOTHING);
    if (isAdminMethod(service) && ADMIN_METHODS[service].stream) return this.streamEvents(source, dest, conn);
    const reply = await this.callAdmin({ method: service, arg: argument.slice(1), source, dest, payload: Buffer.concat(chunks) });
    conn.sendData(MSG_DATA_STDOUT, reply);
    conn.send(MSG_DATA_STDOUT, EMPTY);
    conn.send(MSG_DATA_EXIT_CODE, encodeU32(0));
    finishConnection(conn);
  }

  /**
   * admin.Events for a qube, with Qubes' second gate: each event goes out only if the policy allows
   * `admin.Events +EVENT` (':' as '_') from the caller to the event's subject (dom0 for the system's).
   * A caller that stops reading is dropped rather than buffered for.
   */
  private streamEvents(source: string, dest: string, conn: FramedSocket): Promise<void> {
    const send = (subject: string, event: string, kwargs: Record<string, string>) => {
      if (conn.closed) return;
      if (conn.socket.writableLength > MAX_EVENT_BACKLOG) return conn.close();
      conn.sendData(MSG_DATA_STDOUT, encodeEvent(subject, event, kwargs));
    };
    send('', 'connection-established', {});
    const unsubscribe = this.d.events.subscribe((ev) => {
      if (dest !== 'dom0' && ev.subject !== dest) return;
      const target = ev.subject && ev.subject !== 'dom0' ? ev.subject : 'dom0';
      const r = evaluateNonInteractive(this.d.policy.current, { service: 'admin.Events', argument: `+${ev.event.replace(/:/g, '_')}`, source, target }, systemInfo(this.d.collection));
      if (r.result === 'allow') send(ev.subject, ev.event, ev.kwargs);
    });
    return new Promise((resolve) => {
      conn.onClose = () => {
        unsubscribe();
        resolve();
      };
    });
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

  private record(source: string, untrustedTarget: string, untrustedService: string, untrustedArgument: string, result: string, r: Resolution | null, untrustedReason: string): string {
    const rule = r?.rule ? `${r.rule.file}:${r.rule.line}` : '';
    // A malformed call's name can be 64 KiB: clipped, so that no row or line costs more than a valid call's.
    const [target, service, argument, reason] = [clip(untrustedTarget), clip(untrustedService), clip(untrustedArgument), clip(untrustedReason, 2 * MAX_LOGGED)];
    this.d.collection.store.logDecision({ at: Date.now(), source, target, service, argument, result, rule, reason });
    this.qlog.info(source, `qrexec ${result}`, `qrexec ${source} -> ${target} ${service}${argument}: ${result}${rule ? ` (${rule})` : ''}`);
    return reason;
  }

  private notify(conn: FramedSocket, text: string): void {
    if (conn.closed) return;
    conn.send(MSG_SERVICE_NOTICE, Buffer.from(text, 'utf8').subarray(0, MAX_NOTICE));
  }

  private refuse(source: string, conn: FramedSocket, untrusted: TriggerService3, reason: string): void {
    this.qlog.info(source, 'qrexec refused', `qrexec call from ${source} refused: ${clip(reason, 2 * MAX_LOGGED)}`);
    try {
      conn.send(MSG_SERVICE_REFUSED, encodeServiceParams(untrusted.requestId));
      finishConnection(conn);
    } catch {
      conn.close();
    }
  }

  /** A failure no handler catches, both ways one can escape: the crash handlers must log it and keep isolad up. */
  private injectFault(source: string): void {
    void Promise.reject(new Error(`test fault (unhandled rejection) in a call from ${source}`));
    setImmediate(() => {
      throw new Error(`test fault (uncaught exception) in a call from ${source}`);
    });
    throw new Error('test fault: the call is refused');
  }
}
