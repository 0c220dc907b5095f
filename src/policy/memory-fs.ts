// A PolicyFs over a map of path → text, for tests and for validating proposed policy files before
// they are written (load the proposal as it would be, keep the files on disk untouched).

import type { PolicyFs } from './loader';
import { dirname, normalize } from './paths';

export class MemoryPolicyFs implements PolicyFs {
  private readonly files = new Map<string, string>();
  private readonly dirs = new Set<string>();

  /** Directories are implied by the files in them; `emptyDirs` adds ones that hold nothing. */
  constructor(files: Readonly<Record<string, string>>, emptyDirs: readonly string[] = []) {
    for (const [p, text] of Object.entries(files)) {
      const n = normalize(p);
      this.files.set(n, text);
      this.addDirs(dirname(n));
    }
    for (const d of emptyDirs) this.addDirs(normalize(d));
  }

  private addDirs(d: string): void {
    for (let cur = d; !this.dirs.has(cur); cur = dirname(cur)) {
      this.dirs.add(cur);
      if (cur === '/' || cur === '.') break;
    }
  }

  readFile(path: string): string {
    const text = this.files.get(normalize(path));
    if (text === undefined) throw new Error(`ENOENT: no such file: ${path}`);
    return text;
  }

  listDir(path: string): string[] {
    const d = normalize(path);
    if (!this.dirs.has(d)) throw new Error(`ENOENT: no such directory: ${path}`);
    const names = new Set<string>();
    for (const p of [...this.files.keys(), ...this.dirs]) {
      if (p !== d && dirname(p) === d) names.add(p.slice(p.lastIndexOf('/') + 1));
    }
    return [...names];
  }

  isFile(path: string): boolean {
    return this.files.has(normalize(path));
  }

  isDir(path: string): boolean {
    return this.dirs.has(normalize(path));
  }
}
