// isola-agent: the process isolad talks to inside every qube. Keeps one control connection to isolad
// (reconnecting forever), runs the commands it is sent, and stops the qube on MSG_SHUTDOWN or SIGTERM.

import { createConnection } from 'net';
import { readdirSync, readFileSync, writeSync } from 'fs';
import type { ChildProcess } from 'child_process';
import {
  DAEMON_TO_AGENT_CONTROL, DAEMON_TO_AGENT_DATA, EMPTY, HELLO_FLAG_CONTROL, HELLO_FLAG_DATA,
  MSG_DATA_CONNECT, MSG_DATA_EXIT_CODE, MSG_DATA_STDERR, MSG_DATA_STDOUT, MSG_EXEC_CMDLINE, MSG_JUST_EXEC,
  MSG_PING, MSG_PONG, MSG_SERVICE_CONNECT, MSG_SERVICE_REFUSED, MSG_SHUTDOWN, NOTHING, ProtocolError,
  encodeU32, parseCmdline, parseExecParams, parseU32, typeName,
} from '../qrexec/protocol';
import { FramedSocket, type Frame } from '../qrexec/frame-reader';
import { exitCodeOf, signalGroup, spawnCommand, EXIT_QREXEC_PROBLEM } from './exec';
import { installToolWrappers } from './client-tools';
import { ensureHostsEntry } from './hosts-entry';
import { pumpSocketService } from './socket-service';

export const AGENT_VERSION = '0.1.0';
const SOCKET_PATH = process.env.ISOLA_AGENT_SOCKET || '/run/isola/agent.sock';
const DEFAULT_USER = process.env.ISOLA_DEFAULT_USER || 'user';
const SIGTERM_GRACE_SEC = Number(process.env.ISOLA_SHUTDOWN_TIMEOUT) || 10;
// kill(-1) reaches every process we may signal: only right when this pid namespace is the qube's own.
const KILL_ALL = process.pid === 1 || process.env.ISOLA_SHUTDOWN_KILL_ALL === '1';
const IDENT = `isola-agent/${AGENT_VERSION} node/${process.version}`;

/** Best effort and synchronous: a log that can fail (EPIPE) must not raise errors that get logged in turn. */
function log(line: string): void {
  try {
    writeSync(2, `isola-agent: ${line}\n`);
  } catch {
    /* nobody is reading our stderr: the line is lost, the agent goes on */
  }
}

/** Process groups of our commands (they outlive their leader); only needed when kill(-1) is not ours to use. */
const groups = new Set<number>();
let shuttingDown = false;
let linkState: 'never' | 'up' | 'down' = 'never';

function track(child: ChildProcess): void {
  if (!child.pid || KILL_ALL) return;
  groups.add(child.pid);
  if (groups.size > 256) pruneGroups();
}

function connectControl(): void {
  if (shuttingDown) return;
  const fs = new FramedSocket(createConnection(SOCKET_PATH), {
    label: 'control', log, accept: DAEMON_TO_AGENT_CONTROL,
    hello: { flags: HELLO_FLAG_CONTROL, ident: IDENT, timeoutMs: 10_000 },
  });
  fs.onHello = (hello) => {
    if (linkState !== 'up') log(`connected to isolad at ${SOCKET_PATH} (peer ${hello.ident || 'unnamed'})`);
    linkState = 'up';
  };
  fs.onFrame = (f) => onControlFrame(fs, f);
  fs.onClose = (reason) => {
    if (linkState === 'up') log(`control connection lost (${reason ?? 'closed by isolad'}); reconnecting`);
    else if (linkState === 'never') log(`waiting for isolad at ${SOCKET_PATH} (${reason ?? 'closed'})`);
    linkState = 'down';
    // isolad may restart while the qube runs: retry forever, jittered so many qubes don't stampede.
    if (!shuttingDown) setTimeout(connectControl, 100 + Math.floor(Math.random() * 100));
  };
}

function onControlFrame(fs: FramedSocket, f: Frame): void {
  switch (f.type) {
    case MSG_EXEC_CMDLINE:
    case MSG_JUST_EXEC: {
      const params = parseExecParams(f.payload);
      if (params.connectDomain !== 0) throw new ProtocolError(`connect_domain ${params.connectDomain} (only 0, isolad, is valid)`);
      const { user, command } = parseCmdline(params.cmdline);
      const realUser = user === 'DEFAULT' ? DEFAULT_USER : user;
      if (shuttingDown) log(`request ${params.connectPort} ignored: shutting down`);
      else if (f.type === MSG_JUST_EXEC) justExec(realUser, command);
      else runWithData(params.connectPort, realUser, command);
      return;
    }
    case MSG_SHUTDOWN:
      void shutdown(parseU32(f.payload, 'MSG_SHUTDOWN'), 'MSG_SHUTDOWN from isolad');
      return;
    case MSG_PING:
      fs.send(MSG_PONG, f.payload);
      return;
    case MSG_PONG:
      return;
    case MSG_SERVICE_CONNECT:
    case MSG_SERVICE_REFUSED:
      log(`${typeName(f.type)} ignored: qube-to-qube services are not served by this agent version`);
      return;
  }
}

function justExec(user: string, command: string): void {
  const r = spawnCommand(user, command, { justExec: true, log });
  if (!('child' in r)) {
    log(`JUST_EXEC as ${user} failed: ${'error' in r ? r.error : 'a socket service cannot be run without data'}`);
    return;
  }
  r.child.on('error', (e) => log(`JUST_EXEC as ${user} failed: ${e.message}`));
  track(r.child);
}

function runWithData(requestId: number, user: string, command: string): void {
  const sock = createConnection(SOCKET_PATH);
  const fs = new FramedSocket(sock, {
    label: `request ${requestId}`, log, accept: DAEMON_TO_AGENT_DATA,
    hello: { flags: HELLO_FLAG_DATA, ident: IDENT, timeoutMs: 10_000 },
  });
  fs.send(MSG_DATA_CONNECT, encodeU32(requestId));
  // Spawn only once connected: a command whose output has nowhere to go must not run at all.
  sock.once('connect', () => pump(fs, user, command));
}

let gcTimer: NodeJS.Timeout | null = null;

/**
 * With --expose-gc in the init argv, the read buffers of a big transfer are freed a second after it instead of
 * when V8 next feels external-memory pressure (64 MiB away): otherwise every qube that once moved data holds them.
 */
function collectSoon(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc || gcTimer) return;
  gcTimer = setTimeout(() => {
    gcTimer = null;
    gc();
  }, 1000);
}

function finish(fs: FramedSocket, exitCode: number): void {
  fs.send(MSG_DATA_EXIT_CODE, encodeU32(exitCode));
  fs.end();
}

function pump(fs: FramedSocket, user: string, command: string): void {
  const sock = fs.socket;
  const r = spawnCommand(user, command, { justExec: false, log });
  if ('error' in r) {
    fs.sendData(MSG_DATA_STDERR, Buffer.from(`${r.error}\n`));
    fs.send(MSG_DATA_STDOUT, EMPTY);
    return finish(fs, r.exitCode);
  }
  if ('socket' in r) return pumpSocketService(fs, r.socket, r.descriptor, log);
  const child = r.child;
  const stdin = child.stdin!, stdout = child.stdout!, stderr = child.stderr!;
  let spawnError: string | null = null;
  let done = false;
  let outputPaused = false;
  let stdinOpen = true;
  let moved = 0;
  track(child);
  sock.once('close', () => moved > 1 << 20 && collectSoon());

  const onOutput = (type: number) => (chunk: Buffer) => {
    moved += chunk.length;
    if (fs.sendData(type, chunk) || outputPaused || fs.closed) return;
    outputPaused = true;
    stdout.pause();
    stderr.pause();
    fs.onceDrain(() => {
      outputPaused = false;
      stdout.resume();
      stderr.resume();
    });
  };
  stdout.on('data', onOutput(MSG_DATA_STDOUT));
  stderr.on('data', onOutput(MSG_DATA_STDERR));
  stdout.once('end', () => fs.send(MSG_DATA_STDOUT, EMPTY));
  const stdinGone = () => {
    // The command closed its stdin (or died): later input has nowhere to go, so stop holding the socket.
    stdinOpen = false;
    fs.resume();
  };
  stdin.on('error', stdinGone);
  stdin.once('close', stdinGone);

  fs.onFrame = (f) => {
    if (f.length === 0) {
      fs.allow(NOTHING);
      if (stdinOpen) stdin.end();
      return;
    }
    moved += f.length;
    if (!stdinOpen) return;
    // The frames of one socket read go to the command in one writev, as the parts they arrived in.
    if (!stdin.writableCorked) {
      stdin.cork();
      process.nextTick(() => stdin.uncork());
    }
    let ok = true;
    for (const p of f.parts) ok = stdin.write(p);
    if (!ok) {
      fs.pause();
      stdin.once('drain', () => fs.resume());
    }
  };
  fs.onClose = (reason) => {
    if (done) return;
    // isolad or its client went away: hang up on the command as a terminal would.
    if (reason) log(`data connection lost (${reason}); sending SIGHUP`);
    signalGroup(child.pid, 'SIGHUP');
    stdin.destroy();
    stdout.destroy();
    stderr.destroy();
  };
  child.on('error', (e) => {
    spawnError = e.message;
  });
  child.once('close', (code, signal) => {
    done = true;
    if (fs.closed) return;
    if (spawnError) fs.sendData(MSG_DATA_STDERR, Buffer.from(`cannot start command: ${spawnError}\n`));
    finish(fs, spawnError ? EXIT_QREXEC_PROBLEM : exitCodeOf(code, signal));
  });
}

/** Process groups with a live member, other than init and us. Zombies don't count: only their parent can reap them. */
function liveGroups(): Set<number> {
  const live = new Set<number>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || name === '1' || Number(name) === process.pid) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'latin1');
      const [state, , pgrp] = stat.slice(stat.lastIndexOf(')') + 2).split(' ', 3);
      if (state !== 'Z') live.add(Number(pgrp));
    } catch {
      /* exited while we looked */
    }
  }
  return live;
}

/** Forgets groups that emptied, so a recycled pgid of some unrelated process is never signalled. */
function pruneGroups(live = liveGroups()): void {
  for (const pgid of groups) if (!live.has(pgid)) groups.delete(pgid);
}

function othersAlive(): boolean {
  const live = liveGroups();
  if (KILL_ALL) return live.size > 0;
  pruneGroups(live);
  return groups.size > 0;
}

function signalAll(signal: NodeJS.Signals): void {
  if (!KILL_ALL) {
    pruneGroups();
    for (const pgid of groups) signalGroup(pgid, signal);
    return;
  }
  try {
    process.kill(-1, signal);
  } catch {
    /* ESRCH: nobody else left */
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function shutdown(timeoutSec: number, why: string): Promise<void> {
  if (shuttingDown) return;
  shuttingDown = true;
  log(`shutdown (${why}): SIGTERM to every process, ${timeoutSec}s before SIGKILL`);
  signalAll('SIGTERM');
  const deadline = Date.now() + timeoutSec * 1000;
  while (othersAlive() && Date.now() < deadline) await sleep(50);
  if (othersAlive()) {
    log('processes left after the grace period: SIGKILL');
    signalAll('SIGKILL');
    for (let i = 0; i < 20 && othersAlive(); i++) await sleep(50);
  }
  process.exit(0);
}

function main(): void {
  if (process.pid === 1) log('running as PID 1 without an init: orphaned processes will not be reaped (start me under tini)');
  process.on('SIGTERM', () => void shutdown(SIGTERM_GRACE_SEC, 'SIGTERM'));
  process.on('SIGINT', () => void shutdown(SIGTERM_GRACE_SEC, 'SIGINT'));
  process.on('SIGHUP', () => {});
  process.stderr.on('error', () => {}); // node's own warnings must not turn a dead log reader into a crash
  // Losing the agent stops the whole qube, so a bug in one request is logged and survived.
  process.on('uncaughtException', (e) => log(`uncaught: ${e.stack ?? e}`));
  connectControl();
  // Only in a real qube (as root): tests run the agent on a host as a plain process.
  if (process.getuid?.() === 0 && process.env.ISOLA_QUBE_NAME) {
    installToolWrappers();
    ensureHostsEntry(process.env.ISOLA_QUBE_NAME);
  }
}

main();
