// qubes.OpenInVM / qubes.OpenURL requests as the target reads them: hostile names and URLs.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NAME_BLOCK, checkUrl, decodeNameBlock, encodeNameBlock, isUrl } from '../../src/agent/open/open-request';

test('a name block round-trips, with the view-only prefix', () => {
  assert.deepEqual(decodeNameBlock(encodeNameBlock('report.pdf', false)), { name: 'report.pdf', viewOnly: false });
  assert.deepEqual(decodeNameBlock(encodeNameBlock('report.pdf', true)), { name: 'report.pdf', viewOnly: true });
  assert.throws(() => encodeNameBlock('x'.repeat(NAME_BLOCK), false), /longer than 255/);
});

test('hostile names are made safe or refused', () => {
  const block = (raw: Buffer | string) => {
    const b = Buffer.alloc(NAME_BLOCK);
    Buffer.from(raw).copy(b);
    return b;
  };
  assert.equal(decodeNameBlock(block('a b;$(id)\n.txt')).name, 'a_b___id__.txt');
  assert.equal(decodeNameBlock(block('ünï.txt')).name, '_n_.txt', 'each non-ASCII character becomes _');
  for (const [raw, why] of [
    ['../etc/passwd', /contains a \//],
    ['/etc/passwd', /contains a \//],
    ['..', /invalid file name/],
    ['.', /invalid file name/],
    ['', /invalid file name/],
    ['view-only-', /invalid file name/],
  ] as const) assert.throws(() => decodeNameBlock(block(raw)), why, raw);
  assert.throws(() => decodeNameBlock(Buffer.alloc(NAME_BLOCK, 0x41)), /not NUL-terminated/);
  assert.throws(() => decodeNameBlock(Buffer.alloc(10)), /truncated/);
});

test("URLs: Qubes' scheme:// rule on the caller, only http(s)/ftp in the target", () => {
  assert.ok(isUrl('https://example.org'));
  assert.ok(isUrl('javascript://x'));
  assert.ok(!isUrl('notes.txt'));
  assert.ok(!isUrl('./https://x'));
  assert.equal(checkUrl('https://example.org/a?b=1\n'), 'https://example.org/a?b=1');
  assert.equal(checkUrl('FTP://host/file'), 'FTP://host/file');
  for (const [bad, why] of [
    ['javascript://alert(1)', /only http, https, ftp/],
    ['file:///etc/passwd', /only http, https, ftp/],
    ['https://a b', /spaces or control/],
    ['https://a\x1b[2J', /spaces or control/],
    ['https://a\nhttps://b', /spaces or control/],
    ['', /empty/],
    [`https://${'a'.repeat(5000)}`, /longer than/],
  ] as const) assert.throws(() => checkUrl(bad), why, JSON.stringify(bad));
});
