// qubes-prefs: show or change the global properties (default_template, default_netvm, …) through
// admin.property.* with destination dom0; same listing and flags as qvm-prefs.

import { runPrefs, type PrefsTarget } from './qvm-prefs';
import type { CliDeps } from './common';

export const description = 'Show or change global properties.';

const GLOBAL: PrefsTarget = {
  command: 'qubes-prefs',
  description,
  methods: {
    List: 'admin.property.List', Get: 'admin.property.Get', GetAll: 'admin.property.GetAll',
    Help: 'admin.property.Help', Set: 'admin.property.Set', Reset: 'admin.property.Reset',
  },
};

export function run(argv: string[], deps: CliDeps): Promise<number> {
  return runPrefs(GLOBAL, false, argv, deps);
}
