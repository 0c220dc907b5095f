// Where Qubes' policy test vectors are read from: shared/conformance beside the repository (the
// authoritative copy, present on developer machines and in CI), else the copy vendored in test/fixtures.

import { existsSync } from 'node:fs';
import path from 'node:path';

const REPO = path.resolve(__dirname, '../../..');

export const POLICY_VECTORS = [path.resolve(REPO, '../shared/conformance/qubes-policy-vectors.json'), path.join(REPO, 'test/fixtures/qubes-policy-vectors.json')]
  .find((p) => existsSync(p)) as string;
