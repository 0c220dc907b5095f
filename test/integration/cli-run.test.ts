// qvm-run against a real isolad and a real qube, as a Qubes user types it: exit codes and messages
// without -p, --all, options after VMNAME, `--`, --no-shell, --service with stdin, -u root through
// qubes.VMRootShell, --localcmd, and the terminal escape filter on a real pseudo-terminal.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BIN, canRunIntegration, Instance, type CliResult } from './harness';

const skip = canRunIntegration();

describe('qvm-run against isolad and a running qube', { skip, concurrency: false }, () => {
  let inst: Instance;
  let tmp: string;
  before(async () => {
    tmp = mkdtempSync(path.join(os.tmpdir(), 'isola-run-'));
    inst = new Instance();
    await inst.start();
    await inst.installTemplate();
    await inst.ok('qvm-create', '--label', 'red', 'runner');
    await inst.ok('qvm-create', '--label', 'blue', 'idle');
  });
  after(async () => {
    await inst?.destroy();
    rmSync(tmp, { recursive: true, force: true });
  });

  /** qvm-run on a pseudo-terminal (util-linux script), as a user at a terminal sees it. */
  function onTerminal(args: string[]): Promise<CliResult> {
    const cmd = [path.join(BIN, 'qvm-run'), ...args].map((w) => `'${w.replace(/'/g, `'\\''`)}'`).join(' ');
    return new Promise((resolve, reject) => {
      const child = spawn('script', ['-qec', cmd, '/dev/null'], { env: inst.env, stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString('latin1')));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString('latin1')));
      child.on('error', reject);
      child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
      child.stdin.end();
    });
  }

  test('without -p it starts the qube, waits, discards the output and returns the exit code with Qubes\' messages', async () => {
    const r = await inst.cli('qvm-run', ['runner', 'echo hidden-output; exit 7']);
    assert.equal(r.code, 7);
    assert.equal(r.stdout, '', 'the output goes nowhere, as in Qubes');
    assert.equal(r.stderr, "Running 'echo hidden-output; exit 7' on runner\nrunner: command failed with code: 7\n");
    const q = await inst.cli('qvm-run', ['-q', 'runner', 'exit 3']);
    assert.deepEqual([q.code, q.stderr], [3, '']);
    // It really waited: a file written by the command is there when qvm-run returns.
    assert.equal((await inst.cli('qvm-run', ['runner', 'sleep 1; echo done > /tmp/waited'])).code, 0);
    assert.equal((await inst.ok('qvm-run', '-p', 'runner', 'cat /tmp/waited')).trim(), 'done');
  });

  test('options after VMNAME: `qvm-run -p runner -u root id -un` runs as root (qubes.VMRootShell)', async () => {
    assert.equal((await inst.ok('qvm-run', '-p', 'runner', '-u', 'root', 'id -un')).trim(), 'root');
    assert.equal((await inst.ok('qvm-run', '-p', 'runner', 'id -un')).trim(), 'user');
    assert.equal((await inst.ok('qvm-run', '-p', 'runner', '-u', 'user', 'id -un')).trim(), 'user');
  });

  test("a first argument that is not a qube is refused as one: `qvm-run 'echo hi' runner`", async () => {
    const r = await inst.cli('qvm-run', ['echo hi', 'runner']);
    assert.deepEqual([r.code, r.stderr], [2, "qvm-run: error: no such domain: 'echo hi'\n"]);
  });

  test('VM -- CMD ARGS runs CMD with exactly those ARGS; --no-shell does not let a shell read COMMAND', async () => {
    assert.equal(await inst.ok('qvm-run', '-p', 'runner', '--', 'printf', '%s|', 'a b', "it's", '$HOME', '-u'), "a b|it's|$HOME|-u|");
    const noShell = await inst.cli('qvm-run', ['-p', '--no-shell', 'runner', 'echo $HOME']);
    assert.equal(noShell.code, 127, 'a program literally named `echo $HOME` does not exist');
    assert.equal(noShell.stdout, '');
  });

  test('--service qubes.VMShell reads the commands from stdin; qubes.VMRootShell runs them as root', async () => {
    const r = await inst.cli('qvm-run', ['-p', '--service', 'runner', 'qubes.VMShell'], 'echo from-stdin\nid -un\n');
    assert.deepEqual([r.code, r.stdout], [0, 'from-stdin\nuser\n'], r.stderr);
    const root = await inst.cli('qvm-run', ['-p', '--service', 'runner', 'qubes.VMRootShell'], 'id -u\n');
    assert.deepEqual([root.code, root.stdout], [0, '0\n'], root.stderr);
    const missing = await inst.cli('qvm-run', ['-p', '--service', 'runner', 'no.Such']);
    assert.equal(missing.code, 127);
  });

  test('--all runs only in running qubes and starts none; --exclude needs --all; -n refuses a halted qube', async () => {
    const r = await inst.cli('qvm-run', ['--all', 'true']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "Running 'true' on runner\n", 'idle is halted, dom0 is never a target');
    assert.equal((await inst.cli('qvm-check', ['--running', 'idle'])).code, 1, '--all started nothing');
    const ex = await inst.cli('qvm-run', ['--all', '--exclude', 'runner', 'true']);
    assert.deepEqual([ex.code, ex.stderr], [0, '']);
    const bad = await inst.cli('qvm-run', ['--exclude', 'runner', 'idle', 'true']);
    assert.deepEqual([bad.code, bad.stderr], [2, 'qvm-run: error: --exclude can only be used with --all\n']);
    const n = await inst.cli('qvm-run', ['-n', 'idle', 'true']);
    assert.deepEqual([n.code, n.stderr], [1, "Qube 'idle' not started\n"]);
    assert.equal((await inst.cli('qvm-check', ['--running', 'idle'])).code, 1);
  });

  test('--localcmd connects the qube command to a local command both ways', async () => {
    const got = path.join(tmp, 'got');
    const r = await inst.cli('qvm-run', ['-p', '--localcmd', `echo hello-local; exec 1>&-; cat > ${got}`, 'runner', 'read l; echo "got $l"']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(readFileSync(got, 'utf8'), 'got hello-local\n');
  });

  test('terminal-escape-injection-from-qube-output: an escape sequence from the qube never reaches the terminal unfiltered', async () => {
    const evil = String.raw`printf '\033]0;pwned\007\033[2Jvisible\n'; printf '\033[8mhidden-err\n' >&2`;
    const r = await onTerminal(['-p', 'runner', evil]);
    assert.equal(r.code, 0, r.stdout);
    assert.ok(!r.stdout.includes('\x1b]0;pwned') && !r.stdout.includes('\x1b[2J') && !r.stdout.includes('\x1b[8m'), JSON.stringify(r.stdout));
    assert.ok(r.stdout.includes('_]0;pwned\x07_[2Jvisible'), JSON.stringify(r.stdout));
    assert.ok(r.stdout.includes('_[8mhidden-err'), 'stderr on a terminal is filtered too');
    assert.ok(r.stdout.startsWith('\x1b[0;31m'), "Qubes marks a qube's output on a terminal red");
    const raw = await onTerminal(['-p', '--no-filter-escape-chars', 'runner', evil]);
    assert.ok(raw.stdout.includes('\x1b]0;pwned'), 'the filter is what stops it: asked not to filter, the bytes pass');
    const piped = await inst.cli('qvm-run', ['-p', 'runner', "printf '\\033[2J'"]);
    assert.equal(piped.stdout, '\x1b[2J', 'not a terminal: output is passed byte for byte, as Qubes does');
  });
});
