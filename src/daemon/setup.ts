// `isola setup`: the default template and Qubes' default qubes, through the Admin API only.
// Idempotent: what exists is left as it is, so it can run at every `npm start`.

import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { ADMIN_INCLUDES, ADMIN_POLICY_FILE, GENERATED_MARK, adminDefaultPolicy } from './admin-policy';
import path from 'node:path';
import { AdminClient } from '../cli/admin-client';
import { policyDir } from './policy-fs';
import { isQubesError } from '../core/errors';
import { decodePolicyStatus, describeInForce } from './policy-report';
import { errorText } from '../core/error-text';

export const DEFAULT_TEMPLATE = 'debian-12';

/** Qubes' network qubes (salt qvm.sys-net, qvm.sys-firewall): the uplink, and the firewall in front of it. */
export const NET_QUBES: readonly { name: string; label: string; props: Record<string, string> }[] = [
  { name: 'sys-net', label: 'red', props: { provides_network: 'True', netvm: '' } },
  { name: 'sys-firewall', label: 'green', props: { provides_network: 'True', netvm: 'sys-net' } },
];

/** Qubes' default app qubes (salt qvm.work, qvm.personal, …); vault never gets a network. */
export const DEFAULT_QUBES: readonly { name: string; label: string; props: Record<string, string> }[] = [
  { name: 'work', label: 'blue', props: {} },
  { name: 'personal', label: 'yellow', props: {} },
  { name: 'untrusted', label: 'red', props: {} },
  { name: 'vault', label: 'black', props: { netvm: '' } },
];

/** Qubes' default policy files, shipped in contrib/policy.d. */
export const SHIPPED_POLICY_DIR = path.resolve(__dirname, '../../../contrib/policy.d');

/** Installs the shipped policy files that are missing; never overwrites a file the user may have edited. */
export function installDefaultPolicy(dest = policyDir()): string[] {
  mkdirSync(dest, { recursive: true, mode: 0o755 });
  const installed: string[] = [];
  for (const f of readdirSync(SHIPPED_POLICY_DIR).filter((n) => n.endsWith('.policy')).sort()) {
    if (existsSync(path.join(dest, f))) continue;
    copyFileSync(path.join(SHIPPED_POLICY_DIR, f), path.join(dest, f));
    installed.push(f);
  }
  // The generated file follows the method table (rewritten while it is still ours); the includes are the user's.
  const generated = path.join(dest, ADMIN_POLICY_FILE);
  const current = existsSync(generated) ? readFileSync(generated, 'utf8') : undefined;
  if (current === undefined || (current.startsWith(GENERATED_MARK) && current !== adminDefaultPolicy())) {
    writeFileSync(generated, adminDefaultPolicy(), { mode: 0o644 });
    installed.push(ADMIN_POLICY_FILE);
  }
  mkdirSync(path.join(dest, 'include'), { recursive: true, mode: 0o755 });
  for (const [name, text] of Object.entries(ADMIN_INCLUDES)) {
    if (existsSync(path.join(dest, 'include', name))) continue;
    writeFileSync(path.join(dest, 'include', name), text, { mode: 0o644 });
    installed.push(`include/${name}`);
  }
  return installed;
}

/** isolad re-reads its policy directory within a second: say what it enforces once it has. */
async function untilPolicyLoaded(client: AdminClient, io: SetupIo): Promise<void> {
  let st = decodePolicyStatus(await client.call('admin.policy.Status', 'dom0'));
  for (let i = 0; i < 40 && st.state !== 'loaded'; i++) {
    await new Promise((r) => setTimeout(r, 100));
    st = decodePolicyStatus(await client.call('admin.policy.Status', 'dom0'));
  }
  if (st.state === 'loaded') io.out(`Policy in force: ${st.rules} rules from ${st.files} files in ${st.dir}\n`);
  else io.err(`isola setup: warning: ${describeInForce(st)}\n`);
}

export interface SetupIo {
  out: (s: string) => void;
  err: (s: string) => void;
  isTTY: boolean;
  client?: AdminClient;
}

export async function runSetup(io: SetupIo): Promise<number> {
  const client = io.client ?? new AdminClient();
  try {
    const names = new Set((await client.call('admin.vm.List', 'dom0')).split('\n').filter(Boolean).map((l) => l.split(' ')[0]));
    // The policy first, into the directory isolad reads (it may differ from this shell's
    // ISOLA_POLICY_DIR): calls made while the template installs already meet Qubes' defaults.
    const dir = decodePolicyStatus(await client.call('admin.policy.Status', 'dom0')).dir || policyDir();
    for (const f of installDefaultPolicy(dir)) io.out(`Installed policy ${path.join(dir, f)}\n`);
    await untilPolicyLoaded(client, io);
    if (!names.has(DEFAULT_TEMPLATE)) {
      io.out(`Installing template ${DEFAULT_TEMPLATE} (built from Debian's archive, cached)...\n`);
      let lastTenth = -1;
      const close = await client.events((e) => {
        if (e.event !== 'template-install-progress' || e.kwargs.template !== DEFAULT_TEMPLATE) return;
        const tenth = Math.floor(Number(e.kwargs.fraction) * 10);
        if (tenth !== lastTenth) {
          lastTenth = tenth;
          io.out(`  ${tenth * 10}% ${e.kwargs.stage}\n`);
        }
      });
      try {
        await client.call('admin.template.Install', 'dom0', { arg: DEFAULT_TEMPLATE });
      } finally {
        close();
      }
    }
    const defaultTemplate = (await client.call('admin.property.Get', 'dom0', { arg: 'default_template' })).split(' ').slice(2).join(' ');
    if (!defaultTemplate) await client.call('admin.property.Set', 'dom0', { arg: 'default_template', payload: DEFAULT_TEMPLATE });
    const create = async (q: { name: string; label: string; props: Record<string, string> }) => {
      if (names.has(q.name)) return;
      await client.call('admin.vm.Create.AppVM', 'dom0', { arg: DEFAULT_TEMPLATE, payload: `name=${q.name} label=${q.label}` });
      for (const [k, v] of Object.entries(q.props)) await client.call('admin.vm.property.Set', q.name, { arg: k, payload: v });
      io.out(`Created ${q.name} (${q.label})\n`);
    };
    for (const q of NET_QUBES) await create(q);
    // Qubes' installer: the firewall qube is every new qube's netvm, the uplink qube fetches updates.
    for (const [prop, value] of [['default_netvm', 'sys-firewall'], ['updatevm', 'sys-net']]) {
      const cur = (await client.call('admin.property.Get', 'dom0', { arg: prop })).split(' ').slice(2).join(' ');
      if (!cur) await client.call('admin.property.Set', 'dom0', { arg: prop, payload: value });
    }
    for (const q of DEFAULT_QUBES) await create(q);
    io.out('Setup done.\n');
    return 0;
  } catch (e) {
    io.err(`isola setup: error: ${isQubesError(e) ? e.message : errorText(e)}\n`);
    return 1;
  }
}
