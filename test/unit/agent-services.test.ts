// How the qube's agent (the compiled isola-agent) turns `QUBESRPC SERVICE+ARG SOURCE` into a program:
// Qubes' search path and preference for SERVICE+ARG, Qubes' environment, rpc-config force-user read
// fail-closed, socket services, the user's groups, and the exit codes and messages of what fails.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { AgentUnderTest, haveAgent } from './c-agent';

const isRoot = process.getuid?.() === 0;
const agent = new AgentUnderTest();
const root = agent.dir;
const [run, etc, cfgQube, cfgBuiltin] = ['run', 'etc', 'cfg-qube', 'cfg-builtin'].map((d) => path.join(root, d));
const put = (dir: string, name: string, body = 'echo "$0 $*"', mode = 0o755) => {
  writeFileSync(path.join(dir, name), `#!/bin/sh\n${body}\n`);
  chmodSync(path.join(dir, name), mode);
};
const passwd = path.join(root, 'passwd');
const group = path.join(root, 'group');
const servers: Server[] = [];

describe('the agent runs qrexec services', { skip: !haveAgent && 'build the agent first (scripts/build.sh)' }, () => {
  before(async () => {
    for (const d of [run, etc, cfgQube, cfgBuiltin]) mkdirSync(d);
    put(etc, 'test.Echo');
    put(etc, 'test.Echo+special');
    put(run, 'test.Override');
    put(etc, 'test.Override');
    put(etc, 'test.NotExecutable', 'echo', 0o644);
    put(etc, 'test.Env', 'env | sort');
    put(etc, 'test.Id', 'id -u; id -G');
    put(etc, 'test.BadInterpreter', 'true');
    writeFileSync(path.join(etc, 'test.BadInterpreter'), '#!/nonexistent/interpreter\n');
    writeFileSync(passwd, [
      'root:x:0:0:root:/root:/bin/sh',
      `alice:x:4242:4242:Alice:${root}:/bin/sh`,
      'nohome:x:4243:4243::/does/not/exist:',
      '',
    ].join('\n'));
    writeFileSync(group, [
      'root:x:0:',
      'sudo:x:27:alice,other',
      'audio:x:29:other,alice',
      'aliceish:x:30:alices,alice2',
      'broken:x:notanumber:alice',
      'short:x:31',
      '',
      'alice:x:4242:',
    ].join('\n'));
    await agent.start({
      ISOLA_SERVICE_PATH: `${run}:${etc}`,
      ISOLA_RPC_CONFIG_PATH: `${cfgQube}:${cfgBuiltin}`,
      ISOLA_PASSWD_PATH: passwd,
      ISOLA_GROUP_PATH: group,
      ISOLA_DEFAULT_USER: 'root',
    });
  });
  after(async () => {
    for (const s of servers) s.close();
    await agent.stop();
  });

  test('runs SERVICE with the argument as $1, and exactly the login environment plus Qubes variables', async () => {
    assert.deepEqual(await agent.run('root', 'QUBESRPC test.Echo+abc work'), { code: 0, out: `${etc}/test.Echo abc\n`, err: '' });
    // PWD is the shell's own (it exports the directory it started in), not the agent's.
    const env = (await agent.run('root', 'QUBESRPC test.Env+xyz work')).out.trim().split('\n').filter((l) => !l.startsWith('PWD='));
    assert.deepEqual(env, [
      'HOME=/root', 'LOGNAME=root', 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
      'QREXEC_REMOTE_DOMAIN=work', 'QREXEC_SERVICE_ARGUMENT=xyz', 'QREXEC_SERVICE_FULL_NAME=test.Env+xyz', 'SHELL=/bin/sh', 'USER=root',
    ]);
    assert.equal((await agent.run('root', 'QUBESRPC test.Echo+ work')).out, `${etc}/test.Echo \n`, 'no argument: argv is the path alone');
  });

  test('prefers SERVICE+ARG, and earlier directories of the path', async () => {
    assert.equal((await agent.run('root', 'QUBESRPC test.Echo+special work')).out, `${etc}/test.Echo+special special\n`);
    assert.equal((await agent.run('root', 'QUBESRPC test.Override+ work')).out, `${run}/test.Override \n`);
  });

  const BAD: [string, string, number, RegExp][] = [
    ['QUBESRPC test.Missing+ work', 'no such service: 127 as in Qubes', 127, /^service test\.Missing\+ does not exist in this qube\n$/],
    ['QUBESRPC test.NotExecutable+ work', 'not executable: treated as missing', 127, /does not exist/],
    ['QUBESRPC test.Echo+a;rm work', 'shell metacharacter in the argument', 125, /^invalid service name, argument or source\n$/],
    ['QUBESRPC test/../x+ work', 'path in the service name', 125, /invalid service name/],
    ['QUBESRPC test.Echo+ wo$rk', 'impossible qube name as source', 125, /invalid service name/],
    ['QUBESRPC test.Echo+', 'no source', 125, /^malformed service request\n$/],
    ['QUBESRPC  test.Echo+ work', 'empty field', 125, /malformed/],
    ['QUBESRPC test.Echo+ work extra', 'extra field', 125, /malformed/],
    ['QUBESRPC +arg work', 'empty service name', 125, /invalid service name/],
  ];
  for (const [cmd, why, code, err] of BAD) {
    test(`refuses ${JSON.stringify(cmd)}: ${why}`, async () => {
      const r = await agent.run('root', cmd);
      assert.equal(r.code, code);
      assert.equal(r.out, '');
      assert.match(r.err, err);
    });
  }

  test('a unix socket at the service path is a socket-based service: descriptor first, then the caller\'s bytes both ways', async () => {
    const descriptors: string[] = [];
    const server = createServer((s) => {
      let head = Buffer.alloc(0);
      let seen = false;
      s.on('data', (d: Buffer) => {
        if (seen) return void s.write(d.toString().toUpperCase());
        head = Buffer.concat([head, d]);
        const nul = head.indexOf(0);
        if (nul < 0) return;
        seen = true;
        descriptors.push(head.subarray(0, nul + 1).toString());
        if (head.length > nul + 1) s.write(head.subarray(nul + 1).toString().toUpperCase());
      });
      s.on('end', () => s.end('bye\n'));
    });
    servers.push(server);
    await new Promise<void>((resolve) => server.listen(path.join(etc, 'test.Socket'), resolve));
    assert.deepEqual(await agent.run('root', 'QUBESRPC test.Socket+abc work', 'hello\n'), { code: 0, out: 'HELLO\nbye\n', err: '' });
    assert.deepEqual(descriptors, ['test.Socket+abc work\0']);
  });

  test('a service socket nobody listens on: exit 125 and one stderr line', async () => {
    const dead = path.join(etc, 'test.DeadSocket');
    execFileSync('python3', ['-c', `import socket; s = socket.socket(socket.AF_UNIX); s.bind(${JSON.stringify(dead)})`]);
    const r = await agent.run('root', 'QUBESRPC test.DeadSocket+ work');
    assert.equal(r.code, 125);
    assert.match(r.err, /^cannot connect to service socket: Connection refused\n$/);
  });

  test("a service's rpc-config force-user decides who runs it (Qubes: qubes.VMRootShell is root whoever asked)", { skip: !isRoot && 'needs root' }, async () => {
    writeFileSync(path.join(cfgBuiltin, 'test.Id'), "# built-in\nforce-user = 'root'\n");
    assert.equal((await agent.run('alice', 'QUBESRPC test.Id+x dom0')).out.split('\n')[0], '0');
    writeFileSync(path.join(cfgQube, 'test.Id+x'), 'wait-for-session = 1\nforce-user="alice"  # the qube says so\n');
    assert.equal((await agent.run('root', 'QUBESRPC test.Id+x dom0')).out.split('\n')[0], '4242', "the qube's own config comes first, SERVICE+ARG before SERVICE");
    assert.equal((await agent.run('alice', 'QUBESRPC test.Echo+ dom0')).code, 0, 'no config: the caller’s user');
    writeFileSync(path.join(cfgQube, 'test.Id'), 'force-user = "root; rm -rf /"\n');
    const bad = await agent.run('root', 'QUBESRPC test.Id+ dom0');
    assert.equal(bad.code, 125, 'a broken config does not run the service (fail closed)');
    assert.equal(bad.err, `service test.Id+: ${cfgQube}/test.Id: force-user is not a valid user name\n`);
    writeFileSync(path.join(cfgQube, 'test.Id'), 'force-user root\n');
    assert.equal((await agent.run('root', 'QUBESRPC test.Id+ dom0')).err, `service test.Id+: ${cfgQube}/test.Id: cannot parse line 'force-user root'\n`);
  });

  test("a user's groups come from the group file's member lists, hostile lines ignored", { skip: !isRoot && 'needs root' }, async () => {
    const r = await agent.run('alice', 'id -u; id -G; pwd; echo $HOME');
    const [uid, gids, cwd, home] = r.out.trim().split('\n');
    assert.equal(uid, '4242');
    assert.deepEqual(gids.split(' ').map(Number).sort((a, b) => a - b), [27, 29, 4242]);
    assert.deepEqual([cwd, home], [root, root], 'the command starts in its home');
    assert.equal((await agent.run('nohome', 'pwd; echo $SHELL')).out, '/\n/bin/sh\n', 'a missing home is /, an empty shell /bin/sh');
  });

  test('answers an unknown user with exit 127, and an exec that fails with 125', async () => {
    assert.deepEqual(await agent.run('nobody-here', 'id'), { code: 127, out: '', err: 'user nobody-here does not exist in qube\n' });
    const r = await agent.run('root', 'QUBESRPC test.BadInterpreter+ work');
    assert.equal(r.code, 125);
    assert.equal(r.err, `cannot start command: ${etc}/test.BadInterpreter: No such file or directory\n`);
  });
});

describe('an agent that is not root', { skip: (!haveAgent || !isRoot) && 'needs root (to start the agent as nobody) and the agent' }, () => {
  const plain = new AgentUnderTest();
  before(() => plain.start({ ISOLA_DEFAULT_USER: 'nobody' }, { uid: 65534, gid: 65534 }));
  after(() => plain.stop());

  test('cannot switch user: exit 126 and why; its own user still runs', async () => {
    assert.deepEqual(await plain.run('root', 'id'), { code: 126, out: '', err: 'cannot run as root: isola-agent is not root\n' });
    assert.deepEqual(await plain.run('DEFAULT', 'id -u'), { code: 0, out: '65534\n', err: '' });
  });
});
