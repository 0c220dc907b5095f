// Which accelerator hvm qubes get, from probe results the tests make up: a KVM that hangs, one that
// needs the default CPU, no QEMU at all, and ISOLA_ACCEL forcing either way.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AccelAttempt, decideAccelerator, parseAccelEnv, printableLine } from '../../src/backends/kvm-probe';

const ok = (ms: number, cpu?: 'host' | 'default'): AccelAttempt => ({ ok: true, ms, error: '', ...(cpu ? { cpu } : {}) });
const fail = (error: string): AccelAttempt => ({ ok: false, ms: 15000, error });
const HUNG = 'a Linux guest hung under KVM (no console output 15 s after start)';
const skipped: AccelAttempt = { ok: false, ms: 0, error: 'not probed', skipped: true };

test('a KVM that boots the guest kernel is chosen', () => {
  const d = decideAccelerator(ok(900, 'host'), ok(2400));
  assert.equal(d.accel, 'kvm');
  assert.match(d.reason, /^KVM: yes — a Linux guest booted under KVM in 0.9 s$/);
  assert.match(decideAccelerator(ok(900, 'default'), ok(2400)).reason, /default CPU model/);
});

test('a KVM that hangs the guest kernel falls back to TCG, and says why in one line', () => {
  const d = decideAccelerator(fail(HUNG), ok(2400));
  assert.equal(d.accel, 'tcg');
  assert.equal(d.reason, `KVM: no — ${HUNG}; hvm qubes run under TCG`);
});

test('neither accelerator: no choice, and a reason that says what to install', () => {
  const d = decideAccelerator(fail('qemu-system-x86_64 not found'), fail('qemu-system-x86_64 not found'));
  assert.equal(d.accel, null);
  assert.match(d.reason, /hvm qubes cannot start; install QEMU: apt-get install -y qemu-system-x86/);
  const broken = decideAccelerator(fail(HUNG), fail('QEMU exited (status 1) before the guest\'s init ran: could not load kernel'));
  assert.equal(broken.accel, null);
  assert.match(broken.reason, /could not load kernel.*reinstall qemu-system-x86/);
});

test('ISOLA_ACCEL=kvm forces KVM and warns when KVM cannot run the guest', () => {
  const d = decideAccelerator(fail(HUNG), ok(2400), 'kvm');
  assert.equal(d.accel, 'kvm');
  assert.match(d.reason, /forced by ISOLA_ACCEL=kvm although it cannot run a Linux guest here: a Linux guest hung/);
  assert.match(decideAccelerator(skipped, skipped, 'kvm').reason, /although not probed/);
  assert.match(decideAccelerator(ok(800), ok(2400), 'kvm').reason, /^KVM: yes \(forced/);
});

test('ISOLA_ACCEL=tcg forces TCG even where KVM works', () => {
  const d = decideAccelerator(ok(800), ok(2400), 'tcg');
  assert.equal(d.accel, 'tcg');
  assert.match(d.reason, /ISOLA_ACCEL=tcg/);
  assert.equal(decideAccelerator(skipped, skipped, 'tcg').accel, 'tcg');
});

test('ISOLA_ACCEL accepts kvm, tcg, auto or nothing, and names a typo', () => {
  assert.equal(parseAccelEnv(undefined), undefined);
  assert.equal(parseAccelEnv(''), undefined);
  assert.equal(parseAccelEnv('auto'), undefined);
  assert.equal(parseAccelEnv('kvm'), 'kvm');
  assert.equal(parseAccelEnv('tcg'), 'tcg');
  assert.throws(() => parseAccelEnv('KVM '), /ISOLA_ACCEL="KVM ": expected kvm, tcg or auto/);
});

test('a guest that writes escape sequences or binary to its console cannot put them into the report', () => {
  const line = printableLine(Buffer.from('ok line\r\n\x1b]0;pwned\x07\x1b[2Jfake\xff\xfe prompt\x00\n\n', 'latin1'));
  assert.equal(line, ']0;pwned[2Jfake prompt');
  assert.ok(!/[\x00-\x1f\x7f-\xff]/.test(line));
  assert.equal(printableLine(Buffer.from('x'.repeat(5000))).length, 100);
  assert.equal(printableLine(Buffer.alloc(0)), '');
});
