// Qube name rules, as Qubes' validate_name: letter first, [A-Za-z0-9_.-], at most 31 characters,
// not a reserved word. Names end up in hostnames, paths and policy files, so this is a security check.

const NAME_RE = /^[A-Za-z][A-Za-z0-9_.-]*$/;
const RESERVED = new Set(['none', 'default', 'Domain-0']);
export const MAX_NAME_LENGTH = 31;

/** Returns why a name is invalid, or undefined if it is fine. */
export function nameProblem(untrustedName: string): string | undefined {
  if (untrustedName.length === 0) return 'name must not be empty';
  if (untrustedName.length > MAX_NAME_LENGTH) return `name must be at most ${MAX_NAME_LENGTH} characters`;
  if (!NAME_RE.test(untrustedName)) return 'name must start with a letter and contain only letters, digits, _ . -';
  if (RESERVED.has(untrustedName)) return `'${untrustedName}' is a reserved name`;
  if (untrustedName.endsWith('-dm')) return "name must not end with '-dm'";
  return undefined;
}
