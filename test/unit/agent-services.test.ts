// How a qube's agent turns `QUBESRPC SERVICE+ARG SOURCE` into a program: Qubes' search path and
// preference for SERVICE+ARG, Qubes' environment, and refusal of anything a shell could misread.

import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { serviceProgram } from '../../src/agent/services';

const root = mkdtempSync(path.join(os.tmpdir(), 'isola-services-'));
const [run, etc] = [path.join(root, 'run'), path.join(root, 'etc')];
for (const d of [run, etc]) mkdirSync(d);
const put = (dir: string, name: string, mode = 0o755) => {
  writeFileSync(path.join(dir, name), '#!/bin/sh\n');
  chmodSync(path.join(dir, name), mode);
};
put(etc, 'test.Echo');
put(etc, 'test.Echo+special');
put(run, 'test.Override');
put(etc, 'test.Override');
put(etc, 'test.NotExecutable', 0o644);
after(() => rmSync(root, { recursive: true, force: true }));
const dirs = [run, etc];

test('runs SERVICE with the argument as $1 and Qubes environment', () => {
  assert.deepEqual(serviceProgram('QUBESRPC test.Echo+abc work', dirs), {
    argv: [path.join(etc, 'test.Echo'), 'abc'],
    env: { QREXEC_REMOTE_DOMAIN: 'work', QREXEC_SERVICE_ARGUMENT: 'abc', QREXEC_SERVICE_FULL_NAME: 'test.Echo+abc' },
  });
});

test('prefers SERVICE+ARG, and earlier directories of the path', () => {
  assert.deepEqual((serviceProgram('QUBESRPC test.Echo+special work', dirs) as { argv: string[] }).argv, [path.join(etc, 'test.Echo+special'), 'special']);
  assert.deepEqual((serviceProgram('QUBESRPC test.Override+ work', dirs) as { argv: string[] }).argv, [path.join(run, 'test.Override')]);
});

const BAD: [string, string, number][] = [
  ['QUBESRPC test.Missing+ work', 'no such service: 127 as in Qubes', 127],
  ['QUBESRPC test.NotExecutable+ work', 'not executable: treated as missing', 127],
  ['QUBESRPC test.Echo+a;rm work', 'shell metacharacter in the argument', 125],
  ['QUBESRPC test/../x+ work', 'path in the service name', 125],
  ['QUBESRPC test.Echo+ wo$rk', 'impossible qube name as source', 125],
  ['QUBESRPC test.Echo+', 'no source', 125],
  ['QUBESRPC  test.Echo+ work', 'empty field', 125],
  ['QUBESRPC test.Echo+ work extra', 'extra field', 125],
  ['QUBESRPC +arg work', 'empty service name', 125],
];
for (const [cmd, why, code] of BAD) {
  test(`refuses ${JSON.stringify(cmd)}: ${why}`, () => {
    const r = serviceProgram(cmd, dirs);
    assert.ok('error' in r, JSON.stringify(r));
    assert.equal(r.exitCode, code);
  });
}

test('a unix socket at the service path is a socket-based service: the descriptor names service, argument and source', async () => {
  const { createServer } = await import('node:net');
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(path.join(etc, 'test.Socket'), resolve));
  try {
    const r = serviceProgram('QUBESRPC test.Socket+abc work', dirs);
    assert.ok('socket' in r, JSON.stringify(r));
    assert.equal(r.socket, path.join(etc, 'test.Socket'));
    assert.equal(r.descriptor.toString(), 'test.Socket+abc work\0');
  } finally {
    server.close();
  }
});

test("a user's groups come from /etc/group member lists, hostile lines ignored", async () => {
  const { supplementaryGroups } = await import('../../src/agent/exec');
  const group = path.join(root, 'group');
  writeFileSync(group, [
    'root:x:0:',
    'sudo:x:27:user,other',
    'audio:x:29:other,user',
    'userish:x:30:users,user2',
    'broken:x:notanumber:user',
    'short:x:31',
    '',
    'user:x:1000:',
  ].join('\n'));
  const user = { name: 'user', uid: 1000, gid: 1000, home: '/home/user', shell: '/bin/sh' };
  assert.deepEqual(supplementaryGroups(user, group).sort((a, b) => a - b), [27, 29, 1000]);
  assert.deepEqual(supplementaryGroups(user, path.join(root, 'missing')), [1000], 'no /etc/group: the primary group only');
});

test("a service's rpc-config force-user decides who runs it (Qubes: qubes.VMRootShell is root whoever asked)", () => {
  const cfgQube = path.join(root, 'cfg-qube');
  const cfgBuiltin = path.join(root, 'cfg-builtin');
  for (const d of [cfgQube, cfgBuiltin]) mkdirSync(d);
  writeFileSync(path.join(cfgBuiltin, 'test.Echo'), "# built-in\nforce-user = 'root'\n");
  assert.equal((serviceProgram('QUBESRPC test.Echo+x dom0', dirs, [cfgQube, cfgBuiltin]) as { forceUser?: string }).forceUser, 'root');
  writeFileSync(path.join(cfgQube, 'test.Echo+x'), 'wait-for-session = 1\nforce-user="alice"  # the qube says so\n');
  assert.equal((serviceProgram('QUBESRPC test.Echo+x dom0', dirs, [cfgQube, cfgBuiltin]) as { forceUser?: string }).forceUser, 'alice', "the qube's own config comes first, SERVICE+ARG before SERVICE");
  assert.equal((serviceProgram('QUBESRPC test.Override+ dom0', dirs, [cfgQube, cfgBuiltin]) as { forceUser?: string }).forceUser, undefined, 'no config: the caller’s user');
  writeFileSync(path.join(cfgQube, 'test.Echo'), 'force-user = "root; rm -rf /"\n');
  const bad = serviceProgram('QUBESRPC test.Echo+ dom0', dirs, [cfgQube, cfgBuiltin]);
  assert.ok('error' in bad, 'a broken config does not run the service (fail closed)');
});
