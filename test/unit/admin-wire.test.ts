// Qubes' Admin API framing: requests, replies and events round-trip, and malformed headers are
// refused with ProtocolError (a table of bad headers, each with why).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeEvents, decodeReply, encodeEvent, encodeException, encodeOk, encodeRequest, parseRequestHeader } from '../../src/core/admin-wire';
import { QubesError } from '../../src/core/errors';

test('encodes a request as Qubes does', () => {
  const b = encodeRequest({ method: 'admin.vm.property.Set', arg: 'memory', dest: 'work', payload: Buffer.from('800') });
  assert.equal(b.toString(), 'admin.vm.property.Set+memory dom0 name work\x00800');
});

test('parses a header, mapping keyword adminvm to dom0', () => {
  assert.deepEqual(parseRequestHeader('admin.vm.List dom0 keyword adminvm'), { method: 'admin.vm.List', arg: '', source: 'dom0', dest: 'dom0' });
  assert.deepEqual(parseRequestHeader('admin.vm.feature.Get+os dom0 name work'), { method: 'admin.vm.feature.Get', arg: 'os', source: 'dom0', dest: 'work' });
});

const BAD_HEADERS: [string, string][] = [
  ['', 'empty'],
  ['admin.vm.List dom0 name', 'three fields'],
  ['admin.vm.List dom0 name work extra', 'five fields'],
  ['admin.vm.List  dom0 name work', 'double space makes an empty field'],
  ['admin.vm.List dom0 uuid work', 'unknown destination type'],
  ['admin.vm.List dom0 keyword dispvm', 'keyword other than adminvm'],
  ['+arg dom0 name work', 'empty method name'],
  ['admin.vm.List dom0 name wo/rk', 'slash in destination'],
  ['admin.vm.List\tdom0 name work', 'tab is not a separator'],
  ['admin.vm.List dom0 name wörk', 'non-ASCII destination'],
  ['admin.vm.property.Get+a;b dom0 name work', 'semicolon in argument'],
];
for (const [header, why] of BAD_HEADERS) {
  test(`refuses the header ${JSON.stringify(header)}: ${why}`, () => {
    assert.throws(() => parseRequestHeader(header), (e: unknown) => e instanceof QubesError && e.code === 'ProtocolError');
  });
}

test('decodes OK and exception replies', () => {
  assert.equal(decodeReply(encodeOk('hello')), 'hello');
  assert.throws(() => decodeReply(encodeException('QubesVMNotFoundError', "No such domain: 'x'")), (e: unknown) => e instanceof QubesError && e.code === 'QubesVMNotFoundError' && e.message === "No such domain: 'x'");
  for (const bad of [Buffer.alloc(0), Buffer.from([0x30]), Buffer.from([0x33, 0]), Buffer.from([0x30, 1])]) assert.throws(() => decodeReply(bad), /malformed|unexpected/);
});

test('decodes events split at any byte, including empty subjects and values', () => {
  const stream = Buffer.concat([encodeEvent('', 'connection-established', {}), encodeEvent('work', 'property-set:memory', { name: 'memory', newvalue: '800', oldvalue: '' })]);
  for (let cut = 0; cut <= stream.length; cut++) {
    const first = decodeEvents(stream.subarray(0, cut));
    const second = decodeEvents(Buffer.concat([first.rest, stream.subarray(cut)]));
    const all = [...first.events, ...second.events];
    assert.deepEqual(all.map((e) => [e.subject, e.event, e.kwargs]), [
      ['', 'connection-established', {}],
      ['work', 'property-set:memory', { name: 'memory', newvalue: '800', oldvalue: '' }],
    ]);
  }
});
