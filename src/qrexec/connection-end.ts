// The end of a connection isolad is done with. end() alone is not enough: a socket that is paused
// (or whose peer never closes) never reads the peer's close, so it and the kernel's buffers behind
// it would stay until the qube stops. After our last frames, what the peer still sends is read and
// dropped (so its close is seen and it gets a clean EOF), and the socket is destroyed at the
// latest after a short grace, whether or not the peer read our frames or closed.

import type { FramedSocket } from './frame-reader';

/** How long a finished connection may linger for its peer to read our last frames and close. */
export const FINISH_GRACE_MS = 2000;

const discard = () => undefined;

export function finishConnection(conn: FramedSocket, graceMs = FINISH_GRACE_MS): void {
  const s = conn.socket;
  if (s.destroyed) return;
  const timer = setTimeout(() => s.destroy(), graceMs);
  timer.unref();
  s.once('close', () => clearTimeout(timer));
  // No frame is parsed any more: nothing the peer sends now is kept or can cause a log line.
  s.removeAllListeners('data');
  s.on('data', discard);
  s.resume();
  if (!s.writableEnded) s.end();
}
