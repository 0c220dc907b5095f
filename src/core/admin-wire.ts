// Qubes' Admin API wire format: request `"<method>+<arg> <source> <dest_type> <dest>\0" + payload`,
// replies `30 00 <content>`, `31 00 <event…>` or `32 00 <ExcName> 00 <traceback> 00 <message> 00`.

import { protocolError, QubesError, type QubesErrorCode } from './errors';

export interface AdminRequest {
  method: string;
  arg: string;
  source: string;
  dest: string;
  payload: Buffer;
}

export const MAX_HEADER = 1024;
const TOKEN_RE = /^[A-Za-z0-9_.+:@-]*$/;

/** Why an argument or destination cannot travel in a request header, or undefined if it can. */
export function headerTokenProblem(untrusted: string): string | undefined {
  return TOKEN_RE.test(untrusted) ? undefined : `Invalid name '${untrusted}': only letters, digits and _ . + : @ - are allowed`;
}

export function encodeRequest(r: Omit<AdminRequest, 'source'> & { source?: string }): Buffer {
  const header = `${r.method}${r.arg ? '+' + r.arg : ''} ${r.source ?? 'dom0'} name ${r.dest}\0`;
  return Buffer.concat([Buffer.from(header, 'utf8'), r.payload]);
}

/** Parses the header part (up to and excluding the NUL). */
export function parseRequestHeader(untrustedHeader: string): Omit<AdminRequest, 'payload'> {
  const parts = untrustedHeader.split(' ');
  if (parts.length !== 4) throw protocolError('malformed request header');
  const [svc, source, destType, dest] = parts;
  if (!TOKEN_RE.test(svc) || !TOKEN_RE.test(source) || !TOKEN_RE.test(dest)) throw protocolError('illegal characters in request header');
  let destName = dest;
  if (destType === 'keyword' && dest === 'adminvm') destName = 'dom0';
  else if (destType !== 'name') throw protocolError(`invalid destination type '${destType}'`);
  const plus = svc.indexOf('+');
  const method = plus === -1 ? svc : svc.slice(0, plus);
  const arg = plus === -1 ? '' : svc.slice(plus + 1);
  if (!method) throw protocolError('empty method name');
  return { method, arg, source, dest: destName };
}

export function encodeOk(content: string | Buffer): Buffer {
  return Buffer.concat([Buffer.from([0x30, 0x00]), Buffer.isBuffer(content) ? content : Buffer.from(content, 'utf8')]);
}

export function encodeException(code: string, message: string): Buffer {
  return Buffer.from(`2\0${code}\0\0${message}\0`, 'utf8');
}

export function encodeEvent(subject: string, event: string, kwargs: Record<string, string>): Buffer {
  const kv = Object.entries(kwargs).map(([k, v]) => `${k}\0${v}\0`).join('');
  return Buffer.from(`1\0${subject}\0${event}\0${kv}\0`, 'utf8');
}

export interface AdminEvent {
  subject: string;
  event: string;
  kwargs: Record<string, string>;
}

/** Decodes a complete non-event reply; throws the QubesError it carries. */
export function decodeReply(reply: Buffer): string {
  if (reply.length < 2 || reply[1] !== 0) throw protocolError('malformed reply');
  if (reply[0] === 0x30) return reply.subarray(2).toString('utf8');
  if (reply[0] === 0x32) {
    const fields = reply.subarray(2).toString('utf8').split('\0');
    throw new QubesError((fields[0] || 'QubesException') as QubesErrorCode, fields[2] ?? 'unknown error');
  }
  throw protocolError(`unexpected reply type 0x${reply[0].toString(16)}`);
}

/** Splits a buffer of concatenated event records; returns the events and the unconsumed rest. */
export function decodeEvents(buf: Buffer): { events: AdminEvent[]; rest: Buffer } {
  const events: AdminEvent[] = [];
  let pos = 0;
  for (;;) {
    if (buf.length - pos < 2) break;
    if (buf[pos] !== 0x31 || buf[pos + 1] !== 0) throw protocolError('malformed event stream');
    // A record ends with an empty field: two consecutive NULs after subject and event.
    const fields: string[] = [];
    let p = pos + 2;
    let complete = false;
    while (p < buf.length) {
      const nul = buf.indexOf(0, p);
      if (nul === -1) break;
      const field = buf.subarray(p, nul).toString('utf8');
      p = nul + 1;
      if (field === '' && fields.length >= 2 && fields.length % 2 === 0) {
        complete = true;
        break;
      }
      fields.push(field);
    }
    if (!complete) break;
    const kwargs: Record<string, string> = {};
    for (let i = 2; i + 1 < fields.length; i += 2) kwargs[fields[i]] = fields[i + 1];
    events.push({ subject: fields[0], event: fields[1], kwargs });
    pos = p;
  }
  return { events, rest: buf.subarray(pos) };
}
