// The applications built on qrexec, with real qubes: the two-level clipboard (qvm-clipboard on the
// host), qvm-open-in-vm for URLs and files, qrexec-client-vm's LOCAL_PROGRAM, socket-based
// services, and the Admin API's second gate (admin.vm.List filtered by policy for a qube).

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { canRunIntegration, Instance } from './harness';

const skip = canRunIntegration();

const POLICY = [
  'qubes.OpenURL        * work untrusted allow',
  'qubes.OpenInVM       * work untrusted allow',
  'test.Echo            * work vault allow',
  'test.Socket          * work vault allow',
  'qubes.ClipboardPaste * work untrusted deny',
  'qubes.ClipboardPaste * @anyvm @anyvm ask',
  'admin.vm.List        * mgmt @adminvm allow target=dom0',
  'admin.vm.List        * mgmt @tag:managed allow target=dom0',
  'admin.Events         * mgmt @adminvm allow target=dom0',
  'admin.Events         * mgmt @tag:managed allow target=dom0',
  '*                    * @anyvm @anyvm deny',
].join('\n') + '\n';

/** A stand-in for the desktop's default handler: records what it was given; "edits" files named edit-me*. */
const XDG_OPEN = [
  '#!/bin/sh',
  'printf "open %s\\n" "$1" >> /tmp/opened.log',
  'if [ -f "$1" ]; then cat "$1" >> /tmp/opened.log; echo >> /tmp/opened.log; case "$1" in *edit-me*) printf " +edit" >> "$1";; esac; fi',
].join('\n');

const SOCKET_SERVER = "require('net').createServer((s) => { const c = []; s.on('data', (d) => c.push(d)); s.on('end', () => s.end(JSON.stringify(Buffer.concat(c).toString()))); }).listen('/etc/qubes-rpc/test.Socket')";

describe('qrexec applications between qubes', { skip, concurrency: false }, () => {
  let inst: Instance;
  let policyDir: string;
  const inQube = (vm: string, cmd: string, input?: string) => inst.cli('qvm-run', ['-p', vm, cmd], input);
  const ok = async (vm: string, cmd: string) => {
    const r = await inQube(vm, cmd);
    assert.equal(r.code, 0, `${vm}: ${cmd}: ${r.stderr}`);
    return r.stdout;
  };

  before(async () => {
    policyDir = mkdtempSync(path.join(os.tmpdir(), 'isola-apps-policy-'));
    writeFileSync(path.join(policyDir, '30-test.policy'), POLICY);
    inst = new Instance({ env: { ISOLA_POLICY_DIR: policyDir } });
    await inst.start();
    await inst.installTemplate();
    const xdg = XDG_OPEN.replace(/'/g, `'\\''`);
    await inst.ok('qvm-run', '-p', '-u', 'root', 'debian-12',
      `printf '%s\\n' '${xdg}' > /usr/local/bin/xdg-open && chmod 755 /usr/local/bin/xdg-open && mkdir -p /etc/qubes-rpc && printf '#!/bin/sh\\ncat\\n' > /etc/qubes-rpc/test.Echo && chmod 755 /etc/qubes-rpc/test.Echo`);
    await inst.ok('qvm-shutdown', '--wait', 'debian-12');
    for (const [name, label] of [['work', 'blue'], ['vault', 'black'], ['untrusted', 'red'], ['mgmt', 'purple']]) await inst.ok('qvm-create', '--label', label, name);
    await inst.ok('qvm-tags', 'vault', 'add', 'managed');
    for (const q of ['work', 'vault', 'untrusted']) await inst.ok('qvm-start', q);
  });
  after(async () => {
    await inst?.destroy();
    rmSync(policyDir, { recursive: true, force: true });
  });

  describe('the two-level clipboard', () => {
    test('copy-from then paste-to moves the text, remembers the source and empties the global clipboard', async () => {
      await ok('work', "printf 'secret from work' | isola-clipboard copy");
      const copy = await inst.cli('qvm-clipboard', ['copy-from', 'work']);
      assert.equal(copy.code, 0, copy.stderr);
      assert.match(await inst.ok('qvm-clipboard', 'show'), /^16 bytes from work, copied \d{4}-/);
      const paste = await inst.cli('qvm-clipboard', ['paste-to', 'vault']);
      assert.equal(paste.code, 0, paste.stderr);
      assert.match(paste.stderr, /pasted 16 bytes from work into vault/);
      assert.equal(await ok('vault', 'isola-clipboard paste'), 'secret from work');
      const empty = await inst.cli('qvm-clipboard', ['show']);
      assert.deepEqual([empty.code, empty.stdout], [1, 'empty\n']);
      const second = await inst.cli('qvm-clipboard', ['paste-to', 'untrusted']);
      assert.equal(second.code, 1);
      assert.match(second.stderr, /empty/);
      const log = await inst.ok('isola', 'policy', 'log');
      assert.match(log, /dom0 work qubes\.ClipboardCopy\+ allow - copied 16 bytes/);
      assert.match(log, /work vault qubes\.ClipboardPaste\+ allow \S+30-test\.policy:6 /);
    });

    test('a paste the policy denies reaches nothing', async () => {
      await ok('work', "printf 'not for untrusted' | isola-clipboard copy");
      await inst.ok('qvm-clipboard', 'copy-from', 'work');
      const r = await inst.cli('qvm-clipboard', ['paste-to', 'untrusted']);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /policy denies the paste from work into untrusted/);
      assert.equal(await ok('untrusted', 'isola-clipboard paste'), '', 'the target clipboard is untouched');
      assert.match(await inst.ok('isola', 'policy', 'log'), /work untrusted qubes\.ClipboardPaste\+ deny \S+30-test\.policy:5 /);
    });

    test('pasting back into the source, into a halted qube or more than 64000 bytes is refused', async () => {
      await ok('work', "printf 'mine' | isola-clipboard copy");
      await inst.ok('qvm-clipboard', 'copy-from', 'work');
      const back = await inst.cli('qvm-clipboard', ['paste-to', 'work']);
      assert.equal(back.code, 1);
      assert.match(back.stderr, /came from work/);
      const halted = await inst.cli('qvm-clipboard', ['paste-to', 'mgmt']);
      assert.equal(halted.code, 1);
      assert.match(halted.stderr, /mgmt is not running/);
      await ok('work', 'head -c 64001 /dev/zero | isola-clipboard copy');
      const big = await inst.cli('qvm-clipboard', ['copy-from', 'work']);
      assert.equal(big.code, 1);
      assert.match(big.stderr, /more than 64000 bytes/);
      assert.match(await inst.ok('qvm-clipboard', 'show'), /^4 bytes from work/, 'the global clipboard kept what it had');
      await inst.ok('qvm-clipboard', 'clear');
      assert.equal((await inst.cli('qvm-clipboard', ['show'])).code, 1);
      assert.equal((await inst.cli('qvm-clipboard', ['copy-from'])).code, 2, 'usage error');
    });

    test('a hostile qube can neither flood nor stall the host with its clipboard', async () => {
      const svc = (body: string) => inst.ok('qvm-run', '-p', '-u', 'root', 'untrusted',
        `mkdir -p /etc/qubes-rpc && printf '#!/bin/sh\\n${body}\\n' > /etc/qubes-rpc/qubes.ClipboardCopy && chmod 755 /etc/qubes-rpc/qubes.ClipboardCopy`);
      await svc('exec yes');
      const flood = await inst.cli('qvm-clipboard', ['copy-from', 'untrusted']);
      assert.equal(flood.code, 1);
      assert.match(flood.stderr, /more than 64000 bytes/);
      await svc('exec sleep 600');
      const t0 = Date.now();
      const stall = await inst.cli('qvm-clipboard', ['copy-from', 'untrusted']);
      assert.equal(stall.code, 1);
      assert.match(stall.stderr, /qubes\.ClipboardCopy in untrusted failed/);
      assert.ok(Date.now() - t0 < 30_000, 'given up after the service timeout');
      assert.equal((await inst.cli('qvm-clipboard', ['show'])).code, 1, 'nothing reached the global clipboard');
      await inst.ok('qvm-run', '-p', '-u', 'root', 'untrusted', 'rm /etc/qubes-rpc/qubes.ClipboardCopy');
    });
  });

  describe('qvm-open-in-vm', () => {
    test('a URL is opened by the target qube\'s default handler', async () => {
      const r = await inQube('work', "qvm-open-in-vm untrusted 'https://example.org/a?b=1'");
      assert.equal(r.code, 0, r.stderr);
      assert.match(await ok('untrusted', 'cat /tmp/opened.log'), /^open https:\/\/example\.org\/a\?b=1$/m);
    });

    test('the target refuses URLs of other schemes', async () => {
      const r = await inQube('work', "qvm-open-in-vm untrusted 'javascript://alert(1)'");
      assert.equal(r.code, 1);
      assert.match(r.stderr, /only http, https, ftp URLs/);
      assert.doesNotMatch(await ok('untrusted', 'cat /tmp/opened.log'), /javascript/);
    });

    test('a file is opened in the target and an edit comes back; --view-only keeps the original', async () => {
      await ok('work', "printf draft > ~/edit-me.txt && printf fixed > ~/edit-me-too.txt");
      const r = await inQube('work', 'qvm-open-in-vm untrusted ~/edit-me.txt');
      assert.equal(r.code, 0, r.stderr);
      assert.match(await ok('untrusted', 'cat /tmp/opened.log'), /^open \/tmp\/qopen-work-\w+\/edit-me\.txt\ndraft$/m);
      assert.equal(await ok('work', 'cat ~/edit-me.txt'), 'draft +edit');
      const view = await inQube('work', 'qvm-open-in-vm --view-only untrusted ~/edit-me-too.txt');
      assert.equal(view.code, 0, view.stderr);
      assert.equal(await ok('work', 'cat ~/edit-me-too.txt'), 'fixed');
      assert.equal(await ok('work', 'ls -A ~ | grep -c qopen || true'), '0\n', 'no temporary file left behind');
    });

    test('a hostile name is sanitised, a name with a slash refused', async () => {
      const block = (name: string) => `node -e "const b = Buffer.alloc(256); b.write(process.argv[1]); process.stdout.write(Buffer.concat([b, Buffer.from('x')]))" '${name}'`;
      const odd = await inQube('work', `${block('a b;$(id).txt')} | qrexec-client-vm untrusted qubes.OpenInVM`);
      assert.equal(odd.code, 0, odd.stderr);
      assert.match(await ok('untrusted', 'cat /tmp/opened.log'), /\/a_b___id_\.txt\nx$/m);
      const slash = await inQube('work', `${block('../../home/user/.bashrc')} | qrexec-client-vm untrusted qubes.OpenInVM`);
      assert.equal(slash.code, 1);
      assert.match(slash.stderr, /contains a \//);
      assert.equal(await ok('untrusted', 'grep -c bashrc /tmp/opened.log || true'), '0\n');
    });

    test('the policy decides; qvm-open-in-dvm waits for disposables', async () => {
      await ok('work', 'printf x > ~/f.txt');
      assert.equal((await inQube('work', 'qvm-open-in-vm vault ~/f.txt')).code, 126);
      assert.equal((await inQube('work', 'qvm-open-in-dvm https://example.org')).code, 126);
      const usage = await inQube('work', 'qvm-open-in-vm untrusted');
      assert.equal(usage.code, 2);
      assert.match(usage.stderr, /usage: qvm-open-in-vm/);
    });
  });

  describe('qrexec-client-vm and services', () => {
    test('LOCAL_PROGRAM talks to the service instead of stdin/stdout; its failure is the exit code', async () => {
      const r = await inQube('work', "qrexec-client-vm vault test.Echo sh -c 'printf ping; exec 1>&-; cat > /tmp/echoed'");
      assert.equal(r.code, 0, r.stderr);
      assert.equal(await ok('work', 'cat /tmp/echoed'), 'ping');
      const fail = await inQube('work', "qrexec-client-vm vault test.Echo sh -c 'exit 3'");
      assert.equal(fail.code, 3);
      const missing = await inQube('work', 'qrexec-client-vm vault test.Echo /no/such/program');
      assert.equal(missing.code, 127);
    });

    test('a socket-based service gets the descriptor, then the caller\'s input; its output comes back', async () => {
      // qvm-run waits for its command (as Qubes'): the server goes to the background, its stdio detached
      // (in a subshell: qubes.VMShell reads `COMMAND; exit`, and `&;` is a syntax error, as in Qubes).
      await inst.ok('qvm-run', '-u', 'root', 'vault', `(node -e "${SOCKET_SERVER}" </dev/null >/dev/null 2>&1 &)`);
      await ok('vault', 'for i in $(seq 50); do test -S /etc/qubes-rpc/test.Socket && exit 0; sleep 0.1; done; exit 1');
      const r = await inQube('work', 'printf hello | qrexec-client-vm vault test.Socket+arg1');
      assert.equal(r.code, 0, r.stderr);
      assert.equal(JSON.parse(r.stdout), 'test.Socket+arg1 work\0hello');
    });
  });

  test("admin.vm.List from a qube lists only the qubes the policy lets it see", async () => {
    await inst.ok('qvm-start', 'mgmt');
    const r = await inQube('mgmt', 'qrexec-client-vm dom0 admin.vm.List');
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.stdout.startsWith('0\0'), `an OK reply: ${JSON.stringify(r.stdout.slice(0, 200))} ${r.stderr}`);
    const names = r.stdout.slice(2).split('\n').filter(Boolean).map((l) => l.split(' ')[0]);
    assert.deepEqual(names, ['dom0', 'vault']);
    assert.equal((await inQube('work', 'qrexec-client-vm dom0 admin.vm.List')).code, 126, 'no grant, no list');
  });

  test('admin.Events from a qube streams only the events of qubes the policy lets it see', async () => {
    await ok('mgmt', '(qrexec-client-vm dom0 admin.Events > /tmp/events 2>&1 &)');
    await ok('mgmt', 'for i in $(seq 50); do grep -qa connection-established /tmp/events && exit 0; sleep 0.1; done; exit 1');
    await inst.ok('qvm-tags', 'work', 'add', 'hidden-tag');
    await inst.ok('qvm-tags', 'vault', 'add', 'seen-tag');
    await ok('mgmt', 'for i in $(seq 50); do grep -qa seen-tag /tmp/events && exit 0; sleep 0.1; done; exit 1');
    const events = await ok('mgmt', 'tr "\\0" " " < /tmp/events');
    assert.match(events, /vault domain-tag-add:seen-tag/);
    assert.doesNotMatch(events, /hidden-tag/, "work's events are not mgmt's to see");
  });
});
