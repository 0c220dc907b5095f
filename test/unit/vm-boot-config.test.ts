// The per-start settings an hvm qube's init sources: exact words whatever the names and values hold.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import type { QubeLaunch } from '../../src/core/backend';
import { bootConfig, launchDisks, shellQuote } from '../../src/backends/vm/boot-config';

function launch(env: Record<string, string> = {}): QubeLaunch {
  return {
    runtimeId: 'work.1', name: 'work', uuid: 'u', ids: { base: 65536, count: 65536 },
    limits: { memoryMiB: 400, maxmemMiB: 0, vcpus: 2, pidsLimit: 4096 },
    volumes: {
      root: { name: 'root', readonly: false, image: { disks: [{ file: '/p/t/root.img', readonly: true }, { file: '/p/w/volatile.changes', readonly: false }], lower: [{ disk: 0, dir: 'layers/L000002' }, { disk: 0, dir: 'layers/S000001' }], upper: { disk: 1, dir: 'upper' } } },
      private: { name: 'private', readonly: false, image: { disks: [{ file: '/p/w/private.img', readonly: true }, { file: '/p/w/private.changes', readonly: false }], lower: [{ disk: 0, dir: 'layers/S000001' }], upper: { disk: 1, dir: 'upper' } } },
    },
    guestLib: '/g', agentEnv: { ISOLA_QUBE_NAME: 'work', ...env }, logFile: '/l',
  };
}

/** What sh makes of the file: the variables it sets, read back through a real shell. */
function sourced(conf: string, names: string[]): string[] {
  const script = `${conf}\nfor n in ${names.join(' ')}; do eval "printf '%s\\\\0' \\"\\$$n\\""; done`;
  return execFileSync('busybox', ['sh', '-c', script]).toString().split('\0').slice(0, -1);
}

test("disks are numbered root's first, then private's, and the stacks refer to those numbers", () => {
  assert.deepEqual(launchDisks(launch()).map((d) => d.file), ['/p/t/root.img', '/p/w/volatile.changes', '/p/w/private.img', '/p/w/private.changes']);
  const conf = bootConfig(launch(), {});
  assert.deepEqual(sourced(conf, ['ISOLA_DISKS', 'ISOLA_ROOT_LOWER', 'ISOLA_ROOT_UPPER', 'ISOLA_PRIVATE_LOWER', 'ISOLA_PRIVATE_UPPER']), [
    '0:ro 1:rw 2:ro 3:rw', '0:layers/L000002 0:layers/S000001', '1:upper', '2:layers/S000001', '3:upper',
  ]);
});

test('a value with quotes, newlines and $(...) reaches the agent exactly, never as shell syntax', () => {
  const evil = `it's "$(touch /tmp/pwned)"\n; rm -rf / \`id\``;
  const conf = bootConfig(launch({ ISOLA_DEFAULT_USER: evil }), {});
  assert.deepEqual(sourced(conf, ['ISOLA_DEFAULT_USER']), [evil]);
  assert.equal(shellQuote("a'b"), `'a'\\''b'`);
});

test('an environment name or a disk directory that could break the init is refused', () => {
  assert.throws(() => bootConfig(launch({ 'A;B': 'x' }), {}), /bad environment name/);
  const bad = launch();
  bad.volumes.private.image!.lower = [{ disk: 0, dir: '../../etc' }];
  assert.throws(() => bootConfig(bad, {}), /bad disk directory/);
  const far = launch();
  far.volumes.root.image!.upper = { disk: 5, dir: 'upper' };
  assert.throws(() => bootConfig(far, {}), /bad disk directory 5:upper/);
  const spaced = launch();
  spaced.volumes.root.image!.lower = [{ disk: 0, dir: 'layers/a b' }];
  assert.throws(() => bootConfig(spaced, {}), /bad disk directory/);
});

test("the card's address and gateway reach the init as checked IPv4 words; offline, there are none", () => {
  const nic = { ip: '10.137.0.3', gateway: '10.137.0.2', mac: '00:16:3e:5e:6c:03' };
  assert.deepEqual(sourced(bootConfig({ ...launch(), nic }, {}), ['ISOLA_NET_IP', 'ISOLA_NET_GATEWAY']), ['10.137.0.3', '10.137.0.2']);
  assert.doesNotMatch(bootConfig(launch(), {}), /ISOLA_NET/);
  for (const bad of ['10.137.0.3; poweroff', '10.137.0.256', '', '::1']) {
    assert.throws(() => bootConfig({ ...launch(), nic: { ...nic, ip: bad } }, {}), /bad IPv4 address/, bad);
  }
});
