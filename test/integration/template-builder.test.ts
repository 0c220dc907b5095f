// Builds the real debian-12 template from Debian's archive with mmdebstrap (root only), checks its
// content, the cache, failure and abort cleanup, and extraction. Set ISOLA_CACHE to reuse a build.

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, promises as fsp, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildTemplate, extractTemplate, removeStalePartials } from '../../src/storage/template-builder';
import { templateRecipe } from '../../src/storage/template-cache';

const isRoot = process.getuid?.() === 0;
const hasMmdebstrap = spawnSync('mmdebstrap', ['--version']).status === 0;
const skip = !isRoot ? 'needs root (mmdebstrap root mode, device nodes in the tarball)' : !hasMmdebstrap ? 'mmdebstrap not installed' : false;
const T = { skip, timeout: 15 * 60_000 };

const scratch = mkdtempSync(join(tmpdir(), 'isola-template-test-'));
const cacheDir = process.env.ISOLA_CACHE ? join(process.env.ISOLA_CACHE, 'templates') : join(scratch, 'cache');
let tarball = '';
after(() => fsp.rm(scratch, { recursive: true, force: true }));

const tarList = (file: string) => spawnSync('tar', ['-tf', file], { maxBuffer: 64 << 20, encoding: 'utf8' }).stdout.split('\n');
const tarCat = (file: string, member: string) => spawnSync('tar', ['-xOf', file, member], { encoding: 'utf8' }).stdout;
const mountsUnder = (prefix: string) => readFileSync('/proc/self/mounts', 'utf8').split('\n').filter((l) => l.split(' ')[1]?.startsWith(prefix));

test('builds debian-12 with progress, user, sudo and node in it', T, async () => {
  const workDir = join(scratch, 'work');
  const seen: number[] = [];
  const stages = new Set<string>();
  const t0 = Date.now();
  const r = await buildTemplate({
    name: 'debian-12',
    cacheDir,
    workDir,
    onProgress: (f, s) => {
      seen.push(f);
      stages.add(s);
    },
  });
  console.log(`# debian-12 ${r.fromCache ? 'from cache' : 'built'} in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${r.tarball}`);
  tarball = r.tarball;
  assert.match(r.tarball, new RegExp(`^${cacheDir}/debian-12-${r.key.slice(0, 12)}\\.tar$`));
  for (let i = 1; i < seen.length; i++) assert.ok(seen[i] >= seen[i - 1], 'progress is monotone');
  assert.equal(seen[seen.length - 1], 1);
  if (!r.fromCache) assert.ok(stages.has('install') && stages.has('tarball'), [...stages].join(','));

  const members = new Set(tarList(r.tarball));
  for (const m of ['./usr/bin/node', './etc/sudoers.d/qubes', './home/user/', './rw/', './run/isola/', './etc/qubes-rpc/']) {
    assert.ok(members.has(m), `${m} in tarball`);
  }
  assert.match(tarCat(r.tarball, './etc/passwd'), /^user:x:1000:1000::\/home\/user:\/bin\/bash$/m);
  assert.equal(tarCat(r.tarball, './etc/sudoers.d/qubes'), 'user ALL=(ALL:ALL) NOPASSWD: ALL\n');
  assert.equal(tarCat(r.tarball, './etc/hostname'), 'debian-12\n');
  assert.equal(tarCat(r.tarball, './etc/resolv.conf'), '', 'no host resolv.conf leaks into the template');
  const modes = spawnSync('tar', ['-tvf', r.tarball, './etc/sudoers.d/qubes'], { encoding: 'utf8' }).stdout;
  assert.match(modes, /^-r--r----- 0\/0 /);
  assert.ok(!tarList(r.tarball).some((m) => /^\.\/var\/lib\/apt\/lists\/.*_Packages$/.test(m)), 'apt lists cleaned');
  const left = await fsp.readdir(cacheDir);
  assert.ok(!left.some((f) => f.endsWith('.partial')), left.join(','));
  if (!r.fromCache) assert.deepEqual(await fsp.readdir(workDir), []);
});

test('second build comes from the cache at once', T, async () => {
  const t0 = Date.now();
  const r = await buildTemplate({ name: 'debian-12', cacheDir });
  const ms = Date.now() - t0;
  console.log(`# debian-12 from cache in ${ms} ms`);
  assert.equal(r.fromCache, true);
  assert.equal(r.tarball, tarball);
  assert.ok(ms < 1000, `${ms} ms`);
});

test('extractTemplate unpacks with owners and reports the size; refuses a non-empty target', T, async () => {
  const dest = join(scratch, 'root');
  const t0 = Date.now();
  const bytes = await extractTemplate(tarball, dest);
  console.log(`# extracted ${(bytes / 2 ** 20).toFixed(0)} MiB in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  assert.ok(bytes > 100 * 2 ** 20, `${bytes} bytes`);
  const st = await fsp.stat(join(dest, 'home/user'));
  assert.equal(st.uid, 1000);
  assert.equal((await fsp.stat(join(dest, 'etc/sudoers.d/qubes'))).mode & 0o777, 0o440);
  assert.ok((await fsp.stat(join(dest, 'usr/bin/node'))).isFile());
  await assert.rejects(extractTemplate(tarball, dest), /not empty/);
  await fsp.rm(dest, { recursive: true, force: true });

  const broken = join(scratch, 'broken.tar');
  await fsp.writeFile(broken, 'not a tarball at all');
  const dest2 = join(scratch, 'root2');
  await assert.rejects(extractTemplate(broken, dest2), (e: Error) => !e.message.includes('\n'));
  await assert.rejects(fsp.stat(dest2), { code: 'ENOENT' });
});

test('an impossible package fails with one line and leaves nothing in the cache', T, async () => {
  const dir = join(scratch, 'bad-cache');
  const workDir = join(scratch, 'bad-work');
  const base = templateRecipe('debian-12-minimal');
  const recipe = { ...base, name: 'broken', packages: [...base.packages, 'isola-no-such-package'] };
  await assert.rejects(buildTemplate({ name: 'broken', recipe, cacheDir: dir, workDir }), (e: Error) => {
    console.log(`# ${e.message}`);
    assert.ok(!e.message.includes('\n'), 'one line');
    assert.match(e.message, /Unable to locate package isola-no-such-package/);
    return true;
  });
  assert.deepEqual(await fsp.readdir(dir), []);
  assert.deepEqual(await fsp.readdir(workDir), []);
  assert.deepEqual(mountsUnder(workDir), []);
});

// Abort at several points: a TERM landing while mmdebstrap mounts its chroot used to leak mounts.
for (const at of ['update', 'install-essential', 'install']) {
  test(`a build aborted during ${at} stops mmdebstrap, removes the partial and leaves no mounts`, T, async () => {
    const dir = join(scratch, `abort-${at}`);
    const workDir = join(scratch, `abort-${at}-work`);
    const ac = new AbortController();
    let abortedAt = 0;
    const p = buildTemplate({
      name: 'debian-12-minimal',
      cacheDir: dir,
      workDir,
      signal: ac.signal,
      onProgress: (_f, s) => {
        if (s === at && !abortedAt) {
          abortedAt = Date.now();
          ac.abort();
        }
      },
    });
    await assert.rejects(p, (e: Error) => e.message === "Template 'debian-12-minimal' build aborted");
    console.log(`# aborted during ${at}: stopped ${Date.now() - abortedAt} ms after the abort`);
    assert.deepEqual(await fsp.readdir(dir), []);
    assert.deepEqual(await fsp.readdir(workDir), [], 'mmdebstrap temp tree removed');
    assert.deepEqual(mountsUnder(workDir), []);
    assert.equal(spawnSync('pgrep', ['-f', dir]).status, 1, 'no mmdebstrap process left');
  });
}

test('stale partial files from dead builders are removed', T, async () => {
  const dir = join(scratch, 'stale-cache');
  await fsp.mkdir(dir, { recursive: true });
  // pid 2^22+1 is above Linux's pid_max ceiling, so it can never be alive.
  await fsp.writeFile(join(dir, 'debian-12-000000000000.tar.4194305.partial'), 'x');
  assert.deepEqual(await removeStalePartials(dir), ['debian-12-000000000000.tar.4194305.partial']);
  assert.deepEqual(await fsp.readdir(dir), []);
});
