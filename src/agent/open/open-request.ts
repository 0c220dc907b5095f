// The wire of qubes.OpenInVM and qubes.OpenURL, shared by the caller (qvm-open-in-vm) and the
// service in the target. OpenInVM: a 256-byte NUL-padded name block (basename, `view-only-` prefix
// when the edit must not come back), the file bytes, EOF; the reply is the edited file or nothing.
// OpenURL: the URL and a newline.

/** Qubes' DVM_FILENAME_SIZE. */
export const NAME_BLOCK = 256;
export const VIEW_ONLY_PREFIX = 'view-only-';
/** Schemes qubes.OpenURL passes on (anything else — file:, javascript:, … — is refused in the target). */
export const URL_SCHEMES = ['http', 'https', 'ftp'];
export const MAX_URL = 4096;

/** Qubes' qvm-open-in-vm rule: an argument that starts with `scheme://` is a URL, anything else a file. */
export function isUrl(arg: string): boolean {
  return /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(arg);
}

export function encodeNameBlock(basename: string, viewOnly: boolean): Buffer {
  const name = Buffer.from((viewOnly ? VIEW_ONLY_PREFIX : '') + basename, 'utf8');
  if (name.length >= NAME_BLOCK) throw new Error(`file name longer than ${NAME_BLOCK - 1} bytes`);
  const block = Buffer.alloc(NAME_BLOCK);
  name.copy(block);
  return block;
}

/**
 * The target's reading of a (hostile) name block: a name made safe for a file name (Qubes keeps
 * `[0-9A-Za-z._+@-]`, others become `_`), refusing separators and names that are no file.
 */
export function decodeNameBlock(untrusted: Buffer): { name: string; viewOnly: boolean } {
  if (untrusted.length !== NAME_BLOCK) throw new Error('truncated file name block');
  const end = untrusted.indexOf(0);
  if (end === -1) throw new Error('file name block is not NUL-terminated');
  let raw = untrusted.subarray(0, end).toString('utf8');
  const viewOnly = raw.startsWith(VIEW_ONLY_PREFIX);
  if (viewOnly) raw = raw.slice(VIEW_ONLY_PREFIX.length);
  if (raw.includes('/')) throw new Error('file name contains a /');
  const name = raw.replace(/[^0-9A-Za-z._+@-]/g, '_');
  if (name === '' || name === '.' || name === '..') throw new Error(`invalid file name '${name}'`);
  return { name, viewOnly };
}

/** The target's check of a (hostile) URL: one line, printable, a scheme from URL_SCHEMES. */
export function checkUrl(untrusted: string): string {
  const url = untrusted.replace(/\r?\n$/, '');
  if (url.length === 0 || url.length > MAX_URL) throw new Error(`URL is empty or longer than ${MAX_URL} bytes`);
  if (/[\x00-\x20\x7f]/.test(url)) throw new Error('URL contains spaces or control characters');
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(url)?.[1].toLowerCase();
  if (!scheme || !URL_SCHEMES.includes(scheme)) throw new Error(`only ${URL_SCHEMES.join(', ')} URLs are opened`);
  return url;
}
