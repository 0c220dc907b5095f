// Qubes' volume rules, observed from inside real qubes: what persists, what is discarded, and
// which template revision an AppVM sees.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { canRunIntegration, Instance } from './harness';

const skip = canRunIntegration();

describe('volumes', { skip, concurrency: false }, () => {
  let inst: Instance;
  const run = (vm: string, cmd: string, user?: string) => inst.cli('qvm-run', ['-p', ...(user ? ['-u', user] : []), vm, cmd]);
  const out = async (vm: string, cmd: string, user?: string) => {
    const r = await run(vm, cmd, user);
    assert.equal(r.code, 0, `${vm}: ${cmd}: ${r.stderr}`);
    return r.stdout.trim();
  };

  before(async () => {
    inst = await Instance.withAppVMs([['app1', 'red']]);
  });
  after(async () => inst?.destroy());

  test('discards root changes of an AppVM at shutdown', async () => {
    await out('app1', 'echo changed > /etc/app1-root-change', 'root');
    assert.equal(await out('app1', 'cat /etc/app1-root-change'), 'changed');
    await inst.ok('qvm-shutdown', '--wait', 'app1');
    const r = await run('app1', 'test -e /etc/app1-root-change');
    assert.equal(r.code, 1, 'root change must be gone after a restart');
  });

  test('keeps private data at /rw with /home bound from it', async () => {
    await out('app1', 'echo keep > ~/kept.txt');
    assert.equal(await out('app1', 'cat /rw/home/user/kept.txt'), 'keep');
    assert.match(await out('app1', 'grep " /rw " /proc/self/mountinfo | wc -l'), /^[1-9]/);
    await inst.ok('qvm-shutdown', '--wait', 'app1');
    assert.equal(await out('app1', 'cat ~/kept.txt'), 'keep');
  });

  test('discards volatile data at start and at stop', async () => {
    await out('app1', 'echo scratch > /var/tmp/scratch', 'root');
    const q = (await inst.ok('qvm-prefs', 'app1', 'uuid')).trim();
    const volatile = path.join(inst.config.poolDir, q, 'volatile');
    assert.ok(existsSync(path.join(volatile, 'root', 'upper', 'var', 'tmp', 'scratch')), 'root changes live in volatile while running');
    await inst.ok('qvm-shutdown', '--wait', 'app1');
    assert.ok(!existsSync(volatile) || readdirSync(volatile).length === 0, 'volatile is empty after stop');
  });

  test('a template update reaches AppVMs on their next start only', async () => {
    await inst.ok('qvm-start', 'app1');
    await out('debian-12', 'echo v2 > /etc/template-version', 'root');
    // The template is running: an AppVM started now still sees the last committed revision.
    await inst.ok('qvm-create', '--label', 'green', 'app2');
    await inst.ok('qvm-start', 'app2');
    assert.equal((await run('app2', 'test -e /etc/template-version')).code, 1);
    await inst.ok('qvm-shutdown', '--wait', 'debian-12');
    // Running AppVMs keep the revision they started with.
    assert.equal((await run('app1', 'test -e /etc/template-version')).code, 1);
    assert.equal((await run('app2', 'test -e /etc/template-version')).code, 1);
    await inst.ok('qvm-shutdown', '--wait', 'app1', 'app2');
    assert.equal(await out('app1', 'cat /etc/template-version'), 'v2');
    assert.equal(await out('app2', 'cat /etc/template-version'), 'v2');
    await inst.ok('qvm-shutdown', '--wait', 'app1', 'app2');
  });

  test('a StandaloneVM owns a copy of the root and never follows the template again', async () => {
    await inst.ok('qvm-create', '--class', 'StandaloneVM', '--template', 'debian-12', '--label', 'purple', 'lab');
    assert.equal(await out('lab', 'cat /etc/template-version'), 'v2');
    await out('lab', 'echo mine > /etc/lab-root-change', 'root');
    await inst.ok('qvm-shutdown', '--wait', 'lab');
    await out('debian-12', 'echo v3 > /etc/template-version', 'root');
    await inst.ok('qvm-shutdown', '--wait', 'debian-12');
    assert.equal(await out('lab', 'cat /etc/template-version'), 'v2', 'standalone does not follow the template');
    assert.equal(await out('lab', 'cat /etc/lab-root-change'), 'mine', 'standalone root persists');
    await inst.ok('qvm-shutdown', '--wait', 'lab');
  });

  test('qvm-volume lists, shows and resizes volumes', async () => {
    const list = await inst.ok('qvm-volume', 'list', 'app1');
    for (const v of ['root', 'private', 'volatile']) assert.match(list, new RegExp(`app1\\s+${v}|${v}`));
    const info = await inst.ok('qvm-volume', 'info', 'app1:private');
    assert.match(info, /save_on_stop\s+True/);
    assert.match(info, /revisions_to_keep\s+1/);
    const rootInfo = await inst.ok('qvm-volume', 'info', 'app1:root');
    assert.match(rootInfo, /snap_on_start\s+True/);
    await inst.ok('qvm-volume', 'resize', 'app1:private', '3GiB');
    assert.equal((await inst.ok('qvm-volume', 'info', 'app1:private', 'size')).trim(), String(3 * 1024 ** 3));
    const shrink = await inst.cli('qvm-volume', ['resize', 'app1:private', '1GiB']);
    assert.notEqual(shrink.code, 0);
    assert.match(shrink.stderr, /^qvm-volume: error: Refusing to shrink volume app1:private from 3221225472 to 1073741824 bytes\. .*\n$/);
    assert.equal((await inst.ok('qvm-volume', 'info', 'app1:private', 'size')).trim(), String(3 * 1024 ** 3));
  });

  test('qvm-volume revert brings back the previous revision of private', async () => {
    await out('app1', 'echo one > ~/rev.txt');
    await inst.ok('qvm-shutdown', '--wait', 'app1');
    await out('app1', 'echo two > ~/rev.txt');
    await inst.ok('qvm-shutdown', '--wait', 'app1');
    const refused = await inst.cli('qvm-volume', ['revert', 'app1:private']);
    assert.equal(refused.code, 0, refused.stderr);
    assert.equal(await out('app1', 'cat ~/rev.txt'), 'one');
    const running = await inst.cli('qvm-volume', ['revert', 'app1:private']);
    assert.notEqual(running.code, 0, 'revert of a running qube is refused');
    await inst.ok('qvm-shutdown', '--wait', 'app1');
  });

  test('qvm-volume clear is refused while the qube runs and changes nothing', async () => {
    await out('app1', 'echo precious > ~/clear-me.txt');
    const before = await inst.stateDump();
    const r = await inst.cli('qvm-volume', ['clear', '-f', 'app1:private']);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'qvm-volume: error: Cannot clear a volume while app1 is running\n');
    assert.equal(await out('app1', 'cat ~/clear-me.txt'), 'precious');
    assert.equal(await inst.stateDump(), before);
    await inst.ok('qvm-shutdown', '--wait', 'app1');
  });

  test('qvm-volume clear empties the private volume of a halted qube', async () => {
    await inst.ok('qvm-volume', 'clear', '-f', 'app1:private');
    assert.equal((await inst.ok('qvm-volume', 'info', 'app1:private', 'revisions')), '', 'nothing left to revert to');
    // The home of `user` is there again, empty, as in a new qube.
    assert.equal(await out('app1', 'test -e ~/clear-me.txt && echo still there; stat -c %U ~'), 'user');
    const root = await inst.cli('qvm-volume', ['clear', '-f', 'app1:root']);
    assert.equal(root.code, 1);
    assert.match(root.stderr, /^qvm-volume: error: The root volume of app1 comes from its template/);
    await inst.ok('qvm-shutdown', '--wait', 'app1');
  });

  test('qvm-template lists and describes the template it installed, with its template-* features', async () => {
    const evr = (await inst.ok('qvm-features', 'debian-12', 'template-version')).trim();
    assert.match(evr, /^20\d{6}$/);
    assert.equal(await inst.ok('qvm-template', 'list', '--installed', '--machine-readable'), `installed|debian-12|0:${evr}-1|isola-debian\n`);
    const info = await inst.ok('qvm-template', 'info', '--installed', 'debian-12');
    for (const field of ['Name          :  debian-12', 'Epoch         :  0', `Version       :  ${evr}`, 'Release       :  1', 'Repository    :  isola-debian', 'Install time  :  20']) {
      assert.ok(info.includes(field), `${field}\n${info}`);
    }
    // Templates made otherwise (a clone carries its source's marker) are not qvm-template's.
    await inst.ok('qvm-clone', 'debian-12', 'tpl-copy');
    assert.doesNotMatch(await inst.ok('qvm-template', 'list', '--installed'), /tpl-copy/);
  });
});
