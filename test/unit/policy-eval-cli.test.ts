// Qubes' policy test vectors through the command a user runs: `isola policy eval --policy-dir DIR
// --system FILE SOURCE TARGET SERVICE+ARG` must print Qubes' answer, and refuse what Qubes refuses.

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { POLICY_VECTORS } from './conformance-file';

const REPO = path.resolve(__dirname, '../../..');
const FILE = POLICY_VECTORS;
const ISOLA = path.join(REPO, 'bin', 'isola');

interface Vector {
  id: string;
  policy: string[] | Record<string, string[]>;
  system: 'default' | object;
  request: { service: string; argument: string; source: string; target: string; requested_source?: string };
  expect: Record<string, unknown>;
}
const data = JSON.parse(readFileSync(FILE, 'utf8')) as { systems: Record<string, object>; vectors: Vector[] };
const root = mkdtempSync(path.join(os.tmpdir(), 'isola-policy-eval-'));

/** The vector's policy as a directory: the main file as `00-main.policy`, others beside it for !include. */
function writeVector(v: Vector, i: number): { dir: string; system: string } {
  const dir = path.join(root, `v${i}`, 'policy.d');
  mkdirSync(dir, { recursive: true });
  const files = Array.isArray(v.policy) ? { __main__: v.policy } : v.policy;
  for (const [name, lines] of Object.entries(files)) {
    writeFileSync(path.join(dir, name === '__main__' ? '00-main.policy' : name), lines.join('\n') + '\n');
  }
  const system = path.join(root, `v${i}`, 'system.json');
  writeFileSync(system, JSON.stringify(v.system === 'default' ? data.systems.default : v.system));
  return { dir, system };
}

function evalCli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(ISOLA, ['policy', 'eval', ...args], (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe('isola policy eval agrees with Qubes on every vector', () => {
  after(() => rmSync(root, { recursive: true, force: true }));
  data.vectors.forEach((v, i) => {
    test(v.id, async () => {
      const { dir, system } = writeVector(v, i);
      const { service, argument, source, target, requested_source: remote } = v.request;
      const relay = remote ? ['--requested-source', remote] : [];
      const r = await evalCli(['--policy-dir', dir, '--system', system, ...relay, source, target, `${service}${argument}`]);
      if (v.expect.result === 'error') {
        assert.equal(r.code, 2, `${v.id}: a policy Qubes refuses must not load (${r.stdout})`);
        assert.match(r.stderr.trim(), /^\/.+:\d+: .+$/, 'one line: FILE:LINE: reason');
        assert.equal(r.stderr.trim().split('\n').length, 1);
        return;
      }
      assert.equal(r.code, 0, r.stderr);
      const out = JSON.parse(r.stdout) as Record<string, unknown>;
      assert.equal(out.result, v.expect.result, `${v.id}: ${r.stdout}`);
      for (const key of ['target', 'targets_for_ask', 'default_target', 'notify', 'autostart', 'user']) {
        if (key in v.expect) assert.deepEqual(out[key], v.expect[key], `${key} of ${v.id}: ${r.stdout}`);
      }
      if (v.expect.result !== 'deny' || v.expect.stage !== 'request') assert.ok(out.reason, 'a reason is always given');
    });
  });
});

describe('isola policy eval refuses bad input on one line', () => {
  test('a --system file that is not JSON, a missing one, and one without domains', async () => {
    const dir = path.join(root, 'ok');
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, '10-a.policy'), '* * @anyvm @anyvm deny\n');
    const bad = path.join(root, 'bad.json');
    writeFileSync(bad, '{nope');
    const empty = path.join(root, 'empty.json');
    writeFileSync(empty, '{}');
    for (const [file, pattern] of [[bad, /not valid JSON/], [path.join(root, 'missing.json'), /no such file/], [empty, /no "domains"/]] as const) {
      const r = await evalCli(['--policy-dir', dir, '--system', file, 'a', 'b', 'svc']);
      assert.equal(r.code, 1);
      assert.match(r.stderr, pattern);
      assert.equal(r.stderr.trim().split('\n').length, 1);
    }
  });
});
