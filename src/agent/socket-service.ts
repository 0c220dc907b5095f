// Qubes' socket-based services: the agent connects to the unix socket found in the service path,
// writes the service descriptor (`SERVICE+ARG SOURCE\0`), then relays the caller's input to the
// socket and the socket's output back. No stderr; the exit code is 0 once the socket closes.

import { createConnection } from 'net';
import type { FramedSocket } from '../qrexec/frame-reader';
import { EMPTY, MSG_DATA_EXIT_CODE, MSG_DATA_STDERR, MSG_DATA_STDOUT, NOTHING, encodeU32 } from '../qrexec/protocol';
import { EXIT_QREXEC_PROBLEM } from './exec';

export function pumpSocketService(fs: FramedSocket, socketPath: string, descriptor: Buffer, log: (l: string) => void): void {
  const sock = createConnection({ path: socketPath, allowHalfOpen: true });
  let finished = false;
  const finish = (code: number) => {
    if (finished || fs.closed) return;
    finished = true;
    fs.send(MSG_DATA_STDOUT, EMPTY);
    fs.send(MSG_DATA_EXIT_CODE, encodeU32(code));
    fs.end();
  };
  sock.write(descriptor);
  sock.on('data', (chunk: Buffer) => {
    if (!fs.sendData(MSG_DATA_STDOUT, chunk)) {
      sock.pause();
      fs.onceDrain(() => sock.resume());
    }
  });
  sock.on('error', (e) => {
    log(`socket service ${socketPath}: ${e.message}`);
    if (!finished && !fs.closed) fs.sendData(MSG_DATA_STDERR, Buffer.from(`cannot connect to service socket: ${e.message}\n`));
    finish(EXIT_QREXEC_PROBLEM);
  });
  sock.on('close', () => finish(0));
  fs.onFrame = (f) => {
    if (f.payload.length === 0) {
      fs.allow(NOTHING);
      sock.end();
      return;
    }
    if (!sock.write(f.payload)) {
      fs.pause();
      sock.once('drain', () => fs.resume());
    }
  };
  fs.onClose = () => sock.destroy();
  fs.resume();
}
