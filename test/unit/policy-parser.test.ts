// The policy grammar, rule by rule: a table of bad lines (each with why it must fail and where the
// error must point), bad directives and file names, and the lines that must load.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MemoryPolicyFs, PolicySyntaxError, formatRule, loadPolicyDir, parsePolicyText } from '../../src/policy';

const DIR = '/etc/qubes/policy.d';
const FILE = `${DIR}/30-user.policy`;
// Two good lines first, so every bad line is line 3 and the error must say so.
const HEAD = '# user rules\nqubes.Filecopy * work vault allow\n';

function expectRefused(files: Record<string, string>, file: string, line: number, reason: string | RegExp): void {
  assert.throws(
    () => loadPolicyDir(new MemoryPolicyFs(files), DIR),
    (e: unknown) => {
      assert.ok(e instanceof PolicySyntaxError, String(e));
      assert.equal(e.file, file);
      assert.equal(e.line, line);
      if (typeof reason === 'string') assert.equal(e.reason, reason);
      else assert.match(e.reason, reason);
      assert.equal(e.message, `${e.file}:${e.line}: ${e.reason}`);
      return true;
    },
  );
}

// [bad line, reason Isola (and Qubes) gives, why it must fail]
const BAD_LINES: [string, string, string][] = [
  // --- field count
  ['qubes.Filecopy * @anyvm @anyvm', 'wrong number of fields', 'no action: a rule has at least 5 fields'],
  ['qubes.Filecopy *', 'wrong number of fields', 'only service and argument'],
  ['qubes.Filecopy', 'wrong number of fields', 'a lone word is neither a rule nor a directive'],
  // --- service and argument
  ['qubes.Filecopy+arg * @anyvm @anyvm allow', "service 'qubes.Filecopy+arg' contains invalid characters: ('+',)", 'the argument has its own column; + in the service is ambiguous'],
  ['qubes.File$copy * @anyvm @anyvm allow', "service 'qubes.File$copy' contains invalid characters: ('$',)", 'service names are [A-Za-z0-9._-]'],
  ['qubes.Filecopy arg @anyvm @anyvm allow', "argument 'arg' does not start with +", 'an argument is written +ARG'],
  ['qubes.Filecopy +a/b @anyvm @anyvm allow', "argument '+a/b' contains invalid characters: ('/',)", 'arguments are [A-Za-z0-9+._-]'],
  ['* +arg @anyvm @anyvm allow', 'only * argument allowed for * service', 'an argument of any service is meaningless'],
  // --- source tokens
  ['qubes.Filecopy * @default @anyvm allow', "invalid source token: '@default'", '@default is what a caller asks for, never a caller'],
  ['qubes.Filecopy * @dispvm @anyvm allow', "invalid source token: '@dispvm'", 'a disposable yet to be created calls nothing'],
  ['qubes.Filecopy * @invalid @anyvm allow', "invalid source token: '@invalid'", 'unknown keyword'],
  ['qubes.Filecopy * @tag: @anyvm allow', "invalid empty @tag: token: '@tag:'", 'a tag needs a name'],
  ['qubes.Filecopy * @type: @anyvm allow', "invalid empty @type: token: '@type:'", 'a type needs a name'],
  ['qubes.Filecopy * @dispvm: @anyvm allow', "invalid empty @dispvm: token: '@dispvm:'", 'a disposable template needs a name'],
  ['qubes.Filecopy * @dispvm:@tag: @anyvm allow', "invalid empty @dispvm:@tag: token: '@dispvm:@tag:'", 'a tag needs a name'],
  ['qubes.Filecopy * @dispvm:@type:AppVM @anyvm allow', "invalid source token: '@dispvm:@type:AppVM'", '@dispvm:@… is only @dispvm:@tag:'],
  ['qubes.Filecopy * @uuid:d8a249f1-b02b-4944-a9e5-437def2fbe2c @anyvm allow', "invalid source token: '@uuid:d8a249f1-b02b-4944-a9e5-437def2fbe2c'", 'uuids are written uuid:U, without @'],
  ['qubes.Filecopy * uuid: @anyvm allow', "invalid empty uuid: token: 'uuid:'", 'a uuid needs a value'],
  // --- target tokens
  ['qubes.Filecopy * @anyvm @invalid allow', "invalid target token: '@invalid'", 'unknown keyword'],
  ['qubes.Filecopy * @anyvm @tag: deny', "invalid empty @tag: token: '@tag:'", 'a tag needs a name'],
  ['qubes.Filecopy * @anyvm @dispvm:@foo allow', "invalid target token: '@dispvm:@foo'", '@dispvm:@… is only @dispvm:@tag:'],
  ['qubes.Filecopy * @anyvm @adminvm:x allow', "invalid target token: '@adminvm:x'", '@adminvm takes no value'],
  // --- redirect tokens (target=, default_target=)
  ['qubes.Filecopy * @anyvm @anyvm allow target=@anyvm', "invalid redirect token: '@anyvm'", 'a call goes to one qube, not a set'],
  ['qubes.Filecopy * @anyvm @anyvm allow target=*', "invalid redirect token: '*'", 'a call goes to one qube, not a set'],
  ['qubes.Filecopy * @anyvm @anyvm allow target=@tag:work', "invalid redirect token: '@tag:work'", 'a call goes to one qube, not a set'],
  ['qubes.Filecopy * @anyvm @anyvm allow target=@type:AppVM', "invalid redirect token: '@type:AppVM'", 'a call goes to one qube, not a set'],
  ['qubes.Filecopy * @anyvm @anyvm allow target=@default', "invalid redirect token: '@default'", 'redirecting to "no target" means nothing'],
  ['qubes.Filecopy * @anyvm @anyvm allow target=@dispvm:@tag:work', "invalid redirect token: '@dispvm:@tag:work'", 'which template would be used is undecided'],
  ['qubes.Filecopy * @anyvm @anyvm allow target=', "invalid redirect token: ''", 'an empty target'],
  ['qubes.Filecopy * @anyvm @anyvm ask default_target=@anyvm', "invalid redirect token: '@anyvm'", 'the preselected choice is one qube'],
  // --- actions
  ['qubes.Filecopy * @anyvm @anyvm permit', 'invalid action: permit', 'actions are allow, deny, ask'],
  ['qubes.Filecopy * @anyvm @anyvm Allow', 'invalid action: Allow', 'actions are lower case'],
  ['qubes.Filecopy * @anyvm @anyvm allow,target=vault', 'invalid action: allow,target=vault', 'v5 separates parameters with spaces, not commas'],
  // --- parameters per action
  ['qubes.Filecopy * @anyvm @anyvm deny target=vault', "invalid parameters for action Deny: ['target=vault']", 'a denied call goes nowhere'],
  ['qubes.Filecopy * @anyvm @anyvm deny user=root', "invalid parameters for action Deny: ['user=root']", 'a denied call runs as nobody'],
  ['qubes.Filecopy * @anyvm @anyvm deny default_target=vault', "invalid parameters for action Deny: ['default_target=vault']", 'nothing is asked'],
  ['qubes.Filecopy * @anyvm @anyvm deny autostart=no', "invalid parameters for action Deny: ['autostart=no']", 'nothing is started'],
  ['qubes.Filecopy * @anyvm @anyvm allow default_target=vault', "invalid parameters for action Allow: ['default_target=vault']", 'only ask shows a choice'],
  ['qubes.Filecopy * @anyvm @anyvm allow invalid=xx', "invalid parameters for action Allow: ['invalid=xx']", 'unknown parameter'],
  ['qubes.Filecopy * @anyvm @anyvm ask colour=red', "invalid parameters for action Ask: ['colour=red']", 'unknown parameter'],
  ['qubes.Filecopy * @anyvm @anyvm allow notify', "invalid action parameter syntax: 'notify'", 'parameters are key=value'],
  ['qubes.Filecopy * @anyvm @anyvm allow notify=xx', "'notify' is 'xx', but can be only 'yes' or 'no'", 'booleans are yes or no'],
  ['qubes.Filecopy * @anyvm @anyvm ask autostart=maybe', "'autostart' is 'maybe', but can be only 'yes' or 'no'", 'booleans are yes or no'],
  ['qubes.Filecopy * @anyvm @anyvm deny notify=1', "'notify' is '1', but can be only 'yes' or 'no'", 'booleans are yes or no'],
  ['qubes.Filecopy * @anyvm @anyvm allow target=vault target=work', "parameter given twice: 'target'", 'which one would win is a trap'],
  ['qubes.Filecopy * @anyvm @anyvm ask notify=yes notify=no', "parameter given twice: 'notify'", 'which one would win is a trap'],
  // --- comments
  ['qubes.Filecopy * @anyvm @anyvm allow # trusted', "invalid action parameter syntax: '#'", 'no inline comments: # is a word like any other'],
  ['qubes.Filecopy * @anyvm @anyvm deny #no-notify', "invalid action parameter syntax: '#no-notify'", 'no inline comments'],
  // --- special cases
  ['qubes.Filecopy * @anyvm @default allow', 'allow action for @default rule must specify target= option', 'allowing "no target" would leave the call nowhere to go'],
  // --- directives
  ['!include', 'invalid number of params', '!include takes one path'],
  ['!include a b', 'invalid number of params', '!include takes one path'],
  ['!include-dir', 'invalid number of params', '!include-dir takes one path'],
  ['!include-service qubes.Filecopy * ', 'invalid number of params', '!include-service takes service, argument and path'],
  ['!include-service qubes.Filecopy * a b', 'invalid number of params', '!include-service takes service, argument and path'],
  ['!include-service * +arg include/x', 'only * argument allowed for * service', 'the scope is checked like a rule\'s'],
  ['!include-service qubes+Filecopy * include/x', "service 'qubes+Filecopy' contains invalid characters: ('+',)", 'the scope is checked like a rule\'s'],
  ['!compat-4.0 now', 'invalid number of params', '!compat-4.0 takes nothing'],
  ['!bogus x', 'invalid directive', 'unknown directive'],
  ['! include x', 'invalid directive', 'the directive is one word'],
  ['!include no-such-file', `not a file: ${DIR}/no-such-file`, 'a missing include would silently drop rules'],
  ['!include include', `not a file: ${DIR}/include`, 'a directory is not a file'],
  ['!include-dir no-such-dir', `not a directory: ${DIR}/no-such-dir`, 'a missing directory would silently drop rules'],
  ['!include-service qubes.Filecopy * no-such-file', `not a file: ${DIR}/no-such-file`, 'a missing include would silently drop rules'],
];

describe('a bad line refuses the whole policy, naming FILE:LINE', () => {
  for (const [line, reason, why] of BAD_LINES) {
    test(`${JSON.stringify(line)} fails: ${why}`, () => {
      expectRefused({ [FILE]: HEAD + line + '\n', [`${DIR}/90-default.policy`]: '* * @anyvm @anyvm deny\n', [`${DIR}/include/admin`]: '' }, FILE, 3, reason);
    });
  }
});

describe('errors inside included files', () => {
  test('name the included file and its own line', () => {
    const files = { [FILE]: HEAD + '!include include/extra\n', [`${DIR}/include/extra`]: 'qubes.Filecopy * work vault allow\n\nqubes.Filecopy * work vault maybe\n' };
    expectRefused(files, `${DIR}/include/extra`, 3, 'invalid action: maybe');
  });

  test('an old-syntax file with too few fields fails where the line is', () => {
    const files = { [FILE]: HEAD + '!include-service qubes.Filecopy * include/old\n', [`${DIR}/include/old`]: '$anyvm $anyvm ask\nwork\n' };
    expectRefused(files, `${DIR}/include/old`, 2, 'wrong number of fields');
  });

  test('an old-syntax file allows only !include', () => {
    const files = { [FILE]: HEAD + '!include-service qubes.Filecopy * include/old\n', [`${DIR}/include/old`]: '!include-dir include\n' };
    expectRefused(files, `${DIR}/include/old`, 1, 'invalid directive');
  });

  test('an old-syntax !include takes one path', () => {
    const files = { [FILE]: HEAD + '!include-service qubes.Filecopy * include/old\n', [`${DIR}/include/old`]: '$include:a $include:b\n' };
    expectRefused(files, `${DIR}/include/old`, 1, 'invalid number of params');
  });

  test('an include loop is refused instead of recursing forever', () => {
    const files = { [FILE]: HEAD + '!include include/a\n', [`${DIR}/include/a`]: '!include include/b\n', [`${DIR}/include/b`]: '!include include/a\n' };
    expectRefused(files, `${DIR}/include/b`, 1, /^include loop: /);
  });

  test('a file in an included directory is checked like any policy file', () => {
    const files = { [FILE]: HEAD + '!include-dir include\n', [`${DIR}/include/10-a.policy`]: 'x * @anyvm @anyvm deny\n', [`${DIR}/include/20-b.policy`]: 'x * @anyvm @anyvm alow\n' };
    expectRefused(files, `${DIR}/include/20-b.policy`, 1, 'invalid action: alow');
  });
});

describe('file names', () => {
  // [name, why a *.policy file with it must fail everything]
  const BAD_NAMES: [string, string][] = [
    ['30-User.policy', 'upper case is outside [0-9a-z_.-]: a name that sorts unexpectedly is refused'],
    ['30 user.policy', 'a space'],
    ['30+user.policy', 'a plus'],
    ['30-usér.policy', 'non-ASCII'],
  ];
  for (const [name, why] of BAD_NAMES) {
    test(`${JSON.stringify(name)} fails the whole policy: ${why}`, () => {
      expectRefused({ [FILE]: HEAD, [`${DIR}/${name}`]: '* * @anyvm @anyvm allow\n' }, `${DIR}/${name}`, 0, /^invalid file name/);
    });
  }

  test('a bad name inside an !include-dir directory fails too', () => {
    const files = { [FILE]: HEAD + '!include-dir include\n', [`${DIR}/include/Bad.policy`]: '' };
    expectRefused(files, `${DIR}/include/Bad.policy`, 0, /^invalid file name/);
  });

  test('files that are not *.policy, hidden files and directories are ignored, not refused', () => {
    const fs = new MemoryPolicyFs({
      [FILE]: HEAD,
      [`${DIR}/README`]: 'not policy at all',
      [`${DIR}/.30-user.policy.swp`]: 'garbage',
      [`${DIR}/.Hidden.policy`]: 'garbage',
      [`${DIR}/30-user.policy~`]: 'garbage',
      [`${DIR}/50-Config.policy.rpmnew`]: 'garbage',
      [`${DIR}/sub.policy/x`]: 'garbage',
    });
    const policy = loadPolicyDir(fs, DIR);
    assert.deepEqual(policy.files, [FILE]);
    assert.equal(policy.rules.length, 1);
  });

  test('a missing policy directory is an error, not an empty (allow-nothing) policy', () => {
    assert.throws(() => loadPolicyDir(new MemoryPolicyFs({}), DIR), (e: unknown) => e instanceof PolicySyntaxError && e.file === DIR && e.line === 0);
  });
});

describe('lines that load', () => {
  test('comments, blank lines, tabs and runs of spaces', () => {
    const p = parsePolicyText('# comment\n\n   # indented comment\nqubes.Filecopy\t*   work\t\tvault  ask  default_target=vault\r\n');
    assert.equal(p.rules.length, 1);
    assert.equal(formatRule(p.rules[0]), 'qubes.Filecopy * work vault ask default_target=vault');
    assert.equal(p.rules[0].line, 4);
  });

  test('defaults: deny notifies, allow and ask do not; autostart is on', () => {
    const p = parsePolicyText('a * @anyvm @anyvm deny\nb * @anyvm @anyvm allow\nc * @anyvm @anyvm ask\nd * @anyvm @anyvm allow notify=yes autostart=no user=root\n');
    assert.deepEqual(p.rules.map((r) => [r.action.notify, r.action.autostart, r.action.user]), [[true, true, null], [false, true, null], [false, true, null], [true, false, 'root']]);
  });

  test('+ alone is the empty argument, distinct from *', () => {
    const p = parsePolicyText('qubes.Svc + @anyvm @anyvm allow\nqubes.Svc * @anyvm @anyvm deny\n');
    assert.equal(p.rules[0].argument, '+');
    assert.equal(p.rules[1].argument, null);
  });

  test('every token is accepted where Qubes accepts it', () => {
    const p = parsePolicyText([
      'a * * * allow',
      'a * @anyvm @default allow target=dom0',
      'a * @adminvm @dispvm allow',
      'a * dom0 @dispvm:default-dvm allow target=@dispvm:uuid:f3e538bd-4427-4697-bed7-45ef3270df21',
      'a * @tag:work @dispvm:@tag:disp ask default_target=@dispvm',
      'a * @type:AppVM uuid:c9024a97-9b15-46cc-8341-38d75d5d421b allow target=@adminvm',
      'a * @dispvm:default-dvm @type:TemplateVM deny notify=no',
    ].join('\n'));
    assert.equal(p.rules.length, 7);
  });

  test('the old 3-column syntax: $ keywords, comma parameters, $include: keeps the scope', () => {
    const fs = new MemoryPolicyFs({
      [FILE]: '!include-service qubes.Filecopy +x include/old\n',
      [`${DIR}/include/old`]: '# v4\nwork $dispvm allow,target=$dispvm:default-dvm\n$include:include/older\n',
      [`${DIR}/include/older`]: '$anyvm $anyvm ask,default_target=vault\n',
    });
    const p = loadPolicyDir(fs, DIR);
    assert.deepEqual(p.rules.map(formatRule), [
      'qubes.Filecopy +x work @dispvm allow target=@dispvm:default-dvm',
      'qubes.Filecopy +x @anyvm @anyvm ask default_target=vault',
    ]);
    assert.deepEqual(p.rules.map((r) => `${r.file}:${r.line}`), [`${DIR}/include/old:2`, `${DIR}/include/older:1`]);
  });
});
