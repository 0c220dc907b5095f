// qvm-open-in-vm [--view-only] VMNAME FILE|URL and qvm-open-in-dvm [--view-only] FILE|URL inside a
// qube: a URL goes to qubes.OpenURL, a file to qubes.OpenInVM; an edited file that comes back replaces
// the original (atomically, keeping its mode) only when the reply is not empty, as Qubes' qopen-in-vm.
// With --view-only nothing comes back, whatever the target sends: the reply is read and dropped.

import { createReadStream, createWriteStream, renameSync, rmSync, statSync } from 'fs';
import { once } from 'events';
import path from 'path';
import type { PassThrough } from 'stream';
import { EXIT_REFUSED, callWithStreams } from '../qrexec-client-vm';
import { encodeNameBlock, isUrl } from './open-request';
import { errorText } from '../../core/error-text';

export type OpenTool = 'qvm-open-in-vm' | 'qvm-open-in-dvm';

export function isOpenTool(name: string | undefined): name is OpenTool {
  return name === 'qvm-open-in-vm' || name === 'qvm-open-in-dvm';
}

export async function qvmOpenInVm(tool: OpenTool, argv: string[]): Promise<number> {
  const viewOnly = argv.includes('--view-only');
  const args = argv.filter((a) => a !== '--view-only');
  const dvm = tool === 'qvm-open-in-dvm';
  const usage = `usage: ${tool} [--view-only] ${dvm ? '' : 'VMNAME '}FILE|URL\n`;
  if (args.includes('-h') || args.includes('--help')) {
    process.stdout.write(`${usage}\nOpen FILE or URL in ${dvm ? 'a new disposable qube' : 'the qube VMNAME'}; an edited file comes back here.\n`);
    return 0;
  }
  if (args.length !== (dvm ? 1 : 2) || args.some((a) => a.startsWith('-'))) {
    process.stderr.write(usage);
    return 2;
  }
  const target = dvm ? '@dispvm' : args[0];
  const what = args[args.length - 1];
  const url = isUrl(what);
  let block: Buffer | null = null;
  if (!url) {
    try {
      if (!statSync(what).isFile()) throw new Error('not a regular file');
      block = encodeNameBlock(path.basename(what), viewOnly);
    } catch (e) {
      process.stderr.write(`${tool}: ${(e as NodeJS.ErrnoException).code ? errorText(e) : `${what}: ${errorText(e)}`}\n`);
      return 1;
    }
  }
  const call = await callWithStreams(target, url ? 'qubes.OpenURL' : 'qubes.OpenInVM');
  if (call.refused) {
    process.stderr.write(`${tool}: the request was refused by policy\n`);
    return EXIT_REFUSED;
  }
  const { toRemote, fromRemote: reply, session } = call;
  if (url) toRemote.end(`${what}\n`);
  else {
    toRemote.write(block);
    createReadStream(what).on('error', (e) => toRemote.destroy(e)).pipe(toRemote);
  }
  return url ? session : viewOnly ? discardReply(reply, session) : receiveEdited(what, reply, session);
}

/** View-only: the target is not trusted to answer; its bytes are drained so that it can finish. */
async function discardReply(reply: PassThrough, session: Promise<number>): Promise<number> {
  reply.resume();
  try {
    return await session;
  } finally {
    reply.end();
  }
}

/** Writes the reply next to the original; it replaces the original only if it is not empty. */
async function receiveEdited(original: string, reply: PassThrough, session: Promise<number>): Promise<number> {
  const tmp = path.join(path.dirname(original), `.${path.basename(original)}.qopen-${process.pid}`);
  const out = createWriteStream(tmp, { flags: 'wx', mode: statSync(original).mode & 0o7777 });
  let size = 0;
  reply.on('data', (c: Buffer) => (size += c.length));
  reply.pipe(out);
  let code = 125;
  try {
    code = await session;
  } finally {
    reply.end(); // the session never ends its stdout: the command's exit code is the end
    await once(out, 'close');
    if (code === 0 && size > 0) renameSync(tmp, original);
    else rmSync(tmp, { force: true });
  }
  return code;
}
