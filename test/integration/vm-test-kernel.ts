// The guest kernel the VM tests boot: Debian's cloud kernel, installed (once) from the test cache, as
// isolad installs it; its .debs stay in ISOLA_CACHE/kernels so that later runs download nothing.

import path from 'node:path';
import { ensureDefaultKernel, listKernels, type KernelInfo } from '../../src/backends/vm/kernel-store';

export const TEST_CACHE = process.env.ISOLA_CACHE || '/var/cache/isola';
const HOME = path.join(TEST_CACHE, 'test-kernel-home');

export async function testKernel(): Promise<KernelInfo> {
  const have = (await listKernels(HOME))[0];
  if (have) return have;
  return ensureDefaultKernel({ home: HOME, cacheDir: TEST_CACHE });
}
