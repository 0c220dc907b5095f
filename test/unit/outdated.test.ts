// Qubes' "outdated" state: an AppVM or DispVM started before its template's root was committed again
// runs on an old revision until it restarts; admin.vm.volume.Info says so (is_outdated=) and qvm-ls
// shows it in its OUTDATED column. On in-memory drivers, through the real Admin API handlers.

import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { isOutdated } from '../../src/core/outdated';
import type { HandlerDeps } from '../../src/daemon/handlers/context';
import { volumeHandlers } from '../../src/daemon/handlers/volume-handlers';
import { DaemonClient } from './fakes/daemon-client';
import { Harness } from './fakes/harness';

test('isOutdated: only a running snapshot volume whose template moved on', () => {
  const cases: [Parameters<typeof isOutdated>[0], boolean, string][] = [
    [{ snapOnStart: true, startedFrom: 'r1', templateCurrent: 'r2' }, true, 'the template committed r2 after the start'],
    [{ snapOnStart: true, startedFrom: 'r2', templateCurrent: 'r2' }, false, 'started from the current revision'],
    [{ snapOnStart: true, startedFrom: undefined, templateCurrent: 'r2' }, false, 'not running'],
    [{ snapOnStart: true, startedFrom: '', templateCurrent: 'r2' }, false, 'starting: no revision recorded yet'],
    [{ snapOnStart: false, startedFrom: 'r1', templateCurrent: 'r2' }, false, 'an own volume (a template, a StandaloneVM) is never outdated'],
  ];
  for (const [input, want, why] of cases) assert.equal(isOutdated(input), want, why);
});

const h = new Harness();
after(() => h.close());

test('admin.vm.volume.Info: an AppVM is outdated once its template commits, until it restarts', async () => {
  await h.templateAndApp('work');
  await h.create('other', 'AppVM', { template: 'debian-12', netvm: null });
  const deps = { config: h.config, collection: h.collection, lifecycle: h.lifecycle, pool: h.pool, events: h.events, log: h.log } as unknown as HandlerDeps;
  const client = new DaemonClient(h, volumeHandlers(deps));
  const outdated = async (vm: string, vol = 'root') => /^is_outdated=(\w+)$/m.exec(await client.call('admin.vm.volume.Info', vm, { arg: vol }))?.[1];

  assert.equal(await outdated('work'), 'False', 'halted');
  await h.lifecycle.start('work');
  assert.equal(await outdated('work'), 'False', 'started from the last committed root');
  // The template updated: started, changed, shut down (its root is committed).
  await h.lifecycle.start('debian-12');
  assert.equal(await outdated('work'), 'False', 'the template runs, nothing is committed yet');
  await h.lifecycle.shutdown('debian-12', { wait: true, force: false });
  assert.equal(await outdated('work'), 'True');
  assert.equal(await outdated('work', 'private'), 'False', 'its own private volume is not the template\'s');
  assert.equal(await outdated('other'), 'False', 'a halted AppVM starts on the new root anyway');
  assert.equal(await outdated('debian-12'), 'False', 'a template is never outdated');
  await h.lifecycle.shutdown('work', { wait: true, force: false });
  await h.lifecycle.start('work');
  assert.equal(await outdated('work'), 'False', 'restarted on the new root');
});
