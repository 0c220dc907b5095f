// Qubes services inside a qube: `QUBESRPC SERVICE+ARG SOURCE` (what isolad sends for a qrexec call)
// becomes the executable /etc/qubes-rpc/SERVICE+ARG or /etc/qubes-rpc/SERVICE, run with Qubes' env,
// or the unix socket at that path (a socket-based service).
// Names are checked against charsets; the program is exec'd directly, never through a shell.

import { accessSync, constants, readFileSync, statSync } from 'fs';
import { EXIT_NOT_FOUND, EXIT_QREXEC_PROBLEM } from './exec';

/** Qubes' QREXEC_SERVICE_PATH, in its order, then Isola's built-in services (qubes.Filecopy, …) last, so a qube may override them. */
export const SERVICE_PATH = ['/run/qubes-rpc', '/usr/local/etc/qubes-rpc', '/etc/qubes-rpc', '/usr/lib/isola/qubes-rpc'];
/** Qubes' per-service settings (`force-user`, …): the qube's own first, then Isola's for its built-in services. */
export const RPC_CONFIG_PATH = ['/usr/local/etc/qubes/rpc-config', '/etc/qubes/rpc-config', '/usr/lib/isola/rpc-config'];
const SERVICE_RE = /^[A-Za-z0-9._-]{1,255}$/;
const USER_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}$/;
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

/**
 * Qubes' rpc-config file of a service (`SERVICE+ARG` preferred to `SERVICE`, first directory that has
 * one): `key = value` lines, values bare or quoted, `#` comments. Only `force-user` matters here (e.g.
 * qubes.VMRootShell runs as root whoever the caller asked for). A value we cannot read is an error:
 * a service whose config is broken does not run (fail closed).
 */
export function serviceConfig(service: string, argument: string, dirs = RPC_CONFIG_PATH): { forceUser?: string } | { error: string } {
  for (const dir of dirs) {
    for (const name of argument ? [`${service}+${argument}`, service] : [service]) {
      let text: string;
      try {
        text = readFileSync(`${dir}/${name}`, 'utf8');
      } catch {
        continue;
      }
      const out: { forceUser?: string } = {};
      for (const raw of text.split('\n')) {
        const line = raw.trim();
        if (line === '' || line.startsWith('#')) continue;
        const m = /^([A-Za-z0-9_-]+)\s*=\s*(?:'([^']*)'|"([^"]*)"|([^\s'"#]+))\s*(?:#.*)?$/.exec(line);
        if (!m) return { error: `${dir}/${name}: cannot parse line '${line.slice(0, 60)}'` };
        if (m[1] !== 'force-user') continue;
        const user = m[2] ?? m[3] ?? m[4];
        if (!USER_RE.test(user)) return { error: `${dir}/${name}: force-user is not a valid user name` };
        out.forceUser = user;
      }
      return out;
    }
  }
  return {};
}

export type ServiceProgram =
  | { argv: string[]; env: Record<string, string>; forceUser?: string }
  /** Connect to `socket`, send `descriptor` (Qubes' `SERVICE+ARG SOURCE\0`), then relay stdin/stdout. */
  | { socket: string; descriptor: Buffer }
  | { error: string; exitCode: number };

/**
 * Turns `QUBESRPC SERVICE+ARG SOURCE` into the program to run and Qubes' environment for it. The
 * service is executed directly (no shell in between: one exec less on every call).
 */
export function serviceProgram(untrustedCmd: string, dirs = SERVICE_PATH, configDirs = RPC_CONFIG_PATH): ServiceProgram {
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
  const config = serviceConfig(service, argument, configDirs);
  if ('error' in config) return { error: `service ${service}+${argument}: ${config.error}`, exitCode: EXIT_QREXEC_PROBLEM };
  const path = found.path;
  return {
    argv: argument ? [path, argument] : [path],
    env: { QREXEC_REMOTE_DOMAIN: source, QREXEC_SERVICE_ARGUMENT: argument, QREXEC_SERVICE_FULL_NAME: `${service}+${argument}` },
    ...(config.forceUser ? { forceUser: config.forceUser } : {}),
  };
}
