// admin.vm.feature.* and admin.vm.tag.*: free-form per-qube features and tags, with Qubes'
// name rules and not-found errors.

import type { AdminMethod } from '../../core/admin-methods';
import { QubesError, valueError } from '../../core/errors';
import type { QubeRecord } from '../../core/qube';
import type { Handler } from '../admin-server';
import { destQube, payloadText, type HandlerDeps } from './context';

const FEATURE_RE = /^[A-Za-z0-9_.-]{1,64}$/;
const TAG_RE = /^[A-Za-z0-9_-]{1,64}$/;

function checked(re: RegExp, what: string, untrusted: string): string {
  if (!re.test(untrusted)) throw valueError(`Invalid ${what} name '${untrusted}'`);
  return untrusted;
}

export function featureTagHandlers(d: HandlerDeps): Partial<Record<AdminMethod, Handler>> {
  const col = d.collection;
  const featureWithTemplate = (q: QubeRecord, name: string): string | undefined => {
    for (let cur: QubeRecord | undefined = q, n = 0; cur && n < 8; n++) {
      if (Object.prototype.hasOwnProperty.call(cur.features, name)) return cur.features[name];
      cur = typeof cur.props.template === 'string' ? col.find(cur.props.template) : undefined;
    }
    return undefined;
  };
  const notFound = (q: QubeRecord, f: string) => new QubesError('QubesFeatureNotFoundError', `Feature not set: ${q.name}: ${f}`);
  return {
    'admin.vm.feature.List': (ctx) => Object.keys(destQube(d, ctx).features).sort().map((f) => f + '\n').join(''),
    'admin.vm.feature.Get': (ctx) => {
      const q = destQube(d, ctx);
      const f = checked(FEATURE_RE, 'feature', ctx.req.arg);
      if (!Object.prototype.hasOwnProperty.call(q.features, f)) throw notFound(q, f);
      return q.features[f];
    },
    'admin.vm.feature.CheckWithTemplate': (ctx) => {
      const q = destQube(d, ctx);
      const f = checked(FEATURE_RE, 'feature', ctx.req.arg);
      const v = featureWithTemplate(q, f);
      if (v === undefined) throw notFound(q, f);
      return v;
    },
    'admin.vm.feature.Set': (ctx) => {
      const q = destQube(d, ctx);
      const f = checked(FEATURE_RE, 'feature', ctx.req.arg);
      const value = payloadText(ctx);
      col.write(() => col.store.setFeature(q.qid, f, value));
      d.events.emit(q.name, `domain-feature-set:${f}`, { feature: f, value });
      return '';
    },
    'admin.vm.feature.Remove': (ctx) => {
      const q = destQube(d, ctx);
      const f = checked(FEATURE_RE, 'feature', ctx.req.arg);
      if (!col.write(() => col.store.removeFeature(q.qid, f))) throw notFound(q, f);
      d.events.emit(q.name, `domain-feature-delete:${f}`, { feature: f });
      return '';
    },
    'admin.vm.tag.List': (ctx) => destQube(d, ctx).tags.map((t) => t + '\n').join(''),
    'admin.vm.tag.Get': (ctx) => (destQube(d, ctx).tags.includes(checked(TAG_RE, 'tag', ctx.req.arg)) ? '1' : '0'),
    'admin.vm.tag.Set': (ctx) => {
      const q = destQube(d, ctx);
      const t = checked(TAG_RE, 'tag', ctx.req.arg);
      if (!q.tags.includes(t)) {
        col.write(() => col.store.addTag(q.qid, t));
        d.events.emit(q.name, `domain-tag-add:${t}`, { tag: t });
      }
      return '';
    },
    'admin.vm.tag.Remove': (ctx) => {
      const q = destQube(d, ctx);
      const t = checked(TAG_RE, 'tag', ctx.req.arg);
      if (!col.write(() => col.store.removeTag(q.qid, t))) throw new QubesError('QubesTagNotFoundError', `Tag not set for domain ${q.name}: ${t}`);
      d.events.emit(q.name, `domain-tag-delete:${t}`, { tag: t });
      return '';
    },
  };
}
