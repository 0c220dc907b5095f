// The one error a policy load can end in: where (file and line) and why, formatted FILE:LINE: reason
// as Qubes prints it. Any such error refuses the whole policy, so callers keep the previous one.

export class PolicySyntaxError extends Error {
  /** Line 0 means the file as a whole (a bad file name, an unreadable file), not one of its lines. */
  constructor(
    readonly file: string,
    readonly line: number,
    readonly reason: string,
  ) {
    super(`${file}:${line}: ${reason}`);
    this.name = 'PolicySyntaxError';
  }
}

export function isPolicySyntaxError(e: unknown): e is PolicySyntaxError {
  return e instanceof PolicySyntaxError;
}
