// Parsers for the Admin API's text replies (admin.vm.List, property.Get/GetAll, k=v lines), shared
// by the qvm-* commands; common.ts re-exports them.

import { ADMIN_METHODS, isAdminMethod, type AdminMethod } from '../../core/admin-methods';
import { QubesError } from '../../core/errors';
import type { AdminClientLike } from './common';

export function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ').trim();
}

export function lines(text: string): string[] {
  return text.split('\n').filter((l) => l !== '');
}

export interface QubeEntry {
  name: string;
  klass: string;
  state: string;
  uuid: string;
  /** Why the qube's last run ended badly (Isola addition to admin.vm.List), if it did. */
  lastError?: string;
}

/** admin.vm.List: `NAME class=CLASS state=STATE uuid=UUID` per line. */
export function parseVmList(text: string): QubeEntry[] {
  return lines(text).map((line) => {
    const [name, ...rest] = line.split(' ');
    const kv = parseTokens(rest.join(' '));
    const err = kv.get('last_error');
    return { name, klass: kv.get('class') ?? '', state: kv.get('state') ?? '', uuid: kv.get('uuid') ?? '', ...(err ? { lastError: safeDecode(err) } : {}) };
  });
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    return s;
  }
}

export async function listQubes(client: AdminClientLike): Promise<QubeEntry[]> {
  return parseVmList(await client.call('admin.vm.List', 'dom0'));
}

/** `k=v k=v` on one line (admin.vm.CurrentState, admin.vm.List attributes). */
export function parseTokens(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const tok of text.split(/\s+/)) {
    const eq = tok.indexOf('=');
    if (eq > 0) out.set(tok.slice(0, eq), tok.slice(eq + 1));
  }
  return out;
}

/** `key=value` per line (admin.vm.volume.Info); values may contain spaces. */
export function parseKeyValueLines(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of lines(text)) {
    const eq = line.indexOf('=');
    if (eq > 0) out.set(line.slice(0, eq), line.slice(eq + 1));
  }
  return out;
}

export interface PropertyReply {
  isDefault: boolean;
  /** Absent in the old `default=True ` reply for a property without a value. */
  type?: string;
  value: string;
}

/** admin.(vm.)property.Get: `default=True|False type=TYPE VALUE`. */
export function parsePropertyReply(text: string): PropertyReply {
  const m = /^default=(True|False)(?: type=(\S+))?(?: ([\s\S]*))?$/.exec(text);
  if (!m) throw new QubesError('ProtocolError', `malformed property reply from isolad: '${oneLine(text)}'`);
  return { isDefault: m[1] === 'True', type: m[2], value: m[3] ?? '' };
}

/** Qubes escapes `\` and newlines in GetAll so that one property stays on one line. */
export function unescapeGetAll(line: string): string {
  return line.replace(/\\(n|\\)/g, (_m, c: string) => (c === 'n' ? '\n' : '\\'));
}

/** admin.(vm.)property.GetAll: `PROP <Get reply>` per line. */
export function parseGetAll(text: string): Map<string, PropertyReply> {
  const out = new Map<string, PropertyReply>();
  for (const raw of lines(text)) {
    const line = unescapeGetAll(raw);
    const sp = line.indexOf(' ');
    if (sp <= 0) throw new QubesError('ProtocolError', `malformed property line from isolad: '${oneLine(line)}'`);
    out.set(line.slice(0, sp), parsePropertyReply(line.slice(sp + 1)));
  }
  return out;
}

/** Qubes shows `U` for a property that has neither a value nor a default. */
export function hasNoValue(p: PropertyReply): boolean {
  return p.value === '' && (p.type === undefined || p.type === 'int' || p.type === 'bool');
}

/** Qube-valued properties accept `none` for "no qube", as qvm-prefs does. */
export const QUBE_VALUED = new Set(['default_dispvm', 'netvm', 'template', 'guivm', 'audiovm', 'management_dispvm']);

/** `admin.vm.Create.<Class>` for a class name, if the Admin API table has it. */
export function createMethod(klass: string): AdminMethod | undefined {
  const m = `admin.vm.Create.${klass}`;
  return isAdminMethod(m) ? m : undefined;
}

export function creatableClasses(): string[] {
  const prefix = 'admin.vm.Create.';
  return Object.keys(ADMIN_METHODS).filter((m) => m.startsWith(prefix)).map((m) => m.slice(prefix.length));
}
