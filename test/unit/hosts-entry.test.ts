// The qube's name in /etc/hosts: one 127.0.1.1 line for this qube, whatever a template left there.

import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { ensureHostsEntry, withHostsEntry } from '../../src/agent/hosts-entry';

test('adds the qube, replaces a stale 127.0.1.1 line (a template or clone), keeps the rest', () => {
  assert.equal(withHostsEntry('127.0.0.1\tlocalhost\n', 'work'), '127.0.0.1\tlocalhost\n127.0.1.1\twork\n');
  assert.equal(withHostsEntry('127.0.0.1 localhost\n127.0.1.1 debian-12\n::1 localhost\n', 'work'), '127.0.0.1 localhost\n::1 localhost\n127.0.1.1\twork\n');
  assert.equal(withHostsEntry('', 'work'), '127.0.1.1\twork\n');
  const once = withHostsEntry('127.0.0.1 localhost\n', 'work');
  assert.equal(withHostsEntry(once, 'work'), once, 'a second start changes nothing');
});

test('ensureHostsEntry writes the file in place, and only when it changes', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'isola-hosts-'));
  try {
    const f = path.join(dir, 'hosts');
    writeFileSync(f, '127.0.0.1 localhost\n');
    ensureHostsEntry('vault', f);
    assert.equal(readFileSync(f, 'utf8'), '127.0.0.1 localhost\n127.0.1.1\tvault\n');
    ensureHostsEntry('vault', path.join(dir, 'missing-dir', 'hosts')); // unwritable: no throw
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
