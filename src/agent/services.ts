// Qubes services inside a qube: `QUBESRPC SERVICE+ARG SOURCE` (what isolad sends for a qrexec call)
// becomes the executable /etc/qubes-rpc/SERVICE+ARG or /etc/qubes-rpc/SERVICE, run with Qubes' env,
// or the unix socket at that path (a socket-based service).
// Names are checked against charsets; the program is exec'd directly, never through a shell.

import { accessSync, constants, statSync } from 'fs';
import { EXIT_NOT_FOUND, EXIT_QREXEC_PROBLEM } from './exec';

/** Qubes' QREXEC_SERVICE_PATH, in its order, then Isola's built-in services (qubes.Filecopy, …) last, so a qube may override them. */
export const SERVICE_PATH = ['/run/qubes-rpc', '/usr/local/etc/qubes-rpc', '/etc/qubes-rpc', '/usr/lib/isola/qubes-rpc'];
const SERVICE_RE = /^[A-Za-z0-9._-]{1,255}$/;
const ARGUMENT_RE = /^[A-Za-z0-9._+-]{0,255}$/;
const QUBE_RE = /^[A-Za-z][A-Za-z0-9_.-]{0,30}$/;

/** The calling qube as isolad named it to a service (QREXEC_REMOTE_DOMAIN); undefined if missing or malformed. */
export function remoteDomain(env: NodeJS.ProcessEnv): string | undefined {
  const source = env.QREXEC_REMOTE_DOMAIN ?? '';
  return QUBE_RE.test(source) ? source : undefined;
}

export interface FoundService {
  path: string;
  /** Qubes' socket-based services: a unix socket the agent connects to instead of a program it runs. */
  socket: boolean;
}

function usable(p: string): FoundService | undefined {
  try {
    const st = statSync(p);
    if (st.isSocket()) return { path: p, socket: true };
    accessSync(p, constants.X_OK);
    return st.isFile() ? { path: p, socket: false } : undefined;
  } catch {
    return undefined;
  }
}

/** Finds the service: `SERVICE+ARG` is preferred to `SERVICE` in each directory of the path. */
export function findService(service: string, argument: string, dirs = SERVICE_PATH): FoundService | undefined {
  for (const dir of dirs) {
    const found = (argument ? usable(`${dir}/${service}+${argument}`) : undefined) ?? usable(`${dir}/${service}`);
    if (found) return found;
  }
  return undefined;
}

export type ServiceProgram =
  | { argv: string[]; env: Record<string, string> }
  /** Connect to `socket`, send `descriptor` (Qubes' `SERVICE+ARG SOURCE\0`), then relay stdin/stdout. */
  | { socket: string; descriptor: Buffer }
  | { error: string; exitCode: number };

/**
 * Turns `QUBESRPC SERVICE+ARG SOURCE` into the program to run and Qubes' environment for it. The
 * service is executed directly (no shell in between: one exec less on every call).
 */
export function serviceProgram(untrustedCmd: string, dirs = SERVICE_PATH): ServiceProgram {
  const parts = untrustedCmd.split(' ');
  if (parts.length !== 3 || parts[0] !== 'QUBESRPC') return { error: 'malformed service request', exitCode: EXIT_QREXEC_PROBLEM };
  const [, full, source] = parts;
  const plus = full.indexOf('+');
  const service = plus === -1 ? full : full.slice(0, plus);
  const argument = plus === -1 ? '' : full.slice(plus + 1);
  if (!SERVICE_RE.test(service) || !ARGUMENT_RE.test(argument) || !QUBE_RE.test(source)) {
    return { error: 'invalid service name, argument or source', exitCode: EXIT_QREXEC_PROBLEM };
  }
  const found = findService(service, argument, dirs);
  if (!found) return { error: `service ${service}+${argument} does not exist in this qube`, exitCode: EXIT_NOT_FOUND };
  if (found.socket) return { socket: found.path, descriptor: Buffer.from(`${service}+${argument} ${source}\0`) };
  const path = found.path;
  return {
    argv: argument ? [path, argument] : [path],
    env: { QREXEC_REMOTE_DOMAIN: source, QREXEC_SERVICE_ARGUMENT: argument, QREXEC_SERVICE_FULL_NAME: `${service}+${argument}` },
  };
}
