// Reasons isolad records for a qube (qvm-ls, qvm-check, events, the log) can hold bytes a qube
// chose (a file name in a failed commit). Stored inert: controls and direction overrides as \xHH
// / \u{…}, so no terminal or log viewer ever interprets them, and bounded in length.

const MAX = 2000;

export function inertReason(text: string): string {
  const out = text.replace(/[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]/gu, (c) => {
    const n = c.codePointAt(0)!;
    return n < 0x100 ? `\\x${n.toString(16).padStart(2, '0')}` : `\\u{${n.toString(16)}}`;
  });
  return out.length > MAX ? `${out.slice(0, MAX)}…` : out;
}
