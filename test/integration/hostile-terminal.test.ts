// Attacks of a hostile qube on the terminal of whoever reads its output (dom0's, or another qube's)
// and on a caller of its services: escape sequences in qvm-run's output, in strings it gets printed
// by the CLI (policy log), in qrexec service output, and a reply to a view-only open.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BIN, canRunIntegration, Instance } from './harness';

const skip = canRunIntegration();

const POLICY = [
  'qubes.OpenInVM * work untrusted allow',
  'test.Hostile   * work untrusted allow',
  '*              * @anyvm @anyvm deny',
].join('\n') + '\n';

/** What the qube prints: a window title, OSC 52 (writes the host's clipboard), a cursor-position request, C1 CSI. */
const ATTACK = String.raw`printf 'A\033]0;OWNED\007B\033]52;c;aGk=\007C\033[6nD\302\233E\233F\n'`;
/** The qube's bytes that drive a terminal; none of them may reach one. */
const DRIVERS = [Buffer.from('\x1b]0;'), Buffer.from('\x1b]52;'), Buffer.from('\x1b[6n'), Buffer.from([0xc2, 0x9b]), Buffer.from([0x9b])];

/** A service of the hostile target: escapes on stderr and stdout. */
const HOSTILE_SERVICE = String.raw`#!/bin/sh
printf 'err\033]0;OWNED\007err\n' >&2
printf 'out\033]52;c;aGk=\007out\n'
`;
/** The hostile target's qubes.OpenInVM: swallows the file, answers PWNED, and tries the caller's terminal. */
const HOSTILE_OPEN = String.raw`#!/bin/sh
cat > /dev/null
printf 'x\033]0;OWNED\007x\n' >&2
printf PWNED
`;

const shq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** Runs a host command on a pseudo-terminal (util-linux script) and returns what reached the terminal. */
function onTerminal(env: NodeJS.ProcessEnv, argv: string[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = execFile('script', ['-qfec', argv.map(shq).join(' '), '/dev/null'], { env, encoding: 'buffer', timeout: 60_000 }, (e, stdout) => {
      if (e && e.killed) reject(e);
      else resolve(stdout);
    });
    child.stdin!.end();
  });
}

const hasAny = (b: Buffer, needles: Buffer[]) => needles.filter((n) => b.includes(n)).map((n) => JSON.stringify(n.toString('latin1')));

describe('hostile output and replies from a qube', { skip, concurrency: false }, () => {
  let inst: Instance;
  let policyDir: string;
  const inQube = (vm: string, cmd: string, user?: string) => inst.cli('qvm-run', ['-p', ...(user ? ['-u', user] : []), vm, cmd]);
  const ok = async (vm: string, cmd: string, user?: string) => {
    const r = await inQube(vm, cmd, user);
    assert.equal(r.code, 0, `${vm}: ${cmd}: ${r.stderr}`);
    return r.stdout;
  };

  before(async () => {
    policyDir = mkdtempSync(path.join(os.tmpdir(), 'isola-hostile-policy-'));
    writeFileSync(path.join(policyDir, '30-test.policy'), POLICY);
    inst = await Instance.withAppVMs([['work', 'blue'], ['untrusted', 'red']], { env: { ISOLA_POLICY_DIR: policyDir } });
    await inst.ok('qvm-start', 'untrusted');
    // A qube's own /etc/qubes-rpc overrides the built-in services: the target is hostile.
    await ok('untrusted', `mkdir -p /etc/qubes-rpc && printf '%s' ${shq(HOSTILE_SERVICE)} > /etc/qubes-rpc/test.Hostile && printf '%s' ${shq(HOSTILE_OPEN)} > /etc/qubes-rpc/qubes.OpenInVM && chmod 755 /etc/qubes-rpc/test.Hostile /etc/qubes-rpc/qubes.OpenInVM`, 'root');
  });
  after(async () => {
    await inst?.destroy();
    rmSync(policyDir, { recursive: true, force: true });
  });

  describe('terminal-escape-injection', () => {
    test('terminal-escape-injection: qvm-run -p on a terminal shows the qube\'s escape sequences as text', async () => {
      const seen = await onTerminal(inst.env, [path.join(BIN, 'qvm-run'), '-p', 'work', ATTACK]);
      assert.deepEqual(hasAny(seen, DRIVERS), [], `reached the terminal: ${JSON.stringify(seen.toString('latin1'))}`);
      assert.ok(seen.includes('A_]0;OWNED\x07B_]52;c;aGk=\x07C_[6nD__E_F'), `the text around them is shown: ${JSON.stringify(seen.toString('latin1'))}`);
      // Only qvm-run's own colour (Qubes' red for a filtered qube's output) is an escape sequence.
      const rest = seen.toString('latin1').replace(/\x1b\[0(;31)?m/g, '');
      assert.doesNotMatch(rest, /\x1b/);
    });

    test('terminal-escape-injection: valid UTF-8 text is kept, invalid bytes and C1 controls are not', async () => {
      const seen = await onTerminal(inst.env, [path.join(BIN, 'qvm-run'), '-p', '--no-colour-output', 'work', String.raw`printf 'caf\303\251 \377\302\205 ok\n'`]);
      assert.ok(seen.includes(Buffer.from('café ___ ok')), JSON.stringify(seen.toString('utf8')));
    });

    test('terminal-escape-injection: --no-filter-escape-chars passes them; without a terminal they pass unchanged', async () => {
      const raw = await onTerminal(inst.env, [path.join(BIN, 'qvm-run'), '-p', '--no-filter-escape-chars', 'work', ATTACK]);
      assert.equal(hasAny(raw, DRIVERS).length, DRIVERS.length, JSON.stringify(raw.toString('latin1')));
      const piped = await inst.cli('qvm-run', ['-p', 'work', ATTACK]);
      assert.equal(piped.stdout, 'A\x1b]0;OWNED\x07B\x1b]52;c;aGk=\x07C\x1b[6nD\u009bE\ufffdF\n', 'bytes are unchanged when stdout is no terminal');
      const forced = await inst.cli('qvm-run', ['-p', '--filter-escape-chars', '--no-colour-output', 'work', ATTACK]);
      assert.equal(forced.stdout, 'A_]0;OWNED\x07B_]52;c;aGk=\x07C_[6nD__E_F\n', '--filter-escape-chars forces the filter');
    });

    test('terminal-escape-injection: a service call with a hostile target and service name is printed inert by isola policy log', async () => {
      // The qube names a "target" and a "service" that are escape sequences, and one that forges a log line.
      const forged = '2020-01-01T00:00:00.000Z work vault qubes.Forged+ allow forged.policy:1 forged';
      const r = await inQube('work', [
        String.raw`qrexec-client-vm "$(printf 'vault\033]0;OWNED\007')" test.Echo < /dev/null`,
        String.raw`qrexec-client-vm vault "$(printf 'x\033]52;c;aGk=\007\302\233')" < /dev/null`,
        `qrexec-client-vm vault "$(printf 'x\\n${forged}')" < /dev/null`,
        'true',
      ].join('; '));
      assert.equal(r.code, 0, r.stderr);
      const log = await inst.cli('isola', ['policy', 'log']);
      assert.equal(log.code, 0, log.stderr);
      assert.match(log.stdout, /OWNED/, 'the denied calls are in the log');
      assert.doesNotMatch(log.stdout, /[\x00-\x08\x0b-\x1f\x7f\u0080-\u009f]/, `control characters in: ${JSON.stringify(log.stdout)}`);
      assert.doesNotMatch(log.stdout, /^2020-01-01/m, 'a qube cannot forge a line of the log');
      const onTty = await onTerminal(inst.env, [path.join(BIN, 'isola'), 'policy', 'log']);
      assert.ok(!onTty.includes(0x1b), JSON.stringify(onTty.toString('latin1')));
    });

    test("terminal-escape-injection: qrexec-client-vm filters a hostile service's output on a terminal and when asked", async () => {
      // Not a terminal in the qube: unchanged, as Qubes.
      const plain = await ok('work', 'qrexec-client-vm untrusted test.Hostile < /dev/null 2>&1');
      assert.match(plain, /err\x1b\]0;OWNED\x07err/);
      const asked = await ok('work', 'qrexec-client-vm --filter-escape-chars-stdout --filter-escape-chars-stderr untrusted test.Hostile < /dev/null 2>&1');
      assert.match(asked, /err_\]0;OWNED\x07err/);
      assert.match(asked, /out_\]52;c;aGk=\x07out/);
      assert.ok(!asked.includes('\x1b'), JSON.stringify(asked));
      // On the qube's terminal, by default.
      const tty = await ok('work', "script -qfec 'qrexec-client-vm untrusted test.Hostile' /dev/null < /dev/null");
      assert.ok(tty.includes('err_]0;OWNED') && tty.includes('out_]52;'), JSON.stringify(tty));
      assert.ok(!tty.includes('\x1b'), JSON.stringify(tty));
      const optOut = await ok('work', "script -qfec 'qrexec-client-vm --no-filter-escape-chars-stderr untrusted test.Hostile' /dev/null < /dev/null");
      assert.ok(optOut.includes('err\x1b]0;OWNED'), JSON.stringify(optOut));
    });
  });

  test("view-only-reply-discarded: a hostile target's reply to --view-only never replaces the caller's file", async () => {
    await ok('work', "printf 'the original' > ~/keep.txt && chmod 640 ~/keep.txt");
    const r = await ok('work', "script -qfec 'qvm-open-in-vm --view-only untrusted ~/keep.txt; echo code=$?' /dev/null < /dev/null");
    assert.match(r, /code=0/);
    assert.equal(await ok('work', 'cat ~/keep.txt; stat -c " %a" ~/keep.txt'), 'the original 640\n');
    assert.equal(await ok('work', 'ls -A ~ | grep -c qopen || true'), '0\n', 'no temporary file left behind');
    // The target's stderr reached the caller's terminal inert.
    assert.ok(r.includes('x_]0;OWNED') && !r.includes('\x1b'), JSON.stringify(r));
  });
});
