// The sandbox's agent channel: two unix sockets in host directories that the qube gets bound read-only
// (/run/isola for its agent, /run/qubes for its qrexec clients). Which socket accepted a connection is
// the qube's identity; the directories' owners and modes are the guard.

import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { AgentChannel } from '../../core/backend';
import type { IdRange } from '../../core/volumes';
import { UnixSocketChannel } from '../../qrexec/unix-channel';
import type { ChannelDirs } from './sandbox-spec';

export function channelDirs(agentRoot: string, uuid: string): ChannelDirs {
  return {
    agent: path.join(agentRoot, uuid),
    // Owned by the host's root and mounted read-only, not inside the qube-owned agent directory: the
    // qube cannot swap the socket isolad chmods.
    client: path.join(agentRoot, `${uuid}.qrexec`),
  };
}

export async function ensureOwnedDir(dir: string, owner: number, mode: number): Promise<void> {
  await fs.mkdir(dir, { recursive: true });
  await fs.chown(dir, owner, owner);
  await fs.chmod(dir, mode);
}

export async function sandboxChannel(agentRoot: string, uuid: string, ids: IdRange, log: (line: string) => void): Promise<AgentChannel> {
  const dirs = channelDirs(agentRoot, uuid);
  await ensureOwnedDir(dirs.agent, ids.base, 0o700);
  await ensureOwnedDir(dirs.client, process.getuid?.() ?? 0, 0o755);
  return new UnixSocketChannel([
    { path: path.join(dirs.agent, 'agent.sock'), endpoint: 'agent' },
    // In-qube callers reach isolad directly (no relay through the agent): one copy of every byte less.
    { path: path.join(dirs.client, 'qrexec-client.sock'), endpoint: 'client' },
  ], log);
}

/**
 * /rw/home is bound at /home by the runtime, on the host side. The qube controls its private volume,
 * so anything there but a real directory (a symlink to the host's /etc, say) is moved aside and
 * replaced: following it would chown or bind-mount a host path.
 */
export async function ensurePrivateHome(privateDir: string, owner: number): Promise<void> {
  const home = path.join(privateDir, 'home');
  const st = await fs.lstat(home).catch(() => undefined);
  if (st?.isDirectory()) return;
  if (st) await fs.rename(home, path.join(privateDir, `home.not-a-directory-${Date.now()}`));
  await fs.mkdir(home, { mode: 0o755 });
  await fs.lchown(home, owner, owner);
}
