// Moves files written by a qube (owned by its shifted host ids) back to real ids before they
// become a committed layer, so layers can be shared by qubes with different id ranges.

import { treeTool } from './tree-tool';

/**
 * Maps owner ids in [base, base+count) to id-base over dir, descriptor-relative and byte-safe
 * (isola-tree unshift). Ids outside the range (overlay's whiteouts, made by the mounter as real
 * root) are left alone; set-id bits and file capabilities, which chown clears, are kept.
 * Resolves to the helper's warnings (empty when there were none).
 */
export async function unshiftTree(dir: string, base: number, count: number): Promise<string> {
  return (await treeTool(['unshift', dir, String(base), String(count)])).trim();
}
