// `isola` subcommands report like Qubes' tools (`isola SUBCMD: error: …`, exit 2 for usage errors,
// 1 for failures, in the user's words), and the in-qube tools answer --help on stdout with exit 0.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isolaMain } from '../../src/daemon/isola-command';
import { qrexecClientVm } from '../../src/agent/qrexec-client-vm';
import { qvmCopy } from '../../src/agent/qvm-copy';
import { qvmOpenInVm } from '../../src/agent/open/qvm-open-in-vm';

async function isola(argv: string[]): Promise<[number, string, string]> {
  let out = '';
  let err = '';
  const code = await isolaMain(argv, (s) => (out += s), (s) => (err += s));
  return [code, out, err];
}

describe('isola: errors', () => {
  it('a missing argument: `isola ask allow: error: the following arguments are required: ID`, exit 2', async () => {
    const [code, out, err] = await isola(['ask', 'allow']);
    assert.deepEqual([code, out, err], [2, '', 'isola ask allow: error: the following arguments are required: ID\n']);
  });

  it('an unknown subcommand or option is a usage error in argparse words, exit 2', async () => {
    const [code, , err] = await isola(['frob']);
    assert.equal(code, 2);
    assert.equal(err, "isola: error: argument COMMAND: invalid choice: 'frob' (choose from 'daemon', 'setup', 'doctor', 'policy', 'ask')\n");
    const [c2, , e2] = await isola(['setup', '--bogus']);
    assert.deepEqual([c2, e2], [2, 'isola setup: error: unrecognized arguments: --bogus\n']);
  });

  it('`isola ask` without a subcommand shows the help and exits 2', async () => {
    const [code, , err] = await isola(['ask']);
    assert.equal(code, 2);
    assert.match(err, /Usage: isola ask/);
    assert.match(err, /isola ask: error: the following arguments are required: COMMAND\n$/);
  });

  it('--version exits 0', async () => {
    const [code, out] = await isola(['--version']);
    assert.equal(code, 0);
    assert.match(out, /^isola \(Isola/);
  });

  it('isolad not running: one line naming the subcommand, exit 1, no errno', async () => {
    const saved = process.env.ISOLA_SOCKET;
    process.env.ISOLA_SOCKET = '/nonexistent/isola-test.sock';
    try {
      const [code, , err] = await isola(['ask', 'list']);
      assert.deepEqual([code, err], [1, 'isola ask list: error: isolad is not running (start it with `npm start` or `isolad`)\n']);
    } finally {
      if (saved === undefined) delete process.env.ISOLA_SOCKET;
      else process.env.ISOLA_SOCKET = saved;
    }
  });
});

/** Runs fn with process.stdout/stderr captured. */
async function captured(fn: () => Promise<number>): Promise<[number, string, string]> {
  const out: string[] = [];
  const err: string[] = [];
  const w1 = process.stdout.write.bind(process.stdout);
  const w2 = process.stderr.write.bind(process.stderr);
  process.stdout.write = ((s: string) => (out.push(String(s)), true)) as typeof process.stdout.write;
  process.stderr.write = ((s: string) => (err.push(String(s)), true)) as typeof process.stderr.write;
  try {
    return [await fn(), out.join(''), err.join('')];
  } finally {
    process.stdout.write = w1;
    process.stderr.write = w2;
  }
}

describe('in-qube tools: --help', () => {
  const cases: [string, () => Promise<number>, RegExp][] = [
    ['qrexec-client-vm --help', () => qrexecClientVm(['--help'], '/nonexistent'), /^usage: qrexec-client-vm /],
    ['qrexec-client-vm -h', () => qrexecClientVm(['-h'], '/nonexistent'), /^usage: qrexec-client-vm /],
    ['qvm-copy --help', () => qvmCopy('qvm-copy', ['--help']), /^usage: qvm-copy .*FILE\.\.\./],
    ['qvm-move-to-vm -h', () => qvmCopy('qvm-move-to-vm', ['-h']), /^usage: qvm-move-to-vm .*VMNAME FILE\.\.\./],
    ['qvm-open-in-vm --help', () => qvmOpenInVm('qvm-open-in-vm', ['--help']), /^usage: qvm-open-in-vm .*VMNAME FILE\|URL/],
    ['qvm-open-in-dvm --help', () => qvmOpenInVm('qvm-open-in-dvm', ['--help']), /^usage: qvm-open-in-dvm /],
  ];
  for (const [line, fn, usage] of cases) {
    it(`${line}: usage on stdout, exit 0`, async () => {
      const [code, out, err] = await captured(fn);
      assert.deepEqual([code, err], [0, '']);
      assert.match(out, usage);
    });
  }

  it('a wrong command line is still exit 2 with the usage on stderr', async () => {
    const [code, out, err] = await captured(() => qvmCopy('qvm-copy-to-vm', ['only-a-vm']));
    assert.deepEqual([code, out], [2, '']);
    assert.match(err, /^usage: qvm-copy-to-vm /);
  });
});
