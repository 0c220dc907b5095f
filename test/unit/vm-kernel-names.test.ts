// Kernel versions become directory names under ISOLA_HOME/kernels: only the release alphabet, never '..'.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { kernelInfo, listKernels, releaseOfPackage, validKernelVersion, versionedImagePackage } from '../../src/backends/vm/kernel-store';

test('real kernel releases are valid versions', () => {
  for (const v of ['6.1.0-50-cloud-amd64', '6.12.9+bpo-cloud-amd64', '5.10.0-0.deb10.16-cloud-amd64', '6.1_rc1']) assert.equal(validKernelVersion(v), v);
});

test('a version that would leave the kernels directory, or is not a plain name, is refused', () => {
  for (const bad of ['', '.', '..', '...', '../etc', '6.1/../../x', '6.1..0', 'a/b', 'a b', '6.1\0', 'é', 'x'.repeat(129)]) {
    assert.throws(() => validKernelVersion(bad), /bad kernel version/, JSON.stringify(bad));
  }
});

test('kernelInfo refuses a traversal before touching the disk', async () => {
  await assert.rejects(() => kernelInfo('/nonexistent', '../../etc'), /bad kernel version/);
});

test('the versioned package comes from apt-cache depends or a Depends: field, and names the release', () => {
  assert.equal(versionedImagePackage('linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-50-cloud-amd64\n'), 'linux-image-6.1.0-50-cloud-amd64');
  assert.equal(versionedImagePackage('linux-image-6.1.0-50-cloud-amd64 (= 6.1.176-1)'), 'linux-image-6.1.0-50-cloud-amd64');
  assert.equal(versionedImagePackage('  Depends: <linux-image>\n'), undefined);
  assert.equal(releaseOfPackage('linux-image-6.1.0-50-cloud-amd64'), '6.1.0-50-cloud-amd64');
  assert.throws(() => releaseOfPackage('linux-image-cloud-amd64'), /not a linux-image-VERSION/);
});

test('listKernels shows complete installs only, newest first, and skips partial and odd names', async () => {
  const home = mkdtempSync(join(tmpdir(), 'isola-kernels-test-'));
  try {
    const install = (v: string, complete = true) => {
      mkdirSync(join(home, 'kernels', v, 'modules'), { recursive: true });
      writeFileSync(join(home, 'kernels', v, 'vmlinuz'), 'k');
      if (complete) writeFileSync(join(home, 'kernels', v, 'modules', 'modules.order'), 'virtio_ring.ko\n');
    };
    install('6.1.0-9-cloud-amd64');
    install('6.1.0-50-cloud-amd64');
    install('6.1.0-51-cloud-amd64', false);
    install('.6.1.0-52-cloud-amd64.partial-abc');
    install('bad name');
    assert.deepEqual((await listKernels(home)).map((k) => k.version), ['6.1.0-50-cloud-amd64', '6.1.0-9-cloud-amd64']);
    assert.equal((await kernelInfo(home, '6.1.0-51-cloud-amd64')), undefined);
    assert.deepEqual(await listKernels(join(home, 'none')), []);
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
});
