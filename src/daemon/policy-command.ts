// `isola policy eval` and `isola policy check`: Qubes' qrexec policy, evaluated or linted from the
// command line. eval decides against --system FILE (Qubes' system-info JSON) or isolad's live qubes.

import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { AdminClient } from '../cli/admin-client';
import { evaluate, isPolicySyntaxError, loadPolicyDir, splitServiceCall, type Policy, type SystemInfo } from '../policy';
import { nodePolicyFs, policyDir } from './policy-fs';

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
    text = await (io.client ?? new AdminClient()).call('internal.GetSystemInfo', 'dom0');
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
    .option('--requested-source <REMOTEVM>', 'for a call relayed from a RemoteVM: the remote qube that asked (Qubes Air)')
    .action(async (source: string, target: string, call: string, o: { policyDir?: string; system?: string; requestedSource?: string }) => {
      const loaded = load(o.policyDir ?? policyDir());
      const system = await systemFrom(o.system, io);
      const { service, argument } = splitServiceCall(call);
      const r = evaluate(loaded, { service, argument, source, target, ...(o.requestedSource ? { requested_source: o.requestedSource } : {}) }, system);
      const { result, target: to, user, notify, autostart, default_target, targets_for_ask, rule, reason } = r;
      io.out(JSON.stringify({ result, target: to, user, notify, autostart, default_target, targets_for_ask, rule, reason }) + '\n');
      setCode(0);
    });
  policy
    .command('check')
    .description('lint every policy file: prints FILE:LINE: reason and exits 2 if the policy would be refused')
    .option('--policy-dir <DIR>', dirOption())
    .action((o: { policyDir?: string }) => {
      const dir = o.policyDir ?? policyDir();
      const loaded = load(dir);
      io.out(`${dir}: OK (${loaded.rules.length} rules from ${new Set(loaded.files).size} files)\n`);
      setCode(0);
    });
  policy
    .command('log')
    .description('qrexec decisions recorded by isolad: time, source, target, service, result, deciding rule, reason')
    .option('--since <AGE>', 'only the last AGE (e.g. 90s, 10m, 2h, 1d)')
    .action(async (o: { since?: string }) => {
      const secs = o.since === undefined ? undefined : parseAge(o.since);
      io.out(await (io.client ?? new AdminClient()).call('admin.policy.Log', 'dom0', { arg: secs === undefined ? '' : String(secs) }));
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
  return undefined;
}
