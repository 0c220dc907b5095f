// microvm under TCG hangs calibrating its TSC unless told the rate: the command line carries the host's.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { guestCmdline, tscKhzFromCpuinfo } from '../../src/backends/vm/guest-cmdline';

test('the host TSC rate comes from /proc/cpuinfo, and odd values are ignored', () => {
  assert.equal(tscKhzFromCpuinfo('processor\t: 0\ncpu MHz\t\t: 2596.122\nflags\t: tsc\n'), 2596122);
  for (const bad of ['', 'cpu MHz : \n', 'cpu MHz : 12\n', 'cpu MHz : 1e9\n', 'cpu MHz : 2596.1 GHz\n']) assert.equal(tscKhzFromCpuinfo(bad), undefined, bad);
});

test('microvm gets tsc_early_khz, q35 (which has an HPET) does not', () => {
  assert.equal(guestCmdline('microvm', { tscKhz: 2596122 }), 'console=ttyS0 panic=-1 quiet tsc_early_khz=2596122');
  assert.equal(guestCmdline('q35', { tscKhz: 2596122 }), 'console=ttyS0 panic=-1 quiet');
  assert.equal(guestCmdline('microvm'), 'console=ttyS0 panic=-1 quiet');
});
