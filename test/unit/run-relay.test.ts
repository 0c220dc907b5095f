// admin.vm.Run's check of a service call from dom0: the source is dom0 and nobody else, and the
// service name is checked as the qrexec router checks one from a qube.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkRunCommand } from '../../src/daemon/run-relay';
import { QubesError } from '../../src/core/errors';

test('a plain command and a well-formed service call from dom0 pass unchanged', () => {
  for (const c of ['id -un', 'QUBESRPC qubes.VMShell dom0', 'QUBESRPC qubes.VMRootShell dom0', 'QUBESRPC my.Service+some-arg dom0', 'QUBESRPCnot-a-call']) assert.equal(checkRunCommand(c), c);
});

test('qrexec-spoofed-source-through-admin-vm-run: service calls that claim another source or are malformed are ProtocolErrors', () => {
  const BAD: [string, string][] = [
    ['QUBESRPC qubes.VMShell vault', 'a dom0 caller must not make a service believe the vault qube called it'],
    ['QUBESRPC qubes.VMShell', 'no source at all'],
    ['QUBESRPC qubes.VMShell dom0 extra', 'a fourth word would be read by nobody: refused rather than ignored'],
    ['QUBESRPC  qubes.VMShell dom0', 'an empty service name'],
    ['QUBESRPC qubes.VMShell;id dom0', 'a character a shell could misread'],
    ['QUBESRPC qubes.VMShell+a/b dom0', 'a slash in the argument could name a path'],
    ['QUBESRPC', 'nothing but the keyword'],
  ];
  for (const [cmd, why] of BAD) {
    assert.throws(() => checkRunCommand(cmd), (e: unknown) => e instanceof QubesError && e.code === 'ProtocolError', why);
  }
});
