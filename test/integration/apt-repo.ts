// A tiny Debian repository made by the test: one small package built with dpkg-deb from a directory
// the test writes, and a flat repository's Packages and Release written by hand (unsigned: the
// template's sources say [trusted=yes]). Served by the test internet's hosts under /repo/.

import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export const PACKAGE = 'isola-hello';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** (Re)publishes PACKAGE at `version` in repoDir: the package prints `hello VERSION`. */
export function publishPackage(repoDir: string, version: string): void {
  const build = path.join(repoDir, '..', `build-${version}`);
  rmSync(build, { recursive: true, force: true });
  mkdirSync(path.join(build, 'DEBIAN'), { recursive: true });
  mkdirSync(path.join(build, 'usr/bin'), { recursive: true });
  const control = [
    `Package: ${PACKAGE}`,
    `Version: ${version}`,
    'Architecture: all',
    'Maintainer: Isola tests <tests@isola.invalid>',
    'Section: misc',
    'Priority: optional',
    'Description: says hello (a test package of the updates proxy test)',
    '',
  ].join('\n');
  writeFileSync(path.join(build, 'DEBIAN/control'), control);
  writeFileSync(path.join(build, 'usr/bin', PACKAGE), `#!/bin/sh\necho hello ${version}\n`);
  chmodSync(path.join(build, 'usr/bin', PACKAGE), 0o755);
  mkdirSync(repoDir, { recursive: true });
  const debName = `${PACKAGE}_${version}_all.deb`;
  execFileSync('dpkg-deb', ['--root-owner-group', '--build', build, path.join(repoDir, debName)], { stdio: 'ignore' });
  rmSync(build, { recursive: true, force: true });
  const deb = readFileSync(path.join(repoDir, debName));
  const packages = Buffer.from(`${control.trimEnd()}\nFilename: ./${debName}\nSize: ${deb.length}\nSHA256: ${sha256(deb)}\n\n`);
  writeFileSync(path.join(repoDir, 'Packages'), packages);
  const release = [
    'Origin: isola-test',
    'Label: isola-test',
    'Suite: test',
    `Date: ${new Date().toUTCString()}`,
    'SHA256:',
    ` ${sha256(packages)} ${statSync(path.join(repoDir, 'Packages')).size} Packages`,
    '',
  ].join('\n');
  writeFileSync(path.join(repoDir, 'Release'), release);
}

/** The template's only apt source (nothing else: no test may reach a real mirror). */
export const sourcesLine = (host: string): string => `deb [trusted=yes] http://${host}/repo ./`;
