// isola-log-relay (src/native): the runtime's exit status passes through, the console is a pipe,
// bytes are escaped and the log keeps under its cap with two rotated files, whatever is written.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';

const RELAY = path.resolve(__dirname, '../../libexec/isola-log-relay');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'isola-relay-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Runs `script` under the relay and waits for the relay to finish writing (it exits on EOF). */
async function relay(log: string, max: number, script: string): Promise<number | null> {
  const r = spawnSync(RELAY, [log, String(max), '2', '--', '/bin/sh', '-c', script], { stdio: ['ignore', 'ignore', 'pipe'] });
  for (let i = 0; i < 100 && isRunning(log); i++) await new Promise((res) => setTimeout(res, 20));
  return r.status;
}

function isRunning(log: string): boolean {
  return fs.readdirSync('/proc').some((p) => {
    try {
      return /^[0-9]+$/.test(p) && fs.readFileSync(`/proc/${p}/cmdline`, 'latin1').startsWith(`${RELAY}\0${log}\0`);
    } catch {
      return false;
    }
  });
}

test('the exit status is the runtime\'s; stdio are pipes; bytes outside printable ASCII are escaped', async () => {
  const log = path.join(tmp, 'a.log');
  const status = await relay(log, 1 << 20, 'readlink /proc/self/fd/0 /proc/self/fd/1 /proc/self/fd/2 | sed "s/:.*//"; printf \'x\\033]0;t\\007\\\\\\377\\r\\tok\\n\'; exit 7');
  assert.equal(status, 7);
  assert.equal(fs.readFileSync(log, 'latin1'), 'pipe\npipe\npipe\nx\\x1b]0;t\\x07\\\\\\xff\\x0d\tok\n');
});

test('a flood leaves at most the cap per file and two rotated files', async () => {
  const log = path.join(tmp, 'b.log');
  await relay(log, 65536, 'head -c 3000000 /dev/zero; echo last');
  const files = fs.readdirSync(tmp).filter((f) => f.startsWith('b.log')).sort();
  assert.deepEqual(files, ['b.log', 'b.log.1', 'b.log.2']);
  for (const f of files) assert.ok(fs.statSync(path.join(tmp, f)).size <= 65536, f);
  assert.match(fs.readFileSync(log, 'latin1'), /last\n$/);
});

test('bad usage and an unopenable log fail before the runtime runs', () => {
  assert.equal(spawnSync(RELAY, ['rel.log', '65536', '2', '--', '/bin/true']).status, 125);
  const r = spawnSync(RELAY, [path.join(tmp, 'no', 'such', 'dir', 'x.log'), '65536', '2', '--', '/bin/sh', '-c', 'touch ran'], { cwd: tmp });
  assert.equal(r.status, 125);
  assert.match(r.stderr.toString(), /x\.log: No such file/);
  assert.ok(!fs.existsSync(path.join(tmp, 'ran')));
});
