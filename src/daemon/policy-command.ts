// `isola policy eval` and `isola policy check`: Qubes' qrexec policy, evaluated or linted from the
// command line. eval decides against --system FILE (Qubes' system-info JSON) or isolad's live qubes.

import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { AdminClient } from '../cli/admin-client';
import { isPolicySyntaxError, loadPolicyDir, type Policy, type SystemInfo } from '../policy';
import { nodePolicyFs, policyDir } from './policy-fs';
import { decodePolicyStatus, describeInForce, evalAnswer, type PolicyStatusReply } from './policy-report';

/** A name or `uuid:UUID` of a qube in the system info. */
function isQube(system: SystemInfo, untrusted: string): boolean {
  const domains = system.domains as Record<string, { uuid?: string }>;
  if (untrusted.startsWith('uuid:')) return Object.values(domains).some((d) => d.uuid === untrusted.slice(5));
  return Object.prototype.hasOwnProperty.call(domains, untrusted);
}

/** Bad command line: `isola policy SUB: error: …`, exit 2. */
export class UsageError extends Error {}

const client = (io: PolicyIo) => io.client ?? new AdminClient();

/** isolad's view of the policy, or undefined when no isolad answers. */
export async function daemonStatus(io: PolicyIo): Promise<PolicyStatusReply | undefined> {
  try {
    return decodePolicyStatus(await client(io).call('admin.policy.Status', 'dom0'));
  } catch {
    return undefined;
  }
}

export interface PolicyIo {
  out: (s: string) => void;
  err: (s: string) => void;
  client?: Pick<AdminClient, 'call'>;
}

/** Exit codes: 0 done, 1 isolad or input refused, 2 the policy does not load. */
class PolicyLoadError extends Error {}

function load(dir: string): Policy {
  try {
    return loadPolicyDir(nodePolicyFs, dir);
  } catch (e) {
    if (isPolicySyntaxError(e)) throw new PolicyLoadError(e.message);
    throw new PolicyLoadError(`${dir}: ${(e as Error).message}`);
  }
}

async function systemFrom(file: string | undefined, io: PolicyIo): Promise<SystemInfo> {
  let text: string;
  if (file) {
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw new Error(`${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
    }
  } else {
    text = await client(io).call('internal.GetSystemInfo', 'dom0');
  }
  let untrusted: unknown;
  try {
    untrusted = JSON.parse(text);
  } catch {
    throw new Error(`${file ?? 'isolad'}: system info is not valid JSON`);
  }
  const domains = (untrusted as { domains?: unknown })?.domains;
  if (typeof domains !== 'object' || domains === null || Array.isArray(domains)) throw new Error(`${file ?? 'isolad'}: system info has no "domains" object`);
  for (const [name, d] of Object.entries(domains as Record<string, unknown>)) {
    const dom = d as Record<string, unknown>;
    if (typeof d !== 'object' || d === null || typeof dom.type !== 'string' || !Array.isArray(dom.tags)) {
      throw new Error(`${file ?? 'isolad'}: domain '${name}' needs at least "type" and "tags"`);
    }
  }
  return untrusted as SystemInfo;
}

export function policyCommand(io: PolicyIo, setCode: (c: number) => void): Command {
  const policy = new Command('policy').description("Qubes' qrexec policy (v5 format): evaluate a call or lint the files");
  const dirOption = () => `policy directory (default: $ISOLA_POLICY_DIR or ${policyDir({})})`;
  policy
    .command('eval')
    .description('dry-run a qrexec call: what the policy decides, and which rule decided it (one JSON object)')
    .argument('<SOURCE>', 'the calling qube')
    .argument('<TARGET>', "the target the caller asked for ('' means @default)")
    .argument('<SERVICE>', 'SERVICE or SERVICE+ARGUMENT')
    .option('--policy-dir <DIR>', dirOption())
    .option('--system <FILE>', "Qubes' system-info JSON instead of isolad's live qubes")
    .option('--in-force', 'evaluate against the policy isolad has in force, not the files on disk')
    .option('--requested-source <REMOTEVM>', 'for a call relayed from a RemoteVM: the remote qube that asked (Qubes Air)')
    .action(async (source: string, target: string, call: string, o: { policyDir?: string; system?: string; requestedSource?: string; inForce?: boolean }) => {
      if (o.inForce && (o.policyDir || o.system || o.requestedSource)) throw new UsageError('--in-force asks isolad: it cannot be combined with --policy-dir, --system or --requested-source');
      if (o.inForce) {
        io.out(await client(io).call('admin.policy.Eval', 'dom0', { payload: `${source} ${target || '@default'} ${call}` }));
        return setCode(0);
      }
      const dir = o.policyDir ?? policyDir();
      const loaded = load(dir);
      const system = await systemFrom(o.system, io);
      if (!isQube(system, source)) throw new UsageError(`no such qube: '${source}' (the calling qube must exist)`);
      if (target && !target.startsWith('@') && !isQube(system, target)) {
        io.err(`isola policy eval: warning: no such qube: '${target}' (a call to it is denied)\n`);
      }
      io.out(evalAnswer(loaded, source, target, call, system, `files in ${dir}`, o.requestedSource));
      // The files may not be what isolad enforces: say so, once, on stderr.
      if (!o.system) {
        const st = await daemonStatus(io);
        if (st && (st.state !== 'loaded' || st.dir !== dir)) io.err(`isola policy eval: note: this answer is from the files in ${dir}; ${describeInForce(st)} (use --in-force for isolad's answer)\n`);
      }
      setCode(0);
    });
  policy
    .command('check')
    .description('lint every policy file: prints FILE:LINE: reason and exits 2 if the policy would be refused')
    .option('--policy-dir <DIR>', dirOption())
    .action(async (o: { policyDir?: string }) => {
      const dir = o.policyDir ?? policyDir();
      // What isolad enforces is shown whether or not the files on disk load.
      const st = await daemonStatus(io);
      const daemonLine = st ? `isolad: ${describeInForce(st)}\n` : 'isolad: not running (nothing is enforced)\n';
      let loaded: Policy;
      try {
        loaded = load(dir);
      } catch (e) {
        io.err(daemonLine);
        throw e;
      }
      io.out(`${dir}: OK (${loaded.rules.length} rules from ${new Set(loaded.files).size} files)\n`);
      io.out(daemonLine);
      setCode(0);
    });
  policy
    .command('log')
    .description('qrexec decisions recorded by isolad: time, source, target, service, result, deciding rule, reason')
    .option('--since <AGE>', 'only the last AGE (e.g. 90s, 10m, 2h, 1d)')
    .action(async (o: { since?: string }) => {
      const secs = o.since === undefined ? undefined : parseAge(o.since);
      io.out(await client(io).call('admin.policy.Log', 'dom0', { arg: secs === undefined ? '' : String(secs) }));
      setCode(0);
    });
  return policy;
}

/** `90s`, `10m`, `2h`, `1d` or a plain number of seconds. */
export function parseAge(untrusted: string): number {
  const m = /^([0-9]{1,9})([smhd]?)$/.exec(untrusted);
  if (!m) throw new Error(`invalid age '${untrusted}' (examples: 90s, 10m, 2h, 1d)`);
  return Number(m[1]) * { '': 1, s: 1, m: 60, h: 3600, d: 86400 }[m[2] as '' | 's' | 'm' | 'h' | 'd'];
}

/** Maps the errors of the policy commands to Qubes-like exit codes and one line. */
export function policyErrorCode(e: unknown, io: PolicyIo): number | undefined {
  if (e instanceof PolicyLoadError) {
    io.err(`${e.message}\n`);
    return 2;
  }
  if (e instanceof UsageError) {
    io.err(`isola policy: error: ${e.message}\n`);
    return 2;
  }
  return undefined;
}
