// admin.clipboard.* (Isola extensions): the host side of Qubes' two-level clipboard (see ../clipboard.ts).

import type { AdminMethod } from '../../core/admin-methods';
import type { Handler } from '../admin-server';
import type { GlobalClipboard } from '../clipboard';

export function clipboardHandlers(clipboard: GlobalClipboard): Partial<Record<AdminMethod, Handler>> {
  const describe = () => {
    const s = clipboard.current;
    return s ? `source=${s.source} size=${s.size} copied=${new Date(s.copiedAt).toISOString()}` : '';
  };
  return {
    'admin.clipboard.CopyFrom': async (ctx) => {
      await clipboard.copyFrom(ctx.req.dest);
      return describe();
    },
    'admin.clipboard.PasteTo': async (ctx) => {
      const s = await clipboard.pasteTo(ctx.req.dest);
      return `source=${s.source} size=${s.size}`;
    },
    'admin.clipboard.Get': () => describe(),
    'admin.clipboard.Clear': () => {
      clipboard.clear();
      return '';
    },
  };
}
