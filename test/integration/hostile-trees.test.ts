// Trees a hostile qube can write (names that are not UTF-8, paths far over 4096 bytes, its own
// init exiting mid-run, file capabilities) and what isolad must do with them: commit, start,
// clone, squash and remove them without losing data, and without going down.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync, linkSync, chmodSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { IdRange, QubeVolumes } from '../../src/core/volumes';
import { OverlayPool } from '../../src/storage/overlay-pool';
import { treeHelperPath } from '../../src/storage/tree-tool';
import { canRunIntegration, Instance } from './harness';

const skip = canRunIntegration();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Shell that makes (or, with `check`, reads) 60 levels of 100-byte names: a 6000-byte path. */
const DEEP_NAME = 'd'.repeat(100);
const deepChain = (top: string, check = false) =>
  `cd ${top} && for i in $(seq 60); do ${check ? '' : `mkdir ${DEEP_NAME} && `}cd ${DEEP_NAME} || exit 1; done; ${check ? 'cat bottom' : 'printf deep-content > bottom'}`;
/** Two names that are not UTF-8 (one with an ESC in it), one of them with content. */
const HOSTILE = `touch ~/"$(printf 'x\\377')" && printf kept-content > ~/"$(printf 'y\\376\\033z')"`;
const HOSTILE_CHECK = `test -e ~/"$(printf 'x\\377')" && echo x-there; cat ~/"$(printf 'y\\376\\033z')"; echo; ls ~ | od -An -c | tr -s ' '`;

function sh(cmd: string, cwd?: string): Buffer {
  return execFileSync('bash', ['-c', cmd], { cwd });
}

describe('hostile trees in volumes', { skip, concurrency: false }, () => {
  let inst: Instance;
  const run = (vm: string, cmd: string, user = 'user') => inst.cli('qvm-run', ['-p', '-u', user, vm, cmd]);
  const alive = async () => {
    const r = await inst.cli('qvm-ls', ['--raw-list']);
    assert.equal(r.code, 0, `isolad is gone: ${r.stderr}\n${inst.daemonLog.slice(-3000)}`);
  };
  const poolLeftovers = (uuid: string) => readdirSync(inst.config.poolDir).filter((n) => n.includes(uuid) || n.includes('.trash-'));

  before(async () => {
    inst = await Instance.withAppVMs([['work', 'red']]);
  });
  after(async () => {
    await inst?.destroy();
  });

  test('non-utf8-name-commit: names that are not UTF-8 are committed byte-exact, isolad stays up', async () => {
    const w = await run('work', HOSTILE);
    assert.equal(w.code, 0, w.stderr);
    const down = await inst.cli('qvm-shutdown', ['--wait', 'work']);
    await alive();
    assert.equal(down.code, 0, down.stderr);
    assert.match(await inst.ok('qvm-ls', 'work'), /work\s+Halted/);
    const r = await run('work', HOSTILE_CHECK);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^x-there\nkept-content\n/);
    assert.match(r.stdout, / x 377 /, 'the name is the same bytes');
    assert.match(r.stdout, / y 376 033 z /);
  });

  test('deep-path-commit: a 6000-byte path is committed, restored, and qvm-remove leaves nothing', async () => {
    await inst.ok('qvm-create', '--label', 'orange', 'deep');
    const uuid = (await inst.ok('qvm-prefs', 'deep', 'uuid')).trim();
    const w = await run('deep', `${deepChain('~')} && ${HOSTILE}`);
    assert.equal(w.code, 0, w.stderr);
    const down = await inst.cli('qvm-shutdown', ['--wait', 'deep']);
    await alive();
    assert.equal(down.code, 0, down.stderr);
    const r = await run('deep', deepChain('~', true));
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'deep-content');
    await inst.ok('qvm-shutdown', '--wait', 'deep');
    const rm = await inst.cli('qvm-remove', ['-f', 'deep']);
    assert.equal(rm.code, 0, rm.stderr);
    assert.deepEqual(poolLeftovers(uuid), [], 'no volume and no .trash-* left under the pool');
  });

  test("init-exit-commit: a qube that ends its own init: isolad survives, Halted with a reason, data kept", async () => {
    const w = await run('work', `${deepChain('~')} && printf after-exit > ~/"$(printf 'e\\377')"`);
    assert.equal(w.code, 0, w.stderr);
    // SIGKILL cannot reach PID 1 from inside (`kill -9 -1` spares it), but the agent, which is the init,
    // takes SIGTERM as a shutdown: it stops every process and exits, without isolad having asked.
    // The sleep keeps the command alive past the signal: a bare `kill` may exit 0 before the agent acts on it.
    const k = await run('work', 'kill -TERM 1; sleep 30', 'root');
    assert.notEqual(k.code, 0, 'the command was killed with the rest');
    let ls = await inst.cli('qvm-ls', ['work']);
    for (let i = 0; i < 150 && !/work\s+Halted/.test(ls.stdout); i++) {
      await sleep(100);
      ls = await inst.cli('qvm-ls', ['work']);
    }
    await alive();
    assert.match(ls.stdout, /work\s+Halted/);
    assert.match(ls.stderr, /work: last run: runtime died/);
    const r = await run('work', `${deepChain('~', true)}; echo; cat ~/"$(printf 'e\\377')"`);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'deep-content\nafter-exit');
  });

  test('template-commit-keeps-file-caps: capabilities set in the template reach its AppVMs', async () => {
    await inst.cli('qvm-shutdown', ['--wait', 'work']);
    // cap_dac_override is in the qubes' bounding set (cap_net_raw, ping's, is not: see oci-spec.ts).
    const w = await run('debian-12', 'cp /usr/bin/cat /usr/local/bin/capcat && setcap cap_dac_override+ep /usr/local/bin/capcat && touch /usr/bin/ping && getcap /usr/local/bin/capcat /usr/bin/ping', 'root');
    assert.equal(w.code, 0, w.stderr);
    assert.match(w.stdout, /capcat cap_dac_override=ep/, 'set inside the template');
    await inst.ok('qvm-shutdown', '--wait', 'debian-12');
    const r = await run('work', 'getcap /usr/local/bin/capcat /usr/bin/ping; /usr/local/bin/capcat /etc/shadow | head -c 5');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /\/usr\/local\/bin\/capcat cap_dac_override=ep/);
    assert.match(r.stdout, /\/usr\/bin\/ping cap_net_raw=e?p/, 'ping keeps its capability after a template update touched it');
    assert.match(r.stdout, /root:$/, "the user reads /etc/shadow through the capability: it works, not just shows");
  });

  test('clone-hostile-tree: qvm-clone copies names that are not UTF-8 and deep paths', async () => {
    await inst.ok('qvm-shutdown', '--wait', 'work');
    const c = await inst.cli('qvm-clone', ['work', 'work-copy']);
    assert.equal(c.code, 0, c.stderr);
    const r = await run('work-copy', `${deepChain('~', true)}; echo; ${HOSTILE_CHECK}`);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^deep-content\nx-there\nkept-content\n/);
    const uuid = (await inst.ok('qvm-prefs', 'work-copy', 'uuid')).trim();
    await inst.ok('qvm-shutdown', '--wait', 'work-copy');
    await inst.ok('qvm-remove', '-f', 'work-copy');
    assert.deepEqual(poolLeftovers(uuid), []);
  });
});

describe('hostile trees in the pool and the tree helper', { skip, concurrency: false }, () => {
  let home: string;
  const ids: IdRange = { base: 60003 * 65536, count: 65536 };
  before(() => {
    home = mkdtempSync(path.join(os.tmpdir(), 'isola-trees-'));
  });
  after(() => {
    sh(`rm -rf --one-file-system -- '${home}'`);
  });

  test('squash-hostile-tree: squashing a deep stack keeps names that are not UTF-8 and deep paths', async () => {
    const pool = new OverlayPool('default', path.join(home, 'pool'), path.join(home, 'run'));
    const q: QubeVolumes = { uuid: '10000000-0000-4000-8000-0000000000aa', klass: 'StandaloneVM' };
    await pool.create(q, {});
    await pool.importRoot(q, async (dir) => void mkdirSync(path.join(dir, 'etc')));
    for (let i = 0; i < 26; i++) {
      const v = await pool.start(q, ids);
      if (i === 0) sh(`${deepChain('.')}; cd '${v.private.tree!}' && touch "$(printf 'x\\377')" && chown -R -h ${ids.base} .`, v.private.tree!);
      writeFileSync(path.join(v.private.tree!, `f${i}`), String(i));
      await pool.stop(q, ids, true);
    }
    assert.ok(await pool.squashIfDeep(q.uuid, 'private'));
    const layers = readdirSync(path.join(home, 'pool', q.uuid, 'private', 'layers'));
    assert.equal(layers.length, 1);
    const v = await pool.start(q, ids);
    assert.equal(sh(deepChain('.', true), v.private.tree!).toString(), 'deep-content');
    assert.ok(readdirSync(v.private.tree!, { encoding: 'buffer' }).some((n) => n.equals(Buffer.from([0x78, 0xff]))));
    assert.equal(lstatSync(path.join(v.private.tree!, 'f25')).uid, ids.base);
    await pool.stop(q, ids, false);
    await pool.remove(q.uuid);
  });

  test('uncommitted-changes-kept: a failed start after a failed commit does not discard the changes', async () => {
    const pool = new OverlayPool('default', path.join(home, 'pool'), path.join(home, 'run'));
    const q: QubeVolumes = { uuid: '10000000-0000-4000-8000-0000000000ab', klass: 'StandaloneVM' };
    await pool.create(q, {});
    await pool.importRoot(q, async (dir) => void mkdirSync(path.join(dir, 'etc')));
    const v = await pool.start(q, ids);
    writeFileSync(path.join(v.private.tree!, 'precious'), 'precious');
    process.env.ISOLA_TREE_HELPER = '/bin/false';
    try {
      await assert.rejects(pool.stop(q, ids, true), /commit failed \(the changes are kept\)/);
      const again = await pool.start(q, ids);
      assert.match((again.warnings ?? []).join('\n'), /volume private: the last run's changes are not committed yet/);
      await pool.stop(q, ids, false); // as a start that failed later (agent timeout) does
    } finally {
      delete process.env.ISOLA_TREE_HELPER;
    }
    const ok = await pool.start(q, ids);
    assert.equal(ok.warnings, undefined);
    assert.equal(readFileSync(path.join(ok.private.tree!, 'precious'), 'utf8'), 'precious');
    await pool.stop(q, ids, true);
    await pool.remove(q.uuid);
  });

  test('isola-tree on a crafted tree: every byte in names, symlink to /etc, fifo, hard link, set-id, caps, deep path', () => {
    const src = path.join(home, 'src');
    mkdirSync(src);
    for (let b = 1; b < 256; b++) if (b !== 0x2f) writeFileSync(Buffer.concat([Buffer.from(src + '/'), Buffer.from([b, 0x6e])]), Buffer.from([b]));
    symlinkSync('/etc', path.join(src, 'etc-link'));
    sh(`mkfifo '${src}/fifo'`);
    writeFileSync(path.join(src, 'hard1'), 'hard');
    linkSync(path.join(src, 'hard1'), path.join(src, 'hard2'));
    writeFileSync(path.join(src, 'setid'), '#!/bin/sh\n');
    sh(deepChain('.'), src);
    sh(`cp /usr/bin/true '${src}/capped' && chown -R -h ${ids.base + 5}:${ids.base + 7} '${src}' && chmod 6755 '${src}/setid'`);
    // The v3 capability a qube's root writes: rootid is the qube's root on the host.
    sh(`python3 -c "import os,struct; os.setxattr('${src}/capped','security.capability',struct.pack('<6I',0x03000001,1<<13,0,0,0,${ids.base}))"`);
    const etc = statSync('/etc');
    execFileSync(treeHelperPath(), ['unshift', src, String(ids.base), String(ids.count)]);
    const etcAfter = statSync('/etc');
    assert.deepEqual([etcAfter.uid, etcAfter.gid, etcAfter.mode], [etc.uid, etc.gid, etc.mode], 'the symlink was not followed');
    const owners = sh(`find . -printf '%U:%G\\n' | sort | uniq -c`, src).toString().trim();
    assert.match(owners, /^\s*\d+ 5:7$/, `every entry unshifted, at every depth: ${owners}`);
    assert.equal(readdirSync(src, { encoding: 'buffer' }).length, 254 + 6 + 1);
    assert.ok(lstatSync(path.join(src, 'fifo')).isFIFO());
    assert.equal(lstatSync(path.join(src, 'setid')).mode & 0o7777, 0o6755, 'set-id bits put back after chown');
    assert.equal(lstatSync(path.join(src, 'hard1')).ino, lstatSync(path.join(src, 'hard2')).ino);
    assert.match(sh(`getcap '${src}/capped'`).toString(), /cap_net_raw=ep/, 'capability kept, rootid shifted to 0');

    const dst = path.join(home, 'dst');
    mkdirSync(dst);
    chmodSync(dst, 0o700);
    execFileSync(treeHelperPath(), ['copy', src, dst]);
    const listing = (d: string) => sh(`find . -printf '%P %y %m %u %g %s %n %T@ %l\\n' | LC_ALL=C sort`, d);
    assert.ok(listing(src).equals(listing(dst)), 'same names (bytes), types, modes, owners, sizes, links, times');
    assert.equal(sh(`cmp '${src}/hard1' '${dst}/hard1' && stat -c %i '${dst}/hard1' '${dst}/hard2' | uniq | wc -l`).toString().trim(), '1');
    assert.match(sh(`getcap '${dst}/capped'`).toString(), /cap_net_raw=ep/);
    assert.equal(sh(deepChain('.', true), dst).toString(), 'deep-content');
  });
  test('isola-tree at any depth under a low descriptor limit: 700 levels with 40 descriptors, up through ".."', () => {
    const src = path.join(home, 'deep-src');
    const dst = path.join(home, 'deep-dst');
    mkdirSync(dst);
    sh(`mkdir '${src}' && cd '${src}' && for i in $(seq 700); do mkdir a && cd a || exit 1; done; printf bottom > f; ln f g`);
    sh(`chown -R -h ${ids.base + 3}:${ids.base + 3} '${src}'`);
    const helper = `ulimit -n 40; '${treeHelperPath()}'`;
    sh(`${helper} unshift '${src}' ${ids.base} ${ids.count} && ${helper} copy '${src}' '${dst}'`);
    const listing = (d: string) => sh(`find . -printf '%P %y %m %U %G %s %n %T@\\n' | LC_ALL=C sort`, d);
    assert.match(listing(src).toString(), /^(.* 3 3 .*\n)+$/, 'every level unshifted');
    assert.ok(listing(src).equals(listing(dst)), 'copied as it is, hard link included');
  });
});

describe('a commit that fails', { skip, concurrency: false }, () => {
  let inst: Instance;
  let dir: string;
  const marker = () => path.join(dir, 'fail-unshift');
  const run = (vm: string, cmd: string) => inst.cli('qvm-run', ['-p', vm, cmd]);

  before(async () => {
    // A tree helper that fails the commit on demand, with a qube-style name (an ESC) in its message.
    dir = mkdtempSync(path.join(os.tmpdir(), 'isola-failing-tree-'));
    const script = path.join(dir, 'isola-tree');
    writeFileSync(script, `#!/bin/bash\nif [ "$1" = unshift ] && [ -e '${marker()}' ]; then printf 'isola-tree: cannot change the owner of \\033]0;OWNED\\007x: Input/output error\\n' >&2; exit 2; fi\nexec '${treeHelperPath()}' "$@"\n`);
    chmodSync(script, 0o755);
    inst = await Instance.withAppVMs([['work', 'red']], { env: { ISOLA_TREE_HELPER: script } });
  });
  after(async () => {
    await inst?.destroy();
    sh(`rm -rf --one-file-system -- '${dir}'`);
  });

  test('commit-failure-recorded: isolad stays up, the qube is Halted with the reason (escaped), its data kept, startable', async () => {
    await inst.ok('qvm-run', '-p', 'work', 'printf precious > ~/precious');
    writeFileSync(marker(), '');
    const down = await inst.cli('qvm-shutdown', ['--wait', 'work']);
    await inst.ok('qvm-ls', '--raw-list');
    assert.notEqual(down.code, 0, 'qvm-shutdown --wait says the commit failed');
    assert.match(down.stderr, /work halted, but commit failed \(the changes are kept\)/);
    const ls = await inst.cli('qvm-ls', ['work']);
    assert.match(ls.stdout, /work\s+Halted/);
    assert.match(ls.stderr, /work: last run: commit failed .*Input\/output error/);
    assert.match(ls.stderr, /\\x1b\]0;OWNED\\x07/, 'the bytes are escaped');
    assert.doesNotMatch(ls.stderr + inst.daemonLog, /\x1b|\x07/, 'no raw control character reaches qvm-ls or the log');
    const check = await inst.cli('qvm-check', ['-v', '--running', 'work']);
    assert.match(check.stderr, /work: last run: commit failed/);
    // Still failing at the next start: the qube starts anyway, on its uncommitted changes.
    const r = await run('work', 'cat ~/precious');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'precious');
    assert.match(inst.daemonLog, /work: volume private: the last run's changes are not committed yet/);
    // Once the commit works again, everything is committed and the data stays.
    sh(`rm -f -- '${marker()}'`);
    await inst.ok('qvm-shutdown', '--wait', 'work');
    assert.doesNotMatch((await inst.cli('qvm-ls', ['work'])).stderr, /last run/);
    assert.equal(await inst.ok('qvm-run', '-p', 'work', 'cat ~/precious'), 'precious');
  });
});
