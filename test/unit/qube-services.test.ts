// Which of its own services the agent starts in a qube, by Qubes' rule: qubesdb's /qubes-vm-type
// (TemplateVM, NetVM = provides_network without a netvm, ProxyVM = with one, AppVM for the rest) picks
// the defaults (qubes-sysinit: qubes-updates-proxy in a NetVM, updates-proxy-setup in a TemplateVM),
// and a feature service.NAME turns one on or off ('' is off) whatever the type.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { QubeClass, QubeRecord } from '../../src/core/qube';
import { enabledAgentServices, qubesVmType } from '../../src/core/qube-services';

const qube = (klass: QubeClass, props: Record<string, unknown>, features: Record<string, string> = {}) => {
  const q = { qid: 1, uuid: 'u', name: 'q', klass, props: {}, features, tags: [] } as QubeRecord;
  return { q, get: (_q: QubeRecord, p: string) => (p in props ? props[p] : p === 'netvm' ? null : false) };
};
const services = (klass: QubeClass, props: Record<string, unknown>, features?: Record<string, string>) => {
  const { q, get } = qube(klass, props, features);
  return { type: qubesVmType(q, get), on: enabledAgentServices(q, qubesVmType(q, get)) };
};

test("Qubes' vm types and their default services", () => {
  assert.deepEqual(services('TemplateVM', {}), { type: 'TemplateVM', on: ['updates-proxy-setup'] });
  assert.deepEqual(services('AppVM', { provides_network: true, netvm: null }), { type: 'NetVM', on: ['qubes-updates-proxy'] }, 'sys-net');
  assert.deepEqual(services('AppVM', { provides_network: true, netvm: 'sys-net' }), { type: 'ProxyVM', on: [] }, 'sys-firewall');
  assert.deepEqual(services('AppVM', { netvm: 'sys-firewall' }), { type: 'AppVM', on: [] });
  assert.deepEqual(services('StandaloneVM', {}), { type: 'AppVM', on: [] }, 'a standalone is an AppVM to qubesdb');
  assert.deepEqual(services('DispVM', {}), { type: 'AppVM', on: [] });
  assert.deepEqual(services('TemplateVM', { provides_network: true }), { type: 'TemplateVM', on: ['updates-proxy-setup'] }, 'a template stays a template');
});

test('a feature service.NAME overrides the default either way; an empty value is off', () => {
  assert.deepEqual(services('StandaloneVM', {}, { 'service.updates-proxy-setup': '1' }).on, ['updates-proxy-setup']);
  assert.deepEqual(services('TemplateVM', {}, { 'service.updates-proxy-setup': '' }).on, []);
  assert.deepEqual(services('AppVM', { provides_network: true, netvm: null }, { 'service.qubes-updates-proxy': '' }).on, []);
  assert.deepEqual(services('AppVM', { provides_network: true, netvm: 'sys-net' }, { 'service.qubes-updates-proxy': '1' }).on, ['qubes-updates-proxy']);
  assert.deepEqual(services('AppVM', {}, { 'service.not-ours': '1', 'service.constructor': '1' }).on, [], 'only the services the agent knows');
});
