// Properties as Qubes defines them: defaults taken from the template and from global prefs,
// type parsing, and the checks that keep references sane. Pure: a World built in the test.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseGlobalValue } from '../../src/core/global-properties';
import { parsePropertyValue, resolveProperty, type World } from '../../src/core/properties';
import type { PropValue, QubeRecord } from '../../src/core/qube';
import { QubesError } from '../../src/core/errors';

function qube(name: string, klass: QubeRecord['klass'], props: Record<string, PropValue> = {}): QubeRecord {
  return { qid: name.length, uuid: `uuid-${name}`, name, klass, props: { label: 'red', ...props }, features: {}, tags: [] };
}

function world(qubes: QubeRecord[], globals: Record<string, PropValue> = {}): World {
  const defaults: Record<string, PropValue> = { default_netvm: null, default_dispvm: null, default_kernel: '', default_qrexec_timeout: 60, default_shutdown_timeout: 60 };
  return { qube: (n) => qubes.find((q) => q.name === n), globalProp: (n) => (n in globals ? globals[n] : defaults[n] ?? null), hostMemoryMiB: 24000 };
}

const tpl = qube('debian-12', 'TemplateVM', { memory: 600, vcpus: 4, default_user: 'alice' });
const net = qube('sys-net', 'AppVM', { template: 'debian-12', provides_network: true });
const work = qube('work', 'AppVM', { template: 'debian-12' });
const w = world([tpl, net, work], { default_netvm: 'sys-net', default_qrexec_timeout: 90 });

test('an AppVM takes memory, vcpus and default_user from its template, marked as default', () => {
  assert.deepEqual(resolveProperty(work, 'memory', w), { value: 600, isDefault: true, unset: false });
  assert.equal(resolveProperty(work, 'vcpus', w).value, 4);
  assert.equal(resolveProperty(work, 'default_user', w).value, 'alice');
});

test("a template's own defaults are Qubes' fixed ones", () => {
  const bare = qube('t2', 'TemplateVM');
  assert.equal(resolveProperty(bare, 'memory', w).value, 400);
  assert.equal(resolveProperty(bare, 'vcpus', w).value, 2);
  assert.equal(resolveProperty(bare, 'default_user', w).value, 'user');
  assert.equal(resolveProperty(bare, 'maxmem', w).value, 4000, 'min(memory*10, host/2)');
  assert.equal(resolveProperty(bare, 'virt_mode', w).value, 'sandbox');
});

test('netvm defaults to the global default_netvm, but templates and net qubes get none', () => {
  assert.equal(resolveProperty(work, 'netvm', w).value, 'sys-net');
  assert.equal(resolveProperty(tpl, 'netvm', w).value, null);
  assert.equal(resolveProperty(net, 'netvm', w).value, null);
});

test('qrexec_timeout falls back to the global default through the template', () => {
  assert.equal(resolveProperty(work, 'qrexec_timeout', w).value, 90);
});

test('an explicit value wins and is not marked default', () => {
  assert.deepEqual(resolveProperty({ ...work, props: { ...work.props, memory: 800 } }, 'memory', w), { value: 800, isDefault: false, unset: false });
});

test('updateable is true for templates and standalones only', () => {
  assert.equal(resolveProperty(tpl, 'updateable', w).value, true);
  assert.equal(resolveProperty(work, 'updateable', w).value, false);
  assert.equal(resolveProperty(qube('s', 'StandaloneVM'), 'updateable', w).value, true);
});

test('parses Qubes booleans and integers', () => {
  for (const t of ['True', 'true', '1', 'yes', 'on']) assert.equal(parsePropertyValue(work, 'autostart', t, w), true);
  for (const f of ['False', 'false', '0', 'no', 'off']) assert.equal(parsePropertyValue(work, 'autostart', f, w), false);
  assert.equal(parsePropertyValue(work, 'memory', '800', w), 800);
  assert.equal(parsePropertyValue(work, 'netvm', '', w), null);
  assert.equal(parsePropertyValue(work, 'label', '3', w), 'yellow');
});

const BAD_VALUES: [string, string, string, string][] = [
  ['memory', 'abc', 'not an integer', 'QubesPropertyValueError'],
  ['memory', '0', 'not positive', 'QubesPropertyValueError'],
  ['memory', '1e3', 'exponent notation is not an integer', 'QubesPropertyValueError'],
  ['memory', '99999999999999999', 'beyond safe integers', 'QubesPropertyValueError'],
  ['vcpus', '-2', 'negative', 'QubesPropertyValueError'],
  ['maxmem', '-1', 'negative', 'QubesPropertyValueError'],
  ['autostart', 'maybe', 'not a boolean', 'QubesPropertyValueError'],
  ['label', 'pink', 'no such label', 'QubesLabelNotFoundError'],
  ['netvm', 'work', 'itself', 'QubesPropertyValueError'],
  ['netvm', 'debian-12', 'provides no network', 'QubesPropertyValueError'],
  ['netvm', 'nosuch', 'missing qube', 'QubesPropertyValueError'],
  ['template', 'sys-net', 'an AppVM is not a template', 'QubesPropertyValueError'],
  ['template', '', 'an AppVM needs a template', 'QubesPropertyValueError'],
  ['default_dispvm', 'debian-12', 'not a disposable template', 'QubesPropertyValueError'],
  ['virt_mode', 'pv', 'unknown mode', 'QubesPropertyValueError'],
  ['virt_mode', 'hvm', 'the vm backend is not available yet', 'QubesPropertyValueError'],
  ['default_user', 'root;rm', 'not a user name', 'QubesPropertyValueError'],
  ['kernel', '../../etc', 'path in a kernel name', 'QubesPropertyValueError'],
  ['uuid', 'x', 'read-only', 'QubesPropertyValueError'],
  ['name', 'other', 'read-only', 'QubesPropertyValueError'],
  ['colour', 'red', 'no such property', 'QubesNoSuchPropertyError'],
  ['template_for_dispvms', 'True', 'not a property of TemplateVM', 'QubesNoSuchPropertyError'],
];
for (const [prop, value, why, code] of BAD_VALUES) {
  test(`refuses ${prop}=${JSON.stringify(value)}: ${why}`, () => {
    const target = prop === 'template_for_dispvms' ? tpl : work;
    assert.throws(() => parsePropertyValue(target, prop, value, w), (e: unknown) => e instanceof QubesError && e.code === code);
  });
}

test('a netvm loop is refused', () => {
  const a = qube('a', 'AppVM', { template: 'debian-12', provides_network: true });
  const b = qube('b', 'AppVM', { template: 'debian-12', provides_network: true, netvm: 'a' });
  const w2 = world([tpl, a, b]);
  assert.throws(() => parsePropertyValue(a, 'netvm', 'b', w2), /loop/);
});

test('global prefs check what they point at', () => {
  assert.equal(parseGlobalValue('default_template', 'debian-12', w, ['default']), 'debian-12');
  assert.throws(() => parseGlobalValue('default_template', 'work', w, ['default']), /TemplateVM/);
  assert.throws(() => parseGlobalValue('default_netvm', 'work', w, ['default']), /does not provide network/);
  assert.throws(() => parseGlobalValue('default_pool', 'nosuch', w, ['default']), /no such pool/);
  assert.throws(() => parseGlobalValue('default_qrexec_timeout', '-5', w, ['default']), /positive/);
  assert.throws(() => parseGlobalValue('no_such_pref', 'x', w, ['default']), /Invalid property/);
  assert.equal(parseGlobalValue('default_netvm', '', w, ['default']), null);
});
