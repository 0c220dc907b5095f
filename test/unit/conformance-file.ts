// Where Qubes' test vectors are read from: shared/conformance beside the repository (the
// authoritative copy, present on developer machines and in CI), else the copy vendored in test/fixtures.

import { existsSync } from 'node:fs';
import path from 'node:path';

const REPO = path.resolve(__dirname, '../../..');

const vectors = (name: string): string =>
  [path.resolve(REPO, '../shared/conformance', name), path.join(REPO, 'test/fixtures', name)].find((p) => existsSync(p)) as string;

export const POLICY_VECTORS = vectors('qubes-policy-vectors.json');
export const FIREWALL_RULES = vectors('qubes-firewall-rules.json');
