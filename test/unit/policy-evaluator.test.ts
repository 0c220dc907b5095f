// How the evaluator decides beyond Qubes' own vectors: rule order across files and includes,
// redirects, ask lists, non-interactive use, relays, compat files, and failing closed.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  type Policy, type PolicyRequest, type SystemInfo,
  MemoryPolicyFs, answerAsk, daemonResponse, emptyPolicy, evaluate, evaluateNonInteractive, loadPolicyDir, parsePolicyText, splitServiceCall,
} from '../../src/policy';

const DIR = '/etc/qubes/policy.d';

const qube = (type: string, extra: Record<string, unknown> = {}) => ({
  type, tags: [] as string[], default_dispvm: 'default-dvm', template_for_dispvms: false, power_state: 'Running', uuid: undefined as string | undefined, ...extra,
});

const SYSTEM: SystemInfo = {
  domains: {
    dom0: qube('AdminVM', { uuid: '00000000-0000-0000-0000-000000000000', default_dispvm: null }),
    work: qube('AppVM', { tags: ['trusted'], uuid: '11111111-1111-1111-1111-111111111111' }),
    vault: qube('AppVM', { power_state: 'Halted', uuid: '22222222-2222-2222-2222-222222222222', default_dispvm: null }),
    personal: qube('AppVM', { uuid: '33333333-3333-3333-3333-333333333333' }),
    untrusted: qube('AppVM', { tags: ['risky'] }),
    'default-dvm': qube('AppVM', { template_for_dispvms: true, power_state: 'Halted', uuid: '44444444-4444-4444-4444-444444444444' }),
    'sys-usb': qube('AppVM', { internal: true }),
    constructor: qube('AppVM'),
  },
};

const req = (source: string, target: string, call = 'qubes.Filecopy'): PolicyRequest => ({ ...splitServiceCall(call), source, target });
const policyOf = (files: Record<string, string>): Policy => loadPolicyDir(new MemoryPolicyFs(Object.fromEntries(Object.entries(files).map(([n, t]) => [`${DIR}/${n}`, t]))), DIR);
const decide = (p: Policy, source: string, target: string, call?: string) => evaluate(p, req(source, target, call), SYSTEM);

describe('rule order', () => {
  test('the first matching rule wins, whichever way it decides', () => {
    const allowFirst = parsePolicyText('qubes.Filecopy * work vault allow\nqubes.Filecopy * @anyvm @anyvm deny\n');
    const denyFirst = parsePolicyText('qubes.Filecopy * @anyvm @anyvm deny\nqubes.Filecopy * work vault allow\n');
    assert.equal(decide(allowFirst, 'work', 'vault').result, 'allow');
    const d = decide(denyFirst, 'work', 'vault');
    assert.equal(d.result, 'deny');
    assert.deepEqual(d.rule, { file: '<policy>', line: 1 });
  });

  test('no matching rule denies, and notifies', () => {
    const d = decide(parsePolicyText('qubes.Other * @anyvm @anyvm allow\n'), 'work', 'vault');
    assert.deepEqual([d.result, d.stage, d.reason, d.notify, d.rule], ['deny', 'match', 'no matching rule found', true, null]);
    assert.equal(decide(emptyPolicy(), 'work', 'vault').result, 'deny');
  });

  test('argument matching is exact: +foo does not match +foobar, * matches any', () => {
    const p = parsePolicyText('svc +foo @anyvm @anyvm allow\nsvc + @anyvm @anyvm ask\nsvc * @anyvm @anyvm deny notify=no\n');
    assert.equal(decide(p, 'work', 'vault', 'svc+foo').result, 'allow');
    assert.equal(decide(p, 'work', 'vault', 'svc+foobar').result, 'deny');
    assert.equal(decide(p, 'work', 'vault', 'svc').result, 'ask');
    assert.equal(decide(p, 'work', 'vault', 'svc+').result, 'ask');
  });

  test('files are read in code-point order of their names, so 9- comes after 10-', () => {
    const p = policyOf({ '9-late.policy': 'qubes.Filecopy * @anyvm @anyvm allow\n', '10-early.policy': 'qubes.Filecopy * @anyvm @anyvm deny\n' });
    assert.deepEqual(p.files, [`${DIR}/10-early.policy`, `${DIR}/9-late.policy`]);
    assert.equal(decide(p, 'work', 'vault').result, 'deny');
  });

  test('a file in the first directory hides the same name in a later one (/run before /etc)', () => {
    const fs = new MemoryPolicyFs({ '/run/qubes/policy.d/30-user.policy': 'x * @anyvm @anyvm allow\n', [`${DIR}/30-user.policy`]: 'x * @anyvm @anyvm deny\n', [`${DIR}/90-default.policy`]: 'y * @anyvm @anyvm deny\n' });
    const p = loadPolicyDir(fs, ['/run/qubes/policy.d', DIR]);
    assert.deepEqual(p.files, ['/run/qubes/policy.d/30-user.policy', `${DIR}/90-default.policy`]);
  });

  test('!include splices the included rules at the directive, in order', () => {
    const p = policyOf({
      '30-user.policy': 'a * @anyvm @anyvm deny\n!include include/mid\nc * @anyvm @anyvm deny\n',
      'include/mid': 'b1 * @anyvm @anyvm deny\n!include-dir include/more\nb2 * @anyvm @anyvm deny\n',
      'include/more/20-y.policy': 'y * @anyvm @anyvm deny\n',
      'include/more/10-x.policy': 'x * @anyvm @anyvm deny\n',
    });
    assert.deepEqual(p.rules.map((r) => r.service), ['a', 'b1', 'x', 'y', 'b2', 'c']);
    assert.equal(decide(p, 'work', 'vault', 'x').rule_index, 2);
  });

  test('relative includes resolve against the policy directory, even from an included file', () => {
    const p = policyOf({ '30-user.policy': '!include include/a\n', 'include/a': '!include include/b\n', 'include/b': 'b * @anyvm @anyvm allow\n' });
    assert.deepEqual(p.files, [`${DIR}/30-user.policy`, `${DIR}/include/a`, `${DIR}/include/b`]);
  });

  test('!include-service scopes the old-syntax rules to that service and argument', () => {
    const p = policyOf({ '30-user.policy': '!include-service qubes.Filecopy +x include/fc\n* * @anyvm @anyvm deny\n', 'include/fc': '$anyvm $anyvm allow\n' });
    assert.equal(decide(p, 'work', 'vault', 'qubes.Filecopy+x').result, 'allow');
    assert.equal(decide(p, 'work', 'vault', 'qubes.Filecopy+y').result, 'deny');
    assert.equal(decide(p, 'work', 'vault', 'qubes.OpenURL+x').result, 'deny');
  });
});

describe('allow', () => {
  test('a redirect is not checked against the rules again', () => {
    const p = parsePolicyText('qubes.Filecopy * work vault deny\nqubes.Filecopy * work @default allow target=vault\n');
    assert.equal(decide(p, 'work', 'vault').result, 'deny');
    const r = decide(p, 'work', '');
    assert.deepEqual([r.result, r.target, r.requested_target], ['allow', 'vault', '@default']);
  });

  test('a target that is no qube is treated as @default, so its existence does not leak', () => {
    const p = parsePolicyText('qubes.Filecopy * work @anyvm allow\n');
    const real = decide(p, 'work', 'personal');
    const ghost = decide(p, 'work', 'ghost');
    assert.equal(real.result, 'allow');
    assert.deepEqual([ghost.result, ghost.requested_target], ['deny', '@default']);
  });

  test('@dispvm becomes a disposable of the source\'s default_dispvm, dom0 spellings become dom0', () => {
    const p = parsePolicyText('qubes.OpenURL * @anyvm @dispvm allow\nqubes.GetDate * @anyvm @anyvm allow target=@adminvm\n');
    const r = decide(p, 'work', '@dispvm', 'qubes.OpenURL');
    assert.equal(r.target, '@dispvm:default-dvm');
    assert.deepEqual(r.daemon_response, ['user=DEFAULT', 'result=allow', 'target=@dispvm:default-dvm', 'target_uuid=@dispvm:uuid:44444444-4444-4444-4444-444444444444', 'autostart=True', 'requested_target=@dispvm']);
    assert.equal(decide(p, 'vault', '@dispvm', 'qubes.OpenURL').reason, "policy define 'allow' action to @dispvm at <policy>:1 but no DispVM base is set for this VM");
    assert.equal(decide(p, 'work', 'personal', 'qubes.GetDate').target, 'dom0');
  });

  test('autostart=no refuses a halted target and any disposable, not a running one', () => {
    const p = parsePolicyText('svc * @anyvm @anyvm allow autostart=no\n');
    assert.equal(decide(p, 'work', 'personal', 'svc').result, 'allow');
    assert.equal(decide(p, 'work', 'vault', 'svc').result, 'deny');
    assert.equal(decide(p, 'work', '@dispvm:default-dvm', 'svc').result, 'deny');
  });

  test('a call to itself is allowed by policy but refused at execution (no loopback)', () => {
    const r = decide(parsePolicyText('svc * @anyvm @anyvm allow\n'), 'work', 'work', 'svc');
    assert.equal(r.result, 'allow');
    assert.equal(r.execute_error, 'loopback qrexec connection not supported');
    assert.deepEqual(daemonResponse(r), ['result=deny']);
  });

  test('user= reaches the daemon reply; uuids match names both ways', () => {
    const p = parsePolicyText('svc * uuid:11111111-1111-1111-1111-111111111111 personal allow user=root\n');
    const r = decide(p, 'work', 'uuid:33333333-3333-3333-3333-333333333333', 'svc');
    assert.deepEqual(r.daemon_response, ['user=root', 'result=allow', 'target=uuid:33333333-3333-3333-3333-333333333333', 'target_uuid=uuid:33333333-3333-3333-3333-333333333333', 'autostart=True', 'requested_target=uuid:33333333-3333-3333-3333-333333333333']);
  });
});

describe('ask', () => {
  test('an earlier deny removes a target from the choices; a later deny does not', () => {
    const earlierDeny = parsePolicyText('svc * work vault deny\nsvc * work @anyvm ask\n');
    const laterDeny = parsePolicyText('svc * work @anyvm ask\nsvc * work vault deny\n');
    assert.ok(!decide(earlierDeny, 'work', 'personal', 'svc').targets_for_ask!.includes('vault'));
    assert.ok(decide(laterDeny, 'work', 'personal', 'svc').targets_for_ask!.includes('vault'));
  });

  test('choices exclude the source, dom0 for @anyvm, and internal qubes; include a redirect\'s target', () => {
    const p = parsePolicyText('svc * work @anyvm ask\nsvc * work @default allow target=dom0\n');
    const r = decide(p, 'work', 'vault', 'svc');
    assert.deepEqual(r.targets_for_ask, ['@dispvm:default-dvm', 'constructor', 'default-dvm', 'dom0', 'personal', 'untrusted', 'vault']);
    assert.equal(r.default_target, null);
  });

  test('the answer must be one of the choices; a refusal notifies only if the rule says so', () => {
    const p = parsePolicyText('svc * work @anyvm ask default_target=vault\n');
    const asked = decide(p, 'work', 'vault', 'svc');
    assert.equal(asked.default_target, 'vault');
    assert.deepEqual(answerAsk(asked, { allow: true, target: 'vault' }, SYSTEM).target, 'vault');
    const bad = answerAsk(asked, { allow: true, target: 'work' }, SYSTEM);
    assert.deepEqual([bad.result, bad.reason, bad.notify], ['deny', 'target work is not a valid choice', true]);
    const no = answerAsk(asked, { allow: false }, SYSTEM);
    assert.deepEqual([no.result, no.stage, no.notify], ['deny', 'user', false]);
    assert.throws(() => answerAsk({ ...asked }, { allow: true, target: 'vault' }, SYSTEM), TypeError);
  });

  test('without a dialog, ask denies; with assume-yes it allows the requested target if offered', () => {
    const p = parsePolicyText('qubes.ClipboardPaste * @anyvm @anyvm ask\n');
    const call = req('work', 'personal', 'qubes.ClipboardPaste');
    assert.equal(evaluateNonInteractive(p, call, SYSTEM).result, 'deny');
    assert.equal(evaluateNonInteractive(p, call, SYSTEM, { assumeYesForAsk: true }).result, 'allow');
    assert.equal(evaluateNonInteractive(p, req('work', '', 'qubes.ClipboardPaste'), SYSTEM, { assumeYesForAsk: true }).result, 'deny');
  });
});

describe('requests and system info', () => {
  test('malformed service calls are denied before any rule is read', () => {
    const p = parsePolicyText('* * @anyvm @anyvm allow\n');
    for (const [service, argument] of [['', '+'], ['a b', '+'], ['svc', 'x'], ['svc', '+a/b'], ['svc', '+' + 'a'.repeat(300)]]) {
      const r = evaluate(p, { service, argument, source: 'work', target: 'vault' }, SYSTEM);
      assert.deepEqual([r.result, r.stage], ['deny', 'request'], `${service}${argument}`);
    }
  });

  test('a relay speaks for its RemoteVM only', () => {
    const system: SystemInfo = { domains: { ...SYSTEM.domains, remote: qube('RemoteVM', { relayvm: 'work', transport_rpc: 'qubesair.SSHProxy' }) } };
    const p = parsePolicyText('svc * remote vault allow\n');
    assert.equal(evaluate(p, { service: 'svc', argument: '+', source: 'work', target: 'vault', requested_source: 'remote' }, system).result, 'allow');
    const r = evaluate(p, { service: 'svc', argument: '+', source: 'personal', target: 'vault', requested_source: 'remote' }, system);
    assert.deepEqual([r.result, r.reason], ['deny', 'personal is not a relay for remote']);
  });

  test('a qube named like an Object.prototype member is just a qube', () => {
    const p = parsePolicyText('svc * work constructor allow\n');
    assert.equal(decide(p, 'work', 'constructor', 'svc').result, 'allow');
    assert.equal(decide(p, 'work', 'toString', 'svc').requested_target, '@default');
  });

  test('broken system info denies instead of throwing', () => {
    const broken = { domains: { work: { type: 'AppVM' } } } as unknown as SystemInfo;
    const r = evaluate(parsePolicyText('svc * @tag:x @anyvm allow\n'), req('work', 'work', 'svc'), broken);
    assert.equal(r.result, 'deny');
  });
});

describe('!compat-4.0', () => {
  const COMPAT = '/etc/qubes-rpc/policy';
  const load = (files: Record<string, string>) =>
    loadPolicyDir(new MemoryPolicyFs({ [`${DIR}/35-compat.policy`]: '!compat-4.0\n', [`${DIR}/90-default.policy`]: '* * @anyvm @anyvm allow\n', ...files }), DIR, { compatDir: COMPAT });

  test('an argument-specific v4 file ends in the implicit deny; a generic one falls through', () => {
    const p = load({ [`${COMPAT}/svc+arg`]: 'work vault allow\n', [`${COMPAT}/other`]: 'work vault deny\n', [`${COMPAT}/bad~`]: 'ignored' });
    assert.equal(decide(p, 'work', 'vault', 'svc+arg').result, 'allow');
    assert.equal(decide(p, 'personal', 'vault', 'svc+arg').result, 'deny');
    assert.equal(decide(p, 'personal', 'vault', 'svc+other').result, 'allow');
    assert.equal(decide(p, 'work', 'vault', 'other').result, 'deny');
    assert.equal(decide(p, 'personal', 'vault', 'other').result, 'allow');
  });

  test('a missing compat directory fails the policy, as in Qubes', () => {
    assert.throws(() => loadPolicyDir(new MemoryPolicyFs({ [`${DIR}/35-compat.policy`]: '!compat-4.0\n' }), DIR, { compatDir: COMPAT }), /35-compat.policy:1: cannot list/);
  });
});
