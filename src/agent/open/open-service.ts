// qubes.OpenInVM and qubes.OpenURL in the target qube: the file (or URL) from the caller is opened
// with the qube's default handler, `xdg-open` as in Qubes (qubes-open). Everything the caller sent is
// hostile: the name is sanitised, the URL must be one line of an allowed scheme, no shell is involved.

import { spawn } from 'child_process';
import { createHash } from 'crypto';
import { accessSync, constants, createReadStream, createWriteStream, mkdtempSync } from 'fs';
import { once } from 'events';
import path from 'path';
import type { Readable, Writable } from 'stream';
import { SAFE_PATH, remoteDomain } from '../qube-env';
import { MAX_URL, NAME_BLOCK, checkUrl, decodeNameBlock } from './open-request';

export function findHandler(dirs = SAFE_PATH.split(':')): string | undefined {
  for (const dir of dirs) {
    try {
      accessSync(`${dir}/xdg-open`, constants.X_OK);
      return `${dir}/xdg-open`;
    } catch {
      /* next directory */
    }
  }
  return undefined;
}

/** Runs the handler on one argument; its output goes to stderr, as stdout is the caller's reply channel. */
async function openWith(arg: string, log: Writable): Promise<number> {
  const handler = findHandler();
  if (!handler) {
    log.write('no default application in this qube: install xdg-utils (or an xdg-open) to open files and URLs\n');
    return 127;
  }
  const child = spawn(handler, [arg], { stdio: ['ignore', 2, 2] });
  const [code, signal] = (await once(child, 'exit')) as [number | null, string | null];
  if (code !== 0) log.write(`${path.basename(handler)} ${signal ? `was killed by ${signal}` : `exited with ${code}`}\n`);
  return code ?? 126;
}

export async function openUrlService(stdin: Readable = process.stdin, log: Writable = process.stderr): Promise<number> {
  let text = '';
  for await (const chunk of stdin) {
    text += (chunk as Buffer).toString('latin1');
    if (text.length > MAX_URL + 2) break;
  }
  let url: string;
  try {
    url = checkUrl(text);
  } catch (e) {
    log.write(`qubes.OpenURL: ${(e as Error).message}\n`);
    return 1;
  }
  return openWith(url, log);
}

async function sha256(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** Receives a file into a fresh private directory, opens it, and sends it back if it was edited. */
export async function openInVmService(env: NodeJS.ProcessEnv = process.env, stdin: Readable = process.stdin, stdout: Writable = process.stdout, log: Writable = process.stderr): Promise<number> {
  const source = remoteDomain(env);
  if (!source) {
    log.write('qubes.OpenInVM: QREXEC_REMOTE_DOMAIN is missing or invalid\n');
    return 125;
  }
  let head = Buffer.alloc(0);
  let file = '';
  let out: Writable | null = null;
  let viewOnly = false;
  try {
    for await (const chunk of stdin) {
      let c = chunk as Buffer;
      if (!out) {
        head = Buffer.concat([head, c]);
        if (head.length < NAME_BLOCK) continue;
        const req = decodeNameBlock(head.subarray(0, NAME_BLOCK));
        viewOnly = req.viewOnly;
        file = path.join(mkdtempSync(`/tmp/qopen-${source}-`), req.name);
        out = createWriteStream(file, { flags: 'wx', mode: 0o600 });
        c = head.subarray(NAME_BLOCK);
      }
      if (c.length && !out.write(c)) await once(out, 'drain');
    }
    if (!out) throw new Error('truncated file name block');
    out.end();
    await once(out, 'finish');
  } catch (e) {
    out?.destroy();
    log.write(`qubes.OpenInVM: ${(e as Error).message}\n`);
    return 1;
  }
  const before = await sha256(file);
  const code = await openWith(file, log);
  if (code !== 0 || viewOnly || (await sha256(file)) === before) return code;
  for await (const chunk of createReadStream(file)) if (!stdout.write(chunk)) await once(stdout, 'drain');
  return 0;
}
