// POSIX path arithmetic for include directives, kept here because the policy folder is pure and may
// not import node:path; symlinks are the PolicyFs's business (its optional realpath).

export function isAbsolute(p: string): boolean {
  return p.startsWith('/');
}

/** Lexical normalization: no empty, `.` or resolvable `..` segments; '' and '.' both become '.'. */
export function normalize(p: string): string {
  const abs = isAbsolute(p);
  const out: string[] = [];
  for (const seg of p.split('/')) {
    if (seg === '' || seg === '.') continue;
    if (seg === '..') {
      if (out.length && out[out.length - 1] !== '..') out.pop();
      else if (!abs) out.push('..');
      continue;
    }
    out.push(seg);
  }
  const body = out.join('/');
  return abs ? '/' + body : body || '.';
}

/** `base / rel` as pathlib joins: an absolute `rel` replaces the base. */
export function join(base: string, rel: string): string {
  if (isAbsolute(rel)) return normalize(rel);
  return normalize(base === '' ? rel : `${base}/${rel}`);
}

export function dirname(p: string): string {
  const n = normalize(p);
  const i = n.lastIndexOf('/');
  if (i < 0) return '.';
  return i === 0 ? '/' : n.slice(0, i);
}

export function basename(p: string): string {
  const n = normalize(p);
  return n.slice(n.lastIndexOf('/') + 1);
}
