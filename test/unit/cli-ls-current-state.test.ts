// The memory figure behind qvm-ls' MEMORY: admin.vm.CurrentState reads the qube's cgroup charge,
// cgroup v1's memory.usage_in_bytes first, else v2's memory.current, and 0 when neither exists.

import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { cgroupMemoryBytes } from '../../src/daemon/current-state';

describe('admin.vm.CurrentState mem=', () => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'isola-cg-'));
  after(() => rmSync(root, { recursive: true, force: true }));
  const v1 = path.join(root, 'memory');
  const v2 = path.join(root, 'unified');
  const roots: [string, string][] = [[v1, 'memory.usage_in_bytes'], [v2, 'memory.current']];
  const put = (base: string, file: string, text: string) => {
    mkdirSync(path.join(base, 'isola-t', 'work.3'), { recursive: true });
    writeFileSync(path.join(base, 'isola-t', 'work.3', file), text);
  };

  it("is 0 when the qube's cgroup is gone", async () => {
    assert.equal(await cgroupMemoryBytes({ cgroupParent: 'isola-t' }, 'work.3', roots), 0);
  });

  it("reads cgroup v2's memory.current under the instance's cgroup parent", async () => {
    put(v2, 'memory.current', '52428800\n');
    assert.equal(await cgroupMemoryBytes({ cgroupParent: 'isola-t' }, 'work.3', roots), 52428800);
    assert.equal(await cgroupMemoryBytes({ cgroupParent: 'isola-other' }, 'work.3', roots), 0, 'another instance sees nothing');
  });

  it("prefers cgroup v1's memory.usage_in_bytes where the memory hierarchy has it", async () => {
    put(v1, 'memory.usage_in_bytes', '1048576\n');
    assert.equal(await cgroupMemoryBytes({ cgroupParent: 'isola-t' }, 'work.3', roots), 1048576);
  });
});
