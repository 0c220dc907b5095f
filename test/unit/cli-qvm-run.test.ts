// qvm-run's client side, against Qubes' qvm_run tests (qubesadmin/tests/tools/qvm_run.py): which
// service it calls with what on stdin, its messages and exit codes, --all, the parser (options after
// VMNAME, `--`), the escape filter and colours, --localcmd. isolad is a small fake socket server here.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { test } from 'node:test';
import { run, shellJoin } from '../../src/cli/commands/qvm-run';
import { filterEscapes } from '../../src/cli/qvm-run-io';
import { encodeException } from '../../src/core/admin-wire';
import { QubesError } from '../../src/core/errors';
import { encodeFrame, encodeU32, MSG_DATA_EXIT_CODE, MSG_DATA_STDERR, MSG_DATA_STDIN, MSG_DATA_STDOUT, parseExecParams } from '../../src/qrexec/protocol';
import { FakeClient } from './cli-fake-client';

const LIST = [
  'dom0 class=AdminVM state=Running',
  'test-vm class=AppVM state=Running',
  'test-vm2 class=AppVM state=Running',
  'test-vm3 class=AppVM state=Halted',
  'sys-int class=AppVM state=Running',
].join('\n') + '\n';

interface Seen {
  vm: string;
  header: string;
  frameType: number;
  cmdline: string;
  /** Everything the client sent as STDIN before its EOF. */
  stdin: string;
}

interface Reply {
  stdout?: string;
  stderr?: string;
  code?: number;
  /** Refuse with this exception instead. */
  refuse?: [string, string];
  /** Close after the go-ahead without an exit code. */
  breakOff?: boolean;
}

/** A fake isolad: parses the request, the exec frame and STDIN frames, then answers with `reply(seen)`. */
async function fakeIsolad(reply: (s: Seen) => Reply = () => ({})): Promise<{ path: string; seen: Seen[]; close: () => void }> {
  const p = path.join(mkdtempSync(path.join(os.tmpdir(), 'qvm-run-')), 's.sock');
  const seen: Seen[] = [];
  const server = net.createServer((sock) => {
    let buf = Buffer.alloc(0);
    let s: Seen | null = null;
    let answered = false;
    const answer = () => {
      answered = true;
      const r = reply(s!);
      if (s!.frameType === 0x201) return void sock.end();
      if (r.stdout) sock.write(encodeFrame(MSG_DATA_STDOUT, Buffer.from(r.stdout, 'latin1')));
      if (r.stderr) sock.write(encodeFrame(MSG_DATA_STDERR, Buffer.from(r.stderr, 'latin1')));
      if (r.breakOff) return void sock.end();
      sock.write(encodeFrame(MSG_DATA_STDOUT, Buffer.alloc(0)));
      sock.end(encodeFrame(MSG_DATA_EXIT_CODE, encodeU32(r.code ?? 0)));
    };
    sock.on('error', () => undefined);
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (!s) {
        const nul = buf.indexOf(0);
        if (nul < 0 || buf.length < nul + 9) return;
        const len = buf.readUInt32LE(nul + 5);
        if (buf.length < nul + 9 + len) return;
        const header = buf.subarray(0, nul).toString();
        s = { vm: header.split(' ')[3], header, frameType: buf.readUInt32LE(nul + 1), cmdline: parseExecParams(buf.subarray(nul + 9, nul + 9 + len)).cmdline, stdin: '' };
        seen.push(s);
        buf = buf.subarray(nul + 9 + len);
        // isolad's go-ahead comes once the command started, before any input.
        const r = reply(s);
        if (r.refuse) return void sock.end(encodeException(r.refuse[0] as never, r.refuse[1]));
        sock.write(Buffer.from([0x30, 0]));
        if (s.frameType === 0x201) return answer();
      }
      while (!answered && buf.length >= 8) {
        const len = buf.readUInt32LE(4);
        if (buf.length < 8 + len) return;
        assert.equal(buf.readUInt32LE(0), MSG_DATA_STDIN);
        s.stdin += buf.subarray(8, 8 + len).toString('latin1');
        buf = buf.subarray(8 + len);
        if (len === 0) answer();
      }
    });
  });
  await new Promise<void>((r) => server.listen(p, r));
  return { path: p, seen, close: () => server.close() };
}

interface Opts {
  stdin?: string;
  outIsTTY?: boolean;
  errIsTTY?: boolean;
  client?: FakeClient;
}

async function qvmRun(argv: string[], reply?: (s: Seen) => Reply, o: Opts = {}) {
  const srv = await fakeIsolad(reply);
  const out = new PassThrough();
  const err = new PassThrough();
  let stdout = '';
  let qubeStderr = '';
  let messages = '';
  let connects = 0;
  out.on('data', (d: Buffer) => (stdout += d.toString('latin1')));
  err.on('data', (d: Buffer) => (qubeStderr += d.toString('latin1')));
  const client = o.client ?? new FakeClient({ 'admin.vm.List': LIST, 'admin.vm.feature.Get': new QubesError('QubesFeatureNotFoundError', 'not set'), 'admin.vm.feature.Get sys-int internal': '1' });
  const code = await run(argv, {
    client,
    stdout: (s) => void (messages += s),
    stderr: (s) => void (messages += s),
    isTTY: false,
    connect: () => {
      connects++;
      return new Promise<net.Socket>((res) => {
        const s = net.createConnection(srv.path, () => res(s));
      });
    },
    stdin: Readable.from(o.stdin === undefined ? [] : [Buffer.from(o.stdin)]),
    out,
    err,
    outIsTTY: o.outIsTTY ?? false,
    errIsTTY: o.errIsTTY ?? false,
  }).catch((e: unknown) => {
    // What main() does with a thrown usage error: one line, exit 2.
    messages += `qvm-run: error: ${(e as Error).message}\n`;
    return 2;
  });
  await new Promise((r) => setImmediate(r));
  srv.close();
  return { code, stdout, qubeStderr, messages, seen: srv.seen, connects, calls: client.summary() };
}

const shell = (user = 'DEFAULT') => `${user}:QUBESRPC qubes.VMShell dom0`;

test('without -p: qubes.VMShell gets `COMMAND; exit` and no other input, output is discarded, the exit code is returned', async () => {
  const r = await qvmRun(['--no-gui', 'test-vm', 'command'], () => ({ stdout: 'secret output\n', stderr: 'noise\n', code: 3 }));
  assert.equal(r.code, 3, 'qvm-run waits for the command and returns its code');
  assert.equal(r.seen[0].header, 'admin.vm.Run+autostart dom0 name test-vm');
  assert.equal(r.seen[0].frameType, 0x200, 'MSG_EXEC_CMDLINE: with a data stream, to get the exit code');
  assert.equal(r.seen[0].cmdline, shell());
  assert.equal(r.seen[0].stdin, 'command; exit\n');
  assert.equal(r.stdout, '', 'Qubes sends the output to /dev/null without --pass-io');
  assert.equal(r.qubeStderr, '');
  assert.equal(r.messages, "Running 'command' on test-vm\ntest-vm: command failed with code: 3\n");
});

test('-q silences the messages; -p lowers verbosity by one and -p -v brings them back', async () => {
  const q = await qvmRun(['-q', 'test-vm', 'false'], () => ({ code: 1 }));
  assert.deepEqual([q.code, q.messages], [1, '']);
  const p = await qvmRun(['-p', 'test-vm', 'false'], () => ({ code: 1 }));
  assert.deepEqual([p.code, p.messages], [1, '']);
  const pv = await qvmRun(['-p', '-v', 'test-vm', 'false'], () => ({ code: 1 }));
  assert.equal(pv.messages, "Running 'false' on test-vm\ntest-vm: command failed with code: 1\n");
  const ok = await qvmRun(['test-vm', 'true']);
  assert.deepEqual([ok.code, ok.messages], [0, "Running 'true' on test-vm\n"], 'no failure line for exit code 0');
});

test('-p relays stdin after the command prefix, stdout and stderr, and returns the exit code', async () => {
  const r = await qvmRun(['-p', 'test-vm', 'cat'], () => ({ stdout: 'hello\n', stderr: 'warn\n', code: 5 }), { stdin: 'input' });
  assert.equal(r.code, 5);
  assert.equal(r.seen[0].stdin, 'cat; exit\ninput');
  assert.equal(r.stdout, 'hello\n');
  assert.equal(r.qubeStderr, 'warn\n');
});

test('options after VMNAME are options: `-p work -u root id` runs id as root through qubes.VMRootShell', async () => {
  const r = await qvmRun(['-p', 'test-vm', '-u', 'root', 'id'], () => ({ stdout: 'uid=0(root)\n' }));
  assert.equal(r.code, 0, r.messages);
  assert.equal(r.seen[0].cmdline, 'DEFAULT:QUBESRPC qubes.VMRootShell dom0', "Qubes' VMRootShell (force-user=root in the qube)");
  assert.equal(r.seen[0].stdin, 'id; exit\n');
  assert.equal(r.stdout, 'uid=0(root)\n');
  const other = await qvmRun(['-u', 'alice', 'test-vm', 'id']);
  assert.equal(other.seen[0].cmdline, shell('alice'), 'another user: qubes.VMShell as that user');
});

test("the first argument is the qube: `qvm-run 'echo hi' work` is `no such domain` and sends nothing", async () => {
  const r = await qvmRun(['echo hi', 'test-vm']);
  assert.equal(r.code, 2);
  assert.equal(r.messages, "qvm-run: error: no such domain: 'echo hi'\n");
  assert.equal(r.connects, 0);
  const wild = await qvmRun(['test-*', 'true']);
  assert.equal(wild.messages, "qvm-run: error: no such domain: 'test-*'\n", "qvm-run's VMNAME is one name, no pattern, as in Qubes");
});

test('ARGS after COMMAND are quoted words (implies --no-shell); -- is handled as argparse does', async () => {
  const cases: [string[], string][] = [
    [['test-vm', 'ls', '-la', "it's"], `ls -la 'it'"'"'s'; exit\n`],
    [['test-vm', 'command', '-u', 'root'], 'command -u root; exit\n'],
    [['--no-shell', 'test-vm', 'command'], 'command; exit\n'],
    [['--no-shell', 'test-vm', 'my command'], "'my command'; exit\n"],
    [['test-vm', 'echo $HOME'], 'echo $HOME; exit\n'],
    [['--no-shell', 'test-vm', 'command', '--', 'arg'], 'command arg; exit\n'],
    [['--no-shell', 'test-vm', 'command', '--', '--', 'arg'], 'command -- arg; exit\n'],
    [['--no-shell', '--', 'test-vm', 'command', '--', 'arg'], 'command -- arg; exit\n'],
    [['test-vm', 'cmd', 'a', '--', 'b'], 'cmd a -- b; exit\n'],
    [['test-vm', '--', '--'], '--; exit\n'],
    [['test-vm', '--', '-u', 'x'], '-u x; exit\n'],
    [['test-vm', 'multi\nline\n\n'], 'multi\nline; exit\n'],
  ];
  for (const [argv, stdin] of cases) {
    const r = await qvmRun(argv);
    assert.equal(r.code, 0, `${argv.join(' ')}: ${r.messages}`);
    assert.equal(r.seen[0].stdin, stdin, argv.join(' '));
  }
});

test('--all runs only in running qubes that are not internal, never dom0, in parallel; --exclude narrows it', async () => {
  const r = await qvmRun(['--all', 'command'], (s) => ({ code: s.vm === 'test-vm2' ? 4 : 0 }));
  assert.equal(r.code, 4);
  assert.deepEqual(r.seen.map((s) => s.vm).sort(), ['test-vm', 'test-vm2']);
  assert.deepEqual(r.calls, ['admin.vm.List dom0', 'admin.vm.feature.Get test-vm internal', 'admin.vm.feature.Get test-vm2 internal', 'admin.vm.feature.Get sys-int internal'], 'the halted test-vm3 is not even asked');
  assert.equal(r.messages, "Running 'command' on test-vm\nRunning 'command' on test-vm2\ntest-vm2: command failed with code: 4\n");
  assert.ok(r.seen.every((s) => s.header.includes('+autostart')));
  const ex = await qvmRun(['--no-gui', '--all', '--exclude', 'test-vm2', 'command']);
  assert.deepEqual(ex.seen.map((s) => s.vm), ['test-vm']);
});

test('--exclude without --all is refused before any call', async () => {
  const r = await qvmRun(['--exclude', 'test-vm2', 'test-vm', 'command']);
  assert.equal(r.code, 2);
  assert.equal(r.messages, 'qvm-run: error: --exclude can only be used with --all\n');
  assert.deepEqual([r.calls, r.connects], [[], 0]);
});

test('--all with -p is refused when more than one qube is chosen, unless --localcmd', async () => {
  const r = await qvmRun(['--all', '-p', 'command']);
  assert.equal(r.code, 2);
  assert.equal(r.messages, 'qvm-run: error: --passio cannot be used when more than 1 qube is chosen and no --localcmd is used\n');
  assert.equal(r.connects, 0);
  const one = await qvmRun(['--all', '-p', '--exclude', 'test-vm2', '--exclude', 'test-vm3', '--exclude', 'sys-int', 'echo hi'], () => ({ stdout: 'hi\n' }));
  assert.deepEqual([one.code, one.stdout], [0, 'hi\n']);
});

test('--no-autostart on a halted qube: nothing is sent, exit 1, `Qube ... not started` at default verbosity', async () => {
  const r = await qvmRun(['--no-gui', '--no-autostart', 'test-vm3', 'command']);
  assert.deepEqual([r.code, r.connects, r.messages], [1, 0, "Qube 'test-vm3' not started\n"]);
  const p = await qvmRun(['-p', '-n', 'test-vm3', 'command']);
  assert.deepEqual([p.code, p.messages], [1, ''], 'with -p the message needs -v, as in Qubes');
  const running = await qvmRun(['-n', 'test-vm', 'command']);
  assert.equal(running.seen[0].header, 'admin.vm.Run+noautostart dom0 name test-vm');
});

test('--service calls the named service from dom0: with -p it relays stdio; without, it starts it and returns', async () => {
  const p = await qvmRun(['--no-gui', '--service', '--pass-io', '--filter-escape-chars', 'test-vm', 'test.service'], () => ({ stdout: 'svc\n' }), { stdin: 'some-data\n' });
  assert.equal(p.code, 0);
  assert.equal(p.seen[0].cmdline, 'DEFAULT:QUBESRPC test.service dom0');
  assert.equal(p.seen[0].stdin, 'some-data\n', 'no shell prefix for a service');
  assert.equal(p.stdout, '\x1b[0;31msvc\n\x1b[0m', 'filtered, hence coloured red as Qubes does');
  const bg = await qvmRun(['--service', 'test-vm', 'qubes.VMShell+arg']);
  assert.equal(bg.code, 0);
  assert.equal(bg.seen[0].frameType, 0x201, "MSG_JUST_EXEC: Qubes' qrexec-client -e");
  assert.equal(bg.seen[0].cmdline, 'DEFAULT:QUBESRPC qubes.VMShell+arg dom0');
  const bad = await qvmRun(['--service', 'test-vm', 'not a service']);
  assert.equal(bad.code, 2);
  assert.equal(bad.connects, 0);
  const noShell = await qvmRun(['--service', '--no-shell', 'test-vm', 'x.y']);
  assert.deepEqual([noShell.code, noShell.messages], [2, 'qvm-run: error: --no-shell does not apply to --service\n']);
});

test('terminal-escape-injection-from-qube-output: on a terminal, escapes from the qube are replaced by _', async () => {
  const attack = '\x1b]0;pwned\x07\x1b[2J\x9bok\tdone\r\n';
  const r = await qvmRun(['-p', 'test-vm', 'cat evil'], () => ({ stdout: attack, stderr: '\x1b[31merr\n' }), { outIsTTY: true, errIsTTY: true });
  assert.equal(r.stdout, '\x1b[0;31m' + '_]0;pwned\x07_[2J_ok\tdone\r\n' + '\x1b[0m', 'only our own colour codes reach the terminal');
  assert.equal(r.qubeStderr, '_[31merr\n', "stderr on a terminal is filtered too (Qubes' -T)");
  const raw = await qvmRun(['-p', '--no-filter-escape-chars', 'test-vm', 'cat evil'], () => ({ stdout: attack }), { outIsTTY: true });
  assert.equal(raw.stdout, attack, 'asked not to filter (DANGEROUS, says Qubes): passed as is, uncoloured');
  const pipe = await qvmRun(['-p', 'test-vm', 'cat evil'], () => ({ stdout: attack }));
  assert.equal(pipe.stdout, attack, 'stdout not a terminal: bytes pass unchanged (binary-safe)');
  const forced = await qvmRun(['-p', '--filter-escape-chars', '--no-color-output', 'test-vm', 'cat evil'], () => ({ stdout: attack }));
  assert.equal(forced.stdout, '_]0;pwned\x07_[2J_ok\tdone\r\n');
});

test('the filter keeps printable ASCII, tab, newline, CR, backspace and bell; no lone byte of 0x80-0xff is text (UTF-8: terminal-filter.test)', () => {
  const all = Buffer.from(Array.from({ length: 256 }, (_v, i) => i));
  const kept = [...filterEscapes(all)].map((c, i) => (c === i ? i : -1)).filter((c) => c >= 0);
  assert.deepEqual(kept, [7, 8, 9, 10, 13, ...Array.from({ length: 95 }, (_v, i) => 0x20 + i).filter((c) => c !== 0x5f), 0x5f].sort((x, y) => x - y));
  assert.equal(all[0x1b], 0x1b, 'the input buffer is not modified');
});

test('colour options: --color-output N marks stdout, --color-stderr N marks messages; --color-output needs the filter', async () => {
  const r = await qvmRun(['-p', '--filter-escape-chars', '--color-output', '32', '--color-stderr', '33', '-v', 'test-vm', 'x'], () => ({ stdout: 'o\n', code: 2 }));
  assert.equal(r.stdout, '\x1b[0;32mo\n\x1b[0m');
  assert.equal(r.messages, "\x1b[0;33m\x1b[0mRunning 'x' on test-vm\x1b[0;33m\n\x1b[0mtest-vm: command failed with code: 2\x1b[0;33m\n\x1b[0m");
  const bad = await qvmRun(['-p', '--color-output', '32', 'test-vm', 'x']);
  assert.deepEqual([bad.code, bad.messages, bad.connects], [2, 'qvm-run: error: --color-output must be used with --filter-escape-chars\n', 0]);
  const tty = await qvmRun(['-p', '--no-colour-output', 'test-vm', 'x'], () => ({ stdout: 'o\n' }), { outIsTTY: true });
  assert.equal(tty.stdout, 'o\n');
});

test('--localcmd connects the service to a local command both ways and returns the worse exit code', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'qvm-run-local-'));
  const got = path.join(dir, 'got');
  const r = await qvmRun(['-p', '--localcmd', `echo to-remote; exec 1>&-; cat > ${got}; exit 6`, 'test-vm', 'command'], () => ({ stdout: 'from-remote\n', code: 2 }));
  assert.equal(r.seen[0].stdin, 'command; exit\nto-remote\n', "the local command's stdout is the qube's stdin");
  assert.equal(readFileSync(got, 'utf8'), 'from-remote\n', "the qube's stdout is the local command's stdin");
  assert.equal(r.stdout, '');
  assert.equal(r.code, 6);
  const noP = await qvmRun(['--localcmd', 'cat', 'test-vm', 'command']);
  assert.deepEqual([noP.code, noP.messages], [2, 'qvm-run: error: --localcmd have no effect without --pass-io\n']);
});

test('--gui says there is no GUI yet and runs without; --no-gui, --nogui and -a/--autostart are accepted', async () => {
  const g = await qvmRun(['--gui', 'test-vm', 'xterm']);
  assert.equal(g.code, 0);
  assert.equal(g.messages, "qvm-run: note: qubes have no GUI yet; running 'xterm' without one\nRunning 'xterm' on test-vm\n");
  for (const opt of ['--no-gui', '--nogui', '-a', '--autostart', '--auto']) {
    const r = await qvmRun([opt, 'test-vm', 'true']);
    assert.equal(r.code, 0, opt);
    assert.ok(r.seen[0].header.includes('+autostart'), opt);
  }
});

test("isolad's refusal is one line and exit 1; a stream that breaks off is Qubes' 125", async () => {
  const refused = await qvmRun(['-p', 'test-vm', 'true'], () => ({ refuse: ['QubesVMNotRunningError', 'Domain is not running: test-vm'] }));
  assert.deepEqual([refused.code, refused.messages], [1, 'qvm-run: error: Domain is not running: test-vm\n']);
  const broke = await qvmRun(['-p', 'test-vm', 'true'], () => ({ stdout: 'partial', breakOff: true }));
  assert.equal(broke.code, 125);
  assert.match(broke.messages, /^qvm-run: error: test-vm: data stream closed before the exit code/);
});

test('parser errors in argparse words, exit 2, nothing sent', async () => {
  const cases: [string[], string][] = [
    [[], 'the following arguments are required: VMNAME, COMMAND'],
    [['test-vm'], 'the following arguments are required: COMMAND'],
    [['--all'], 'the following arguments are required: COMMAND'],
    [['--bogus', 'test-vm', 'x'], 'unrecognized arguments: --bogus'],
    [['--no-col', 'test-vm', 'x'], 'ambiguous option: --no-col could match --no-colour-output, --no-color-output, --no-colour-stderr, --no-color-stderr'],
    [['-u'], 'argument --user/-u: expected one argument'],
    [['--user', '-p', 'test-vm', 'x'], 'argument --user/-u: expected one argument'],
    [['--pass-io=yes', 'test-vm', 'x'], "argument --pass-io/-p: ignored explicit argument 'yes'"],
    [['-u', 'bad user', 'test-vm', 'x'], "argument --user/-u: invalid user name 'bad user'"],
    [['--dispvm', 'x'], '--dispvm is not available: Isola has no disposable qubes yet'],
  ];
  for (const [argv, msg] of cases) {
    const r = await qvmRun(argv);
    assert.deepEqual([r.code, r.messages, r.connects], [2, `qvm-run: error: ${msg}\n`, 0], argv.join(' '));
  }
  const abbrev = await qvmRun(['--filter-esc', '--pass', 'test-vm', 'x']);
  assert.equal(abbrev.code, 0, "argparse's unique prefixes (Qubes' own tests use --filter-esc)");
  const cluster = await qvmRun(['-pnuroot', 'test-vm', 'x']);
  assert.equal(cluster.seen[0].cmdline, 'DEFAULT:QUBESRPC qubes.VMRootShell dom0');
  assert.equal(cluster.seen[0].header, 'admin.vm.Run+noautostart dom0 name test-vm');
});

test('--help and --version print and exit 0 without a call', async () => {
  const h = await qvmRun(['test-vm', '--help']);
  assert.equal(h.code, 0);
  assert.match(h.messages, /^Usage: qvm-run /);
  assert.match(h.messages, /-u USER, --user USER/);
  assert.match(h.messages, /--no-filter-escape-chars/);
  assert.equal(h.connects, 0);
  const v = await qvmRun(['--version']);
  assert.match(v.messages, /^qvm-run /);
});

test("shellJoin quotes words as Python's shlex.quote", () => {
  assert.equal(shellJoin(['echo', 'a b', "it's", '$HOME', 'plain-word', '', 'a=b,c:d@e%f+g']), `echo 'a b' 'it'"'"'s' '$HOME' plain-word '' a=b,c:d@e%f+g`);
});
