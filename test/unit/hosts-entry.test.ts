// What the agent writes into a qube's root at start, driven through the compiled isola-agent's test entry
// points: the qube's name in /etc/hosts (one 127.0.1.1 line, whatever a template left there) and the
// wrappers that put the in-qube tools on the PATH (Node bundles; the C qrexec-client-vm as a symlink).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { AGENT_BINARY, haveAgent } from './c-agent';

const dir = mkdtempSync(path.join(os.tmpdir(), 'isola-hosts-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function hostsAfterStart(before: string | null, name = 'work'): string {
  const f = path.join(dir, `hosts-${Math.random().toString(36).slice(2)}`);
  if (before !== null) writeFileSync(f, before);
  execFileSync(AGENT_BINARY, ['--hosts-entry', name, f]);
  return readFileSync(f, 'utf8');
}

describe('the qube name in /etc/hosts', { skip: !haveAgent && 'build the agent first (scripts/build.sh)' }, () => {
  test('adds the qube, replaces a stale 127.0.1.1 line (a template or clone), keeps the rest', () => {
    assert.equal(hostsAfterStart('127.0.0.1\tlocalhost\n'), '127.0.0.1\tlocalhost\n127.0.1.1\twork\n');
    assert.equal(hostsAfterStart('127.0.0.1 localhost\n127.0.1.1 debian-12\n::1 localhost\n'), '127.0.0.1 localhost\n::1 localhost\n127.0.1.1\twork\n');
    assert.equal(hostsAfterStart(''), '127.0.1.1\twork\n');
    assert.equal(hostsAfterStart(null), '127.0.1.1\twork\n', 'no file yet: it gets the one line');
    assert.equal(hostsAfterStart('  127.0.1.1\told\n127.0.1.10 other\n'), '127.0.1.10 other\n127.0.1.1\twork\n');
  });

  test('a second start changes nothing: the file is not even rewritten', () => {
    const f = path.join(dir, 'hosts-twice');
    writeFileSync(f, '127.0.0.1 localhost\n');
    execFileSync(AGENT_BINARY, ['--hosts-entry', 'vault', f]);
    const first = statSync(f);
    assert.equal(readFileSync(f, 'utf8'), '127.0.0.1 localhost\n127.0.1.1\tvault\n');
    execFileSync(AGENT_BINARY, ['--hosts-entry', 'vault', f]);
    assert.equal(statSync(f).ino, first.ino, 'rewritten (renamed over) although nothing changed');
  });

  test('an unwritable place is survived (a read-only root)', () => {
    execFileSync(AGENT_BINARY, ['--hosts-entry', 'vault', path.join(dir, 'missing-dir', 'hosts')]);
  });
});

describe('the in-qube tools on the PATH', { skip: !haveAgent && 'build the agent first (scripts/build.sh)' }, () => {
  test('writes a wrapper for each tool whose bundle exists, and leaves a tool the qube has alone', () => {
    const lib = path.join(dir, 'lib');
    const bin = path.join(dir, 'bin');
    mkdirSync(lib);
    mkdirSync(bin);
    writeFileSync(path.join(lib, 'qvm-copy.js'), '');
    writeFileSync(path.join(lib, 'isola-clipboard'), '');
    copyFileSync(AGENT_BINARY, path.join(lib, 'isola-qrexec-client-vm')); // any ELF program stands for it
    writeFileSync(path.join(bin, 'qvm-move'), 'the qube\'s own\n');
    execFileSync(AGENT_BINARY, ['--install-tools', lib, bin]);
    assert.deepEqual(readdirSync(bin).sort(), ['isola-clipboard', 'qrexec-client-vm', 'qvm-copy', 'qvm-copy-to-vm', 'qvm-move', 'qvm-move-to-vm']);
    // The C qrexec-client-vm runs without a shell or Node in front of it, under its own name.
    assert.equal(readlinkSync(path.join(bin, 'qrexec-client-vm')), path.join(lib, 'isola-qrexec-client-vm'));
    assert.equal(readFileSync(path.join(bin, 'qvm-copy-to-vm'), 'utf8'), `#!/bin/sh\nexec /usr/bin/node ${lib}/qvm-copy.js qvm-copy-to-vm "$@"\n`);
    assert.equal(readFileSync(path.join(bin, 'isola-clipboard'), 'utf8'), `#!/bin/sh\nexec /bin/sh ${lib}/isola-clipboard  "$@"\n`);
    assert.equal(statSync(path.join(bin, 'qvm-copy')).mode & 0o777, 0o755);
    assert.equal(readFileSync(path.join(bin, 'qvm-move'), 'utf8'), 'the qube\'s own\n');
  });
});

describe('the DNS servers in /etc/resolv.conf', { skip: !haveAgent && 'build the agent first (scripts/build.sh)' }, () => {
  const resolvAfter = (servers: string, before: string | null) => {
    const f = path.join(dir, `resolv-${Math.random().toString(36).slice(2)}`);
    if (before !== null) writeFileSync(f, before);
    execFileSync(AGENT_BINARY, ['--resolv-conf', servers, f]);
    return readFileSync(f, 'utf8');
  };

  test("Qubes' virtual servers replace whatever the template had", () => {
    assert.equal(resolvAfter('10.139.1.1 10.139.1.2', 'nameserver 192.0.2.53\nsearch lan\n'), 'nameserver 10.139.1.1\nnameserver 10.139.1.2\n');
    assert.equal(resolvAfter('10.139.1.1', null), 'nameserver 10.139.1.1\n');
  });

  test('anything but addresses leaves the file as it was (no injected options)', () => {
    for (const bad of ['10.139.1.1\noptions ndots:9', '10.139.1.1; rm', 'x', '1.2.3.4.5.6.7.8.9.10.11']) {
      assert.equal(resolvAfter(bad, 'nameserver 192.0.2.53\n'), 'nameserver 192.0.2.53\n', JSON.stringify(bad));
    }
  });
});
