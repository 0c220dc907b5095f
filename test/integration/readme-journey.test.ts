// The README's journey, as a new user meets it: a fresh ISOLA_HOME and policy directory, isolad
// started first, then `isola setup` (what `npm start` does), then the README's block run as written.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { canRunIntegration, Instance, REPO } from './harness';

const skip = canRunIntegration();

/** The fenced block after the README's "Then (this block is run as written …" line. */
export function readmeJourney(readme: string): string {
  const at = readme.indexOf('Then (this block is run as written');
  assert.ok(at >= 0, 'the README announces its journey');
  const open = readme.indexOf('```\n', at);
  const close = readme.indexOf('\n```', open + 4);
  assert.ok(open > 0 && close > open, 'the journey is a fenced block');
  return readme.slice(open + 4, close + 1);
}

describe("the README's journey", { skip, concurrency: false }, () => {
  let inst: Instance;
  let base: string;

  before(async () => {
    base = mkdtempSync(path.join(os.tmpdir(), 'isola-readme-'));
    inst = new Instance({ env: { ISOLA_POLICY_DIR: path.join(base, 'policy.d') } });
    await inst.start();
    const setup = await inst.cli('isola', ['setup']);
    assert.equal(setup.code, 0, setup.stderr);
  });
  after(async () => {
    await inst?.destroy();
    rmSync(base, { recursive: true, force: true });
  });

  test('every command of the README works as written, in order', async () => {
    const script = readmeJourney(readFileSync(path.join(REPO, 'README.md'), 'utf8'));
    // -e: the first failing command fails the journey; -x: the log says which one it was.
    const r = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      const child = spawn('bash', ['-e', '-x', '-c', script], { cwd: REPO, env: inst.env, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    });
    assert.equal(r.code, 0, `the journey stopped:\n${r.stderr.split('\n').slice(-15).join('\n')}`);
    assert.match(r.stdout, /^NAME\s+STATE\s+CLASS\s+LABEL\s+TEMPLATE\s+NETVM$/m, 'qvm-ls prints Qubes\' columns');
    assert.match(r.stdout, /^work2$/m, 'hostname is the qube\'s name');
    assert.match(r.stdout, /^apt \d/m, 'sudo works in the qube');
    assert.doesNotMatch(r.stderr, /unable to resolve host/, 'the qube knows its own name (/etc/hosts)');
    assert.match(r.stdout, /All checks passed|checks failed/);
    assert.match(r.stdout, /^1\s+work\s+qubes\.Filecopy\+\s+vault\s/m, 'the question names the target work asked for');
    assert.match(r.stderr, /waiting for the host to allow qubes\.Filecopy \(question 1\)/, 'the caller says what it waits for');
    assert.match(r.stdout, /^report$/m, 'the copy arrived in vault');
    assert.match(r.stdout, /^secret$/m, 'the paste arrived in personal');
    assert.match(r.stdout, / work vault qubes\.Filecopy\+ allow \S+:\d+ allowed by the user/, 'the log shows the decision');
  });
});
