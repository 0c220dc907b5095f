// A qrexec call as the policy sees it: the service and argument checked as Qubes checks them, the
// caller's target verified (unknown qubes become @default) and a relayed RemoteVM source vouched for.

import { type DomainInfo, type SystemInfo, domainName } from './system';
import { pyRepr } from './text';
import { type Intended, type SourceRef, isLegal, parseToken, sourceRef, verifyIntended } from './tokens';

export interface PolicyRequest {
  service: string;
  /** Starts with `+`; `+` alone (or '') is the empty argument. */
  argument: string;
  /** The calling qube, as the transport identified it; never taken from the message. */
  source: string;
  /** What the caller asked for; '' means `@default`. */
  target: string;
  /** A relay qube calling on behalf of this RemoteVM (Qubes Air). */
  requested_source?: string;
}

export interface NormalizedRequest {
  readonly service: string;
  readonly argument: string;
  /** The source rules are matched against: the RemoteVM for a relayed call, else the caller. */
  readonly source: string;
  readonly sourceRef: SourceRef;
  /** The qube whose channel carried the call. */
  readonly caller: string;
  readonly requestedSource: string | null;
  readonly target: Intended;
}

export type RequestCheck = { ok: true; request: NormalizedRequest } | { ok: false; reason: string };

/** A service call names a file in /etc/qubes-rpc/, so SERVICE+ARGUMENT must fit in NAME_MAX. */
export const MAX_SERVICE_CALL_LENGTH = 255;

const SERVICE_OK = /^[A-Za-z0-9._-]+$/;
const ARGUMENT_OK = /^\+[A-Za-z0-9+._-]*$/;

/** `svc+arg` → (`svc`, `+arg`); `svc` and `svc+` both carry the empty argument `+`. */
export function splitServiceCall(call: string): { service: string; argument: string } {
  const plus = call.indexOf('+');
  return plus < 0 ? { service: call, argument: '+' } : { service: call.slice(0, plus), argument: call.slice(plus) };
}

/** Why a service call is malformed, or undefined if it is a valid one. */
export function serviceCallProblem(service: string, argument: string): string | undefined {
  if (service === '') return 'empty service name';
  if (!SERVICE_OK.test(service)) return `service name ${pyRepr(service)} may contain only A-Z a-z 0-9 . _ -`;
  if (!ARGUMENT_OK.test(argument)) return `service argument ${pyRepr(argument)} must be + followed by A-Z a-z 0-9 + . _ -`;
  if (service.length + argument.length > MAX_SERVICE_CALL_LENGTH) {
    return `service call ${service}${argument} is longer than ${MAX_SERVICE_CALL_LENGTH} characters`;
  }
  return undefined;
}

function relayProblem(system: SystemInfo, caller: string, requested: string): string | undefined {
  const name = domainName(system, requested);
  const remote: DomainInfo | undefined = name === undefined ? undefined : system.domains[name];
  const callerName = domainName(system, caller) ?? caller;
  if (remote?.type !== 'RemoteVM' || remote.relayvm == null || domainName(system, remote.relayvm) !== callerName) {
    return `${caller} is not a relay for ${requested}`;
  }
  return undefined;
}

export function normalizeRequest(req: PolicyRequest, system: SystemInfo): RequestCheck {
  const argument = req.argument === '' ? '+' : req.argument;
  const problem = serviceCallProblem(req.service, argument);
  if (problem) return { ok: false, reason: problem };
  if (req.source === '') return { ok: false, reason: 'empty source' };
  let source = req.source;
  const requested = req.requested_source;
  if (requested !== undefined && requested !== '') {
    const relay = relayProblem(system, req.source, requested);
    if (relay) return { ok: false, reason: relay };
    source = domainName(system, requested) ?? requested;
  }
  // A source given by uuid is matched and reported by name (the ask list drops it by name).
  if (source.startsWith('uuid:')) source = domainName(system, source) ?? source;
  const text = req.target === '' ? '@default' : req.target;
  if (!isLegal(text, 'intendedtarget')) return { ok: false, reason: `invalid intendedtarget token: ${pyRepr(text)}` };
  const target = verifyIntended(parseToken(text, 'intendedtarget', '', 0), system);
  if ('refused' in target) return { ok: false, reason: target.refused };
  return {
    ok: true,
    request: {
      service: req.service,
      argument,
      source,
      sourceRef: sourceRef(source, system),
      caller: req.source,
      requestedSource: requested ? source : null,
      target,
    },
  };
}
