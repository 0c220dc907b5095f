// Every case of Qubes' own firewall tests, with the answers Qubes' qvm-firewall + qubesd chain gave,
// run through Isola's chain: qvm-firewall's main() -> the Admin API dispatcher -> the firewall
// handlers -> SQLite, then `list`, `--raw list` and admin.vm.firewall.Get read it back.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { main, type CliDeps } from '../../src/cli/main';
import { formatApiRule, LIST_HEADER, parseApiRule, type FirewallRule } from '../../src/core/firewall';
import { FIREWALL_RULES } from './conformance-file';
import { DaemonClient } from './fakes/daemon-client';
import { Harness } from './fakes/harness';

interface Case {
  id: string;
  args: string[];
  quirk?: boolean;
  note?: string;
  expect: {
    valid: boolean;
    rule?: Record<string, string>;
    rule_string?: string | null;
    raw_list?: string;
    list_row?: Record<string, string>;
    listed?: boolean;
    wire_line?: string;
    error?: { stage: string; message: string };
  };
}

const data = JSON.parse(readFileSync(FIREWALL_RULES, 'utf8')) as { cases: Case[] };
const VM = 'test-vm1';

let h: Harness;
before(async () => {
  h = new Harness();
  await h.templateAndApp(VM);
});
after(() => h.close());

async function cli(client: DaemonClient, argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const deps: CliDeps = { client, stdout: (s) => (stdout += s), stderr: (s) => (stderr += s), isTTY: false };
  const code = await main('qvm-firewall', argv, deps);
  return { code, stdout, stderr };
}

/**
 * Compares a line in which the expectation writes `now+N` for "the time of the add plus N seconds":
 * the actual number must be within the add's second (Qubes' own tolerance is +-1 s).
 */
function matchesWithNow(actual: string, expected: string, t0: number, t1: number, where: string): void {
  const parts = expected.split(/now\+(\d+)/);
  if (parts.length === 1) return assert.equal(actual, expected, where);
  let re = '^';
  const offsets: number[] = [];
  parts.forEach((p, i) => {
    if (i % 2 === 1) {
      offsets.push(Number(p));
      re += '(\\d+)';
    } else re += p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  });
  const m = new RegExp(re + '$').exec(actual);
  assert.ok(m, `${where}: ${JSON.stringify(actual)} is not ${JSON.stringify(expected)}`);
  offsets.forEach((n, i) => {
    const v = Number(m[i + 1]);
    assert.ok(v >= t0 + n - 1 && v <= t1 + n + 1, `${where}: expire ${v} is not now+${n} (now ${t0}..${t1})`);
  });
}

/** Qubes' str() of each set property, as `expect.rule` writes them. */
function ruleFields(r: FirewallRule): Record<string, string> {
  const out: Record<string, string> = { action: r.action };
  if (r.proto) out.proto = r.proto;
  if (r.dsthost) out.dsthost = r.dsthost.value;
  if (r.dstports) out.dstports = r.dstports[0] === r.dstports[1] ? String(r.dstports[0]) : `${r.dstports[0]}-${r.dstports[1]}`;
  if (r.icmptype !== undefined) out.icmptype = String(r.icmptype);
  if (r.specialtarget) out.specialtarget = r.specialtarget;
  if (r.expire !== undefined) out.expire = r.expireText ?? String(r.expire);
  if (r.comment !== undefined) out.comment = r.comment;
  return out;
}

/** The table's cells, cut at the header's column starts (cells may hold spaces: `SPECIAL TARGET`). */
function tableRows(out: string): Record<string, string>[] {
  const [header, ...rows] = out.split('\n').filter(Boolean);
  const starts = LIST_HEADER.map((name) => header.indexOf(name));
  assert.ok(starts.every((s, i) => s >= 0 && (i === 0 || s > starts[i - 1])), `header: ${header}`);
  return rows.map((row) => Object.fromEntries(LIST_HEADER.map((name, i) => [name, row.slice(starts[i], starts[i + 1] ?? row.length).trim()])));
}

const storedLines = () => h.store.firewall(h.q(VM).qid);

async function checkUnchanged(client: DaemonClient, where: string): Promise<void> {
  assert.equal(storedLines(), undefined, `${where}: the firewall was written`);
  assert.equal(await client.call('admin.vm.firewall.Get', VM), 'action=accept\n', where);
}

async function checkAccepted(c: Case, client: DaemonClient, t0: number, t1: number): Promise<void> {
  const e = c.expect;
  const where = c.id;
  if (e.wire_line !== undefined && !c.quirk) matchesWithNow((client.lastSet() ?? '').split('\n').at(-2) ?? '', e.wire_line, t0, t1, `${where} wire line`);
  const got = await client.call('admin.vm.firewall.Get', VM);
  if (e.listed === false) {
    // Accepted, but already expired: qubesd drops it at once.
    assert.equal(got, 'action=accept\n', `${where}: an expired rule was kept`);
    assert.deepEqual(storedLines(), ['action=accept'], where);
    return;
  }
  const gotLines = got.split('\n');
  assert.equal(gotLines.length, 3, `${where}: ${JSON.stringify(got)}`);
  assert.equal(gotLines[0], 'action=accept');
  assert.equal(gotLines[2], '', 'every line ends in a newline');
  matchesWithNow(gotLines[1], e.rule_string!, t0, t1, `${where} rule_string`);
  // What the store holds reads back as the same line.
  assert.equal(formatApiRule(parseApiRule(gotLines[1])), gotLines[1]);

  const fields = ruleFields(parseApiRule(gotLines[1]));
  assert.deepEqual(Object.keys(fields).sort(), Object.keys(e.rule!).sort(), `${where} fields`);
  for (const [k, v] of Object.entries(e.rule!)) matchesWithNow(fields[k], v, t0, t1, `${where} rule.${k}`);

  const raw = await cli(client, [VM, '--raw', 'list']);
  assert.equal(raw.code, 0, raw.stderr);
  const rawLines = raw.stdout.split('\n');
  assert.deepEqual([rawLines.length, rawLines[0], rawLines[2]], [3, 'action=accept', ''], `${where}: ${raw.stdout}`);
  matchesWithNow(rawLines[1], e.raw_list!, t0, t1, `${where} raw_list`);

  const table = await cli(client, [VM, 'list']);
  assert.equal(table.code, 0, table.stderr);
  const rows = tableRows(table.stdout);
  assert.equal(rows.length, 2);
  assert.equal(rows[0].NO, '0');
  assert.equal(rows[0].ACTION, 'accept');
  assert.equal(rows[1].NO, '1');
  for (const [col, want] of Object.entries(e.list_row!)) {
    if (want === '+<remaining>s') {
      const m = /^\+(\d+)s$/.exec(rows[1][col]);
      assert.ok(m, `${where} ${col}: ${rows[1][col]}`);
      const left = Number(fields.expire) - Date.now() / 1000;
      assert.ok(Math.abs(Number(m[1]) - left) <= 2, `${where}: ${m[1]}s left, expected about ${left}`);
    } else assert.equal(rows[1][col], want, `${where} ${col}`);
  }
}

describe("qvm-firewall add: Qubes' firewall test cases", () => {
  for (const c of data.cases) {
    const kind = c.quirk ? 'quirk: refused, or Qubes\' meaning' : c.expect.valid ? 'accepted as Qubes stores it' : 'refused';
    test(`${c.id} [${c.args.join(' | ')}] ${kind}`, async () => {
      h.store.db.prepare('DELETE FROM firewall').run();
      const client = new DaemonClient(h);
      const t0 = Math.floor(Date.now() / 1000);
      const r = await cli(client, [VM, 'add', ...c.args]);
      const t1 = Math.floor(Date.now() / 1000);
      if (c.expect.valid && !(c.quirk && r.code !== 0)) {
        assert.equal(r.code, 0, `${c.id}: ${r.stderr}`);
        assert.equal(r.stderr, '');
        await checkAccepted(c, client, t0, t1);
        return;
      }
      // Refused: one line, non-zero, nothing written.
      assert.notEqual(r.code, 0, `${c.id}: accepted (Qubes: ${c.expect.error?.message ?? 'quirk'})`);
      assert.equal(r.stdout, '');
      const errLines = r.stderr.split('\n').filter(Boolean);
      assert.equal(errLines.length, 1, r.stderr);
      assert.match(errLines[0], /^qvm-firewall: error: \S/);
      assert.deepEqual(client.calls.filter((x) => x.method === 'admin.vm.firewall.Set'), [], 'a refused rule is never sent');
      await checkUnchanged(client, c.id);
    });
  }

  test('covers every case of the file, quirks included', () => {
    assert.ok(data.cases.length >= 90, `${data.cases.length} cases`);
    assert.ok(data.cases.some((c) => c.quirk) && data.cases.some((c) => !c.expect.valid) && data.cases.some((c) => c.expect.listed === false));
  });
});
