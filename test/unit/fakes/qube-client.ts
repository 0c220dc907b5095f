// A qrexec client inside a qube, as qrexec-client-vm speaks on the qube's client endpoint: HELLO as a
// client, one MSG_TRIGGER_SERVICE3, then isolad's notices and decision, then the service's data.

import { randomBytes } from 'node:crypto';
import { createConnection, type Socket } from 'node:net';
import { FramedSocket } from '../../../src/qrexec/frame-reader';
import {
  EMPTY, HELLO_FLAG_CLIENT, MSG_DATA_EXIT_CODE, MSG_DATA_STDERR, MSG_DATA_STDIN, MSG_DATA_STDOUT, MSG_SERVICE_CONNECT,
  MSG_SERVICE_NOTICE, MSG_SERVICE_REFUSED, MSG_TRIGGER_SERVICE3, encodeTriggerService3, parseExitCode,
} from '../../../src/qrexec/protocol';

export interface CallResult {
  refused: boolean;
  notices: string[];
  stdout: string;
  stderr: string;
  /** The service's exit code; null if refused or cut off. */
  code: number | null;
}

const FROM_ISOLAD: ReadonlySet<number> = new Set([
  MSG_SERVICE_NOTICE, MSG_SERVICE_CONNECT, MSG_SERVICE_REFUSED, MSG_DATA_STDOUT, MSG_DATA_STDERR, MSG_DATA_EXIT_CODE,
]);

export interface CallOptions {
  input?: string;
  /** Told each notice as it arrives (an `ask` waits for the host's answer). */
  onNotice?: (text: string, sock: Socket) => void;
}

export function callService(socketPath: string, target: string, call: string, opts: CallOptions = {}): Promise<CallResult> {
  const sock = createConnection(socketPath);
  sock.on('error', () => undefined);
  const fs = new FramedSocket(sock, { label: 'test client', log: () => undefined, accept: FROM_ISOLAD, hello: { flags: HELLO_FLAG_CLIENT, ident: 'test-client' } });
  fs.send(MSG_TRIGGER_SERVICE3, encodeTriggerService3({ targetDomain: target, requestId: randomBytes(8).toString('hex'), serviceName: call }));
  const res: CallResult = { refused: false, notices: [], stdout: '', stderr: '', code: null };
  return new Promise((resolve) => {
    fs.onFrame = (f) => {
      if (f.type === MSG_SERVICE_NOTICE) {
        const text = f.payload.toString('utf8');
        res.notices.push(text);
        opts.onNotice?.(text, sock);
      } else if (f.type === MSG_SERVICE_REFUSED) {
        res.refused = true;
        fs.close();
      } else if (f.type === MSG_SERVICE_CONNECT) {
        if (opts.input) fs.sendData(MSG_DATA_STDIN, Buffer.from(opts.input));
        fs.send(MSG_DATA_STDIN, EMPTY);
      } else if (f.type === MSG_DATA_STDOUT) res.stdout += f.payload.toString();
      else if (f.type === MSG_DATA_STDERR) res.stderr += f.payload.toString();
      else {
        res.code = parseExitCode(f.payload);
        fs.end();
      }
    };
    fs.onClose = () => resolve(res);
  });
}

/** A raw connection to the client endpoint, for callers that do not follow the protocol. */
export function rawConnect(socketPath: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = createConnection(socketPath, () => resolve(s));
    s.once('error', reject);
  });
}
