// The qrexec policy in force: loaded from the policy directory at start and again whenever what is
// on disk changes — a file edited, added or removed, the directory created, removed or replaced
// after isolad started. A policy that fails to load never replaces the one in force (fail closed);
// the failure is kept, with the time since which the old policy has stayed in force.

import { lstatSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { emptyPolicy, isPolicySyntaxError, loadPolicyDir, type Policy } from '../policy';
import type { Logger } from './logger';
import { nodePolicyFs } from './policy-fs';

/** How often the directory is re-examined: a change is in force within this (plus the load). */
export const POLICY_POLL_MS = 250;
/** Include directories nest; deeper trees are not policy anyone writes. */
const MAX_DEPTH = 4;
const MAX_ENTRIES = 10_000;

export type PolicyState = 'loaded' | 'error' | 'missing';

export interface PolicyStatus {
  dir: string;
  /** loaded: the files on disk are in force; error: they fail to load, an older policy is; missing: no directory, every call is denied. */
  state: PolicyState;
  /** Of the policy in force. */
  files: number;
  rules: number;
  /** When the policy in force was loaded (null: nothing ever loaded, the empty policy denies all). */
  loadedAt: number | null;
  /** `FILE:LINE: reason` of the files on disk, when they do not load (or the missing directory). */
  error: string | null;
  /** Since when `error` holds: the policy in force has been out of date since then. */
  errorSince: number | null;
}

export class PolicyStore {
  private policy: Policy = emptyPolicy();
  private timer?: NodeJS.Timeout;
  private fingerprint: string | undefined;
  private loadedAt: number | null = null;
  private state: PolicyState = 'missing';
  private errorSince: number | null = null;
  /** `FILE:LINE: reason` of the last failed load, or null if the policy in force is current. */
  lastError: string | null = null;
  /** Increases each time a policy is put in force (tests and UIs can tell a reload happened). */
  generation = 0;

  constructor(
    readonly dir: string,
    private readonly log: Logger,
    /** Told after every reload that changed something (the daemon turns it into an event). */
    private readonly onChange: (s: PolicyStatus) => void = () => undefined,
  ) {}

  get current(): Policy {
    return this.policy;
  }

  status(): PolicyStatus {
    return {
      dir: this.dir, state: this.state, files: new Set(this.policy.files).size, rules: this.policy.rules.length,
      loadedAt: this.loadedAt, error: this.lastError, errorSince: this.errorSince,
    };
  }

  /** Loads the directory; returns whether what is on disk is now in force. */
  reload(): boolean {
    this.fingerprint = fingerprintOf(this.dir);
    if (this.fingerprint === '') {
      // No directory, no rules: every call is denied, as Qubes does without policy files.
      const was = this.state;
      this.policy = emptyPolicy();
      this.setError(`${this.dir}: no policy directory (every call is denied; \`isola setup\` installs the defaults)`, 'missing');
      if (was !== 'missing' || this.generation === 0) this.log.warn(this.lastError!);
      this.generation++;
      this.onChange(this.status());
      return false;
    }
    try {
      this.policy = loadPolicyDir(nodePolicyFs, this.dir);
    } catch (e) {
      const message = isPolicySyntaxError(e) ? e.message : `${this.dir}: ${(e as Error).message}`;
      this.setError(message, 'error');
      this.log.error(`policy not loaded, the previous one stays in force: ${message}`);
      this.onChange(this.status());
      return false;
    }
    this.state = 'loaded';
    this.lastError = null;
    this.errorSince = null;
    this.loadedAt = Date.now();
    this.generation++;
    this.log.info(`policy loaded: ${this.policy.rules.length} rules from ${new Set(this.policy.files).size} files in ${this.dir}`);
    this.onChange(this.status());
    return true;
  }

  private setError(message: string, state: PolicyState): void {
    if (this.lastError !== message || this.errorSince === null) this.errorSince = Date.now();
    this.lastError = message;
    this.state = state;
  }

  /**
   * Re-examines the directory on a timer. Polling, not inotify: the directory itself may not exist
   * yet, be removed, or be replaced by another (a rename, a symlink moved), which no watch on it sees.
   */
  watch(): void {
    this.timer = setInterval(() => {
      try {
        if (fingerprintOf(this.dir) !== this.fingerprint) this.reload();
      } catch (e) {
        this.log.error(`policy reload: ${(e as Error).message}`);
      }
    }, POLICY_POLL_MS);
    this.timer.unref();
  }

  close(): void {
    clearInterval(this.timer);
  }
}

/**
 * What identifies the directory's contents: each entry's path, inode, size and mtime (ns), the
 * directory's own inode. '' when it does not exist. Follows the top link as the loader does.
 */
export function fingerprintOf(dir: string): string {
  let top;
  try {
    top = statSync(dir, { bigint: true });
  } catch {
    return '';
  }
  if (!top.isDirectory()) return `notdir:${top.ino}`;
  const parts = [`${top.dev}:${top.ino}:${top.mtimeNs}`];
  const walk = (rel: string, depth: number): void => {
    let names: string[];
    try {
      names = readdirSync(path.join(dir, rel)).sort();
    } catch {
      return;
    }
    for (const name of names) {
      if (parts.length > MAX_ENTRIES) return;
      const r = path.join(rel, name);
      try {
        const st = statSync(path.join(dir, r), { bigint: true });
        const link = lstatSync(path.join(dir, r), { bigint: true });
        parts.push(`${r}:${st.ino}:${st.size}:${st.mtimeNs}:${link.ino}:${link.mtimeNs}`);
        if (st.isDirectory() && depth < MAX_DEPTH) walk(r, depth + 1);
      } catch {
        parts.push(`${r}:gone`);
      }
    }
  };
  walk('', 0);
  return parts.join('\n');
}
