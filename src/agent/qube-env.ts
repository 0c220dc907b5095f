// What the in-qube Node tools share about the qube they run in: Qubes' exit codes, the PATH commands
// get, the caller as the agent names it to a service, and the client socket. The agent itself is C
// (src/native/agent/); these values are the same there.

import { constants as osConstants } from 'os';

export const SAFE_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Exit codes as Qubes' qrexec uses them. */
export const EXIT_QREXEC_PROBLEM = 125;
export const EXIT_CANNOT_EXECUTE = 126;
export const EXIT_NOT_FOUND = 127;

/**
 * In-qube qrexec clients call isolad on the qube's own client socket, which isolad serves from the host
 * (mounted read-only at /run/qubes): isolad knows the caller by that socket, so nothing the client says
 * can change its source.
 */
export const CLIENT_SOCKET = process.env.ISOLA_CLIENT_SOCKET || '/run/qubes/qrexec-client.sock';

const QUBE_RE = /^[A-Za-z][A-Za-z0-9_.-]{0,30}$/;

/** The calling qube as isolad named it to a service (QREXEC_REMOTE_DOMAIN); undefined if missing or malformed. */
export function remoteDomain(env: NodeJS.ProcessEnv): string | undefined {
  const source = env.QREXEC_REMOTE_DOMAIN ?? '';
  return QUBE_RE.test(source) ? source : undefined;
}

export function exitCodeOf(code: number | null, signal: NodeJS.Signals | null): number {
  if (signal) return 128 + (osConstants.signals[signal] ?? 0);
  return code === null || code < 0 ? EXIT_QREXEC_PROBLEM : code & 0xff;
}
