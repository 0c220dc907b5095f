// Every case of Qubes' own policy test suite, with the answers Qubes' evaluator gave, run through
// Isola's engine: same result, target, choices, default, notify, autostart, user and daemon reply.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, test } from 'node:test';
import { POLICY_VECTORS } from './conformance-file';
import {
  type Policy, type PolicyRequest, type Resolution, type SystemInfo,
  MemoryPolicyFs, PolicySyntaxError, answerAsk, collectTargetsForAsk, evaluate, isLegal, loadPolicyFile, normalizeRequest,
} from '../../src/policy';
import { type TokenContext, matchTarget, parseToken, verifyIntended } from '../../src/policy/tokens';

const FILE = POLICY_VECTORS;

type Expect = Record<string, unknown>;
interface Vector {
  id: string;
  note?: string;
  policy: string[] | Record<string, string[]>;
  system: 'default' | SystemInfo;
  request: PolicyRequest;
  expect: Expect;
}
interface AskVector extends Vector {
  user_response: { allow: boolean; target: string };
  expect_initial: Expect;
}
interface TokenContextRow {
  token: string;
  source_column: boolean;
  target_column: boolean;
  'redirect_param(target=,default_target=)': boolean;
  caller_requested_target: boolean;
}

const data = JSON.parse(readFileSync(FILE, 'utf8')) as {
  systems: Record<string, SystemInfo>;
  vectors: Vector[];
  ask_user_response_vectors: AskVector[];
  token_contexts: { rows: TokenContextRow[] };
  token_match: { rows: { rule_token: string; requested_target: string; match: boolean }[] };
};

// Qubes' in-memory loader names files `NAME[in-memory]`; ours are the plain names.
const normalizeMessage = (m: string) => m.replace(/\[in-memory\]/g, '').replace(/^<unknown>:0: /, '');

function load(v: Vector): Policy {
  const files = Array.isArray(v.policy) ? { __main__: v.policy } : v.policy;
  const text = Object.fromEntries(Object.entries(files).map(([name, lines]) => [name, lines.join('\n') + '\n']));
  return loadPolicyFile(new MemoryPolicyFs(text), '__main__');
}

const systemOf = (v: Vector): SystemInfo => (v.system === 'default' ? data.systems.default : v.system);

function check(res: Resolution, expect: Expect, v: Vector): void {
  const where = `${v.id}: ${JSON.stringify(res)}`;
  assert.equal(res.result, expect.result, where);
  for (const key of ['target', 'targets_for_ask', 'default_target', 'notify', 'autostart', 'user', 'daemon_response', 'execute_error', 'stage'] as const) {
    if (key in expect) assert.deepEqual(res[key], expect[key], `${key} of ${where}`);
  }
  if ('matched_rule' in expect) assert.equal(res.rule_index, expect.matched_rule, `matched_rule of ${where}`);
  if ('resolved_request_target' in expect) assert.equal(res.requested_target, expect.resolved_request_target, `requested target of ${where}`);
  if (typeof expect.message === 'string') assert.equal(res.reason, normalizeMessage(expect.message), `reason of ${where}`);
}

describe('Qubes policy conformance vectors', () => {
  for (const v of data.vectors) {
    test(`${v.id}${v.note ? ` — ${v.note}` : ''}`, () => {
      if (v.expect.result === 'error') {
        assert.throws(() => load(v), (e: unknown) => {
          assert.ok(e instanceof PolicySyntaxError, `${v.id}: ${String(e)}`);
          assert.equal(e.message, normalizeMessage(String(v.expect.message)));
          return true;
        });
        return;
      }
      const policy = load(v);
      const system = systemOf(v);
      check(evaluate(policy, v.request, system), v.expect, v);
      if ('collect_targets_for_ask' in v.expect) {
        const norm = normalizeRequest(v.request, system);
        assert.ok(norm.ok);
        assert.deepEqual(collectTargetsForAsk(policy, norm.request, system), v.expect.collect_targets_for_ask);
      }
    });
  }
});

describe('Qubes ask-dialog answer vectors', () => {
  for (const v of data.ask_user_response_vectors) {
    test(`${v.id}${v.note ? ` — ${v.note}` : ''}`, () => {
      const system = systemOf(v);
      const asked = evaluate(load(v), v.request, system);
      check(asked, v.expect_initial, v);
      check(answerAsk(asked, v.user_response, system), v.expect, v);
    });
  }
});

describe('Qubes token contexts', () => {
  const columns: [keyof TokenContextRow, TokenContext][] = [
    ['source_column', 'source'],
    ['target_column', 'target'],
    ['redirect_param(target=,default_target=)', 'redirect'],
    ['caller_requested_target', 'intendedtarget'],
  ];
  for (const row of data.token_contexts.rows) {
    test(`token ${JSON.stringify(row.token)} is legal exactly where Qubes accepts it`, () => {
      for (const [column, context] of columns) assert.equal(isLegal(row.token, context), row[column], `${row.token} in ${context}`);
    });
  }
});

describe('Qubes token matching', () => {
  for (const row of data.token_match.rows) {
    test(`rule target ${JSON.stringify(row.rule_token)} ${row.match ? 'matches' : 'does not match'} request ${JSON.stringify(row.requested_target)}`, () => {
      const system = data.systems.default;
      const rule = parseToken(row.rule_token, 'target', 'test', 1);
      const req = verifyIntended(parseToken(row.requested_target, 'intendedtarget', 'test', 1), system);
      assert.ok(!('refused' in req));
      assert.equal(matchTarget(rule, req, undefined, system), row.match);
    });
  }
});
