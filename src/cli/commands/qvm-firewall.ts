// qvm-firewall as Qubes' client has it: `VMNAME [list]` prints the rules as a table (or `--raw`),
// `add [--before N] RULE...`, `del --rule-no N | RULE...`, `reset`. A rule is checked before any call;
// a change reads the rules (admin.vm.firewall.Get) and writes them all back (admin.vm.firewall.Set).

import { QubesError } from '../../core/errors';
import { formatClientRule, LIST_HEADER, listRow, parseApiRule, parseRuleWords, type FirewallRule } from '../../core/firewall';
import { formatTable } from '../output';
import { lines, newProgram, pyRepr, resolveFirstVm, UsageError, type CliDeps } from './common';

export const description = "Manage a qube's outbound firewall.";

const SUBCOMMANDS = ['add', 'del', 'list', 'reset'];

const RULE_HELP = `
Rules can be given as positional arguments:
    <action> [<dsthost> [<proto> [<dstports>|<icmptype>]]]

And as keyword arguments:
    action=<action> [specialtarget=dns] [dsthost=<dsthost>]
    [proto=<proto>] [dstports=<dstports>] [icmptype=<icmptype>]
    [expire=<expire>] [comment=<text>]

Both formats can be mixed; each field may be given once.

Available matches:
    action         accept or drop
    dst4, dst6     synonyms for dsthost (with an address of that family)
    dsthost        IP, network or host name
                     (e.g. 10.5.3.2, 192.168.0.0/16, www.example.com, fd00::/8)
    dstports       port or port range, with proto=tcp or proto=udp
                     (e.g. 443 or 1200-1400)
    icmptype       ICMP type number, with proto=icmp (e.g. 8 for echo requests)
    proto          icmp, tcp or udp
    specialtarget  only dns: the DNS servers the qube is given
    expire         the rule is removed at this time: seconds since 1/1/1970,
                     or +seconds (e.g. +300 for five minutes from now)
    comment        free text (letters, digits, spaces, : ; , . / - _ [ ]),
                     one word on the command line: quote it

Rules are tried in order; the first that matches decides. A connection that
no rule matches is dropped. A new qube has one rule: accept.`;

interface GlobalOptions {
  raw?: boolean;
  reload?: boolean;
}

/**
 * Qubes' parser takes VMNAME before the subcommand (`qvm-firewall work add ...`); commander
 * dispatches on the first word. The VMNAME moves after the subcommand (`list` when none is given).
 */
function reorder(argv: readonly string[]): string[] {
  const isOption = (w: string) => w.startsWith('-') && w !== '-';
  const vm = argv.findIndex((w) => !isOption(w));
  if (vm === -1) {
    if (argv.some((w) => ['-h', '--help', '--version'].includes(w))) return [...argv];
    throw new UsageError('the following arguments are required: VMNAME');
  }
  const cmd = argv.findIndex((w, i) => i > vm && !isOption(w));
  if (cmd === -1 && argv.some((w) => w === '-h' || w === '--help')) return [...argv];
  if (cmd === -1) return [...argv.slice(0, vm), 'list', argv[vm], ...argv.slice(vm + 1)];
  if (!SUBCOMMANDS.includes(argv[cmd])) {
    throw new UsageError(`argument command: invalid choice: ${pyRepr(argv[cmd])} (choose from ${SUBCOMMANDS.map(pyRepr).join(', ')})`);
  }
  return [...argv.slice(0, vm), ...argv.slice(vm + 1, cmd), argv[cmd], argv[vm], ...argv.slice(cmd + 1)];
}

/** A command-line rule, checked before anything is asked: a bad one is a usage error (exit 2). */
function ruleFromWords(words: readonly string[]): FirewallRule {
  try {
    return parseRuleWords(words, Math.floor(Date.now() / 1000));
  } catch (e) {
    if (e instanceof QubesError) throw new UsageError(e.message);
    throw e;
  }
}

/** A rule number (`--before`, `--rule-no`): argparse's int, never negative here. */
function ruleNumber(option: string, untrusted: string): number {
  if (!/^[0-9]+$/.test(untrusted)) throw new UsageError(`argument ${option}: invalid int value: ${pyRepr(untrusted)}`);
  return Number(untrusted);
}

async function qubeName(deps: CliDeps, vmArg: string): Promise<string> {
  const q = await resolveFirstVm(deps, vmArg);
  if (q.klass === 'AdminVM') throw new QubesError('QubesValueError', `${q.name} has no firewall (the rules are for the traffic of qubes through their netvm)`);
  return q.name;
}

async function getRules(deps: CliDeps, vm: string): Promise<FirewallRule[]> {
  return lines(await deps.client.call('admin.vm.firewall.Get', vm)).map(parseApiRule);
}

async function setRules(deps: CliDeps, vm: string, rules: readonly FirewallRule[]): Promise<void> {
  // admin.vm.firewall.Set takes at least one rule, as qubesd.
  if (rules.length === 0) throw new QubesError('QubesValueError', `cannot remove the last rule of ${vm}: a firewall has at least one rule (add 'drop' to block everything, then delete the others)`);
  await deps.client.call('admin.vm.firewall.Set', vm, { payload: rules.map((r) => formatClientRule(r) + '\n').join('') });
  await warnIfBlocked(deps, vm);
}

/**
 * After a change (or with list): says on stderr when the running qube's traffic is all blocked because
 * its rules could not be applied as written (a host name that does not resolve: Qubes fails closed too).
 */
async function warnIfBlocked(deps: CliDeps, vm: string): Promise<void> {
  const why = (await deps.client.call('admin.vm.firewall.Status', vm).catch(() => '')).trim();
  if (why) deps.stderr(`qvm-firewall: warning: all network traffic of ${vm} is blocked: ${why}\n`);
}

async function list(deps: CliDeps, vmArg: string, o: GlobalOptions): Promise<number> {
  const vm = await qubeName(deps, vmArg);
  const rules = await getRules(deps, vm);
  if (o.raw) deps.stdout(rules.map((r) => formatClientRule(r) + '\n').join(''));
  else {
    const now = Date.now();
    deps.stdout(formatTable([[...LIST_HEADER], ...rules.map((r, i) => [String(i), ...listRow(r, now)])]));
  }
  if (o.reload) await deps.client.call('admin.vm.firewall.Reload', vm);
  await warnIfBlocked(deps, vm);
  return 0;
}

async function add(deps: CliDeps, vmArg: string, words: string[], before: string | undefined): Promise<number> {
  const rule = ruleFromWords(words);
  const at = before === undefined ? undefined : ruleNumber('--before', before);
  const vm = await qubeName(deps, vmArg);
  const rules = await getRules(deps, vm);
  if (at !== undefined && at > rules.length) throw new QubesError('QubesValueError', `${vm} has no rule ${at} to add before (its rules are numbered 0 to ${rules.length - 1}; --before ${rules.length} adds at the end)`);
  rules.splice(at ?? rules.length, 0, rule);
  await setRules(deps, vm, rules);
  return 0;
}

async function del(deps: CliDeps, vmArg: string, words: string[], ruleNo: string | undefined): Promise<number> {
  if (ruleNo !== undefined && words.length > 0) throw new UsageError('give either --rule-no or a rule, not both');
  if (ruleNo === undefined && words.length === 0) throw new UsageError('give the rule to delete: --rule-no N (as `list` numbers them) or the rule itself');
  const no = ruleNo === undefined ? undefined : ruleNumber('--rule-no', ruleNo);
  const target = no === undefined ? formatClientRule(ruleFromWords(words)) : undefined;
  const vm = await qubeName(deps, vmArg);
  const rules = await getRules(deps, vm);
  const at = no ?? rules.findIndex((r) => formatClientRule(r) === target);
  if (no !== undefined && no >= rules.length) throw new QubesError('QubesValueError', `${vm} has no rule ${no} (its rules are numbered 0 to ${rules.length - 1})`);
  if (at === -1) throw new QubesError('QubesValueError', `${vm} has no rule ${target} (see qvm-firewall ${vm} --raw list)`);
  rules.splice(at, 1);
  await setRules(deps, vm, rules);
  return 0;
}

export async function run(argv: string[], deps: CliDeps): Promise<number> {
  const p = newProgram('qvm-firewall', description, deps)
    .usage('[options] VMNAME [{add,del,list,reset}] ...')
    .option('-r, --reload', 'force reload of rules even when unchanged (with list)')
    .option('--raw', 'output rules as raw strings, instead of nice table (with list)')
    .addHelpText('after', RULE_HELP);
  let act: (() => Promise<number>) | undefined;
  const globals = () => p.opts<GlobalOptions>();
  const usage = (text: string) => ({ commandUsage: () => `qvm-firewall [options] ${text}` });
  const synopsis: Record<string, string> = {
    add: 'VMNAME add [--before N] RULE...', del: 'VMNAME del [--rule-no N] [RULE...]', list: '[--raw] [--reload] VMNAME list', reset: 'VMNAME reset',
  };
  p.configureHelp({ subcommandTerm: (c) => synopsis[c.name()] ?? c.name() });
  p.command('add').description('add rule').configureHelp(usage(synopsis.add))
    .argument('<VMNAME>', 'the qube')
    .argument('<RULE...>', 'rule description (see qvm-firewall --help)')
    .option('--before <N>', 'add the rule before rule number N instead of at the end')
    .addHelpText('after', RULE_HELP)
    .action((vm: string, words: string[], o: { before?: string }) => {
      act = () => add(deps, vm, words, o.before);
    });
  p.command('del').description('remove rule').configureHelp(usage(synopsis.del))
    .argument('<VMNAME>', 'the qube')
    .argument('[RULE...]', 'the rule to remove, as it was added')
    .option('--rule-no <N>', 'the number of the rule to remove (as list shows it)')
    .action((vm: string, words: string[], o: { ruleNo?: string }) => {
      act = () => del(deps, vm, words, o.ruleNo);
    });
  p.command('list').description('list rules (the default)').configureHelp(usage(synopsis.list))
    .argument('<VMNAME>', 'the qube')
    .action((vm: string) => {
      act = () => list(deps, vm, globals());
    });
  p.command('reset').description('remove all firewall rules and reset to default (accept all connections)').configureHelp(usage(synopsis.reset))
    .argument('<VMNAME>', 'the qube')
    .action((vm: string) => {
      act = async () => {
        await setRules(deps, await qubeName(deps, vm), [{ action: 'accept' }]);
        return 0;
      };
    });
  p.parse(reorder(argv), { from: 'user' });
  return act ? act() : 0;
}
