// The architecture of DESIGN.md, enforced: pure folders import nothing with I/O, drivers import
// only core, the CLI and the agent import only types and clients, and only daemon wires.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

const ROOT = path.resolve(__dirname, '../../..');
const SRC = path.join(ROOT, 'src');

/** Folder -> folders of src/ it may import from (itself is always allowed). */
const ALLOWED: Record<string, { src: string[]; external: boolean }> = {
  core: { src: [], external: false },
  policy: { src: ['core'], external: false },
  qrexec: { src: ['core'], external: true },
  agent: { src: ['core', 'qrexec'], external: true },
  storage: { src: ['core'], external: true },
  // A backend owns its qubes' agent channel, so it may use qrexec's transports (unix sockets, the channel layer).
  backends: { src: ['core', 'qrexec'], external: true },
  store: { src: ['core'], external: true },
  net: { src: ['core'], external: true },
  cli: { src: ['core', 'qrexec'], external: true },
  ui: { src: ['core', 'cli'], external: true },
  daemon: { src: ['core', 'policy', 'qrexec', 'storage', 'backends', 'store', 'net', 'cli', 'ui'], external: true },
  native: { src: [], external: false },
};

function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => {
    const p = path.join(dir, n);
    return statSync(p).isDirectory() ? walk(p) : p.endsWith('.ts') ? [p] : [];
  });
}

export function importsOf(source: string): string[] {
  const out: string[] = [];
  const re = /(?:from\s+|import\s*\(\s*|require\s*\(\s*|^\s*import\s+)['"]([^'"]+)['"]/gm;
  for (let m = re.exec(source); m; m = re.exec(source)) out.push(m[1]);
  return out;
}

test('every src folder has a layering rule', () => {
  for (const d of readdirSync(SRC)) assert.ok(ALLOWED[d], `src/${d} has no rule in layering.test.ts`);
});

test('imports point inward, as DESIGN.md lays out', () => {
  const violations: string[] = [];
  for (const file of walk(SRC)) {
    const folder = path.relative(SRC, file).split(path.sep)[0];
    const rule = ALLOWED[folder];
    for (const spec of importsOf(readFileSync(file, 'utf8'))) {
      if (spec.startsWith('.')) {
        const target = path.relative(SRC, path.resolve(path.dirname(file), spec)).split(path.sep)[0];
        if (target !== folder && !rule.src.includes(target)) violations.push(`${path.relative(ROOT, file)} imports ${spec} (src/${target})`);
      } else if (!rule.external) {
        // Pure folders may still import types from node (`import type`), never values.
        const typeOnly = new RegExp(`import\\s+type\\s+[^;]*['"]${spec.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}['"]`).test(readFileSync(file, 'utf8'));
        if (!typeOnly) violations.push(`${path.relative(ROOT, file)} imports ${spec} (pure folder src/${folder})`);
      }
    }
  }
  assert.deepEqual(violations, []);
});

test('the import scanner sees every form of import', () => {
  const src = "import a from './a';\nimport type { B } from '../b';\nconst c = require('c');\nimport './d';\nconst e = await import('./e');";
  assert.deepEqual(importsOf(src), ['./a', '../b', 'c', './d', './e']);
});
