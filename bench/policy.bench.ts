// npm run bench: qrexec policy evaluation against 1 000 realistic rules (the deciding rule near the
// end), warm, median per call, with a floor from the same run; and the time to load those rules.
// Prints a table and writes bench/results/policy-<time>.json.

import { type DomainInfo, type Policy, type PolicyRequest, type SystemInfo, MemoryPolicyFs, evaluate, loadPolicyDir } from '../src/policy';
import { report } from './report';

const DIR = '/etc/qubes/policy.d';
const RULES = 1000;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function percentile(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

/** Per-call times in µs: batches of calls, so the timer's own cost stays out of the figure. */
function perCall(fn: () => unknown, batches = 300, perBatch = 200): number[] {
  for (let i = 0; i < 2000; i++) fn();
  const out: number[] = [];
  for (let b = 0; b < batches; b++) {
    const t = process.hrtime.bigint();
    for (let i = 0; i < perBatch; i++) fn();
    out.push(Number(process.hrtime.bigint() - t) / 1e3 / perBatch);
  }
  return out;
}

function system(): SystemInfo {
  const domains: Record<string, DomainInfo> = {};
  const add = (name: string, type: string, extra: Partial<DomainInfo> = {}) => {
    const n = Object.keys(domains).length;
    domains[name] = { type, tags: [], default_dispvm: 'default-dvm', template_for_dispvms: false, power_state: n % 3 ? 'Running' : 'Halted', uuid: `${n.toString(16).padStart(8, '0')}-0000-4000-8000-000000000000`, ...extra };
  };
  add('dom0', 'AdminVM', { power_state: 'Running', default_dispvm: null, uuid: '00000000-0000-0000-0000-000000000000' });
  for (const t of ['debian-12', 'fedora-40', 'whonix-gw-17', 'whonix-ws-17']) add(t, 'TemplateVM');
  for (const n of ['sys-net', 'sys-firewall', 'sys-whonix']) add(n, 'AppVM', { tags: ['net'] });
  add('sys-usb', 'AppVM', { internal: true });
  add('default-dvm', 'AppVM', { template_for_dispvms: true, tags: ['disp'] });
  add('whonix-dvm', 'AppVM', { template_for_dispvms: true, tags: ['disp', 'anon-vm'] });
  for (const n of ['work', 'vault', 'personal', 'banking', 'untrusted', 'mail', 'dev', 'media']) add(n, 'AppVM', { tags: n === 'untrusted' ? ['risky'] : ['trusted'] });
  for (let i = 0; i < 16; i++) add(`app-${i}`, i % 4 ? 'AppVM' : 'StandaloneVM', { tags: [`project-${i % 5}`] });
  return { domains };
}

/** 1 000 rules in the shapes real policies have, spread over files as Qubes' are. */
function policyFiles(): Record<string, string> {
  const services = ['qubes.Filecopy', 'qubes.OpenInVM', 'qubes.OpenURL', 'qubes.StartApp', 'qubes.VMShell', 'qubes.ClipboardPaste', 'qubes.Gpg', 'qubes.SplitSSH',
    'qubes.UpdatesProxy', 'qubes.ConnectTCP', 'admin.vm.List', 'admin.vm.Start', 'admin.vm.property.Get', 'my.Backup', 'my.Notes', 'my.Print'];
  const sources = ['work', 'personal', 'untrusted', '@tag:trusted', '@type:AppVM', '@anyvm', 'app-3', '@tag:project-2', 'mail', 'dev'];
  const targets = ['vault', '@dispvm', '@anyvm', '@tag:trusted', 'sys-net', 'dom0', '@dispvm:default-dvm', '@type:TemplateVM', 'app-7', 'media'];
  const actions = ['allow', 'deny', 'ask', 'ask default_target=vault', 'allow user=root', 'deny notify=no', 'allow autostart=no', 'allow target=dom0'];
  const generated: string[] = [];
  for (let i = 0; generated.length < RULES - 12; i++) {
    const svc = services[i % services.length];
    const arg = i % 7 === 0 ? `+arg${i % 13}` : '*';
    const src = sources[(i * 3) % sources.length];
    let tgt = targets[(i * 7) % targets.length];
    let act = actions[(i * 5) % actions.length];
    if (act === 'allow target=dom0') tgt = '@default';
    if (tgt === '@default' && !act.includes('target=')) act = 'ask';
    generated.push(`${svc} ${arg} ${src} ${tgt} ${act}`);
  }
  // Rules for any service, with sources or targets this request is not: the scan must test them.
  const anyService = ['* * untrusted @anyvm deny', '* * @tag:risky vault deny', '* * @anyvm sys-usb deny notify=no', '* * @type:TemplateVM @anyvm deny'];
  const files: Record<string, string> = {};
  const chunk = Math.ceil(generated.length / 8);
  const names = ['20-admin', '30-user', '50-config-filecopy', '50-config-clipboard', '60-gpg', '70-split-ssh', '80-projects', '85-backup'];
  names.forEach((n, i) => {
    const lines = generated.slice(i * chunk, (i + 1) * chunk);
    if (i === 1) lines.unshift(...anyService);
    files[`${DIR}/${n}.policy`] = `# ${n}\n${lines.join('\n')}\n`;
  });
  files[`${DIR}/90-default.policy`] = [
    'bench.Target +arg work vault allow',
    'bench.Ask * work @anyvm ask',
    'qubes.Filecopy * @anyvm @anyvm ask',
    'qubes.OpenURL * @anyvm @dispvm allow',
    'qubes.VMShell * @anyvm @dispvm allow',
    'qubes.VMShell * @anyvm @anyvm deny',
    'qubes.GetDate * @anyvm @anyvm allow target=dom0',
    'qubes.UpdatesProxy * @type:TemplateVM @default allow target=sys-net',
  ].join('\n') + '\n';
  return files;
}

function main(): void {
  const sys = system();
  const files = policyFiles();
  const fs = new MemoryPolicyFs(files);
  const loads: number[] = [];
  let policy: Policy = loadPolicyDir(fs, DIR);
  for (let i = 0; i < 30; i++) {
    const t = process.hrtime.bigint();
    policy = loadPolicyDir(fs, DIR);
    loads.push(Number(process.hrtime.bigint() - t) / 1e6);
  }
  const call = (service: string, argument: string, source: string, target: string): PolicyRequest => ({ service, argument, source, target });
  const allowCall = call('bench.Target', '+arg', 'work', 'vault');
  const first = evaluate(policy, allowCall, sys);
  if (first.result !== 'allow' || (first.rule_index ?? 0) < RULES - 20) throw new Error(`the bench request should be allowed near the end: ${JSON.stringify(first)}`);
  const askCall = call('bench.Ask', '+', 'work', 'personal');
  if (evaluate(policy, askCall, sys).result !== 'ask') throw new Error('the ask request should ask');

  // Worst case: all 1 000 rules are for the called service, so each one's source and target must be
  // tested (half differ in source, half in target); the last rule decides.
  const missSources = ['personal', 'untrusted', '@tag:risky', '@type:TemplateVM', 'app-3', '@tag:project-2', 'mail', `uuid:${sys.domains.dev.uuid}`];
  const missTargets = ['@dispvm', 'sys-net', '@type:TemplateVM', '@tag:net', 'dom0', '@dispvm:default-dvm', '@default', 'uuid:' + sys.domains.media.uuid];
  const same = (last: string) => {
    const lines = Array.from({ length: RULES - 1 }, (_, i) =>
      i % 2 ? `bench.Same * ${missSources[i % missSources.length]} @anyvm allow` : `bench.Same * @anyvm ${missTargets[i % missTargets.length]} ask`);
    return loadPolicyDir(new MemoryPolicyFs({ [`${DIR}/30-user.policy`]: [...lines, last].join('\n') + '\n' }), DIR);
  };
  const worst = same('bench.Same * work vault allow');
  const worstAsk = same('bench.Same * work @anyvm ask');
  const worstCall = call('bench.Same', '+', 'work', 'vault');
  for (const [p, want] of [[worst, 'allow'], [worstAsk, 'ask']] as const) {
    const r = evaluate(p, worstCall, sys);
    if (r.result !== want || r.rule_index !== RULES - 1) throw new Error(`the worst-case request should be decided by the last rule: ${JSON.stringify(r)}`);
  }
  const services = policy.rules.map((r) => r.service);
  let sink = 0;
  const floor = perCall(() => {
    // The least any first-match engine does: look at every rule's service once.
    for (let i = 0; i < services.length; i++) if (services[i] === 'bench.Target') sink++;
  });
  const allow = perCall(() => evaluate(policy, allowCall, sys));
  const noMatch = perCall(() => evaluate(policy, call('nobody.Calls', '+', 'work', 'vault'), sys));
  const ask = perCall(() => evaluate(policy, askCall, sys), 100, 50);
  const worstCase = perCall(() => evaluate(worst, worstCall, sys));
  const worstAskCase = perCall(() => evaluate(worstAsk, worstCall, sys), 100, 20);
  const uuid = perCall(() => evaluate(policy, call('bench.Target', '+arg', 'work', `uuid:${sys.domains.vault.uuid}`), sys));
  if (sink < 0) process.stdout.write('');

  const rows = [
    { what: `evaluate: allow, rule ${first.rule_index! + 1} of ${policy.rules.length}`, median: median(allow), p99: percentile(allow, 99), unit: 'µs', floor: median(floor), goal: '≤ 50 µs' },
    { what: `worst case: all ${RULES} rules for the called service, allow by the last`, median: median(worstCase), p99: percentile(worstCase, 99), unit: 'µs' },
    { what: `worst case: same, ask by the last, choices from all ${RULES}`, median: median(worstAskCase), p99: percentile(worstAskCase, 99), unit: 'µs' },
    { what: 'evaluate: no rule matches (deny)', median: median(noMatch), p99: percentile(noMatch, 99), unit: 'µs', floor: median(floor) },
    { what: 'evaluate: ask, choices collected over all rules', median: median(ask), p99: percentile(ask, 99), unit: 'µs' },
    { what: 'evaluate: allow, target given as uuid:', median: median(uuid), p99: percentile(uuid, 99), unit: 'µs' },
    { what: `load ${policy.rules.length} rules from ${policy.files.length} files`, median: median(loads), p99: percentile(loads, 99), unit: 'ms' },
  ];
  const fmt = (n: number) => (n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2));
  const table = [['measure', 'median', 'p99', 'floor (same run)', 'ratio', 'goal']];
  for (const r of rows) {
    table.push([r.what, `${fmt(r.median)} ${r.unit}`, `${fmt(r.p99)} ${r.unit}`, r.floor ? `${fmt(r.floor)} µs` : '-', r.floor ? `${(r.median / r.floor).toFixed(1)}×` : '-', r.goal ?? '']);
  }
  report('policy', table, { rules: policy.rules.length, qubes: Object.keys(sys.domains).length, rows });
}

main();
