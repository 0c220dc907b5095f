// What of a qube's output reaches a terminal: the byte-stream filter (qvm-run -p, qrexec-client-vm)
// across chunk boundaries, with invalid UTF-8, CSI/OSC/DCS and C1 controls; the CLI's inert()
// for strings; and main(), which prints every command's text inert.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { filterTerminalBytes, inertString, TerminalFilter } from '../../src/core/terminal-filter';
import { inert, inertText } from '../../src/cli/output';
import { main, registerCommand } from '../../src/cli/main';
import { FakeClient, runCommand, VM_LIST } from './cli-fake-client';

const b = (...parts: (string | number[])[]) => Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p, 'utf8') : Buffer.from(p))));
const show = (x: Buffer) => x.toString('latin1');

/** The stream cut into chunks at the given offsets, through one filter. */
function inChunks(input: Buffer, cuts: number[]): Buffer {
  const f = new TerminalFilter();
  const out: Buffer[] = [];
  let from = 0;
  for (const at of [...cuts, input.length]) {
    out.push(f.push(input.subarray(from, at)));
    from = at;
  }
  out.push(f.end());
  return Buffer.concat(out);
}

describe('TerminalFilter (a qube\'s byte stream on a terminal)', () => {
  it('turns CSI, OSC and DCS into text: the ESC becomes _, the rest is shown', () => {
    const attack = b('A\x1b]0;OWNED\x07B\x1b]52;c;aGk=\x07C\x1b[6nD\x1bP+q544e\x1b\\E\x1b[2J');
    assert.equal(show(filterTerminalBytes(attack)), 'A_]0;OWNED\x07B_]52;c;aGk=\x07C_[6nD_P+q544e_\\E_[2J');
  });

  it("keeps Qubes' tab, newline, carriage return, backspace and bell; replaces the other C0 controls and DEL", () => {
    const all = Buffer.from(Array.from({ length: 0x80 }, (_v, i) => i));
    const out = filterTerminalBytes(all);
    for (let i = 0; i < 0x80; i++) {
      const kept = (i >= 0x20 && i < 0x7f) || [7, 8, 9, 10, 13].includes(i);
      assert.equal(out[i], kept ? i : 0x5f, `byte 0x${i.toString(16)}`);
    }
  });

  it('replaces C1 controls as bytes (0x80-0x9f) and as UTF-8 (U+0080-U+009F), one _ per byte', () => {
    for (let c = 0x80; c <= 0x9f; c++) {
      assert.equal(show(filterTerminalBytes(b('a', [c], 'b'))), 'a_b', `byte 0x${c.toString(16)}`);
      assert.equal(show(filterTerminalBytes(b('a', String.fromCharCode(c), 'b'))), 'a__b', `U+00${c.toString(16)}`);
    }
  });

  it('keeps valid UTF-8 text of one to four bytes', () => {
    const text = 'café · Grüße · 漢字 · 🙂 · ÿ\u00a0end\n';
    assert.equal(filterTerminalBytes(Buffer.from(text)).toString('utf8'), text);
  });

  it('replaces bytes that are not UTF-8: stray continuations, bad leads, overlongs, surrogates, beyond U+10FFFF, truncation', () => {
    const cases: [number[], string][] = [
      [[0x80], '_'], [[0xbf, 0xbf], '__'], [[0xc0, 0x9b], '__'], [[0xc1, 0xbf], '__'], [[0xe0, 0x80, 0x9b], '___'],
      [[0xed, 0xa0, 0x80], '___'], [[0xf4, 0x90, 0x80, 0x80], '____'], [[0xf5, 0x80], '__'], [[0xff], '_'], [[0xfe], '_'],
      [[0xc3, 0x41], '_A'], [[0xe6, 0xbc, 0x41], '__A'], [[0xf0, 0x9f, 0x99], '___'],
    ];
    for (const [bytes, want] of cases) assert.equal(show(filterTerminalBytes(b('<', bytes, '>'))), `<${want}>`, JSON.stringify(bytes));
  });

  it('never modifies its input and keeps the length of the stream', () => {
    const input = b('x\x1b[31m', [0xc2, 0x9b], 'é', [0xff]);
    const copy = Buffer.from(input);
    const out = filterTerminalBytes(input);
    assert.deepEqual(input, copy);
    assert.equal(out.length, input.length);
  });

  it('judges a character cut between chunks as a whole, at every cut', () => {
    const input = b('a', [0xc2, 0x9b], '6n', 'é', '漢', '🙂', [0xc2, 0x85], 'z\x1b]0;t\x07');
    const whole = filterTerminalBytes(input);
    assert.equal(whole.toString('utf8'), 'a__6né漢🙂__z_]0;t\x07');
    for (let i = 0; i <= input.length; i++) {
      assert.deepEqual(inChunks(input, [i]), whole, `cut at ${i}`);
      for (let j = i; j <= input.length; j++) assert.deepEqual(inChunks(input, [i, j]), whole, `cuts at ${i}, ${j}`);
    }
    const byByte = inChunks(input, Array.from({ length: input.length }, (_v, i) => i));
    assert.deepEqual(byByte, whole, 'one byte per chunk');
  });

  it('holds at most the start of one character, and shows it as _ when the stream ends there', () => {
    const f = new TerminalFilter();
    assert.equal(show(f.push(b('ok', [0xf0, 0x9f]))), 'ok');
    assert.equal(show(f.push(b([0x99]))), '');
    assert.equal(show(f.end()), '___');
    assert.equal(show(f.end()), '', 'nothing twice');
    const g = new TerminalFilter();
    assert.equal(show(g.push(b([0xc2]))), '');
    assert.equal(show(g.push(b('A'))), '_A', 'a lead byte followed by no continuation is replaced');
  });

  it('survives every byte value in any order (no exception, same length)', () => {
    let seed = 42;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % 256);
    const f = new TerminalFilter();
    let total = 0;
    let inLen = 0;
    for (let k = 0; k < 200; k++) {
      const chunk = Buffer.from(Array.from({ length: rnd() }, rnd));
      inLen += chunk.length;
      const out = f.push(chunk);
      total += out.length;
      for (const c of out) assert.ok(c >= 0x20 || [7, 8, 9, 10, 13].includes(c), `control 0x${c.toString(16)} passed`);
      assert.ok(!out.includes(0x1b) && !out.includes(0x9b));
    }
    total += f.end().length;
    assert.equal(total, inLen);
  });
});

describe('inert() and inertText(): strings a qube may have chosen, as the CLI prints them', () => {
  it('replaces ESC, C0, DEL, C1, bidi controls and lone surrogates; keeps printable text', () => {
    assert.equal(inert('a\x1b]0;t\x07b\x7f\u009b6n\u202etxt.exe\u2066x\u2069 \ud800 \u200f'), 'a_]0;t_b__6n_txt.exe_x_ _ _');
    assert.equal(inert('Grüße 漢字 🙂'), 'Grüße 漢字 🙂');
  });

  it('inert() keeps a value on one line; inertText() keeps tabs and newlines', () => {
    assert.equal(inert('x\nforged line\ty\r'), 'x_forged line_y_');
    assert.equal(inertText('line 1\n\tline 2\r\x1b[2J\n'), 'line 1\n\tline 2__[2J\n');
  });

  it('inertString keeps what it is told to keep, and nothing else', () => {
    assert.equal(inertString('\x07\x1b\t', new Set([7])), '\x07__');
  });
});

describe('main() prints every command inert', () => {
  it('text on stdout and stderr is inert; the command\'s own controls pass', async () => {
    registerCommand('qvm-hostile-test', {
      run: async (_argv, deps) => {
        deps.stdout('title \x1b]0;OWNED\x07 clip \x1b]52;c;aGk=\x07\n');
        deps.stderr('csi \u009b6n\n');
        deps.controls?.('\x1b[0;31m');
        return 0;
      },
    });
    let out = '';
    let err = '';
    const code = await main('qvm-hostile-test', [], { client: new FakeClient(), stdout: (s) => (out += s), stderr: (s) => (err += s), isTTY: false });
    assert.equal(code, 0);
    assert.equal(out, 'title _]0;OWNED_ clip _]52;c;aGk=_\n');
    assert.equal(err, 'csi _6n\n\x1b[0;31m');
  });

  it("qvm-ls shows a qube-chosen last error (a file name) inert and on one line", async () => {
    const hostile = encodeURIComponent('commit failed: x\x1b]0;OWNED\x07\nwork  Running  AppVM  forged \u009b');
    const list = VM_LIST.replace('work class=AppVM state=Halted uuid=33333333-3333-3333-3333-333333333333', `$& last_error=${hostile}`);
    const r = await runCommand('qvm-ls', ['--raw-list'], { 'admin.vm.List dom0': list });
    assert.equal(r.code, 0);
    const ls = await runCommand('qvm-ls', ['-O', 'name', 'work'], { 'admin.vm.List dom0': list });
    assert.equal(ls.stderr, 'work: last run: commit failed: x_]0;OWNED__work  Running  AppVM  forged _\n');
    const check = await runCommand('qvm-check', ['-v', '-v', '--running', 'work'], { 'admin.vm.List dom0': list });
    assert.doesNotMatch(check.stderr, /[\x1b\u009b]|\nwork {2}Running/);
  });

  it('an error message from isolad is printed inert', async () => {
    const { err } = await import('./cli-fake-client');
    const r = await runCommand('qvm-ls', [], { 'admin.vm.List dom0': err('QubesException', "no such file 'a\x1b]52;c;aGk=\x07'") });
    assert.equal(r.stderr, "qvm-ls: error: no such file 'a_]52;c;aGk=_'\n");
  });
});
