// The metadata isolad gives its templates (Qubes' EVR and template-* fields) and the repository
// reply that carries it to qvm-template: what the daemon writes, the CLI reads back unchanged.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseTemplateSearch } from '../../src/cli/template-query';
import { templateMeta, templateSearchLine } from '../../src/daemon/handlers/template-handlers';
import { TEMPLATE_FORMAT_VERSION } from '../../src/storage/template-cache';

describe('template metadata', () => {
  const built = { mtime: new Date('2025-03-01T10:20:30Z'), size: 123456789 };

  it('versions a build by its UTC date; the release is the template format version', () => {
    const m = templateMeta('debian-12', built);
    assert.deepEqual([m.epoch, m.version, m.release, m.reponame, m.size, m.buildtime], ['0', '20250301', String(TEMPLATE_FORMAT_VERSION), 'isola-debian', 123456789, '2025-03-01 10:20:30']);
    assert.match(m.description, /^Debian 12 \(bookworm\)/);
  });

  it('a template not built yet has no build time and no size', () => {
    const m = templateMeta('debian-12-minimal');
    assert.deepEqual([m.size, m.buildtime], [0, '']);
    assert.match(m.version, /^20\d{6}$/);
  });

  it('the repository line reads back as the same template (time to the minute, newlines kept)', () => {
    const m = templateMeta('debian-12', built);
    const [t] = parseTemplateSearch(templateSearchLine(m) + templateSearchLine(templateMeta('debian-12-minimal')));
    assert.deepEqual(
      { ...t },
      { name: 'debian-12', epoch: '0', version: '20250301', release: m.release, reponame: 'isola-debian', size: 123456789, buildtime: '2025-03-01 10:20:00', installtime: '', license: m.license, url: m.url, summary: m.summary, description: m.description },
    );
    assert.ok(t.description.includes('\n'), 'description keeps its line break');
  });
});
