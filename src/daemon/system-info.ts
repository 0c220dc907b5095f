// The snapshot qrexec policy decides against, in Qubes' internal.GetSystemInfo shape, built from
// the collection: type, tags, resolved default_dispvm, template_for_dispvms, power state, uuid.

import { isDispvmTemplate } from '../core/properties';
import type { SystemInfo } from '../policy';
import type { Collection } from './collection';

export function systemInfo(col: Collection): SystemInfo {
  const w = col.world();
  const domains: SystemInfo['domains'] = {};
  for (const q of col.all()) {
    const dispvm = col.prop(q, 'default_dispvm');
    (domains as Record<string, SystemInfo['domains'][string]>)[q.name] = {
      type: q.klass,
      tags: [...q.tags],
      default_dispvm: typeof dispvm === 'string' ? dispvm : null,
      template_for_dispvms: isDispvmTemplate(q, w),
      power_state: col.powerState(q),
      uuid: q.uuid,
      // Qubes treats the `internal` feature as a boolean: empty means false.
      internal: Boolean(q.features.internal),
    };
  }
  return { domains };
}
