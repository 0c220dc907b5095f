// A fresh ISOLA_HOME installs its first guest kernel in the background: property calls that depend on
// the installed kernels wait for that install, so `qvm-prefs vault kernel` right after `isola setup`
// names the kernel instead of printing an empty line, and `qvm-prefs vault kernel VERSION` is not refused.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ADMIN_METHODS, type AdminMethod } from '../../src/core/admin-methods';
import type { HandlerDeps } from '../../src/daemon/handlers/context';
import { propertyHandlers } from '../../src/daemon/handlers/property-handlers';
import { Harness } from './fakes/harness';

const KERNEL = '6.1.0-57-cloud-amd64';

async function call(h: Harness, method: AdminMethod, dest: string, arg: string, payload = ''): Promise<string> {
  const handlers = propertyHandlers({ collection: h.collection, events: h.events, pool: h.pool, log: h.log } as unknown as HandlerDeps);
  const req = { method, arg, source: 'dom0', dest, payload: Buffer.from(payload) };
  return handlers[method]!({ req, contract: ADMIN_METHODS[method] });
}

test('kernel properties wait for the background kernel install; others answer at once', async () => {
  const h = new Harness({ hvm: true });
  try {
    await h.templateAndApp('vault');
    let installed: string[] = [];
    let finish!: () => void;
    const known = new Promise<void>((r) => (finish = r));
    h.collection.host = { kernels: () => installed };
    h.collection.kernelsKnown = () => known;

    const kernel = call(h, 'admin.vm.property.Get', 'vault', 'kernel');
    const setKernel = call(h, 'admin.vm.property.Set', 'vault', 'kernel', KERNEL);
    const all = call(h, 'admin.vm.property.GetAll', 'vault', '');
    // Not kernel-dependent: answered while the install runs.
    assert.match(await call(h, 'admin.vm.property.Get', 'vault', 'label'), /type=label red$/);
    let settled = false;
    void kernel.finally(() => (settled = true));
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(settled, false, 'kernel answered before the install ended');

    installed = [KERNEL];
    finish();
    assert.match(await kernel, new RegExp(`^default=True type=str ${KERNEL}$`));
    assert.equal(await setKernel, '');
    assert.match(await all, new RegExp(`^kernel default=False type=str ${KERNEL}$`, 'm'));
  } finally {
    await h.close();
  }
});
