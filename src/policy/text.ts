// Text primitives with the exact semantics of the Python code that defines Qubes' policy grammar:
// str.strip()/str.split() whitespace, universal-newline lines, and repr() quoting in error messages.

// Python's str.isspace() set; JS's \s differs (it has U+FEFF, lacks U+001C..U+001F and U+0085), and a
// policy line must split into the same fields here as in Qubes.
const PY_SPACE = '\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const SPACE_RUN = new RegExp(`[${PY_SPACE}]+`);
const EDGES = new RegExp(`^[${PY_SPACE}]+|[${PY_SPACE}]+$`, 'g');

export function pyStrip(s: string): string {
  return s.replace(EDGES, '');
}

export function pySplit(s: string): string[] {
  const t = pyStrip(s);
  return t === '' ? [] : t.split(SPACE_RUN);
}

/** Lines as Python iterates a file opened in text mode: \r\n, \r and \n all end a line. */
export function fileLines(text: string): string[] {
  if (text === '') return [];
  const lines = text.split(/\r\n|\r|\n/);
  if (lines[lines.length - 1] === '') lines.pop();
  return lines;
}

/** Python's repr() of a str, so that messages read as Qubes' do (`invalid source token: '@x'`). */
export function pyRepr(s: string): string {
  const quote = s.includes("'") && !s.includes('"') ? '"' : "'";
  let out = quote;
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (ch === '\\') out += '\\\\';
    else if (ch === quote) out += '\\' + quote;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (c < 0x20 || (c >= 0x7f && c <= 0xa0)) out += '\\x' + c.toString(16).padStart(2, '0');
    else out += ch;
  }
  return out + quote;
}

export function pyList(items: readonly string[]): string {
  return `[${items.map(pyRepr).join(', ')}]`;
}

export function pyTuple(items: readonly string[]): string {
  return items.length === 1 ? `(${pyRepr(items[0])},)` : `(${items.map(pyRepr).join(', ')})`;
}
