// The host-wide uid registry: allocation, reuse, release, two processes at once, and a corrupt file
// refused with the line named (never read as "no ranges", which would hand out taken ones again).

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { ID_RANGE, MIN_SLOT, UidRegistry, parseRegistry } from '../../src/store/uid-registry';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'isola-uidreg-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

let n = 0;
function fresh(opts: { reserved?: Array<[number, number]> } = {}): { reg: UidRegistry; file: string } {
  const file = path.join(tmp, `reg-${n++}`, 'registry');
  return { reg: new UidRegistry(file, { reserved: () => opts.reserved ?? [], homeAlive: () => true }), file };
}

function base(res: { base: number } | { error: string } | undefined): number {
  assert.ok(res && 'base' in res, `expected a range, got ${JSON.stringify(res)}`);
  return res.base;
}

test('allocation: distinct aligned ranges above 2^26, the preferred one when free', async () => {
  const { reg } = fresh();
  const [a, b] = [randomUUID(), randomUUID()];
  const prefer = (MIN_SLOT + 7) * ID_RANGE;
  const r = await reg.claim('/home/one', [{ uuid: a, prefer }, { uuid: b, prefer }]);
  assert.equal(base(r.get(a)), prefer);
  assert.equal(base(r.get(b)), prefer + ID_RANGE, 'a taken preference moves to the next free slot');
  const c = randomUUID();
  const plain = base((await reg.claim('/home/two', [{ uuid: c }])).get(c));
  assert.equal(plain, MIN_SLOT * ID_RANGE, 'no preference: the lowest free slot');
});

test('two instances with the same preferred range (the old hash slot) get different ranges', async () => {
  const { reg } = fresh();
  const uuid = randomUUID();
  const prefer = (MIN_SLOT + 2) * ID_RANGE;
  const one = base((await reg.claim('/var/lib/isola', [{ uuid, prefer }])).get(uuid));
  const two = base((await reg.claim('/tmp/other-home', [{ uuid, prefer }])).get(uuid));
  assert.equal(one, prefer);
  assert.notEqual(two, one);
});

test('reuse across restarts, recorded range checked, release frees it', async () => {
  const { reg } = fresh();
  const q = randomUUID();
  const first = base((await reg.claim('/h', [{ uuid: q }])).get(q));
  assert.equal(base((await reg.claim('/h', [{ uuid: q, recorded: first }])).get(q)), first, 'same range at the next start');
  await reg.release('/h', q);
  assert.deepEqual(reg.entries(), []);
  // The registry lost the entry but the range is free: the recorded one is registered again.
  assert.equal(base((await reg.claim('/h', [{ uuid: q, recorded: first }])).get(q)), first);
  // Someone else holds the recorded range: refused, with the holder named.
  await reg.release('/h', q);
  const other = randomUUID();
  await reg.claim('/elsewhere', [{ uuid: other, prefer: first }]);
  const res = (await reg.claim('/h', [{ uuid: q, recorded: first }])).get(q);
  assert.ok(res && 'error' in res && res.error.includes(other) && res.error.includes('/elsewhere'), JSON.stringify(res));
});

test('host subordinate ranges (/etc/subuid) are never handed out', async () => {
  const start = MIN_SLOT * ID_RANGE;
  const { reg } = fresh({ reserved: [[start + 100, 10 * ID_RANGE]] });
  const q = randomUUID();
  const got = base((await reg.claim('/h', [{ uuid: q, prefer: start }])).get(q));
  assert.ok(got >= start + 100 + 10 * ID_RANGE, `got ${got}`);
});

test('prune frees the ranges of qubes an instance no longer has; gone homes are freed', async () => {
  const file = path.join(tmp, 'prune', 'registry');
  let alive = true;
  const reg = new UidRegistry(file, { reserved: () => [], homeAlive: (h) => h !== '/gone' || alive });
  const [a, b, c] = [randomUUID(), randomUUID(), randomUUID()];
  await reg.claim('/h', [{ uuid: a }, { uuid: b }]);
  await reg.claim('/gone', [{ uuid: c }]);
  assert.equal(await reg.prune('/h', new Set([a])), 1);
  alive = false;
  await reg.claim('/h', []);
  assert.deepEqual(reg.entries().map((e) => e.uuid), [a]);
});

test('corrupt registry: a clear error naming the line, and nothing allocated', async () => {
  const { reg, file } = fresh();
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, '# header\n67108864 65536 not-a-uuid "/h"\n');
  await assert.rejects(reg.claim('/h', [{ uuid: randomUUID() }]), /registry .*: line 2: /);
  const u = randomUUID();
  const overlapping = `67108864 65536 ${u} "/a"\n67174399 65536 ${randomUUID()} "/b"\n`;
  assert.throws(() => parseRegistry(overlapping, 'f'), /line 2: overlaps .* of qube/);
  fs.writeFileSync(file, overlapping);
  await assert.rejects(reg.claim('/h', [{ uuid: randomUUID() }]), /line 2: overlaps/);
  assert.equal(fs.readFileSync(file, 'utf8'), overlapping, 'the file is left for the admin to fix');
});

test('lock contention: two processes allocating at once never hand out one range twice', async () => {
  const file = path.join(tmp, 'contention', 'registry');
  const mod = path.resolve(__dirname, '../../src/store/uid-registry.js');
  const script = `
    const { UidRegistry } = require(${JSON.stringify(mod)});
    const reg = new UidRegistry(${JSON.stringify(file)}, { reserved: () => [], homeAlive: () => true });
    (async () => {
      const out = [];
      await Promise.all(Array.from({ length: 40 }, async () => {
        const u = require('crypto').randomUUID();
        const r = (await reg.claim(process.argv[1], [{ uuid: u, prefer: ${MIN_SLOT * ID_RANGE} }])).get(u);
        out.push(r.base);
      }));
      process.stdout.write(JSON.stringify(out));
    })().catch((e) => { console.error(e.message); process.exit(1); });`;
  const run = (home: string) =>
    new Promise<number[]>((resolve, reject) =>
      execFile(process.execPath, ['-e', script, home], (err, stdout, stderr) => (err ? reject(new Error(stderr)) : resolve(JSON.parse(stdout) as number[]))));
  const [a, b] = await Promise.all([run('/home/a'), run('/home/b')]);
  const all = [...a, ...b];
  assert.equal(new Set(all).size, 80, 'every allocation got its own range');
  assert.equal(parseRegistry(fs.readFileSync(file, 'utf8'), file).length, 80, 'no write was lost');
});
