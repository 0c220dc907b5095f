// Attacks on what the host keeps for a qube outside it: the console log a qube writes to, and the
// host uid range it runs as. Each test is named after the attack and drives a real qube as root.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { GUEST_LOG_KEEP, GUEST_LOG_MAX_BYTES } from '../../src/backends/sandbox/runc-backend';
import { legacyUidBase } from '../../src/daemon/config';
import { canRunIntegration, Instance, sleep } from './harness';

const skip = canRunIntegration();

/** Host pids of processes whose command line names `needle` (the relay names its log file). */
function hostProcessesNaming(needle: string): number[] {
  const pids: number[] = [];
  for (const p of readdirSync('/proc').filter((d) => /^[0-9]+$/.test(d))) {
    try {
      if (readFileSync(`/proc/${p}/cmdline`, 'latin1').includes(needle)) pids.push(Number(p));
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

async function until(what: string, ok: () => boolean, ms = 15_000): Promise<void> {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(100)) if (ok()) return;
  assert.fail(`timed out waiting for ${what}`);
}

/**
 * Root in the qube takes fd FD of process PID with pidfd_getfd (allowed by the seccomp profile), as a
 * hostile qube would, then writes its stdin there or truncates what it points at. (The agent's Node
 * made the shared pipe non-blocking: a full pipe answers EAGAIN, and the attacker just retries.)
 */
const GRAB_FD = String.raw`use strict; my ($pid, $fd, $op) = @ARGV;
my $pfd = syscall(434, $pid + 0, 0); die "pidfd_open: $!\n" if $pfd < 0;
my $got = syscall(438, $pfd, $fd + 0, 0); die "pidfd_getfd: $!\n" if $got < 0;
open(my $fh, ">&=", $got) or die "fdopen: $!\n"; binmode $fh;
if ($op eq "truncate") { truncate($fh, 0) or print "truncate: $!\n"; exit 0; }
my $buf; while (my $n = sysread(STDIN, $buf, 65536)) { for (my $off = 0; $off < $n;) {
  my $w = syswrite($fh, $buf, $n - $off, $off);
  if (defined $w) { $off += $w; } elsif ($!{EAGAIN}) { select(undef, undef, undef, 0.002); } else { die "write: $!\n"; } } }`;

describe('guest-log-fd', { skip, concurrency: false }, () => {
  let inst: Instance;
  let log: string;
  const run = (cmd: string) => inst.cli('qvm-run', ['-p', '-u', 'root', 'work', cmd]);
  /** Shell text that writes its stdin to fd `fd` of the qube's init, through a stolen descriptor. */
  const toInit = (fd: number) => `perl /root/grab-fd.pl 1 ${fd} write`;
  const logFiles = () => [log, ...Array.from({ length: GUEST_LOG_KEEP + 1 }, (_, i) => `${log}.${i + 1}`)].filter((f) => existsSync(f));

  before(async () => {
    inst = await Instance.withAppVMs([['work', 'red']]);
    log = path.join(inst.config.logDir, 'guest-work.log');
    await inst.ok('qvm-start', 'work');
    const b64 = Buffer.from(GRAB_FD).toString('base64');
    await inst.ok('qvm-run', '-p', '-u', 'root', 'work', `echo ${b64} | base64 -d > /root/grab-fd.pl`);
  });
  after(async () => {
    await inst?.destroy();
  });

  test('guest-log-fd: no process in the qube holds a host file; init\'s stdio are pipes', async () => {
    const r = await run('for f in /proc/[0-9]*/fd/*; do printf "%s -> %s\\n" "$f" "$(readlink "$f")"; done; ls -l /proc/1/fd/ /proc/self/fd/');
    assert.equal(r.code, 0, r.stderr);
    assert.doesNotMatch(r.stdout, /guest-work\.log/, 'a descriptor inside the qube points at its host log file');
    assert.ok(!r.stdout.includes(inst.home), `a descriptor inside the qube names a host path under ${inst.home}:\n${r.stdout}`);
    for (const fd of [0, 1, 2]) assert.match(r.stdout, new RegExp(`^/proc/1/fd/${fd} -> pipe:\\[`, 'm'), `init's fd ${fd}`);
  });

  test('guest-log-fd: the log shows the agent\'s startup lines, and the qube cannot truncate it', async () => {
    await until('the agent\'s startup line in the guest log', () => existsSync(log) && readFileSync(log, 'latin1').includes('connected to isolad'));
    const r = await run(`perl /root/grab-fd.pl 1 1 truncate; perl /root/grab-fd.pl 1 2 truncate; printf "after-truncate\\n" | ${toInit(2)}`);
    assert.equal(r.code, 0, r.stderr);
    await until('the qube\'s line', () => readFileSync(log, 'latin1').includes('after-truncate'));
    assert.match(readFileSync(log, 'latin1'), /connected to isolad/, 'the startup lines were truncated away by the qube');
  });

  test('guest-log-fd: control characters and non-UTF-8 bytes are escaped, not written raw', async () => {
    const r = await run(`printf "forged\\r\\033]0;OWNED\\007\\377\\n" | ${toInit(1)}`);
    assert.equal(r.code, 0, r.stderr);
    await until('the forged line', () => readFileSync(log, 'latin1').includes('forged'));
    const text = readFileSync(log, 'latin1');
    assert.ok(text.includes('forged\\x0d\\x1b]0;OWNED\\x07\\xff\n'), text.slice(-200));
    assert.doesNotMatch(text, /[\x00-\x08\x0b-\x1f\x7f-\xff]/, 'raw control or non-ASCII bytes in the guest log');
  });

  test('guest-log-fd: 50 MB written to init\'s stdout leave the log files within their cap', async () => {
    const r = await run(`yes AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA | head -c 50000000 | ${toInit(1)}; ` +
      `echo flood-done | ${toInit(1)}`);
    assert.equal(r.code, 0, r.stderr);
    await until('the end of the flood', () => readFileSync(log, 'latin1').includes('flood-done'), 60_000);
    const sizes = logFiles().map((f) => [f, statSync(f).size] as const);
    for (const [f, size] of sizes) assert.ok(size <= GUEST_LOG_MAX_BYTES, `${f} is ${size} bytes (cap ${GUEST_LOG_MAX_BYTES})`);
    assert.ok(!existsSync(`${log}.${GUEST_LOG_KEEP + 1}`), 'more rotated files than kept');
    const total = sizes.reduce((s, [, n]) => s + n, 0);
    assert.ok(total <= (GUEST_LOG_KEEP + 1) * GUEST_LOG_MAX_BYTES, `${total} bytes of guest logs on the host`);
    // isolad and the qube still work.
    assert.equal((await run('echo still-alive')).stdout, 'still-alive\n');
  });

  // The qube's init used to be tini running Node from the template: a root that removed /usr/bin/node made it
  // exit at once, and qvm-start pointed to the guest log saying why. The init is now the static agent, bound
  // read-only from the host: nothing in the qube's root can stop it from starting, and the log says so.
  test('guest-log-fd: a qube whose root lost /usr/bin/node still starts, and its guest log shows the agent connecting', async () => {
    await inst.ok('qvm-create', '--class', 'StandaloneVM', '--template', 'debian-12', '--label', 'orange', 'broken');
    await inst.ok('qvm-run', '-p', '-u', 'root', 'broken', 'mv /usr/bin/node /usr/bin/node.away');
    await inst.ok('qvm-shutdown', '--wait', 'broken');
    const brokenLog = path.join(inst.config.logDir, 'guest-broken.log');
    const r = await inst.cli('qvm-start', ['broken']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((await inst.ok('qvm-run', '-p', 'broken', 'echo alive')), 'alive\n');
    await until('the agent\'s line in the guest log', () => /isola-agent: connected to isolad/.test(readFileSync(brokenLog, 'latin1')));
    await inst.ok('qvm-shutdown', '--wait', 'broken');
    await inst.ok('qvm-remove', '-f', 'broken');
  });

  test('guest-log-fd: the console keeps working across an isolad restart, and its reader dies with the qube', async () => {
    await inst.kill9();
    await inst.start();
    const r = await run(`echo after-restart | ${toInit(2)}`);
    assert.equal(r.code, 0, r.stderr);
    await until('the line written after the restart', () => readFileSync(log, 'latin1').includes('after-restart'));
    assert.ok(hostProcessesNaming(log).length > 0, 'no relay reads the console');
    await inst.ok('qvm-shutdown', '--wait', 'work');
    await until('the relay to exit with the qube', () => hostProcessesNaming(log).length === 0);
  });
});

/** The instance slot of the formula before the registry (sha256(home) % 48), as loadConfig hashes it. */
function legacySlot(home: string): number {
  return parseInt(createHash('sha256').update(path.resolve(home)).digest('hex').slice(0, 6), 16) % 48;
}

/** Two homes under `parent` that the old formula put in one slot. */
function collidingHomes(parent: string): [string, string] {
  const seen = new Map<number, string>();
  for (let i = 0; ; i++) {
    const home = path.join(parent, `home-${i}`);
    const other = seen.get(legacySlot(home));
    if (other) return [other, home];
    seen.set(legacySlot(home), home);
  }
}

function hostUid(pid: number): number {
  const m = /^Uid:\s+([0-9]+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(m, `no Uid line for pid ${pid}`);
  return Number(m[1]);
}

describe('uid-range-collision', { skip, concurrency: false }, () => {
  const parent = mkdtempSync(path.join(os.tmpdir(), 'isola-uidcoll-'));
  chmodSync(parent, 0o711); // the qubes' roots traverse it to their homes
  const registry = path.join(parent, 'uids', 'registry');
  let a: Instance;
  let b: Instance;

  before(async () => {
    const [homeA, homeB] = collidingHomes(parent);
    for (const h of [homeA, homeB]) mkdirSync(h);
    const env = { ISOLA_UID_REGISTRY: registry };
    [a, b] = await Promise.all([Instance.withAppVMs([['work', 'red']], { home: homeA, env }), Instance.withAppVMs([['work', 'blue']], { home: homeB, env })]);
  });
  after(async () => {
    await Promise.all([a?.destroy(), b?.destroy()]);
    rmSync(parent, { recursive: true, force: true });
  });

  test('uid-range-collision: two instances in one old hash slot run their qubes with the same qid as different host uids', async () => {
    const qidA = (await a.ok('qvm-prefs', 'work', 'qid')).trim();
    const qidB = (await b.ok('qvm-prefs', 'work', 'qid')).trim();
    assert.equal(qidA, qidB, 'the test needs the same qid in both instances');
    assert.equal(legacyUidBase(a.config.instance, Number(qidA)), legacyUidBase(b.config.instance, Number(qidB)), 'the homes do not collide under the old formula');
    await Promise.all([a.ok('qvm-start', 'work'), b.ok('qvm-start', 'work')]);
    const uidA = hostUid(a.containers().find((c) => c.id.startsWith('work.'))!.pid);
    const uidB = hostUid(b.containers().find((c) => c.id.startsWith('work.'))!.pid);
    assert.notEqual(uidA, uidB, `both qubes run as host uid ${uidA}`);
    assert.ok(Math.abs(uidA - uidB) >= 65536, `ranges ${uidA} and ${uidB} overlap`);
    const text = readFileSync(registry, 'utf8');
    assert.ok(text.includes(JSON.stringify(a.home)) && text.includes(JSON.stringify(b.home)), text);
  });

  test('uid-range-collision: a qube keeps its range across restarts and gives it back at qvm-remove', async () => {
    const before = hostUid(a.containers().find((c) => c.id.startsWith('work.'))!.pid);
    await a.ok('qvm-shutdown', '--wait', 'work');
    await a.kill9();
    await a.start();
    await a.ok('qvm-start', 'work');
    assert.equal(hostUid(a.containers().find((c) => c.id.startsWith('work.'))!.pid), before, 'a new range after a restart');
    await a.ok('qvm-shutdown', '--wait', 'work');
    const uuid = (await a.ok('qvm-prefs', 'work', 'uuid')).trim();
    assert.ok(readFileSync(registry, 'utf8').includes(uuid));
    await a.ok('qvm-remove', '-f', 'work');
    assert.ok(!readFileSync(registry, 'utf8').includes(uuid), 'the removed qube still holds its range');
  });
});
