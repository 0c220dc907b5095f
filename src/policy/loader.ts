// Loads a policy directory into one ordered rule list (files in name order, includes spliced in
// place) through the caller's PolicyFs, so it stays pure; any error refuses the whole policy.

import { PolicySyntaxError } from './errors';
import { basename, dirname, join } from './paths';
import { type Rule, parseRuleFields, parseServiceRuleFields, validateServiceAndArgument } from './rule';
import { fileLines, pySplit, pyStrip } from './text';

export interface PolicyFs {
  /** The file's text; must throw if it cannot be read or is not valid UTF-8 (Qubes fails on both). */
  readFile(path: string): string;
  /** Entry names (not paths) in a directory; throws if it cannot be listed. */
  listDir(path: string): string[];
  /** A regular file after following symlinks, as Python's Path.is_file(). */
  isFile(path: string): boolean;
  isDir(path: string): boolean;
  /** Symlinks resolved, as Python's Path.resolve(); without it paths are only normalized. */
  realpath?(path: string): string;
}

export interface Policy {
  readonly rules: readonly Rule[];
  /** Every file read, in the order read (policy files and what they include). */
  readonly files: readonly string[];
}

export interface LoadOptions {
  /** Where `!compat-4.0` finds the old per-service files (Qubes: /etc/qubes-rpc/policy). */
  compatDir?: string;
}

export const DEFAULT_COMPAT_DIR = '/etc/qubes-rpc/policy';
const FILENAME_OK = /^[0-9a-z_.-]+$/;
const RPCNAME_OK = /^[A-Za-z0-9+._-]+$/;
const MAX_DEPTH = 32;

const message = (e: unknown): string => (e instanceof Error ? e.message : String(e));
const byCodePoint = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

class Loader {
  readonly rules: Rule[] = [];
  readonly files: string[] = [];
  private readonly stack: string[] = [];

  constructor(
    private readonly fs: PolicyFs,
    private readonly opts: LoadOptions,
  ) {}

  policy(): Policy {
    return { rules: this.rules, files: this.files };
  }

  /** Includes are relative to the directory of the top-level policy file, not of the includer. */
  private resolve(baseDir: string, rel: string): string {
    const p = join(baseDir, rel);
    if (!this.fs.realpath) return p;
    try {
      return this.fs.realpath(p);
    } catch {
      return p; // a missing path is reported by the is-file check that follows
    }
  }

  private isFile(path: string): boolean {
    try {
      return this.fs.isFile(path);
    } catch {
      return false;
    }
  }

  private isDir(path: string): boolean {
    try {
      return this.fs.isDir(path);
    } catch {
      return false;
    }
  }

  private read(path: string, atFile: string, atLine: number): string {
    try {
      return this.fs.readFile(path);
    } catch (e) {
      throw new PolicySyntaxError(atFile, atLine, `cannot read ${path}: ${message(e)}`);
    }
  }

  private list(dir: string, atFile: string, atLine: number): string[] {
    try {
      return this.fs.listDir(dir);
    } catch (e) {
      throw new PolicySyntaxError(atFile, atLine, `cannot list ${dir}: ${message(e)}`);
    }
  }

  private openFile(path: string, atFile: string, atLine: number): string {
    if (!this.isFile(path)) throw new PolicySyntaxError(atFile, atLine, `not a file: ${path}`);
    return this.read(path, atFile, atLine);
  }

  // Qubes recurses until Python gives up; a loop here is a clear error instead.
  private nested(path: string, atFile: string, atLine: number, load: () => void): void {
    if (this.stack.includes(path)) throw new PolicySyntaxError(atFile, atLine, `include loop: ${[...this.stack, path].join(' -> ')}`);
    if (this.stack.length >= MAX_DEPTH) throw new PolicySyntaxError(atFile, atLine, `includes nested deeper than ${MAX_DEPTH}`);
    this.stack.push(path);
    try {
      load();
    } finally {
      this.stack.pop();
    }
  }

  /** The `*.policy` regular files of a directory, sorted; one bad name fails everything. */
  policyFiles(dir: string, atFile: string, atLine: number): string[] {
    const names = this.list(dir, atFile, atLine).filter((n) => !n.startsWith('.') && n.endsWith('.policy') && this.isFile(join(dir, n)));
    for (const n of names) {
      if (!FILENAME_OK.test(n)) throw new PolicySyntaxError(join(dir, n), 0, 'invalid file name: only 0-9 a-z _ . - are allowed in a policy file name');
    }
    return names.sort(byCodePoint).map((n) => join(dir, n));
  }

  loadDirs(dirs: readonly string[]): void {
    // The same name in two directories: the first directory's file wins (Qubes: /run before /etc).
    const chosen = new Map<string, string>();
    for (const dir of dirs) {
      for (const path of this.policyFiles(dir, dir, 0)) if (!chosen.has(basename(path))) chosen.set(basename(path), path);
    }
    for (const name of [...chosen.keys()].sort(byCodePoint)) {
      const path = chosen.get(name)!;
      const text = this.read(path, path, 0);
      this.nested(path, path, 0, () => this.loadText(path, text, dirname(path)));
    }
  }

  loadFile(path: string, baseDir: string): void {
    const text = this.openFile(path, path, 0);
    this.nested(path, path, 0, () => this.loadText(path, text, baseDir));
  }

  loadText(path: string, text: string, baseDir: string): void {
    this.files.push(path);
    const lines = fileLines(text);
    for (let i = 0; i < lines.length; i++) {
      const line = pyStrip(lines[i]);
      if (line === '' || line[0] === '#') continue;
      if (line.startsWith('!')) this.directive(pySplit(line), path, i + 1, baseDir);
      else this.rules.push(parseRuleFields(pySplit(line), path, i + 1));
    }
  }

  private directive(fields: string[], file: string, line: number, baseDir: string): void {
    const [name, ...params] = fields;
    const arity = (n: number) => {
      if (params.length !== n) throw new PolicySyntaxError(file, line, 'invalid number of params');
    };
    switch (name) {
      case '!include': {
        arity(1);
        const path = this.resolve(baseDir, params[0]);
        const text = this.openFile(path, file, line);
        return this.nested(path, file, line, () => this.loadText(path, text, baseDir));
      }
      case '!include-dir': {
        arity(1);
        const dir = this.resolve(baseDir, params[0]);
        if (!this.isDir(dir)) throw new PolicySyntaxError(file, line, `not a directory: ${dir}`);
        for (const path of this.policyFiles(dir, file, line)) {
          const text = this.read(path, path, 0);
          this.nested(path, file, line, () => this.loadText(path, text, baseDir));
        }
        return;
      }
      case '!include-service':
        arity(3);
        validateServiceAndArgument(params[0], params[1], file, line);
        return this.includeService(params[0], params[1], params[2], file, line, baseDir);
      case '!compat-4.0':
        arity(0);
        return this.compat40(file, line);
      default:
        throw new PolicySyntaxError(file, line, 'invalid directive');
    }
  }

  private includeService(service: string, argument: string, rel: string, file: string, line: number, baseDir: string): void {
    const path = this.resolve(baseDir, rel);
    const text = this.openFile(path, file, line);
    this.nested(path, file, line, () => this.loadServiceText(service, argument, path, text, baseDir));
  }

  /** Old syntax, scoped to one service: `SOURCE TARGET ACTION[,key=value…]` with `$` keywords. */
  private loadServiceText(service: string, argument: string, path: string, text: string, baseDir: string): void {
    this.files.push(path);
    const lines = fileLines(text);
    for (let i = 0; i < lines.length; i++) {
      let line = pyStrip(lines[i]);
      if (line === '' || line[0] === '#') continue;
      line = line.split('$include:').join('!include ').split('$').join('@').split(',').join(' ');
      const fields = pySplit(line);
      if (!line.startsWith('!')) {
        this.rules.push(parseServiceRuleFields(service, argument, fields, path, i + 1));
        continue;
      }
      if (fields[0] !== '!include') throw new PolicySyntaxError(path, i + 1, 'invalid directive');
      if (fields.length !== 2) throw new PolicySyntaxError(path, i + 1, 'invalid number of params');
      this.includeService(service, argument, fields[1], path, i + 1, baseDir);
    }
  }

  /**
   * R4.0's per-service files, each applying to its service (and argument). Order is Qubes' code's:
   * by service, then argument with the generic file first; an argument-specific file is followed by
   * the deny that R4.0 implied at the end of every file.
   */
  private compat40(file: string, line: number): void {
    const dir = this.opts.compatDir ?? DEFAULT_COMPAT_DIR;
    const services = new Map<string, Map<string, string>>();
    for (const name of this.list(dir, file, line)) {
      // Like Qubes, quietly skip what cannot be a service file (editor backups, directories).
      if (!RPCNAME_OK.test(name) || !this.isFile(join(dir, name))) continue;
      const plus = name.indexOf('+');
      const service = plus < 0 ? name : name.slice(0, plus);
      const argument = plus < 0 ? '*' : name.slice(plus);
      if (!services.has(service)) services.set(service, new Map());
      services.get(service)!.set(argument, name);
    }
    for (const service of [...services.keys()].sort(byCodePoint)) {
      const byArg = services.get(service)!;
      for (const argument of [...byArg.keys()].sort(byCodePoint)) {
        validateServiceAndArgument(service, argument, file, line);
        const name = byArg.get(argument)!;
        this.includeService(service, argument, name, file, line, dir);
        const path = join(dir, name);
        if (argument === '*') continue;
        this.rules.push(parseServiceRuleFields(service, argument, ['@anyvm', '@anyvm', 'deny'], path, 0));
        this.rules.push(parseServiceRuleFields(service, argument, ['@anyvm', '@adminvm', 'deny'], path, 0));
      }
    }
  }
}

/** The policy of one or more directories (the first directory wins a file name present in several). */
export function loadPolicyDir(fs: PolicyFs, dirs: string | readonly string[], opts: LoadOptions = {}): Policy {
  const loader = new Loader(fs, opts);
  loader.loadDirs(typeof dirs === 'string' ? [dirs] : dirs);
  return loader.policy();
}

/** One file as a whole policy; its relative includes resolve against `baseDir` (default: its directory). */
export function loadPolicyFile(fs: PolicyFs, path: string, opts: LoadOptions & { baseDir?: string } = {}): Policy {
  const loader = new Loader(fs, opts);
  loader.loadFile(path, opts.baseDir ?? dirname(path));
  return loader.policy();
}

const NO_FILES: PolicyFs = {
  readFile: (p) => {
    throw new Error(`no such file: ${p}`);
  },
  listDir: (p) => {
    throw new Error(`no such directory: ${p}`);
  },
  isFile: () => false,
  isDir: () => false,
};

/** Policy text given directly (a proposed file, a test); includes go through `fs` if given. */
export function parsePolicyText(text: string, file = '<policy>', opts: LoadOptions & { fs?: PolicyFs; baseDir?: string } = {}): Policy {
  const loader = new Loader(opts.fs ?? NO_FILES, opts);
  loader.loadText(file, text, opts.baseDir ?? dirname(file));
  return loader.policy();
}

export function emptyPolicy(): Policy {
  return { rules: [], files: [] };
}
