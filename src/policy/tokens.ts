// Qube designations (`@anyvm`, `@tag:T`, `uuid:U`, names, …): which are legal in which column, and
// how a rule's token matches a request or expands into the targets an ask dialog offers.

import { PolicySyntaxError } from './errors';
import { type SystemInfo, defaultDispvmOf, domainInfo, domainName, isAdminVmSpelling } from './system';
import { pyRepr } from './text';

export type TokenKind =
  | 'wildcard' | 'anyvm' | 'adminvm' | 'default' | 'type' | 'tag'
  | 'dispvm' | 'dispvm-template' | 'dispvm-tag' | 'name';

/** Where a token appears; the names are the ones Qubes' messages use. */
export type TokenContext = 'source' | 'target' | 'redirect' | 'intendedtarget';

export interface VmToken {
  readonly kind: TokenKind;
  /** As written in the policy or the request (`dom0` stays `dom0`). */
  readonly text: string;
  /** The part after the prefix (`@tag:work` → `work`); the whole text for names. */
  readonly value: string;
}

const ALL: readonly TokenKind[] = ['wildcard', 'anyvm', 'adminvm', 'default', 'type', 'tag', 'dispvm', 'dispvm-template', 'dispvm-tag', 'name'];

const LEGAL: Record<TokenContext, ReadonlySet<TokenKind>> = {
  source: new Set<TokenKind>(['wildcard', 'anyvm', 'adminvm', 'type', 'tag', 'dispvm-template', 'dispvm-tag', 'name']),
  target: new Set<TokenKind>(ALL),
  redirect: new Set<TokenKind>(['adminvm', 'dispvm', 'dispvm-template', 'name']),
  intendedtarget: new Set<TokenKind>(['adminvm', 'default', 'dispvm', 'dispvm-template', 'name']),
};

const EXACT: readonly (readonly [string, TokenKind])[] = [
  ['*', 'wildcard'], ['@adminvm', 'adminvm'], ['@anyvm', 'anyvm'], ['@default', 'default'], ['@dispvm', 'dispvm'],
];

// Order matters: `@dispvm:@tag:x` first meets `@dispvm:`, whose value starts with `@` and so defers
// to the longer prefix, as in Qubes.
const PREFIX: readonly (readonly [string, TokenKind])[] = [
  ['@type:', 'type'], ['@tag:', 'tag'], ['@dispvm:', 'dispvm-template'], ['@dispvm:@tag:', 'dispvm-tag'],
];

export function isLegal(text: string, context: TokenContext): boolean {
  try {
    parseToken(text, context, '', 0);
    return true;
  } catch {
    return false;
  }
}

export function parseToken(text: string, context: TokenContext, file: string, line: number): VmToken {
  const fail = (reason: string) => new PolicySyntaxError(file, line, reason);
  const legal = LEGAL[context];
  if (text !== '' && isAdminVmSpelling(text)) return { kind: 'adminvm', text, value: '@adminvm' };
  if (text !== '' && !text.startsWith('@') && text !== '*') {
    if (text === 'uuid:') throw fail(`invalid empty uuid: token: ${pyRepr(text)}`);
    return { kind: 'name', text, value: text };
  }
  for (const [exact, kind] of EXACT) {
    if (legal.has(kind) && text === exact) return { kind, text, value: text };
  }
  for (const [prefix, kind] of PREFIX) {
    if (!legal.has(kind) || !text.startsWith(prefix)) continue;
    const value = text.slice(prefix.length);
    if (value === '') throw fail(`invalid empty ${prefix} token: ${pyRepr(text)}`);
    if (value.startsWith('@')) continue;
    if (value === 'uuid:') throw fail(`invalid empty uuid: token: ${pyRepr(text)}`);
    return { kind, text, value };
  }
  throw fail(`invalid ${context} token: ${pyRepr(text)}`);
}

/** A caller's target after Qubes' verification: what rules are matched against. */
export type Intended =
  | { readonly kind: 'default'; readonly text: string }
  | { readonly kind: 'adminvm'; readonly text: string }
  | { readonly kind: 'name'; readonly text: string; readonly name: string }
  | { readonly kind: 'dispvm'; readonly text: string }
  | { readonly kind: 'dispvm-template'; readonly text: string; readonly name: string };

export const DEFAULT_TARGET: Intended = { kind: 'default', text: '@default' };

/**
 * Qubes' IntendedTarget.verify: a name that is no qube becomes `@default` (so a caller cannot probe
 * which qubes exist); `@dispvm:X` must name a disposable template, else the call is refused.
 */
export function verifyIntended(tok: VmToken, system: SystemInfo): Intended | { refused: string } {
  switch (tok.kind) {
    case 'default':
      return DEFAULT_TARGET;
    case 'adminvm':
      return { kind: 'adminvm', text: tok.text };
    case 'dispvm':
      return { kind: 'dispvm', text: tok.text };
    case 'dispvm-template': {
      const name = domainName(system, tok.value);
      if (name === undefined || system.domains[name].template_for_dispvms !== true) return { refused: `not a template for dispvm: ${tok.value}` };
      return { kind: 'dispvm-template', text: tok.text, name };
    }
    case 'name': {
      const name = domainName(system, tok.value);
      return name === undefined ? DEFAULT_TARGET : { kind: 'name', text: tok.text, name };
    }
    default:
      return { refused: `invalid intendedtarget token: ${pyRepr(tok.text)}` };
  }
}

/** The calling qube as rules see it. */
export interface SourceRef {
  readonly text: string;
  /** Its name in the system info, if it is there (`@adminvm` never is: it is a keyword). */
  readonly name: string | undefined;
  readonly adminvm: boolean;
}

export function sourceRef(text: string, system: SystemInfo): SourceRef {
  return { text, name: text === '@adminvm' ? undefined : domainName(system, text), adminvm: isAdminVmSpelling(text) };
}

function sameQube(system: SystemInfo, ruleValue: string, name: string): boolean {
  return ruleValue === name || domainName(system, ruleValue) === name;
}

export function matchSource(tok: VmToken, src: SourceRef, system: SystemInfo): boolean {
  switch (tok.kind) {
    case 'wildcard':
      return true;
    case 'anyvm':
      return !src.adminvm;
    case 'adminvm':
      return src.adminvm;
    case 'type':
      return src.name !== undefined && system.domains[src.name].type === tok.value;
    case 'tag':
      return src.name !== undefined && system.domains[src.name].tags.includes(tok.value);
    case 'name':
      return tok.value === src.text || (src.name !== undefined && sameQube(system, tok.value, src.name));
    default:
      // `@dispvm:X` parses in the source column but a source is always a plain qube.
      return false;
  }
}

function intendedInfo(req: Intended, system: SystemInfo) {
  if (req.kind === 'name') return system.domains[req.name];
  // Only the literal spellings are keys of the system info; the `@adminvm` keyword is not.
  if (req.kind === 'adminvm' && req.text !== '@adminvm') return domainInfo(system, req.text);
  return undefined;
}

/** The disposable template a request for a new disposable would use, if it is one. */
export function dispvmTemplateOf(req: Intended, source: string | undefined, system: SystemInfo): string | undefined {
  if (req.kind === 'dispvm') return defaultDispvmOf(system, source);
  if (req.kind === 'dispvm-template') return req.name;
  return undefined;
}

export function matchTarget(tok: VmToken, req: Intended, source: string | undefined, system: SystemInfo): boolean {
  switch (tok.kind) {
    case 'wildcard':
      return true;
    case 'anyvm':
      return req.kind !== 'adminvm';
    case 'adminvm':
      return req.kind === 'adminvm';
    case 'default':
      return req.kind === 'default';
    case 'type': {
      const info = intendedInfo(req, system);
      return info !== undefined && info.type === tok.value;
    }
    case 'tag': {
      const info = intendedInfo(req, system);
      return info !== undefined && info.tags.includes(tok.value);
    }
    case 'dispvm':
      return req.kind === 'dispvm';
    case 'dispvm-template': {
      const t = dispvmTemplateOf(req, source, system);
      return t !== undefined && sameQube(system, tok.value, t);
    }
    case 'dispvm-tag': {
      const t = dispvmTemplateOf(req, source, system);
      const info = t === undefined ? undefined : domainInfo(system, t);
      return info !== undefined && info.template_for_dispvms === true && info.tags.includes(tok.value);
    }
    case 'name':
      return req.kind === 'name' && (tok.value === req.text || sameQube(system, tok.value, req.name));
  }
}

/** Every concrete target a token stands for, for the ask dialog (keywords `@dispvm`, `@adminvm` kept). */
export function expandTarget(tok: VmToken, system: SystemInfo): string[] {
  const out: string[] = [];
  const domains = system.domains;
  switch (tok.kind) {
    case 'wildcard':
    case 'anyvm':
      for (const name of Object.keys(domains)) {
        if (tok.kind === 'wildcard' || domains[name].type !== 'AdminVM') out.push(name);
        if (domains[name].template_for_dispvms === true) out.push('@dispvm:' + name);
      }
      out.push('@dispvm');
      break;
    case 'adminvm':
      out.push('@adminvm');
      break;
    case 'type':
    case 'tag':
      for (const name of Object.keys(domains)) {
        const d = domains[name];
        if (tok.kind === 'type' ? d.type === tok.value : d.tags.includes(tok.value)) out.push(name);
      }
      break;
    case 'dispvm':
      out.push('@dispvm');
      break;
    case 'dispvm-template': {
      const name = domainName(system, tok.value);
      if (name !== undefined && domains[name].template_for_dispvms === true) out.push('@dispvm:' + name);
      break;
    }
    case 'dispvm-tag':
      for (const name of Object.keys(domains)) {
        if (domains[name].template_for_dispvms === true && domains[name].tags.includes(tok.value)) out.push('@dispvm:' + name);
      }
      break;
    case 'name': {
      const name = domainName(system, tok.value);
      if (name !== undefined) out.push(name);
      break;
    }
    case 'default':
      break;
  }
  return out;
}
