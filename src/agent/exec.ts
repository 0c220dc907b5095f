// How isola-agent starts a command inside the qube: `/bin/sh -c COMMAND` as a user of the qube's own
// /etc/passwd, with a login-like environment, in its own process group so it can be signalled as a whole.

import { spawn, type ChildProcess } from 'child_process';
import { constants as osConstants } from 'os';
import { existsSync, readFileSync, statSync } from 'fs';
import { serviceProgram } from './services';

export interface QubeUser {
  name: string;
  uid: number;
  gid: number;
  home: string;
  shell: string;
}

export const SAFE_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
/** Static, bound from isolad into every qube (src/native/isola-runas.c). */
export const RUNAS = '/usr/lib/isola/isola-runas';
/** util-linux is Essential in Debian, so setpriv is in every template, minbase included: the fallback. */
export const SETPRIV = '/usr/bin/setpriv';

/** Exit codes as Qubes' qrexec uses them. */
export const EXIT_QREXEC_PROBLEM = 125;
export const EXIT_CANNOT_EXECUTE = 126;
export const EXIT_NOT_FOUND = 127;

/** Read at every call: users added inside the qube (adduser, template updates) count at once. */
export function lookupUser(name: string, passwdPath = '/etc/passwd'): QubeUser | null {
  let text: string;
  try {
    text = readFileSync(passwdPath, 'utf8');
  } catch {
    return null;
  }
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length < 7 || f[0] !== name) continue;
    const uid = Number(f[2]);
    const gid = Number(f[3]);
    if (!Number.isInteger(uid) || !Number.isInteger(gid) || f[2] === '' || f[3] === '') return null;
    return { name, uid, gid, home: f[5] || '/', shell: f[6] || '/bin/sh' };
  }
  return null;
}

export function userEnv(user: QubeUser): NodeJS.ProcessEnv {
  // Only these: the agent's own environment (socket path, node flags) is no business of the command.
  return { HOME: user.home, USER: user.name, LOGNAME: user.name, SHELL: user.shell, PATH: SAFE_PATH };
}

export function exitCodeOf(code: number | null, signal: NodeJS.Signals | null): number {
  if (signal) return 128 + (osConstants.signals[signal] ?? 0);
  return code === null || code < 0 ? EXIT_QREXEC_PROBLEM : code & 0xff;
}

function homeOrRoot(home: string): string {
  try {
    return statSync(home).isDirectory() ? home : '/';
  } catch {
    return '/';
  }
}

export type SpawnResult = { child: ChildProcess } | { socket: string; descriptor: Buffer } | { error: string; exitCode: number };

/** Read at every call, as /etc/passwd: the groups whose member list names the user, plus the primary group. */
export function supplementaryGroups(user: QubeUser, groupPath = '/etc/group'): number[] {
  const gids = new Set<number>([user.gid]);
  let text = '';
  try {
    text = readFileSync(groupPath, 'utf8');
  } catch {
    /* no /etc/group: the primary group only */
  }
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length < 4 || !/^\d+$/.test(f[2])) continue;
    if (f[3].split(',').includes(user.name)) gids.add(Number(f[2]));
  }
  return [...gids];
}

let switcher: 'runas' | 'setpriv' | 'none' | null = null;

/**
 * Switching user goes through isola-runas (static, from isolad) because Node's spawn({uid, gid})
 * drops every supplementary group and cannot set them, and a Qubes user expects theirs; setpriv
 * --init-groups does the same but costs over a millisecond more per call, so it is the fallback.
 */
function userSwitch(user: QubeUser, program: string[], log: (line: string) => void): { file: string; args: string[]; ids: { uid?: number; gid?: number } } {
  if (switcher === null) {
    switcher = existsSync(RUNAS) ? 'runas' : existsSync(SETPRIV) ? 'setpriv' : 'none';
    if (switcher === 'none') log(`${RUNAS} and ${SETPRIV} missing; commands run without supplementary groups`);
  }
  if (switcher === 'runas') return { file: RUNAS, args: [String(user.uid), String(user.gid), supplementaryGroups(user).join(','), ...program], ids: {} };
  if (switcher === 'setpriv') return { file: SETPRIV, args: ['--reuid', String(user.uid), '--regid', String(user.gid), '--init-groups', '--', ...program], ids: {} };
  return { file: program[0], args: program.slice(1), ids: { uid: user.uid, gid: user.gid } };
}

export function spawnCommand(
  userName: string,
  command: string,
  opts: { justExec: boolean; log: (line: string) => void; passwd?: string; serviceDirs?: string[]; configDirs?: string[] },
): SpawnResult {
  // A qrexec service call (Qubes' `QUBESRPC SERVICE+ARG SOURCE`) runs the service itself; anything else via sh.
  let program = ['/bin/sh', '-c', command];
  let serviceEnv: Record<string, string> = {};
  if (command.startsWith('QUBESRPC ')) {
    const svc = serviceProgram(command, opts.serviceDirs, opts.configDirs);
    if ('error' in svc || 'socket' in svc) return svc;
    program = svc.argv;
    serviceEnv = svc.env;
    // The service's rpc-config decides over the caller (Qubes: qubes.VMRootShell is force-user=root).
    if (svc.forceUser) userName = svc.forceUser;
  }
  const user = lookupUser(userName, opts.passwd);
  if (!user) return { error: `user ${userName} does not exist in qube`, exitCode: EXIT_NOT_FOUND };
  const myUid = process.getuid?.() ?? 0;
  let file = program[0];
  let args = program.slice(1);
  let ids: { uid?: number; gid?: number } = {};
  if (user.uid !== myUid) {
    if (myUid !== 0) return { error: `cannot run as ${userName}: isola-agent is not root`, exitCode: EXIT_CANNOT_EXECUTE };
    ({ file, args, ids } = userSwitch(user, program, opts.log));
  }
  try {
    const child = spawn(file, args, {
      ...ids,
      cwd: homeOrRoot(user.home),
      env: { ...userEnv(user), ...serviceEnv },
      argv0: file === '/bin/sh' ? 'sh' : undefined,
      // Own process group: shutdown and a lost data connection signal the command and everything it started.
      detached: true,
      stdio: opts.justExec ? 'ignore' : 'pipe',
    });
    return { child };
  } catch (e) {
    return { error: `cannot start command: ${(e as Error).message}`, exitCode: EXIT_QREXEC_PROBLEM };
  }
}

/** Signals a whole process group (a command and what it started); quiet when it is already gone. */
export function signalGroup(pgid: number | undefined, signal: NodeJS.Signals): void {
  if (!pgid) return;
  try {
    process.kill(-pgid, signal);
  } catch {
    /* ESRCH: nothing left to signal */
  }
}
