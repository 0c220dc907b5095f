// What a user reads for an error: Node's system errors (`ENOENT: no such file or directory, lstat
// '/x'`) become `'/x': no such file or directory`, so no internal call name or errno code reaches them.

const DESCRIPTIONS: Record<string, string> = {
  ENOENT: 'no such file or directory',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EEXIST: 'file exists',
  ENOTDIR: 'not a directory',
  EISDIR: 'is a directory',
  ENOTEMPTY: 'directory not empty',
  ENOSPC: 'no space left on device',
  EROFS: 'read-only file system',
  EBUSY: 'device or resource busy',
  EMFILE: 'too many open files',
  ELOOP: 'too many levels of symbolic links',
  ENAMETOOLONG: 'file name too long',
  EXDEV: 'invalid cross-device link',
  ECONNREFUSED: 'connection refused',
  ECONNRESET: 'connection reset',
  EPIPE: 'broken pipe',
  ETIMEDOUT: 'timed out',
};

interface SystemError extends Error {
  code?: unknown;
  syscall?: unknown;
  path?: unknown;
  dest?: unknown;
}

/** True for Node's errno-style errors (they carry a string code such as 'ENOENT' and a syscall). */
function isSystemError(e: unknown): e is SystemError {
  return e instanceof Error && typeof (e as SystemError).code === 'string' && /^E[A-Z0-9]+$/.test((e as SystemError).code as string) && typeof (e as SystemError).syscall === 'string';
}

/** isolad's contract checks name the Admin API method; the user only typed a command. */
const CONTRACT: [RegExp, string][] = [
  [/^admin\.[\w.]+ needs an argument$/, 'a required name was empty'],
  [/^admin\.[\w.]+ takes no argument$/, 'this request takes no name'],
  [/^admin\.[\w.]+ needs a payload$/, 'a required value was empty'],
  [/^admin\.[\w.]+ takes no payload$/, 'this request takes no value'],
  [/^admin\.[\w.]+ must be called on dom0$/, 'this works on dom0 only'],
  [/^admin\.[\w.]+ cannot be called on dom0$/, 'this does not apply to dom0'],
];

/** The message to show for any thrown value, one line, without errno codes or syscall names. */
export function errorText(e: unknown): string {
  if (isSystemError(e)) {
    const code = e.code as string;
    const what = DESCRIPTIONS[code] ?? (e.message.replace(/^E[A-Z0-9]+: /, '').split(',')[0] || code.toLowerCase());
    const path = typeof e.path === 'string' ? e.path : undefined;
    const dest = typeof e.dest === 'string' ? e.dest : undefined;
    if (path && dest) return `cannot use '${path}' -> '${dest}': ${what}`;
    return path ? `'${path}': ${what}` : what;
  }
  const message = e instanceof Error ? e.message : String(e);
  for (const [re, text] of CONTRACT) if (re.test(message)) return text;
  // A system error that was re-wrapped into a plain message keeps Node's format; reword it too.
  const m = /^(E[A-Z0-9]+): ([^,]+), [a-z_]+ '([^']*)'(?: -> '([^']*)')?$/.exec(message);
  if (m) return m[4] ? `cannot use '${m[3]}' -> '${m[4]}': ${DESCRIPTIONS[m[1]] ?? m[2]}` : `'${m[3]}': ${DESCRIPTIONS[m[1]] ?? m[2]}`;
  return message;
}
