// The Admin API as a table: each method's contract (destination, argument, payload, scope,
// read or write). The daemon's dispatcher enforces it; the CLI spells method names from it.

export type Need = 'required' | 'forbidden' | 'optional';

export interface MethodContract {
  /** 'dom0' = the call is about the system; 'vm' = about one qube (not dom0); 'any' = either. */
  dest: 'dom0' | 'vm' | 'any';
  arg: Need;
  payload: Need;
  scope: 'global' | 'local';
  access: 'ro' | 'rwx';
  /** Replies as an event stream instead of one OK. */
  stream?: boolean;
  /** Isola extension (not a Qubes method): documented in docs/admin-api.md. */
  extension?: boolean;
}

const c = (dest: MethodContract['dest'], arg: Need, payload: Need, scope: MethodContract['scope'], access: MethodContract['access'], extra: Partial<MethodContract> = {}): MethodContract => ({ dest, arg, payload, scope, access, ...extra });

export const ADMIN_METHODS = {
  'admin.vmclass.List': c('dom0', 'forbidden', 'forbidden', 'global', 'ro'),
  'admin.vm.List': c('any', 'forbidden', 'forbidden', 'global', 'ro'),
  'admin.vm.Create.AppVM': c('dom0', 'optional', 'required', 'global', 'rwx'),
  'admin.vm.Create.TemplateVM': c('dom0', 'optional', 'required', 'global', 'rwx'),
  'admin.vm.Create.StandaloneVM': c('dom0', 'optional', 'required', 'global', 'rwx'),
  'admin.vm.Clone': c('vm', 'forbidden', 'required', 'global', 'rwx', { extension: true }),
  'admin.vm.Remove': c('vm', 'forbidden', 'forbidden', 'global', 'rwx'),
  'admin.vm.Start': c('vm', 'forbidden', 'forbidden', 'local', 'rwx'),
  'admin.vm.Shutdown': c('vm', 'optional', 'forbidden', 'local', 'rwx'),
  'admin.vm.Kill': c('vm', 'forbidden', 'forbidden', 'local', 'rwx'),
  'admin.vm.Pause': c('vm', 'forbidden', 'forbidden', 'local', 'rwx'),
  'admin.vm.Unpause': c('vm', 'forbidden', 'forbidden', 'local', 'rwx'),
  'admin.vm.CurrentState': c('any', 'forbidden', 'forbidden', 'local', 'ro'),
  'admin.vm.Run': c('vm', 'required', 'forbidden', 'local', 'rwx', { extension: true }),
  'admin.vm.property.List': c('any', 'forbidden', 'forbidden', 'local', 'ro'),
  'admin.vm.property.Get': c('any', 'required', 'forbidden', 'local', 'ro'),
  'admin.vm.property.GetAll': c('any', 'forbidden', 'forbidden', 'local', 'ro'),
  'admin.vm.property.GetDefault': c('any', 'required', 'forbidden', 'local', 'ro'),
  'admin.vm.property.Help': c('any', 'required', 'forbidden', 'local', 'ro'),
  'admin.vm.property.Set': c('any', 'required', 'optional', 'local', 'rwx'),
  'admin.vm.property.Reset': c('any', 'required', 'forbidden', 'local', 'rwx'),
  'admin.property.List': c('dom0', 'forbidden', 'forbidden', 'global', 'ro'),
  'admin.property.Get': c('dom0', 'required', 'forbidden', 'global', 'ro'),
  'admin.property.GetAll': c('dom0', 'forbidden', 'forbidden', 'global', 'ro'),
  'admin.property.GetDefault': c('dom0', 'required', 'forbidden', 'global', 'ro'),
  'admin.property.Help': c('dom0', 'required', 'forbidden', 'global', 'ro'),
  'admin.property.Set': c('dom0', 'required', 'optional', 'global', 'rwx'),
  'admin.property.Reset': c('dom0', 'required', 'forbidden', 'global', 'rwx'),
  'admin.vm.feature.List': c('any', 'forbidden', 'forbidden', 'local', 'ro'),
  'admin.vm.feature.Get': c('any', 'required', 'forbidden', 'local', 'ro'),
  'admin.vm.feature.CheckWithTemplate': c('any', 'required', 'forbidden', 'local', 'ro'),
  'admin.vm.feature.Set': c('any', 'required', 'optional', 'local', 'rwx'),
  'admin.vm.feature.Remove': c('any', 'required', 'forbidden', 'local', 'rwx'),
  'admin.vm.tag.List': c('any', 'forbidden', 'forbidden', 'local', 'ro'),
  'admin.vm.tag.Get': c('any', 'required', 'forbidden', 'local', 'ro'),
  'admin.vm.tag.Set': c('any', 'required', 'forbidden', 'local', 'rwx'),
  'admin.vm.tag.Remove': c('any', 'required', 'forbidden', 'local', 'rwx'),
  /** The qube's outbound firewall rules, one `\n`-terminated Admin API line each (docs/admin-api.md). */
  'admin.vm.firewall.Get': c('vm', 'forbidden', 'forbidden', 'local', 'ro'),
  /** Replaces all the rules (payload: one line each), or none if one is bad; fires `firewall-changed`. */
  'admin.vm.firewall.Set': c('vm', 'forbidden', 'required', 'local', 'rwx'),
  /** Fires `firewall-changed` without a change: the enforcer applies the rules again (host names resolved anew). */
  'admin.vm.firewall.Reload': c('vm', 'forbidden', 'forbidden', 'local', 'rwx'),
  /**
   * Isola's: whether the running qube's rules apply as written, once the changes already made are
   * applied. Empty, or one line: why all of its traffic is blocked (a host name that does not resolve).
   */
  'admin.vm.firewall.Status': c('vm', 'forbidden', 'forbidden', 'local', 'ro'),
  'admin.vm.volume.List': c('vm', 'forbidden', 'forbidden', 'local', 'ro'),
  'admin.vm.volume.Info': c('vm', 'required', 'forbidden', 'local', 'ro'),
  'admin.vm.volume.ListSnapshots': c('vm', 'required', 'forbidden', 'local', 'ro'),
  'admin.vm.volume.Revert': c('vm', 'required', 'optional', 'local', 'rwx'),
  'admin.vm.volume.Resize': c('vm', 'required', 'required', 'local', 'rwx'),
  'admin.vm.volume.Set.revisions_to_keep': c('vm', 'required', 'required', 'local', 'rwx'),
  'admin.vm.volume.Set.rw': c('vm', 'required', 'required', 'local', 'rwx'),
  'admin.vm.volume.Set.ephemeral': c('vm', 'required', 'required', 'local', 'rwx'),
  'admin.vm.volume.Clear': c('vm', 'required', 'forbidden', 'local', 'rwx'),
  'admin.label.List': c('dom0', 'forbidden', 'forbidden', 'global', 'ro'),
  'admin.label.Get': c('dom0', 'required', 'forbidden', 'global', 'ro'),
  'admin.label.Index': c('dom0', 'required', 'forbidden', 'global', 'ro'),
  'admin.pool.List': c('dom0', 'forbidden', 'forbidden', 'global', 'ro'),
  'admin.template.List': c('dom0', 'forbidden', 'forbidden', 'global', 'ro', { extension: true }),
  'admin.template.Install': c('dom0', 'required', 'forbidden', 'global', 'rwx', { extension: true }),
  'admin.Events': c('any', 'forbidden', 'forbidden', 'global', 'ro', { stream: true }),
  /** qrexec decisions since ARG seconds ago (all if no argument): `isola policy log`. */
  'admin.policy.Log': c('dom0', 'optional', 'forbidden', 'global', 'ro', { extension: true }),
  /** The policy in force and the state of the files on disk: `key=value` lines (docs/admin-api.md). */
  'admin.policy.Status': c('dom0', 'forbidden', 'forbidden', 'global', 'ro', { extension: true }),
  /** Evaluates a call (payload `SOURCE TARGET SERVICE+ARG`) against the policy in force: one JSON object. */
  'admin.policy.Eval': c('dom0', 'forbidden', 'required', 'global', 'ro', { extension: true }),
  /** Pending 'ask' decisions: `ID SOURCE SERVICE+ARG default=T TARGET…` per line. */
  'admin.qrexec.AskList': c('dom0', 'forbidden', 'forbidden', 'global', 'ro', { extension: true }),
  /** Answers question ARG: payload `allow [TARGET]` or `deny`. */
  'admin.qrexec.AskAnswer': c('dom0', 'required', 'required', 'global', 'rwx', { extension: true }),
  /** Two-level clipboard: copies the clipboard of the destination qube into the host's global clipboard. */
  'admin.clipboard.CopyFrom': c('vm', 'forbidden', 'forbidden', 'global', 'rwx', { extension: true }),
  /** Pastes the global clipboard into the destination qube (policy qubes.ClipboardPaste), then empties it. */
  'admin.clipboard.PasteTo': c('vm', 'forbidden', 'forbidden', 'global', 'rwx', { extension: true }),
  /** What the global clipboard holds: `source=NAME size=BYTES copied=ISO-TIME`, or nothing when empty. */
  'admin.clipboard.Get': c('dom0', 'forbidden', 'forbidden', 'global', 'ro', { extension: true }),
  /** Empties the global clipboard. */
  'admin.clipboard.Clear': c('dom0', 'forbidden', 'forbidden', 'global', 'rwx', { extension: true }),
  /** Qubes' qrexec policy input: `{"domains": {NAME: {type, tags, …}}}` (Qubes serves it on an internal socket). */
  'internal.GetSystemInfo': c('dom0', 'forbidden', 'forbidden', 'global', 'ro'),
} as const satisfies Record<string, MethodContract>;

export type AdminMethod = keyof typeof ADMIN_METHODS;

export function isAdminMethod(untrusted: string): untrusted is AdminMethod {
  return Object.prototype.hasOwnProperty.call(ADMIN_METHODS, untrusted);
}
