// Volume bounds as pure arithmetic: the env variables' parsing, the sizes new qubes get, which
// volume directories get their own filesystem and with what bound and inode count.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { newQubeSizes, parseVolumeSizes } from '../../src/daemon/volume-sizes';
import { hostReserve, parsePoolSize } from '../../src/storage/pool-fs';
import { boundOf, volumeDirs } from '../../src/storage/volume-bounds';
import { inodesFor } from '../../src/storage/volume-fs';

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;

describe('volume sizes and bounds', () => {
  it('parses ISOLA_POOL_SIZE in powers of 1024, refusing junk', () => {
    assert.equal(parsePoolSize('6G'), 6 * GiB);
    assert.equal(parsePoolSize('512M'), 512 * MiB);
    assert.equal(parsePoolSize('512MiB'), 512 * MiB);
    assert.equal(parsePoolSize('4096'), 4096);
    for (const bad of [undefined, '', '0', '-1G', '1.5G', '6X', '9'.repeat(30)]) assert.equal(parsePoolSize(bad), undefined, String(bad));
  });

  it('keeps 5 % of the host filesystem free, at least 2 GiB, at most 10 %', () => {
    assert.equal(hostReserve(30 * GiB), 2 * GiB);
    assert.equal(hostReserve(1000 * GiB), 50 * GiB);
    assert.equal(hostReserve(120 * MiB), 12 * MiB);
  });

  it('parses ISOLA_VOLUME_SIZES, ignoring unknown volumes and bad sizes', () => {
    assert.deepEqual(parseVolumeSizes('root=1G,private=64M'), { root: GiB, private: 64 * MiB });
    assert.deepEqual(parseVolumeSizes('kernel=1G,private=x,volatile=2G'), { volatile: 2 * GiB });
    assert.deepEqual(parseVolumeSizes(undefined), {});
  });

  it("gives new qubes Qubes' defaults, an AppVM its template's root size", () => {
    assert.deepEqual(newQubeSizes('TemplateVM', {}), { root: 10 * GiB, private: 2 * GiB, volatile: 10 * GiB });
    assert.deepEqual(newQubeSizes('AppVM', { private: 64 * MiB }, { root: 20 * GiB }), { root: 20 * GiB, private: 64 * MiB, volatile: 10 * GiB });
  });

  it('bounds the directories that hold data: an AppVM root changes in volatile, by the root size', () => {
    assert.deepEqual(volumeDirs({ uuid: 'u', klass: 'TemplateVM' }), ['root', 'private']);
    assert.deepEqual(volumeDirs({ uuid: 'u', klass: 'StandaloneVM' }), ['root', 'private']);
    assert.deepEqual(volumeDirs({ uuid: 'u', klass: 'AppVM' }), ['private', 'volatile']);
    assert.deepEqual(volumeDirs({ uuid: 'u', klass: 'DispVM' }), ['private', 'volatile']);
    const q = { uuid: 'u', klass: 'AppVM' as const, sizes: { root: 3 * GiB, private: 64 * MiB, volatile: 10 * GiB } };
    assert.equal(boundOf(q, 'volatile'), 3 * GiB);
    assert.equal(boundOf(q, 'private'), 64 * MiB);
    assert.equal(boundOf({ uuid: 'u', klass: 'AppVM' }, 'private'), 2 * GiB);
  });

  it("allows one inode per 16 KiB, ext4's default ratio", () => {
    assert.equal(inodesFor(2 * GiB), 131072);
    assert.equal(inodesFor(64 * MiB), 4096);
  });
});
