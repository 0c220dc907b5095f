// The qrexec policy in force: loaded from the policy directory at start and again whenever a file
// there changes. A policy that fails to load never replaces the one in force (fail closed), and
// before any policy loaded, the empty policy denies every call.

import { existsSync, watch, type FSWatcher } from 'node:fs';
import { emptyPolicy, isPolicySyntaxError, loadPolicyDir, type Policy } from '../policy';
import type { Logger } from './logger';
import { nodePolicyFs } from './policy-fs';

const RELOAD_DELAY_MS = 100;

export class PolicyStore {
  private policy: Policy = emptyPolicy();
  private watcher?: FSWatcher;
  private timer?: NodeJS.Timeout;
  /** `FILE:LINE: reason` of the last failed load, or null if the policy in force is current. */
  lastError: string | null = null;
  /** Increases at each successful load (tests and UIs can tell a reload happened). */
  generation = 0;

  constructor(readonly dir: string, private readonly log: Logger) {}

  get current(): Policy {
    return this.policy;
  }

  /** Loads the directory; returns whether the new policy is now in force. */
  reload(): boolean {
    if (!existsSync(this.dir)) {
      this.lastError = `${this.dir}: no policy directory (every call is denied; \`isola setup\` installs the defaults)`;
      this.log.warn(this.lastError);
      return false;
    }
    try {
      this.policy = loadPolicyDir(nodePolicyFs, this.dir);
      this.lastError = null;
      this.generation++;
      this.log.info(`policy loaded: ${this.policy.rules.length} rules from ${this.policy.files.length} files`);
      return true;
    } catch (e) {
      this.lastError = isPolicySyntaxError(e) ? e.message : `${this.dir}: ${(e as Error).message}`;
      this.log.error(`policy not loaded, the previous one stays in force: ${this.lastError}`);
      return false;
    }
  }

  /** Reloads on every change below the directory (debounced: editors write in several steps). */
  watch(): void {
    if (!existsSync(this.dir)) return;
    try {
      this.watcher = watch(this.dir, { recursive: true }, () => {
        clearTimeout(this.timer);
        this.timer = setTimeout(() => this.reload(), RELOAD_DELAY_MS);
      });
      this.watcher.on('error', (e) => this.log.error(`watching ${this.dir}: ${e.message}`));
    } catch (e) {
      this.log.error(`cannot watch ${this.dir}: ${(e as Error).message}; restart isolad after policy changes`);
    }
  }

  close(): void {
    clearTimeout(this.timer);
    this.watcher?.close();
  }
}
