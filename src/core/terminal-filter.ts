// What of a qube's output may reach a terminal: text. Escape and control characters (C0, DEL, C1
// as bytes and as U+0080-U+009F), bidi controls and bytes that are not UTF-8 become `_`, so a qube
// cannot set a title, write the clipboard (OSC 52), query the terminal or reorder what is shown.

const UNDERSCORE = 0x5f;

/**
 * What Qubes' qrexec filter (`do_replace_chars`) keeps besides printable text: tab, newline,
 * carriage return, backspace and bell. None of them starts a sequence; ESC is what does.
 */
export const STREAM_KEEP: ReadonlySet<number> = new Set([0x09, 0x0a, 0x0d, 0x08, 0x07]);

/**
 * A code point that drives a terminal or reorders text rather than being text: C0, DEL, C1, the
 * bidi embeddings/overrides/isolates and marks, and (in strings) lone surrogates.
 */
export function isControlCodePoint(cp: number): boolean {
  return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp === 0x061c || cp === 0x200e || cp === 0x200f ||
    (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069) || (cp >= 0xd800 && cp <= 0xdfff);
}

const CONTROL_RE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]|[\ud800-\udfff]/gu;

/** A string made inert: each control code point that is not in `keep` becomes one `_`. */
export function inertString(untrusted: string, keep: ReadonlySet<number> = new Set()): string {
  return untrusted.replace(CONTROL_RE, (c) => (keep.has(c.codePointAt(0)!) ? c : '_'));
}

/** Length of the UTF-8 sequence a lead byte starts; 0 for a byte that cannot start one. */
function sequenceLength(b: number): number {
  if (b >= 0xc2 && b <= 0xdf) return 2;
  if (b >= 0xe0 && b <= 0xef) return 3;
  if (b >= 0xf0 && b <= 0xf4) return 4;
  return 0;
}

const isContinuation = (b: number) => (b & 0xc0) === 0x80;

/**
 * The code point of the well-formed sequence of `len` bytes at `i`, or -1 (a bad continuation,
 * overlong form, surrogate or beyond U+10FFFF).
 */
function decodeAt(buf: Buffer, i: number, len: number): number {
  let cp = buf[i] & (0xff >> (len + 1));
  for (let k = 1; k < len; k++) {
    const b = buf[i + k];
    if (!isContinuation(b)) return -1;
    cp = (cp << 6) | (b & 0x3f);
  }
  const min = len === 2 ? 0x80 : len === 3 ? 0x800 : 0x10000;
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return -1;
  return cp;
}

/**
 * The filter over a byte stream, for one stream (stdout or stderr): the output has as many bytes
 * as the input, each unwanted byte replaced by `_` (as Qubes' filter, but valid UTF-8 text other
 * than controls is kept). A UTF-8 sequence cut by a chunk's end waits (at most 3 bytes) for the
 * next chunk, so a C1 control split in two is still caught; end() flushes what is left.
 */
export class TerminalFilter {
  private pending: Buffer | null = null;
  /** 1 for an ASCII byte shown as it is: a table, as this loop runs for every byte shown. */
  private readonly asciiShown = new Uint8Array(0x80);

  constructor(keep: ReadonlySet<number> = STREAM_KEEP) {
    for (let c = 0x20; c < 0x7f; c++) this.asciiShown[c] = 1;
    for (const c of keep) if (c < 0x80) this.asciiShown[c] = 1;
  }

  /** The filtered bytes of `chunk` (a new buffer when something changed; the input is never modified). */
  push(chunk: Buffer): Buffer {
    const input = this.pending ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = null;
    let out: Buffer | null = input === chunk ? null : input;
    const replace = (from: number, count: number) => {
      out ??= Buffer.from(input);
      out.fill(UNDERSCORE, from, from + count);
    };
    const shown = this.asciiShown;
    const n = input.length;
    let i = 0;
    while (i < n) {
      const b = input[i];
      if (b < 0x80) {
        if (shown[b] === 0) {
          out ??= Buffer.from(input);
          out[i] = UNDERSCORE;
        }
        i++;
        continue;
      }
      const len = sequenceLength(b);
      if (len === 0) {
        replace(i, 1);
        i++;
        continue;
      }
      if (i + len > n) {
        let k = i + 1;
        while (k < n && isContinuation(input[k])) k++;
        if (k === n) {
          // The start of a character: it waits for the rest.
          this.pending = Buffer.from(input.subarray(i));
          return (out ?? input).subarray(0, i);
        }
        replace(i, 1);
        i++;
        continue;
      }
      const cp = decodeAt(input, i, len);
      if (cp < 0) {
        // Only the lead byte: what follows is judged on its own (stray continuations become `_`).
        replace(i, 1);
        i++;
        continue;
      }
      if (isControlCodePoint(cp)) replace(i, len);
      i += len;
    }
    return out ?? input;
  }

  /** The bytes still waiting at the end of the stream: an incomplete character, shown as `_`s. */
  end(): Buffer {
    const rest = this.pending ? Buffer.alloc(this.pending.length, UNDERSCORE) : Buffer.alloc(0);
    this.pending = null;
    return rest;
  }
}

/** One whole buffer through a fresh filter (a stream's last bytes included). */
export function filterTerminalBytes(untrusted: Buffer, keep: ReadonlySet<number> = STREAM_KEEP): Buffer {
  const f = new TerminalFilter(keep);
  const head = f.push(untrusted);
  const tail = f.end();
  return tail.length ? Buffer.concat([head, tail]) : head;
}
