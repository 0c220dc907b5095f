// The real file system behind the pure policy loader: strict UTF-8 (invalid bytes fail the
// policy, as in Qubes) and stat that follows links, as Qubes' loader does.

import { readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import type { PolicyFs } from '../policy';

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

export const nodePolicyFs: PolicyFs = {
  readFile: (p) => strictUtf8.decode(readFileSync(p)),
  listDir: (p) => readdirSync(p),
  isFile: (p) => {
    try {
      return statSync(p).isFile();
    } catch {
      return false;
    }
  },
  isDir: (p) => {
    try {
      return statSync(p).isDirectory();
    } catch {
      return false;
    }
  },
  realpath: (p) => realpathSync(p),
};

export function policyDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.ISOLA_POLICY_DIR || '/etc/qubes/policy.d';
}
